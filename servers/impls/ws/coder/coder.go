// Package coder serves WebSocket with github.com/coder/websocket the way
// its chat example teaches: publish offers each message to a 16-message
// channel per subscriber and closes a subscriber that is too slow with
// 1008 ("connection too slow to keep up with messages"); each subscriber's
// handler goroutine writes one message per tick with a context deadline
// (-write-timeout: an expired write closes the connection), and CloseRead
// answers pings and close frames from a second goroutine.
//
// What it lacks: resume and gaps (since is parsed and ignored), symbol
// filters (every subscriber gets every message) and server pings (the
// library sends none unless asked, and the example does not ask).
//
// Ownership: Run follows the feed and publishes; the subscriber set is
// guarded by a mutex, as in the example. Each subscriber lives in its
// net/http handler goroutine, which returns when the client leaves, is
// closed as slow, or the server shuts down (close 1001).
package coder

import (
	"context"
	"net/http"
	"sync"

	"github.com/coder/websocket"

	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/impls/host"
)

// subscriberMessageBuffer is the example's per-subscriber channel size.
const subscriberMessageBuffer = 16

// Service is the coder/websocket endpoint.
type Service struct {
	env         host.Env
	mu          sync.Mutex
	subscribers map[*subscriber]struct{}
}

type subscriber struct {
	msgs      chan *feed.Frame
	closeSlow func()
}

// New builds the service; Run starts publishing.
func New(env host.Env) (*Service, error) {
	return &Service{env: env, subscribers: map[*subscriber]struct{}{}}, nil
}

var _ host.Service = (*Service)(nil)

// Run publishes every tick to every subscriber until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	host.Follow(ctx, s.env.Feed.Ring(), func(frames []*feed.Frame) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, f := range frames {
			for sub := range s.subscribers {
				select {
				case sub.msgs <- f:
				default:
					go sub.closeSlow() // as the example: Close waits for the peer's close frame
				}
			}
		}
	}, nil)
	return nil
}

// ServeHTTP accepts one subscriber and writes to it until it goes.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, err := s.env.Parse(r, "", "since"); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	release, ok := s.env.Take(w, r, func(w http.ResponseWriter, code int, msg string) { http.Error(w, msg, code) })
	if !ok {
		return
	}
	defer release()
	m := s.env.Metrics
	var mu sync.Mutex
	var c *websocket.Conn
	var closed bool
	sub := &subscriber{msgs: make(chan *feed.Frame, subscriberMessageBuffer), closeSlow: func() {
		mu.Lock()
		defer mu.Unlock()
		closed = true
		if c != nil {
			m.SlowWrite.Inc()
			_ = c.Close(websocket.StatusPolicyViolation, "connection too slow to keep up with messages")
		}
	}}
	s.mu.Lock()
	s.subscribers[sub] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subscribers, sub)
		s.mu.Unlock()
	}()
	c2, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	mu.Lock()
	if closed {
		mu.Unlock()
		_ = c2.CloseNow()
		return
	}
	c = c2
	mu.Unlock()
	defer c.CloseNow()
	m.Open.Inc()
	defer m.Open.Dec()
	ctx := c.CloseRead(r.Context())
	for {
		select {
		case f := <-sub.msgs:
			wctx, cancel := context.WithTimeout(ctx, s.env.WriteTimeout)
			err := c.Write(wctx, websocket.MessageText, f.JSON)
			cancel()
			if err != nil {
				m.WriteFailed(err)
				return
			}
			m.Delivered(1)
			m.Bytes.Add(float64(len(f.JSON)))
		case <-ctx.Done():
			return
		case <-s.env.Shutdown.Done():
			_ = c.Close(websocket.StatusGoingAway, "server shutting down")
			return
		}
	}
}
