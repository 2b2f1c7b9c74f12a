package loadgen

// DefaultReader is the -reader default: the event loop where it exists.
const DefaultReader = ReaderLoop
