// Package r3labs serves SSE with github.com/r3labs/sse/v2 and its defaults,
// as its README teaches: sse.New(), one stream ("ticks"), Publish of one
// Event per tick. The library reads the stream from ?stream=; /sse sets it
// so that clients use the same URL as with every other implementation.
//
// With its defaults (AutoReplay on): event IDs are the library's log index
// (seq-1), not the seq; every new subscriber first gets the whole log, which
// is never trimmed (so -history is not honoured and memory grows with the
// run); Last-Event-ID k replays from index k inclusive, so a resumed client
// gets one duplicate and, since it sent an index, not a seq, nothing maps
// to PROTOCOL.md's resume. No gap signal, filters, retry hint, heartbeat,
// write deadline or slow-client drop: a subscriber's full channel blocks
// the stream's one goroutine, and so every subscriber. Deliveries are not
// visible: the library writes.
//
// Ownership: Run follows the feed and publishes; the library owns its
// stream goroutine and each handler's writes; Run closes the server when
// ctx ends, which ends every handler.
package r3labs

import (
	"context"
	"net/http"

	sse "github.com/r3labs/sse/v2"

	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/impls/host"
)

// Stream is the library stream that carries the feed.
const Stream = "ticks"

// Service is the r3labs endpoint.
type Service struct {
	env host.Env
	srv *sse.Server
}

// New builds the library server and its stream.
func New(env host.Env) (*Service, error) {
	srv := sse.New()
	srv.CreateStream(Stream)
	return &Service{env: env, srv: srv}, nil
}

var _ host.Service = (*Service)(nil)

// ServeHTTP admits the client and hands it to the library on its stream.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	release, ok := s.env.Take(w, r, func(w http.ResponseWriter, code int, msg string) { http.Error(w, msg, code) })
	if !ok {
		return
	}
	defer release()
	s.env.Metrics.Open.Inc()
	defer s.env.Metrics.Open.Dec()
	host.NoWriteDeadline(w)
	r2 := r.Clone(r.Context())
	q := r2.URL.Query()
	q.Set("stream", Stream)
	r2.URL.RawQuery = q.Encode()
	s.srv.ServeHTTP(w, r2)
}

// Run publishes every tick, then closes the library server.
func (s *Service) Run(ctx context.Context) error {
	defer s.srv.Close()
	host.Follow(ctx, s.env.Feed.Ring(), func(frames []*feed.Frame) {
		for _, f := range frames {
			s.srv.Publish(Stream, &sse.Event{Data: f.JSON})
		}
	}, nil)
	return nil
}
