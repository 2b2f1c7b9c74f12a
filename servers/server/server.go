// Package server assembles one pushbench server process: the feed, the
// transport handlers chosen by Config.Transport, /metrics, /healthz and the
// demo page, an admission limit, and a graceful shutdown.
//
// Ownership: Run owns the feed's publisher goroutine. SSE and WebSocket
// connections are taken over from net/http after the handshake, and so are
// HTTP/1.x connections carrying an SSE answer; their goroutines are started
// through the server so that Shutdown can wait for them. A keep-alive
// connection whose answer is done goes back to net/http through the
// listener HTTP returned (handBack). Held polls live in net/http's handler
// goroutines and are answered when Shutdown cancels the server's context,
// the one shutdown signal.
package server

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pushbench/pushbench/servers/answersrv"
	"github.com/pushbench/pushbench/servers/endpoint"
	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/impls"
	"github.com/pushbench/pushbench/servers/impls/host"
	"github.com/pushbench/pushbench/servers/metrics"
	"github.com/pushbench/pushbench/servers/poll"
	"github.com/pushbench/pushbench/servers/protocol"
	"github.com/pushbench/pushbench/servers/sse"
	"github.com/pushbench/pushbench/servers/stream"
	"github.com/pushbench/pushbench/servers/ws"
)

//go:embed web
var webFiles embed.FS

// Transports a server can serve; "all" serves the three.
var Transports = []string{"sse", "ws", "poll", "all"}

// Config is a server's configuration; zero durations take the defaults.
type Config struct {
	Transport    string // sse, ws, poll or all
	Feed         feed.Config
	Retry        time.Duration // SSE retry hint
	Heartbeat    time.Duration // SSE heartbeat when idle
	Ping         time.Duration // WebSocket ping period
	WriteTimeout time.Duration // deadline of every write
	// MaxConns caps streaming clients and held polls together; 0: no cap.
	MaxConns    int
	AllowOrigin []string // WebSocket origins allowed besides same-origin; "*" any
	// Impl names the implementation of Transport (impls.List); "" or
	// impls.Default is this project's own, the only one for "all".
	Impl   string
	Logger *slog.Logger
	// Answer bounds the answer workload (/answer): its Limits, MaxInFlight,
	// MaxPerConn, Retain and Idle are used; the server sets the rest.
	Answer answersrv.Config
	// Protocol adds TLS and HTTP/2 to what HTTP serves; zero: plaintext
	// HTTP/1.1.
	Protocol protocol.Config
}

func (c *Config) defaults() {
	if c.Feed.Symbols == 0 {
		c.Feed.Symbols = feed.DefaultSymbols
	}
	if c.Feed.Rate == 0 {
		c.Feed.Rate = feed.DefaultRate
	}
	if c.Feed.History == 0 {
		c.Feed.History = feed.DefaultHistory
	}
	if c.Retry == 0 {
		c.Retry = sse.DefaultRetry
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = sse.DefaultHeartbeat
	}
	if c.Ping == 0 {
		c.Ping = ws.DefaultPing
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = sse.DefaultWriteTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Server is an http.Handler for every endpoint of one server process.
type Server struct {
	cfg     Config
	feed    *feed.Feed
	answers *answersrv.Service
	metrics *metrics.Metrics
	mux     *http.ServeMux

	ctx      context.Context // canceled by Shutdown: the one shutdown signal
	cancel   context.CancelFunc
	stopOnce sync.Once
	conns    sync.WaitGroup // taken-over (SSE, WS) connections' goroutines, HTTP/2 streams
	connsMu  sync.Mutex     // orders conns.Add before Shutdown's Wait
	draining bool           // Shutdown began: goConn refuses
	open     atomic.Int64   // admitted clients
	started  atomic.Bool
	impl     impls.Impl   // the implementation of the transport
	service  host.Service // the library implementation's endpoint; nil for ours
}

// New validates cfg and builds the server; Run starts the feed.
func New(cfg Config) (*Server, error) {
	cfg.defaults()
	switch cfg.Transport {
	case "sse", "ws", "poll", "all":
	default:
		return nil, fmt.Errorf("server: transport must be one of %s, got %q", strings.Join(Transports, ", "), cfg.Transport)
	}
	if cfg.MaxConns < 0 {
		return nil, fmt.Errorf("server: max-conns must be >= 0, got %d", cfg.MaxConns)
	}
	f, err := feed.New(cfg.Feed)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, feed: f, metrics: metrics.New(), mux: http.NewServeMux(), ctx: ctx, cancel: cancel}
	index := make(map[string]int, len(f.Symbols()))
	for i, n := range f.Symbols() {
		index[n] = i
	}
	batches := stream.NewBatchPool(stream.DefaultMaxBatch)
	base := func(transport string, batches *sync.Pool) endpoint.Base {
		return endpoint.Base{Feed: f, SymbolIndex: index, WriteTimeout: cfg.WriteTimeout, Metrics: s.metrics.For(transport),
			Admit: s.admit, Shutdown: ctx, Go: s.goConn, Enter: s.enter, Batches: batches}
	}
	// A library implementation serves its transport's path instead of ours.
	serve := func(name string) bool { return s.service == nil && (cfg.Transport == name || cfg.Transport == "all") }
	if cfg.Impl != "" && cfg.Impl != impls.Default {
		if s.impl, err = impls.Lookup(cfg.Impl, cfg.Transport); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		env := host.Env{Base: base(cfg.Transport, batches), Retry: cfg.Retry, Heartbeat: cfg.Heartbeat, Ping: cfg.Ping}
		if s.service, err = s.impl.New(env); err != nil {
			return nil, fmt.Errorf("server: impl %s: %w", cfg.Impl, err)
		}
		s.mux.Handle("/"+cfg.Transport, s.service)
	} else if s.impl, err = impls.Lookup(impls.Default, cfg.Transport); err != nil {
		s.impl = impls.Impl{Name: impls.Default, Transport: cfg.Transport} // "all"
	}
	if serve("sse") {
		s.mux.Handle("/sse", &sse.Handler{Base: base(metrics.SSE, batches), Retry: cfg.Retry, Heartbeat: cfg.Heartbeat})
	}
	if serve("ws") {
		s.mux.Handle("/ws", &ws.Handler{Base: base(metrics.WS, batches), Ping: cfg.Ping, AllowOrigin: cfg.AllowOrigin})
	}
	if serve("poll") {
		s.mux.Handle("/poll", &poll.Handler{Base: base(metrics.Poll, stream.NewBatchPool(poll.DefaultMax)),
			Requests: s.metrics.PollRequests})
	}
	acfg := cfg.Answer
	acfg.Transport, acfg.WriteTimeout, acfg.Ping, acfg.AllowOrigin = cfg.Transport, cfg.WriteTimeout, cfg.Ping, cfg.AllowOrigin
	acfg.Metrics, acfg.Shutdown, acfg.Go, acfg.HandBack, acfg.Logger = s.metrics.Answers, ctx, s.goConn, s.handBack, cfg.Logger
	if s.answers, err = answersrv.New(acfg); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.mux.Handle("/answer", s.answers)
	s.mux.Handle("/answer/", s.answers)
	s.mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{Registry: s.metrics.Registry}))
	s.mux.HandleFunc("/healthz", s.healthz)
	web, err := fs.Sub(webFiles, "web")
	if err != nil {
		return nil, fmt.Errorf("server: demo page: %w", err)
	}
	s.mux.Handle("/", http.FileServerFS(web))
	return s, nil
}

// Impl is the implementation this server runs.
func (s *Server) Impl() impls.Impl { return s.impl }

// Engine is the network loop of an implementation that brings its own
// (nbio), serving this server within lim (SO_SNDBUF on every connection;
// at most Conns+Reserve open, but no reserve kept for /healthz and
// /metrics: the library has no such distinction); nil means net/http's
// (see HTTP).
func (s *Server) Engine(lim Limits) host.Engine {
	if s.impl.NewEngine == nil {
		return nil
	}
	maxConns := 0
	if lim.Conns > 0 {
		maxConns = lim.Conns + max(lim.Reserve, 0)
	}
	return s.impl.NewEngine(s, host.EngineLimits{SndBuf: lim.SndBuf, MaxConns: maxConns})
}

// Feed is the server's feed.
func (s *Server) Feed() *feed.Feed { return s.feed }

// Answers is the server's answer service.
func (s *Server) Answers() *answersrv.Service { return s.answers }

// Metrics are the server's instruments.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// ServeHTTP routes to the endpoints. Paths of transports this server does
// not serve answer 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Run publishes the feed and runs the answer service's janitor and clock
// until ctx is done or Shutdown is called.
func (s *Server) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("server: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopWhenShutdown := context.AfterFunc(s.ctx, cancel)
	defer stopWhenShutdown()
	if s.service != nil {
		// Shutdown waits for it, as for a connection: it ends the
		// library's streams when the server's context ends.
		s.goConn(func() {
			if err := s.service.Run(s.ctx); err != nil {
				s.cfg.Logger.Warn("impl stopped", "impl", s.impl.Name, "err", err)
			}
		})
	}
	// Both start here, not from inside another goroutine, so that they
	// exist by the time the feed is Ready (tests count goroutines then).
	janitorDone, clockDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(janitorDone)
		s.answers.Run(ctx)
	}()
	go func() {
		defer close(clockDone)
		s.answers.RunClock(ctx)
	}()
	defer func() { cancel(); <-janitorDone; <-clockDone }()
	return s.feed.Run(ctx)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.feed.Ready():
	default:
		http.Error(w, "feed not running", http.StatusServiceUnavailable)
		return
	}
	if s.ctx.Err() != nil {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// admit takes one client slot, or says why not.
func (s *Server) admit() (release func(), reason string, ok bool) {
	if s.ctx.Err() != nil {
		return nil, metrics.ReasonShutdown, false
	}
	n := s.open.Add(1)
	if s.cfg.MaxConns > 0 && n > int64(s.cfg.MaxConns) {
		s.open.Add(-1)
		return nil, metrics.ReasonMaxConns, false
	}
	var once sync.Once
	return func() { once.Do(func() { s.open.Add(-1) }) }, "", true
}

// Open is the number of clients admitted now.
func (s *Server) Open() int64 { return s.open.Load() }

// goConn runs a taken-over connection's goroutine, which Shutdown waits
// for; it reports false, running nothing, once Shutdown has begun (a
// WaitGroup must not grow while it is waited on).
func (s *Server) goConn(fn func()) bool {
	leave, ok := s.enter()
	if !ok {
		return false
	}
	go func() {
		defer leave()
		fn()
	}()
	return true
}

// enter counts one stream Shutdown waits for until leave is called; it
// reports false once Shutdown has begun.
func (s *Server) enter() (leave func(), ok bool) {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	if s.draining {
		return nil, false
	}
	s.conns.Add(1)
	return s.conns.Done, true
}

// Shutdown stops the feed and ends every stream: SSE streams end, WebSocket
// clients get close 1001, held polls are answered. It waits for the
// taken-over connections (SSE, WebSocket) to finish closing, or for ctx. Call http.Server.Shutdown
// beside it to stop accepting and to wait for the HTTP handlers.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.cancel()
		s.connsMu.Lock()
		s.draining = true
		s.connsMu.Unlock()
	})
	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("server: shutdown: %w", ctx.Err())
	}
}
