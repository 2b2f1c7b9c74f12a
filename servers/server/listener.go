package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pushbench/pushbench/servers/metrics"
)

// FDReserve is how many descriptors below the open-files limit are kept
// from ordinary clients: ReserveConns of them for connections that may only
// ask /healthz and /metrics, the rest for the listener, the runtime's poller
// and the files a /metrics scrape opens. A process whose limit is L serves
// at most L-FDReserve connections normally.
const FDReserve = 64

// ReserveConns is how many connections are accepted past the normal bound.
// They are served /healthz and /metrics only, so that a server out of
// connections can still be watched; anything else gets 503. They take half
// of FDReserve.
const ReserveConns = FDReserve / 2

// ReserveTimeout bounds the whole life of a reserve connection, reading the
// request and writing the answer, so that a few slow or silent clients
// cannot hold the reserve for long.
const ReserveTimeout = 2 * time.Second

// limitListener bounds the connections open at once. It counts every
// accepted connection until its Close, whatever becomes of it (an HTTP
// exchange, a taken-over stream, an idle keep-alive), because each holds a
// descriptor. Past the bound, ReserveConns more are accepted as reserve
// connections; past those, a new connection is closed at once so that its
// client learns at once instead of waiting in the accept backlog.
//
// Accept failures for want of a descriptor are a last resort: with the
// bound below the open-files limit they should not happen. net/http backs
// off on them (5 ms doubling to 1 s), so the process neither crashes nor
// spins; they are counted and logged at most once a second.
type limitListener struct {
	*net.TCPListener
	s       *Server
	max     int64 // normal connections; 0: no bound (and no reserve)
	reserve int64
	sndbuf  int
	// idle is the server's idle timeout, how long a connection an answer
	// took over may wait for its next request before it goes back.
	idle time.Duration
	back *backListener // what net/http serves, over this listener
	open atomic.Int64
	// When each warning was last logged, so that one does not hide another.
	warnedEMFILE, warnedBound, warnedFull atomic.Int64
}

// Accept returns the next connection within the bound, set up with the
// send buffer cap.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				l.s.metrics.AcceptErrors.Inc()
				l.warn(&l.warnedEMFILE, "accept: out of file descriptors; new clients wait in the backlog until some leave", slog.Any("err", err))
			}
			return nil, err
		}
		n := l.open.Add(1)
		if l.max > 0 && n > l.max+l.reserve {
			l.open.Add(-1)
			l.s.metrics.Refused.WithLabelValues("any", metrics.ReasonReserveFull, metrics.AnyProtocol).Inc() // before the client can see it
			l.warn(&l.warnedFull, "connection bound and its reserve are full: new connections are closed at accept")
			_ = c.Close()
			continue
		}
		if l.sndbuf > 0 {
			if err := c.SetWriteBuffer(l.sndbuf); err != nil {
				l.s.cfg.Logger.Debug("set SO_SNDBUF", slog.Int("bytes", l.sndbuf), slog.Any("err", err))
			}
		}
		lc := &limitedConn{TCPConn: c, l: l}
		if l.max > 0 && n > l.max {
			lc.until = time.Now().Add(ReserveTimeout)
			_ = c.SetDeadline(lc.until)
			l.warn(&l.warnedBound, "connection bound reached: new clients get 503, /healthz and /metrics are served from the reserve")
		}
		l.s.metrics.Accepted.Inc()
		return lc, nil
	}
}

// warn logs msg with the open connections and admitted clients, at most
// once a second per warning (last holds when it was last logged).
func (l *limitListener) warn(last *atomic.Int64, msg string, attrs ...any) {
	now := time.Now().UnixNano()
	if prev := last.Load(); now-prev > int64(time.Second) && last.CompareAndSwap(prev, now) {
		attrs = append(attrs, slog.Int64("conns", l.open.Load()), slog.Int64("bound", l.max),
			slog.Int64("reserve", l.reserve), slog.Int64("clients", l.s.Open()))
		l.s.cfg.Logger.Warn(msg, attrs...)
	}
}

// limitedConn is an accepted connection that gives its slot back when
// closed, once, whoever closes it (net/http, or a handler that took the
// connection over). It embeds *net.TCPConn rather than net.Conn so that
// net.Buffers still reaches the socket in one writev.
type limitedConn struct {
	*net.TCPConn
	l      *limitListener
	until  time.Time // a reserve connection: no deadline may pass this
	closed atomic.Bool
}

// limitedOf is the limitedConn beneath c (a *tls.Conn's), or nil for a
// connection no limitListener accepted.
func limitedOf(c net.Conn) *limitedConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, _ := c.(*limitedConn)
	return lc
}

// Close gives the slot back before it closes the socket, so that a client
// that sees the connection end may count on the slot being free.
func (c *limitedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
		c.l.s.metrics.Accepted.Dec()
	}
	return c.TCPConn.Close()
}

func (c *limitedConn) isReserve() bool { return !c.until.IsZero() }

// capped keeps a reserve connection's deadlines within its ReserveTimeout:
// net/http would otherwise move them to its own, longer, timeouts.
func (c *limitedConn) capped(t time.Time) time.Time {
	if c.isReserve() && (t.IsZero() || t.After(c.until)) {
		return c.until
	}
	return t
}

func (c *limitedConn) SetDeadline(t time.Time) error { return c.TCPConn.SetDeadline(c.capped(t)) }

func (c *limitedConn) SetReadDeadline(t time.Time) error {
	return c.TCPConn.SetReadDeadline(c.capped(t))
}

func (c *limitedConn) SetWriteDeadline(t time.Time) error {
	return c.TCPConn.SetWriteDeadline(c.capped(t))
}

// backListener is the listener net/http serves (see Server.HTTP): the
// connections of the listener beneath it (the limitListener, or TLS over
// it), and the keep-alive connections that SSE answers took over and hand
// back once done and their client began its next request
// (Server.handBack), so that net/http serves that request as if it had
// kept the connection. A handed-back connection comes back as it went (a
// *tls.Conn keeps its TLS state and protocol); it was counted when the
// limitListener accepted it and is not counted again, and it is closed if
// it comes back after Close or once the server is shutting down.
//
// Accept blocks in the TCP listener's accept; put wakes it by moving the
// TCP listener's deadline to the past (the listener has no deadline
// otherwise), and Accept, seeing the timeout, clears the deadline and
// takes the handed-back connection. No goroutine is added: new
// connections are accepted as before, on net/http's accept loop.
type backListener struct {
	net.Listener                  // the limitListener, or TLS over it
	tcp          *net.TCPListener // beneath it all: its deadline wakes Accept

	shutdown context.Context // the server's shutdown signal
	// putConn is put as a func, made once: handBack gives it to every
	// answer.
	putConn func(net.Conn)

	mu     sync.Mutex
	queue  []net.Conn // handed back, not yet taken by Accept
	closed bool
}

func newBackListener(l net.Listener, tcp *net.TCPListener, shutdown context.Context) *backListener {
	bl := &backListener{Listener: l, tcp: tcp, shutdown: shutdown}
	bl.putConn = bl.put
	return bl
}

// Accept returns a handed-back connection if there is one, else the next
// accepted one.
func (l *backListener) Accept() (net.Conn, error) {
	for {
		// put appends before it moves the deadline, and a timeout clears
		// the deadline before this looks again: a connection put is never
		// left behind a blocked accept.
		l.mu.Lock()
		if len(l.queue) > 0 {
			c := l.queue[0]
			l.queue[0] = nil
			l.queue = l.queue[1:]
			l.mu.Unlock()
			return c, nil
		}
		l.mu.Unlock()
		c, err := l.Listener.Accept()
		var ne net.Error
		if err != nil && errors.As(err, &ne) && ne.Timeout() {
			if err := l.tcp.SetDeadline(time.Time{}); err != nil {
				return nil, err
			}
			continue
		}
		return c, err
	}
}

// put hands c back for Accept, or closes it once the listener is closed
// or the server is shutting down.
func (l *backListener) put(c net.Conn) {
	l.mu.Lock()
	if l.closed || l.shutdown.Err() != nil {
		l.mu.Unlock()
		_ = c.Close()
		return
	}
	l.queue = append(l.queue, c)
	l.mu.Unlock()
	_ = l.tcp.SetDeadline(time.Unix(1, 0)) // wakes Accept; fails only once closed, when Accept ends anyway
}

// Close closes the listener and the connections handed back and not yet
// taken.
func (l *backListener) Close() error {
	l.mu.Lock()
	l.closed = true
	queued := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, c := range queued {
		_ = c.Close()
	}
	return l.Listener.Close()
}
