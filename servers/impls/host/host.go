// Package host is the contract between the server process and a library
// implementation of one transport (servers/impls/...): what the server
// hands an implementation (Env), what it gets back (Service, and an Engine
// for a library that brings its own network loop), the protocol features an
// implementation may or may not support (Feature), and Follow, the one way
// every implementation reads the shared feed.
//
// Ownership: the server owns a Service. It calls Run once, in a goroutine
// of its own, with a context that ends at shutdown; Run owns every
// goroutine the implementation starts (its broadcaster, the library's) and
// returns once they are done.
package host

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/pushbench/pushbench/servers/endpoint"
	"github.com/pushbench/pushbench/servers/feed"
)

// Feature is a part of PROTOCOL.md that an implementation may lack.
type Feature string

// The features a library may or may not provide. An implementation claims
// only what its library does; what it lacks is served without, never
// emulated around the library.
const (
	// Resume: a reconnecting client gets every retained tick after its
	// resume point (SSE Last-Event-ID, WebSocket since, poll cursor), once.
	Resume Feature = "resume"
	// Gap: a client that fell behind the history is told what it lost.
	Gap Feature = "gap"
	// Filters: ?symbols=A,B limits the stream, an unknown symbol is a 400.
	Filters Feature = "filters"
	// Heartbeat: SSE comment or WebSocket ping while idle.
	Heartbeat Feature = "heartbeat"
	// SlowDrop: a client that cannot keep up is disconnected (or skipped
	// ahead) instead of slowing the others or growing a buffer.
	SlowDrop Feature = "slow-drop"
)

// Features lists every Feature in the order tables print them.
var Features = []Feature{Resume, Gap, Filters, Heartbeat, SlowDrop}

// Env is what the server gives an implementation: the feed and metrics
// of its transport, admission, the shutdown signal and the goroutine hook
// (endpoint.Base), and the transport flags.
type Env struct {
	endpoint.Base
	Retry     time.Duration // SSE retry hint
	Heartbeat time.Duration // SSE heartbeat period
	Ping      time.Duration // WebSocket ping period
}

// Service is one implementation's endpoint.
type Service interface {
	http.Handler
	// Run feeds the library from the ring until ctx ends, then ends every
	// stream the library holds; it returns once its goroutines are done.
	Run(ctx context.Context) error
}

// Engine serves the whole process in place of net/http's server, for a
// library with its own network loop: Serve blocks until Shutdown or Close.
// It is built with EngineLimits, which it applies to the connections it
// accepts as far as the library lets it.
type Engine interface {
	Serve(ln net.Listener) error
	Shutdown(ctx context.Context) error
	Close() error
}

// NoWriteDeadline lifts the deadline net/http's server puts on a whole
// response (http.Server.WriteTimeout, which this project's handlers move
// before each write): a library that writes a stream without deadlines
// would otherwise have every stream cut after that long, a limit that is
// ours and not the library's.
func NoWriteDeadline(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
}

// EngineLimits are the server's connection limits for an Engine.
type EngineLimits struct {
	SndBuf int // SO_SNDBUF of every connection; 0: the kernel's autotuning
	// MaxConns bounds open connections so that accept never runs out of
	// descriptors; 0: the library's default.
	MaxConns int
}

// Follow calls publish with every batch of ticks the feed publishes after
// the call, in seq order, until ctx ends or the ring closes. If publish is
// so slow that the ring laps the follower, the lost ticks never reach the
// library: Follow reports each such gap to lapped (which may be nil) and
// goes on from the oldest retained tick. A library's clients see that as
// missing ticks, the library's own consequence of a blocking publish.
func Follow(ctx context.Context, ring *feed.Ring, publish func([]*feed.Frame), lapped func(feed.Gap)) {
	cursor := ring.Newest()
	var buf []*feed.Frame
	for {
		wake, cancel := ring.WaitFor(cursor, nil)
		for cursor < ring.Newest() {
			frames, gap, next := ring.Read(cursor, nil, buf[:0], 256)
			cursor = next
			if gap != nil && lapped != nil {
				lapped(*gap)
			}
			if len(frames) > 0 {
				publish(frames)
			}
			clear(frames)
			buf = frames[:0]
		}
		if ring.Closed() && cursor >= ring.Newest() {
			cancel()
			return
		}
		select {
		case <-ctx.Done():
			cancel()
			return
		case <-wake:
		}
		cancel()
	}
}
