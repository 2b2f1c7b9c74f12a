package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// Counters add up the bytes that crossed connections, as the socket saw
// them: HTTP request and response headers, chunk framing, SSE field names,
// WebSocket frame headers and control frames all count. Many connections
// share one Counters; adding is atomic.
//
// Over TLS, In and Out count the ciphertext (records, handshake), which is
// what crosses the network, and PlainIn and PlainOut what TLS carried
// above it, so that TLS's own share can be told apart.
type Counters struct {
	In       atomic.Int64 // server to client
	Out      atomic.Int64 // client to server
	Requests atomic.Int64 // HTTP requests sent (polls)
	PlainIn  atomic.Int64 // TLS only: server to client, above TLS
	PlainOut atomic.Int64 // TLS only: client to server, above TLS
}

// Conn wraps a net.Conn to count its bytes and to remember when the last read
// returned, which is when the bytes it brought arrived (every event parsed
// from them arrived then too, so one clock read serves a whole batch).
//
// Read deadlines: with SetIdle, Read keeps a rolling deadline without paying
// for a timer update on every read: it moves the deadline only when half the
// idle time has passed since it last did, so a silent peer is cut off after
// between idle/2 and idle. Only the goroutine that reads may call Read,
// LastRead and SetIdle; Write is called by that goroutine too (requests,
// pongs); Close may be called from anywhere.
type Conn struct {
	net.Conn
	counters *Counters
	// in and out are the counters Read and Write add to: In and Out, or
	// over TLS (Conn is then the *tls.Conn) PlainIn and PlainOut, while
	// the socket below TLS counts In and Out.
	in, out *atomic.Int64
	// sock is the TCP connection under TLS (nil without TLS): Close cuts
	// it at once, without a close_notify that could wait on a full socket.
	sock     net.Conn
	lastRead int64 // Unix ns
	idle     int64 // ns; 0: the owner manages deadlines itself
	setAt    int64 // Unix ns when the rolling deadline was last moved

	// headOnly: reads stop at the end of the HTTP response head (see
	// readHead); midLine tracks where the head's scan is.
	headOnly bool
	midLine  bool
}

// NewConn wraps c; counters may be nil.
func NewConn(c net.Conn, counters *Counters) *Conn {
	if counters == nil {
		counters = new(Counters)
	}
	return &Conn{Conn: c, counters: counters, in: &counters.In, out: &counters.Out}
}

// socket returns the TCP connection: below TLS, if any.
func (c *Conn) socket() net.Conn {
	if c.sock != nil {
		return c.sock
	}
	return c.Conn
}

// Close closes the TCP connection.
func (c *Conn) Close() error { return c.socket().Close() }

// Read reads from the connection and stamps the arrival time.
func (c *Conn) Read(p []byte) (int, error) {
	if c.idle > 0 && c.lastRead-c.setAt > c.idle/2 {
		c.setAt = c.lastRead
		if err := c.Conn.SetReadDeadline(time.Unix(0, c.lastRead+c.idle)); err != nil {
			return 0, err
		}
	}
	var n int
	var err error
	if c.headOnly {
		n, err = c.readHead(p)
	} else {
		n, err = c.Conn.Read(p)
	}
	c.lastRead = time.Now().UnixNano()
	if n > 0 {
		c.in.Add(int64(n))
	}
	return n, err
}

// Write writes to the connection and counts the bytes written.
func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.out.Add(int64(n))
	}
	return n, err
}

// LastRead returns when the last Read returned, in Unix nanoseconds.
func (c *Conn) LastRead() int64 { return c.lastRead }

// SetIdle starts the rolling read deadline (0 stops it and clears the
// deadline).
func (c *Conn) SetIdle(d time.Duration) error {
	now := time.Now().UnixNano()
	c.idle, c.setAt, c.lastRead = int64(d), now, now
	if d <= 0 {
		return c.Conn.SetReadDeadline(time.Time{})
	}
	return c.Conn.SetReadDeadline(time.Unix(0, now+int64(d)))
}

// Dialer opens TCP connections from one source address. Spreading clients
// over several loopback source addresses lifts the limit of about 28,000
// ephemeral ports per (source, destination) pair: Linux binds a source
// address chosen before connect to a port of its own range per address.
type Dialer struct {
	d net.Dialer
	// fake replaces the network in tests and benchmarks.
	fake func(ctx context.Context, network, addr string) (net.Conn, error)
}

// NewDialer returns a dialer from source address ip (nil: the kernel picks)
// with a connect timeout.
func NewDialer(ip net.IP, timeout time.Duration) *Dialer {
	d := &Dialer{d: net.Dialer{Timeout: timeout, KeepAlive: -1}}
	if ip != nil {
		d.d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	return d
}

// WithSmallBuffers returns a copy of d whose connections stall early when
// their reader stops (a slow consumer): before connecting it sets the
// socket receive buffer to about rcvBuf bytes (SO_RCVBUF, so that the TCP
// window stays that small; Linux doubles it for its bookkeeping) and
// advertises an MSS of mss bytes (TCP_MAXSEG). The MSS matters as much: on
// loopback (MSS 64 KiB) Linux sizes the server's send buffer for the
// connection at about 4 MiB, which a stalled client at a few KiB/s would
// take minutes to fill; with an Ethernet MSS (1460) it starts at about
// 64 KiB, as towards a client across a real network. mss 0 leaves it.
func (d *Dialer) WithSmallBuffers(rcvBuf, mss int) *Dialer {
	c := *d
	c.d.Control = func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvBuf)
			if serr != nil {
				serr = fmt.Errorf("set SO_RCVBUF: %w", serr)
			} else if mss > 0 {
				if serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, mss); serr != nil {
					serr = fmt.Errorf("set TCP_MAXSEG: %w", serr)
				}
			}
		}); err != nil {
			return err
		}
		return serr
	}
	return &c
}

// Source returns the source address, or nil.
func (d *Dialer) Source() net.IP {
	if a, ok := d.d.LocalAddr.(*net.TCPAddr); ok {
		return a.IP
	}
	return nil
}

// DialContext opens a TCP connection to addr (host:port).
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	dial := d.d.DialContext
	if d.fake != nil {
		dial = d.fake
	}
	c, err := dial(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return c, nil
}

// readHead reads no byte past the blank line that ends an HTTP response
// head: it peeks at what the socket holds (MSG_PEEK), then reads up to the
// end of the head. A WebSocket handshake through gorilla reads with a
// buffer of its own, and the frames a server sends right after its 101
// (a resumed stream's backlog) would stay in it, out of reach of the Loop
// that takes the socket over; this way they stay in the socket. Without a
// socket (tests) it reads normally.
func (c *Conn) readHead(p []byte) (int, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok || len(p) == 0 {
		return c.Conn.Read(p)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var perr error
	if err := rc.Read(func(fd uintptr) bool {
		n, _, perr = syscall.Recvfrom(int(fd), p, syscall.MSG_PEEK)
		return !errors.Is(perr, syscall.EAGAIN)
	}); err != nil {
		return 0, err
	}
	if perr != nil {
		return 0, os.NewSyscallError("recvfrom", perr)
	}
	if n == 0 {
		return 0, io.EOF
	}
	k := n
	for i, b := range p[:n] {
		switch b {
		case '\n':
			if !c.midLine { // a blank line: the head ends here
				k = i + 1
				c.headOnly = false
			}
			c.midLine = false
		case '\r':
		default:
			c.midLine = true
		}
		if !c.headOnly {
			break
		}
	}
	return c.Conn.Read(p[:k])
}
