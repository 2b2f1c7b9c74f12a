package server

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pushbench/pushbench/servers/answersrv"
	"github.com/pushbench/pushbench/servers/metrics"
	"github.com/pushbench/pushbench/servers/protocol"
)

// Defaults of Limits, doubling as flag defaults.
const (
	// DefaultHeaderTimeout bounds reading a request's head. Only POST
	// /answer takes a body (at most answer.MaxBody, read within
	// answersrv.BodyTimeout), so this bounds reading every other request.
	DefaultHeaderTimeout = 5 * time.Second
	// DefaultIdleTimeout is how long a keep-alive connection may wait for
	// its next request: long enough for a short poller asking every few
	// seconds to keep its connection, short enough that idle connections
	// give their descriptors back soon.
	DefaultIdleTimeout = 15 * time.Second
	// DefaultSndBuf caps each connection's kernel send buffer (SO_SNDBUF;
	// Linux doubles it and counts its bookkeeping in it): a client that
	// stops reading holds at most about 2×DefaultSndBuf bytes of kernel
	// memory. The kernel's autotuning would let it grow to 4 MiB.
	DefaultSndBuf = 64 << 10
)

// Limits bound what the connections of one server process may hold.
type Limits struct {
	// Conns bounds the accepted connections served normally, whatever
	// they do (streams, polls, idle keep-alives, half-sent requests); 0:
	// no bound. Past it, Reserve more are accepted, served /healthz and
	// /metrics only, and anything else gets 503 with Retry-After; past
	// those, new connections are closed at once.
	Conns   int
	Reserve int
	// SndBuf is the SO_SNDBUF set on every accepted connection; 0 leaves
	// the kernel's autotuning.
	SndBuf int
	// HeaderTimeout bounds reading a request (its head: a declared body is
	// refused, but for POST /answer). Zero: DefaultHeaderTimeout.
	HeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that has not begun its
	// next request. Zero: DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// HTTP returns the http.Server for this Server and the listener it must
// serve on, which bounds the connections per lim:
//
//	hs, l := srv.HTTP(ln, lim)
//	go hs.Serve(l)
//	...
//	hs.Shutdown(ctx) // beside srv.Shutdown
//
// Reading a request is bounded by HeaderTimeout alone: a request that
// declares a body is refused with 400 before anything reads it, so the head
// is the whole request; POST /answer alone reads its small body, under a
// deadline of its own. http.Server.ReadTimeout is left unset because it
// would bound nothing more. (It would not hurt held polls either: net/http
// clears the read deadline when it starts its background read, and at a
// hijack, checked with TestLongPollOutlivesReadBound and ReadTimeout set.)
// Taken-over SSE and WebSocket connections start with no deadline: net/http
// clears both at the hijack, and their handlers set their own. The write
// timeout (Config.WriteTimeout) bounds every answer; the streaming and
// polling handlers move it before each write.
//
// The returned listener also gives net/http back the keep-alive
// connections that SSE answers took over, once their client began its next
// request (see backListener); net/http's own IdleTimeout then holds for
// them too (the answer waits that long for the next request). It closes
// those left with it when it is closed.
//
// Config.Protocol adds TLS and HTTP/2. With TLS the returned listener
// wraps the limiting one: the bound counts TCP connections (each holds a
// descriptor whether or not its handshake completes), and a handshake is
// bounded by HeaderTimeout, which net/http applies to it. HTTP/2 runs over
// TLS by ALPN, or cleartext with prior knowledge when Protocol.H2C is set;
// its stream refusals are counted in /metrics.
func (s *Server) HTTP(ln *net.TCPListener, lim Limits) (*http.Server, net.Listener) {
	if lim.HeaderTimeout <= 0 {
		lim.HeaderTimeout = DefaultHeaderTimeout
	}
	if lim.IdleTimeout <= 0 {
		lim.IdleTimeout = DefaultIdleTimeout
	}
	l := &limitListener{TCPListener: ln, s: s, sndbuf: lim.SndBuf, idle: lim.IdleTimeout}
	if lim.Conns > 0 {
		l.max, l.reserve = int64(lim.Conns), int64(max(lim.Reserve, 0))
	}
	hs := &http.Server{
		Handler:           s.front(s),
		ReadHeaderTimeout: lim.HeaderTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if lc := limitedOf(c); lc != nil && lc.isReserve() {
				return context.WithValue(ctx, reserveKey{}, true)
			}
			return answersrv.ConnContext(ctx) // answers in flight per connection
		},
		ErrorLog: slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelDebug),
	}
	p := s.cfg.Protocol
	hs.Protocols = p.Protocols()
	hs.HTTP2 = p.HTTP2(s.cfg.WriteTimeout, s.countH2Error)
	var served net.Listener = l
	if p.TLS != nil {
		// Serve sets HTTP/2 up for a TLS listener whose config offers h2.
		hs.TLSConfig = p.TLS.Clone()
		served = tls.NewListener(l, hs.TLSConfig)
	}
	l.back = newBackListener(served, ln, s.ctx)
	return hs, l.back
}

// handBack is the answer service's way back to net/http for a connection
// an SSE answer took over (answersrv.Config.HandBack): the listener of
// HTTP that accepted it takes it back once the answer is done and the
// client began its next request within the idle timeout, and net/http
// serves that request. A connection that no such listener accepted (a
// test's httptest server) cannot go back, nor any once the server is
// shutting down: those are closed after their answer.
func (s *Server) handBack(c net.Conn) (back func(net.Conn), keepAlive time.Duration) {
	lc := limitedOf(c)
	if lc == nil || lc.l.back == nil || s.ctx.Err() != nil {
		return nil, 0
	}
	return lc.l.back.putConn, lc.l.idle
}

// countH2Error counts the HTTP/2 streams refused at the connection's
// stream limit (net/http resets them before any handler runs).
func (s *Server) countH2Error(errType string) {
	if protocol.Refusal(errType) {
		s.metrics.Refused.WithLabelValues("any", metrics.ReasonH2Streams, protocol.H2).Inc()
	}
}

// reserveKey marks the context of a request on a reserve connection.
type reserveKey struct{}

// front applies the connection rules before the endpoints: a request that
// declares a body is refused (only POST /answer reads one, bounded and
// under a deadline; net/http would otherwise wait for any other body,
// without a deadline, to reuse the connection), and a reserve connection
// is served /healthz and /metrics only.
func (s *Server) front(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		takesBody := r.Method == http.MethodPost && r.URL.Path == "/answer"
		if r.ContentLength != 0 && !takesBody { // Content-Length > 0, or -1: chunked
			refuseBody(w)
			return
		}
		if r.Context().Value(reserveKey{}) != nil {
			w.Header().Set("Connection", "close") // give the slot back at once
			if r.URL.Path != "/healthz" && r.URL.Path != "/metrics" {
				s.metrics.Refused.WithLabelValues(transportOf(r.URL.Path), metrics.ReasonConnLimit, protocol.Of(r)).Inc()
				w.Header().Set("Retry-After", "1")
				http.Error(w, "server at capacity: "+metrics.ReasonConnLimit, http.StatusServiceUnavailable)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// refuseBody answers 400 and closes the connection without reading the
// body. net/http reads an unread body after the handler (up to 256 KiB) to
// reuse the connection, and "Connection: close" does not stop that read; a
// read deadline already passed makes it fail at once.
func refuseBody(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0)) // HTTP/1 connections always take it
	http.Error(w, "request bodies are not accepted", http.StatusBadRequest)
}

// transportOf labels a refusal with the transport asked for, if any.
func transportOf(path string) string {
	switch path {
	case "/sse":
		return metrics.SSE
	case "/ws":
		return metrics.WS
	case "/poll":
		return metrics.Poll
	}
	if path == "/answer" || strings.HasPrefix(path, "/answer/") {
		return "answer"
	}
	return "any"
}
