package server

// FDReserve is how many open files the server keeps free of clients, below
// its open-files limit, for the listener, /metrics scrapes, logs and the
// runtime: the default -max-conns is the limit minus FDReserve, and bench
// sizes its matrix by the same figure.
const FDReserve = 64
