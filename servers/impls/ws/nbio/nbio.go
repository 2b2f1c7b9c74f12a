// Package nbio serves WebSocket with github.com/lesismal/nbio: an epoll
// event loop (nbhttp.Engine) in place of net/http's server, no goroutine
// per connection. The engine serves the whole process (the server's mux,
// so /healthz and /metrics too); its upgrader's OnOpen and OnClose keep the
// set of connections, and one broadcaster goroutine writes every tick to
// every connection. nbio's Write never blocks: it queues what the socket
// does not take in a per-connection buffer bounded by MaxWriteBufferSize
// (past it nbio closes the connection: the slow-client drop), and a write
// deadline closes a connection whose queue has not drained in time.
//
// What it lacks: resume and gaps (since is parsed and ignored), symbol
// filters, and pings (nbio sends none; KeepaliveTime is 0 because a
// subscriber never sends, and its default 120 s would drop every client).
//
// Deliveries counted are messages nbio accepted (written or queued), the
// most the library lets us see.
//
// Ownership: Run owns the broadcaster; the engine owns the connections and
// its pollers, and Engine.Shutdown stops them.
package nbio

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/lesismal/nbio/logging"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/impls/host"
)

// MaxWriteBufferSize bounds the bytes nbio queues for one connection.
const MaxWriteBufferSize = 256 << 10

// Service is the nbio WebSocket endpoint.
type Service struct {
	env      host.Env
	upgrader *websocket.Upgrader
	mu       sync.Mutex
	conns    map[*websocket.Conn]*peer
}

// peer is what the broadcaster keeps per connection.
type peer struct {
	armed time.Time // when the write deadline was last set
}

// New builds the service; Run starts the broadcaster.
func New(env host.Env) (*Service, error) {
	s := &Service{env: env, conns: map[*websocket.Conn]*peer{}}
	u := websocket.NewUpgrader()
	u.KeepaliveTime = 0
	u.OnOpen(func(c *websocket.Conn) {
		s.mu.Lock()
		s.conns[c] = &peer{}
		s.mu.Unlock()
		env.Metrics.Open.Inc()
	})
	u.OnClose(func(c *websocket.Conn, err error) {
		s.mu.Lock()
		_, ok := s.conns[c]
		delete(s.conns, c)
		s.mu.Unlock()
		if ok {
			env.Metrics.Open.Dec()
		}
	})
	s.upgrader = u
	return s, nil
}

var _ host.Service = (*Service)(nil)

// ServeHTTP upgrades; from then on the engine owns the connection.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, err := s.env.Parse(r, "", "since"); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if s.env.Shutdown.Err() != nil {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	_, _ = s.upgrader.Upgrade(w, r, nil) // on error Upgrade has answered
}

// Run writes every tick to every connection until ctx ends, then closes
// each with 1001.
func (s *Service) Run(ctx context.Context) error {
	m := s.env.Metrics
	wt := s.env.WriteTimeout
	host.Follow(ctx, s.env.Feed.Ring(), func(frames []*feed.Frame) {
		now := time.Now()
		s.mu.Lock()
		defer s.mu.Unlock()
		for c, p := range s.conns {
			// A deadline set before every write would reset nbio's
			// timer forever; armed once per period, it fires when the
			// queue has not drained for a whole period.
			if wt > 0 && now.Sub(p.armed) >= wt {
				_ = c.SetWriteDeadline(now.Add(wt))
				p.armed = now
			}
			for _, f := range frames {
				if err := c.WriteMessage(websocket.TextMessage, f.JSON); err != nil {
					m.WriteFailed(err)
					break
				}
				m.Delivered(1)
				m.Bytes.Add(float64(len(f.JSON)))
			}
		}
	}, nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.WriteClose(1001, "server shutting down")
		_ = c.Close()
	}
	return nil
}

// Engine serves the process with nbio's engine.
type Engine struct {
	handler http.Handler
	lim     host.EngineLimits
	mu      sync.Mutex
	eng     *nbhttp.Engine
	stopped chan struct{}
	once    sync.Once
}

// NewEngine returns an engine that will serve h within lim: SO_SNDBUF on
// every connection, and nbio's MaxLoad (it closes connections past it).
func NewEngine(h http.Handler, lim host.EngineLimits) host.Engine {
	logging.SetLevel(logging.LevelError) // nbio logs every start and stop at INFO
	return &Engine{handler: h, lim: lim, stopped: make(chan struct{})}
}

// sndbufListener sets SO_SNDBUF on every accepted connection and hands
// nbio the *net.TCPConn itself, which nbio takes over.
type sndbufListener struct {
	net.Listener
	sndbuf int
}

func (l sndbufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok && l.sndbuf > 0 {
		_ = tc.SetWriteBuffer(l.sndbuf) // best effort, as net/http's listener
	}
	return c, nil
}

// Serve starts nbio on ln and blocks until Shutdown or Close.
func (e *Engine) Serve(ln net.Listener) error {
	e.mu.Lock()
	select {
	case <-e.stopped:
		e.mu.Unlock()
		return errors.New("nbio: engine stopped")
	default:
	}
	e.eng = nbhttp.NewEngine(nbhttp.Config{
		Network: "tcp", Addrs: []string{ln.Addr().String()},
		Listen:                  func(string, string) (net.Listener, error) { return sndbufListener{ln, e.lim.SndBuf}, nil },
		MaxLoad:                 e.lim.MaxConns,
		Handler:                 e.handler,
		ReleaseWebsocketPayload: true,
		MaxWriteBufferSize:      MaxWriteBufferSize,
	})
	err := e.eng.Start()
	e.mu.Unlock()
	if err != nil {
		return fmt.Errorf("nbio: start: %w", err)
	}
	<-e.stopped
	return http.ErrServerClosed
}

// Shutdown stops accepting, closes every connection and waits for the
// engine's pollers, or for ctx.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	eng := e.eng
	e.mu.Unlock()
	defer e.once.Do(func() { close(e.stopped) })
	if eng == nil {
		return nil
	}
	if err := eng.Shutdown(ctx); err != nil {
		return fmt.Errorf("nbio: shutdown: %w", err)
	}
	return nil
}

// Close stops the engine at once.
func (e *Engine) Close() error {
	e.mu.Lock()
	eng := e.eng
	e.mu.Unlock()
	defer e.once.Do(func() { close(e.stopped) })
	if eng != nil {
		eng.Stop()
	}
	return nil
}
