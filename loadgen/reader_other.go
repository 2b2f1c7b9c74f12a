//go:build !linux

package loadgen

// DefaultReader is the -reader default: without epoll, a goroutine per
// client.
const DefaultReader = ReaderGoroutine
