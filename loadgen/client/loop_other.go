//go:build !linux

package client

import (
	"errors"
	"fmt"
)

// ErrNoLoop: this system has no epoll; the load generator reads with a
// goroutine per client.
var ErrNoLoop = errors.New("client: no event loop on this system (epoll is Linux-only)")

// Loop is the event-loop reader; on this system NewLoop always fails.
type Loop struct{}

// NewLoop fails with ErrNoLoop here.
func NewLoop(workers int) (*Loop, error) { return nil, ErrNoLoop }

// Name says which reader this is.
func (l *Loop) Name() string { return "none" }

// Close does nothing.
func (l *Loop) Close() error { return nil }

func (l *Loop) attach(*loopConn, *Conn) error { return ErrNoLoop }

// worker does not exist without epoll.
type worker struct{}

func (w *worker) cut(*loopConn, bool) {}

func (w *worker) writeSome(*loopConn, []byte) (int, error) {
	return 0, fmt.Errorf("write: %w", ErrNoLoop)
}

func (w *worker) wantWrite(*loopConn, bool) error { return ErrNoLoop }
