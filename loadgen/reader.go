package loadgen

import (
	"fmt"

	"github.com/pushbench/pushbench/loadgen/client"
)

// Readers (values of Config.Reader) for the streams' connections.
const (
	// ReaderLoop: a few event-loop workers read every client's socket
	// (client.Loop; epoll, Linux only). Result.Reader says "epoll".
	ReaderLoop = "loop"
	// ReaderGoroutine: a goroutine per client calls Next (Go's netpoller).
	ReaderGoroutine = "goroutine"
)

// useReader sets the driver of a streams run from cfg.Reader ("": the
// loop where the system has one, else goroutines; TLS and HTTP/2 clients
// always goroutines) and returns what stops it once the run is over.
func (r *run) useReader() (stop func(), err error) {
	stop = func() {}
	if r.drv != nil { // a test's driver
		r.readerName = "test"
		return stop, nil
	}
	if r.cfg.Reader == ReaderGoroutine || r.cfg.isTLS() || r.cfg.Proto == client.ProtoH2 {
		// The loop reads raw sockets: it can neither decrypt TLS nor
		// take apart HTTP/2 streams, so those are read by goroutines.
		r.drv, r.readerName = readLoop{}, ReaderGoroutine
		return stop, nil
	}
	l, err := client.NewLoop(0)
	if err != nil {
		if r.cfg.Reader == ReaderLoop {
			return nil, fmt.Errorf("-reader loop: %w", err)
		}
		r.drv, r.readerName = readLoop{}, ReaderGoroutine
		return stop, nil
	}
	r.ccfg.Handoff = true // before any client is made
	r.drv, r.readerName = l, l.Name()
	return func() { _ = l.Close() }, nil
}
