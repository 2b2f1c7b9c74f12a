package ws

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/stream"
)

// errCloseSent is the sticky error once a close frame was written. It is
// net.ErrClosed too: the writes that fail with it are of a connection that
// is ending, counted as a departure.
var errCloseSent = fmt.Errorf("%w: %w", websocket.ErrCloseSent, net.ErrClosed)

// closeFrameHeader is the first byte of an unfragmented close frame (FIN set,
// opcode 8). gorilla writes every control frame with one Write call.
const closeFrameHeader = 0x88

// sock is the one owner of a WebSocket connection's socket writes. Ticks go
// to the socket as pre-built frames in one writev, beside gorilla's own
// writes (gap messages and pings from the writer goroutine; pong replies,
// close replies and the 1009/1008 closes from the reader goroutine). Without
// one owner, gorilla's SetWriteDeadline from the reader would move the
// deadline of a tick writev blocked in the writer (a stalled client that
// pings would be dropped after gorilla's one-second pong deadline instead of
// the write timeout), and a failed tick write would not stop gorilla from
// writing into the middle of a torn frame.
//
// So every write, gorilla's and the ticks', takes mu, sets the write
// deadline itself (gorilla's SetWriteDeadline calls are ignored), and the
// first write error is sticky: every later write returns it. A close frame
// written ends the connection's writes too (RFC 6455 §5.5.1), so a tick
// batch can never follow it. Reads and Close go straight to the socket, so
// that closing still unblocks a stuck write.
type sock struct {
	net.Conn // the hijacked socket

	mu      sync.Mutex
	timeout time.Duration // deadline of every write; 0: none
	err     error         // first write error, or errCloseSent
	failed  atomic.Bool   // a write failed: Close skips TLS's close_notify
}

// write runs fn, a write to the raw socket, under the lock and the deadline,
// unless an earlier write failed; it keeps fn's error sticky. closes says
// that fn writes a close frame, after which nothing may be written.
func (s *sock) write(closes bool, fn func(net.Conn) (int, error)) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	if s.timeout > 0 {
		if err := s.Conn.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil {
			s.err = err
			return 0, err
		}
	}
	n, err := fn(s.Conn)
	switch {
	case err != nil:
		s.err = err
		s.failed.Store(true)
	case closes:
		s.err = errCloseSent
	}
	return n, err
}

// Write is gorilla's path: the handshake response, gap messages and control
// frames, each frame whole in one call.
func (s *sock) Write(b []byte) (int, error) {
	closes := len(b) > 1 && b[0] == closeFrameHeader
	return s.write(closes, func(c net.Conn) (int, error) { return c.Write(b) })
}

// writeFrames writes a batch of pre-built tick frames; on a TCP socket
// net.Buffers makes it one writev, on TLS one record (see stream.Writev).
func (s *sock) writeFrames(scratch *sync.Pool, frames []*feed.Frame) (int, error) {
	return s.write(false, func(c net.Conn) (int, error) { return stream.Writev(c, scratch, frames, wsFrame) })
}

// setTimeout changes the deadline of later writes (shorter for the closing
// frame, so that a stalled peer does not hold a shutdown).
func (s *sock) setTimeout(d time.Duration) {
	s.mu.Lock()
	s.timeout = d
	s.mu.Unlock()
}

// Close closes the socket without taking the lock, so that it unblocks a
// stuck write; after a failed write, beneath TLS (see stream.Close).
func (s *sock) Close() error { return stream.Close(s.Conn, s.failed.Load()) }

// SetWriteDeadline ignores gorilla's deadlines: the sock sets its own on
// every write, under the lock, so that none overwrites another's.
func (s *sock) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline is called by gorilla's Upgrade to clear net/http's deadlines;
// only the read side is the caller's to set.
func (s *sock) SetDeadline(t time.Time) error { return s.Conn.SetReadDeadline(t) }

// hijacker hands gorilla's Upgrader the connection wrapped in a sock, so
// that gorilla writes through it from the handshake on.
type hijacker struct {
	http.ResponseWriter
	timeout time.Duration
	sock    *sock
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.sock = &sock{Conn: nc, timeout: h.timeout}
	return h.sock, brw, nil
}
