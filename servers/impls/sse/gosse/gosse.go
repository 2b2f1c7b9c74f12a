// Package gosse serves SSE with github.com/tmaxmax/go-sse as its README
// teaches: an sse.Server whose Provider is Joe with a FiniteReplayer of
// -history events (IDs are ours: the tick's seq), topics for the symbols
// (OnSession answers ?symbols=A,B with those topics), and Publish of one
// Message per tick.
//
// What it has: resume from Last-Event-ID while the event is retained, and
// filters. What it lacks: the gap signal (an evicted Last-Event-ID replays
// nothing, silently), the lastEventId query parameter, the retry hint,
// heartbeats, write deadlines and a slow-client drop: Joe writes to every
// subscriber from its one goroutine with no deadline, so one stalled
// client stalls them all. Deliveries are not visible: Joe writes.
//
// Ownership: Run follows the feed and publishes; Joe owns its goroutine
// and the subscribers' writes; Run shuts Joe down when ctx ends.
package gosse

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/impls/host"
	"github.com/pushbench/pushbench/servers/query"
)

// shutdownWait bounds Joe's shutdown: it waits for its goroutine, which
// may be inside a write to a stalled client.
const shutdownWait = 5 * time.Second

// Service is the go-sse endpoint.
type Service struct {
	env host.Env
	srv *sse.Server
	all []string // topics of a subscription without a filter

	mu      sync.Mutex
	closing bool           // Run is shutting Joe down: no new session
	active  sync.WaitGroup // sessions in ServeHTTP
}

// New builds the server with a replayer of -history events.
func New(env host.Env) (*Service, error) {
	history := max(env.Feed.Config().History, 2) // the replayer's minimum
	rp, err := sse.NewFiniteReplayer(history, false)
	if err != nil {
		return nil, fmt.Errorf("go-sse: replayer: %w", err)
	}
	s := &Service{env: env, all: []string{sse.DefaultTopic}}
	s.srv = &sse.Server{Provider: &sse.Joe{Replayer: rp}, OnSession: s.onSession}
	return s, nil
}

var _ host.Service = (*Service)(nil)

// onSession maps ?symbols=A,B to topics; an unknown symbol is a 400.
func (s *Service) onSession(w http.ResponseWriter, r *http.Request) ([]string, bool) {
	v := r.URL.Query()
	if _, ok := v["symbols"]; !ok {
		return s.all, true
	}
	if _, err := query.Symbols(v.Get("symbols"), s.env.Feed.Symbols(), s.env.SymbolIndex); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, false
	}
	return strings.Split(v.Get("symbols"), ","), true
}

// ServeHTTP admits the client and hands it to go-sse.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	release, ok := s.env.Take(w, r, func(w http.ResponseWriter, code int, msg string) { http.Error(w, msg, code) })
	if !ok {
		return
	}
	defer release()
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	s.active.Add(1)
	s.mu.Unlock()
	defer s.active.Done()
	s.env.Metrics.Open.Inc()
	defer s.env.Metrics.Open.Dec()
	host.NoWriteDeadline(w)
	// The session ends when the client leaves or the server shuts down:
	// Joe then unsubscribes it, after which it never writes to w again.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.env.Shutdown, cancel)()
	s.srv.ServeHTTP(w, r.WithContext(ctx))
}

// Run publishes every tick to its symbol's topic and the default topic
// (Joe sends a message once to a client subscribed to both).
func (s *Service) Run(ctx context.Context) error {
	names := s.env.Feed.Symbols()
	host.Follow(ctx, s.env.Feed.Ring(), func(frames []*feed.Frame) {
		for _, f := range frames {
			msg := &sse.Message{ID: sse.ID(strconv.FormatUint(f.Seq, 10))}
			msg.AppendData(string(f.JSON))
			_ = s.srv.Publish(msg, names[f.Sym], sse.DefaultTopic) // fails only once shut down
		}
	}, nil)
	// Sessions unsubscribe first: once Joe is shut down, a session that
	// ends returns at once, while Joe may still be writing to it (a write
	// to a finished response). Joe may be stuck on a stalled client, so
	// the wait is bounded.
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	drained := make(chan struct{})
	go func() { s.active.Wait(); close(drained) }()
	timer := time.NewTimer(shutdownWait)
	defer timer.Stop()
	select {
	case <-drained:
	case <-timer.C:
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("go-sse: shutdown: %w", err)
	}
	return nil
}
