// Package nethttp serves long polling the textbook net/http way: each held
// request registers a channel with a broadcaster goroutine, which hands the
// next published batch of ticks to every waiting channel and forgets them;
// the handler encodes its answer with encoding/json.
//
// What it has: the timeout parameter (timeout=0 answers at once, empty).
// What it lacks: resume and gaps (cursor is parsed and ignored: a poll gets
// only what is published while it waits, so ticks published between two
// polls are lost to the client), filters (?symbols is validated, not
// applied) and max. Heartbeats and slow-client drops do not apply to polls.
//
// Ownership: Run owns the broadcaster; a held request lives in its net/http
// handler goroutine and returns on its batch, its timeout, the client's
// departure or shutdown.
package nethttp

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/impls/host"
	"github.com/pushbench/pushbench/servers/query"
)

// Timeout bounds as in PROTOCOL.md.
const (
	DefaultTimeout = 25 * time.Second
	MaxTimeout     = 2 * time.Minute
)

// Service is the textbook long-poll endpoint.
type Service struct {
	env      host.Env
	register chan chan []*feed.Frame
	forget   chan chan []*feed.Frame
	done     chan struct{}
}

// New builds the service; Run starts its broadcaster.
func New(env host.Env) (*Service, error) {
	return &Service{env: env, register: make(chan chan []*feed.Frame), forget: make(chan chan []*feed.Frame),
		done: make(chan struct{})}, nil
}

var _ host.Service = (*Service)(nil)

// Run hands every published batch to the polls waiting at that moment.
func (s *Service) Run(ctx context.Context) error {
	defer close(s.done)
	waiting := map[chan []*feed.Frame]struct{}{}
	ticks := make(chan []*feed.Frame)
	followCtx, cancel := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		host.Follow(followCtx, s.env.Feed.Ring(), func(frames []*feed.Frame) {
			select {
			case ticks <- append([]*feed.Frame(nil), frames...):
			case <-followCtx.Done():
			}
		}, nil)
	}()
	defer func() { cancel(); <-followed }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ch := <-s.register:
			waiting[ch] = struct{}{}
		case ch := <-s.forget:
			delete(waiting, ch)
		case batch := <-ticks:
			for ch := range waiting {
				ch <- batch // buffered 1, and each channel gets one batch
			}
			clear(waiting)
		}
	}
}

type answer struct {
	Cursor uint64            `json:"cursor"`
	Ticks  []json.RawMessage `json:"ticks"`
}

func writeJSON(w http.ResponseWriter, code int, v any) (int, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	return w.Write(b)
}

func fail(w http.ResponseWriter, code int, msg string) {
	_, _ = writeJSON(w, code, map[string]string{"error": msg})
}

// ServeHTTP holds the poll until the next batch, its timeout, the client's
// departure or shutdown.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := s.env.Parse(r, "", "cursor")
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	timeout := DefaultTimeout
	if v, ok := req.Query["timeout"]; ok {
		if timeout, err = query.Duration("timeout", v[0], MaxTimeout); err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	a := answer{Cursor: req.Cursor, Ticks: []json.RawMessage{}}
	if timeout > 0 {
		release, ok := s.env.Take(w, r, fail)
		if !ok {
			return
		}
		s.env.Metrics.Open.Inc()
		batch := s.wait(r.Context(), timeout)
		s.env.Metrics.Open.Dec()
		release()
		for _, f := range batch {
			a.Ticks = append(a.Ticks, f.JSON)
			a.Cursor = f.Seq
		}
	}
	if s.env.WriteTimeout > 0 {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.env.WriteTimeout))
	}
	n, err := writeJSON(w, http.StatusOK, a)
	s.env.Metrics.Bytes.Add(float64(n))
	if err != nil {
		s.env.Metrics.WriteFailed(err)
		return
	}
	s.env.Metrics.Delivered(len(a.Ticks))
}

// wait registers a channel and returns the batch it gets, or nil.
func (s *Service) wait(ctx context.Context, timeout time.Duration) []*feed.Frame {
	ch := make(chan []*feed.Frame, 1)
	select {
	case s.register <- ch:
	case <-s.done:
		return nil
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case batch := <-ch:
		return batch
	case <-timer.C:
	case <-ctx.Done():
	case <-s.env.Shutdown.Done():
	}
	select {
	case s.forget <- ch:
	case <-s.done:
	}
	select { // a batch may have come in between
	case batch := <-ch:
		return batch
	default:
		return nil
	}
}
