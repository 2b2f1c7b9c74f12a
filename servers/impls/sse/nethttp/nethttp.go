// Package nethttp serves SSE the textbook net/http way: a broadcaster
// goroutine fans every tick out to a buffered channel per client, and each
// client's handler goroutine writes and flushes one event per tick.
//
// What the textbook pattern has: ?symbols filters (in the handler), the
// retry hint, heartbeats, a write deadline per event (net/http's
// ResponseController), and a slow client is dropped when its channel is
// full. What it lacks: resume and gaps (a client is only ever sent what is
// published while it is connected; Last-Event-ID is parsed and ignored).
//
// Ownership: Run owns the broadcaster; each handler goroutine owns its
// client's writes. The broadcaster closes a client's channel when it drops
// the client or stops; the handler then returns.
package nethttp

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/impls/host"
)

// SendBuffer is each client's channel capacity, in ticks: as in gorilla's
// chat example, a client 256 ticks behind is dropped.
const SendBuffer = 256

// Service is the textbook SSE endpoint.
type Service struct {
	env        host.Env
	register   chan *client
	unregister chan *client
	done       chan struct{} // closed when the broadcaster stops
}

type client struct {
	send chan *feed.Frame
}

// New builds the service; Run starts its broadcaster.
func New(env host.Env) (*Service, error) {
	return &Service{env: env, register: make(chan *client), unregister: make(chan *client), done: make(chan struct{})}, nil
}

var _ host.Service = (*Service)(nil)

// Run is the broadcaster: it follows the feed and offers every tick to
// every client, dropping those whose channel is full.
func (s *Service) Run(ctx context.Context) error {
	defer close(s.done)
	clients := map[*client]struct{}{}
	defer func() {
		for c := range clients {
			close(c.send)
		}
	}()
	ticks := make(chan []*feed.Frame)
	followCtx, cancel := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		host.Follow(followCtx, s.env.Feed.Ring(), func(frames []*feed.Frame) {
			batch := append([]*feed.Frame(nil), frames...)
			select {
			case ticks <- batch:
			case <-followCtx.Done():
			}
		}, nil)
	}()
	defer func() { cancel(); <-followed }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-s.register:
			clients[c] = struct{}{}
		case c := <-s.unregister:
			if _, ok := clients[c]; ok {
				delete(clients, c)
				close(c.send)
			}
		case batch := <-ticks:
			for _, f := range batch {
				for c := range clients {
					select {
					case c.send <- f:
					default: // too slow: drop it
						delete(clients, c)
						close(c.send)
						s.env.Metrics.SlowWrite.Inc()
					}
				}
			}
		}
	}
}

// ServeHTTP streams ticks to one client until it leaves, is dropped or the
// server stops.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := s.env.Parse(r, "Last-Event-ID", "lastEventId")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	release, ok := s.env.Take(w, r, func(w http.ResponseWriter, code int, msg string) { http.Error(w, msg, code) })
	if !ok {
		return
	}
	defer release()
	m := s.env.Metrics
	m.Open.Inc()
	defer m.Open.Dec()
	c := &client{send: make(chan *feed.Frame, SendBuffer)}
	select {
	case s.register <- c:
	case <-s.done:
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	defer func() {
		select {
		case s.unregister <- c:
		case <-s.done:
		}
	}()
	rc := http.NewResponseController(w)
	write := func(b []byte) error {
		if s.env.WriteTimeout > 0 {
			if err := rc.SetWriteDeadline(time.Now().Add(s.env.WriteTimeout)); err != nil {
				return err
			}
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		m.Bytes.Add(float64(len(b)))
		return rc.Flush()
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	if err := write([]byte("retry: " + strconv.FormatInt(s.env.Retry.Milliseconds(), 10) + "\n\n")); err != nil {
		m.WriteFailed(err)
		return
	}
	heartbeat := time.NewTicker(s.env.Heartbeat)
	defer heartbeat.Stop()
	last := time.Now()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.env.Shutdown.Done():
			return
		case now := <-heartbeat.C:
			if now.Sub(last) < s.env.Heartbeat {
				continue
			}
			if err := write([]byte(": ping\n\n")); err != nil {
				m.WriteFailed(err)
				return
			}
			last = now
		case f, ok := <-c.send:
			if !ok {
				return // dropped, or the broadcaster stopped
			}
			if !req.Filter.Match(f.Sym) {
				continue
			}
			if err := write(f.SSE); err != nil {
				m.WriteFailed(err)
				return
			}
			m.Delivered(1)
			last = time.Now()
		}
	}
}
