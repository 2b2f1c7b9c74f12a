// Package client holds the load generator's clients: one interface, one
// implementation per transport (SSE, WebSocket, long polling), each a
// single goroutine's worth of state that costs a few KiB while idle.
//
// A client parses what the server sends into Events (ticks and gaps) without
// allocating per message, stamps each with the time its bytes came off the
// socket, and counts every byte that crossed its connection. It remembers
// where it is in the feed, so that Connect after a dropped connection
// resumes (Last-Event-ID, since, cursor) instead of starting over.
//
// Concurrency: one goroutine owns a client and calls Connect and Next. Drop
// and Close may be called from any goroutine: Drop cuts the current
// connection (the owner's Next then fails and it may Connect again), Close
// cuts it for good. Instead of calling Next, the owner may hand the
// connection to a Loop after Connect (Loop.Serve, see loop.go): a few
// worker goroutines then read many clients' sockets.
package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/pushbench/pushbench/servers/feed"
)

// Transports this package implements.
var Transports = []string{"sse", "ws", "poll"}

// Endpoint returns the path a server serves a transport on (PROTOCOL.md),
// relative to its base URL, or "" for an unknown transport.
func Endpoint(transport string) string {
	switch transport {
	case "sse", "ws", "poll":
		return "/" + transport
	}
	return ""
}

// Protocols (Config.Proto) of the SSE and poll clients.
const (
	ProtoH1 = "h1" // HTTP/1.1: a connection per client
	ProtoH2 = "h2" // HTTP/2: each client a stream of shared connections (H2Pool)
)

// Defaults double as the load generator's flag defaults.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultIdleTimeout    = 60 * time.Second // longer than the SSE heartbeat (15s) and WS ping (30s)
	DefaultPollTimeout    = 25 * time.Second
	DefaultPollMax        = 512
	DefaultReadBuffer     = 1024
)

// Kind says what an Event carries.
type Kind uint8

// Event kinds.
const (
	KindTick      Kind = iota + 1
	KindGap            // ticks Gap.From..Gap.To-1 are no longer retained
	KindStart          // the subscription starts after Seq (a poll's first cursor)
	KindMalformed      // a message that is neither a tick nor a gap; Err says why
)

// Event is one thing a client received. It belongs to the client and is
// valid until the next call to Next.
type Event struct {
	Kind   Kind
	Tick   Tick
	Gap    feed.Gap
	Seq    uint64
	RecvAt int64 // Unix ns when the bytes that completed it came off the socket
	Err    error
}

// Client is one subscription over one transport.
type Client interface {
	// Connect opens a connection and subscribes: from now on the first
	// call, resuming after the last tick received on later calls. It
	// returns once the server accepted (SSE: 200 and headers; WS: the
	// upgrade; poll: the TCP connection, plus on the first call an
	// immediate poll that fixes the starting cursor).
	Connect(ctx context.Context) error
	// Next blocks until the next event. Any error ends the connection;
	// Connect may be called again.
	Next() (*Event, error)
	// Drop cuts the current connection (churn); safe from any goroutine.
	Drop()
	// Close cuts the connection for good; safe from any goroutine.
	Close() error
}

// Config describes the clients of one run. Prepare it once; it is then
// read-only and shared by every client.
type Config struct {
	Transport string
	Base      *url.URL // http://host:port[/prefix], or https:// for TLS
	// TLS is the clients' TLS configuration for an https Base (roots,
	// InsecureSkipVerify); nil: the system's roots. Prepare adds the
	// server name and the ALPN protocols.
	TLS *tls.Config
	// Proto is ProtoH1 ("" too) or ProtoH2 (sse and poll only): the
	// clients are then streams on the connections of H2, which New
	// hands out in turn.
	Proto          string
	H2             *H2Pool
	Symbols        []string // empty: all
	ConnectTimeout time.Duration
	IdleTimeout    time.Duration
	PollTimeout    time.Duration // the timeout parameter of long polls
	PollMax        int
	ReadBuffer     int // bytes of the parser's buffer per client
	MaxEvent       int // largest SSE line/event, WS message or poll body

	hostport string
	hostHdr  string
	path     string // path and query, without resume point
	tlsConf  *tls.Config
	h2URL    string // h2: the endpoint's URL, without resume point
	wsURL    string
	pollWait string // PollTimeout as the timeout parameter
	// wsPool lends WebSocket write buffers: a load-generator client only
	// writes control frames (pong, close), which gorilla frames without the
	// write buffer, so no client should hold 4 KiB for it.
	wsPool *sync.Pool
	// brPool lends the handshake's read buffer to clients that hand their
	// connection to a Loop, which needs it no longer.
	brPool *sync.Pool
	// Handoff: the clients will be served by a Loop after Connect. A
	// WebSocket handshake then reads no byte past the response head, so
	// that nothing the loop needs stays in gorilla's buffer.
	Handoff bool
}

// reader returns a handshake read buffer on c, from the pool if it has one.
func (c *Config) reader(r io.Reader) *bufio.Reader {
	if v, ok := c.brPool.Get().(*bufio.Reader); ok {
		v.Reset(r)
		return v
	}
	return bufio.NewReaderSize(r, connBuffer)
}

// Prepare checks the configuration and precomputes what every request
// shares.
func (c *Config) Prepare() error {
	if c.Base == nil {
		return errors.New("client: no URL")
	}
	if c.Base.Scheme != "http" && c.Base.Scheme != "https" {
		return fmt.Errorf("client: URL scheme must be http or https, got %q", c.Base.Scheme)
	}
	switch c.Proto {
	case "", ProtoH1:
		c.Proto = ProtoH1
	case ProtoH2:
		if c.Transport != "sse" && c.Transport != "poll" {
			return fmt.Errorf("client: HTTP/2 is for sse and poll, not %s", c.Transport)
		}
		if c.H2 == nil {
			return errors.New("client: HTTP/2 needs an H2Pool")
		}
	default:
		return fmt.Errorf("client: unknown protocol %q", c.Proto)
	}
	if c.Base.Host == "" {
		return errors.New("client: URL has no host")
	}
	positiveOr(&c.ConnectTimeout, DefaultConnectTimeout)
	positiveOr(&c.IdleTimeout, DefaultIdleTimeout)
	positiveOr(&c.PollTimeout, DefaultPollTimeout)
	positiveOr(&c.PollMax, DefaultPollMax)
	positiveOr(&c.ReadBuffer, DefaultReadBuffer)
	positiveOr(&c.MaxEvent, DefaultMaxEvent)
	c.wsPool, c.brPool = &sync.Pool{}, &sync.Pool{}
	c.pollWait = c.PollTimeout.String()
	c.hostHdr = c.Base.Host
	c.hostport = c.Base.Host
	if c.Base.Port() == "" {
		port := "80"
		if c.Base.Scheme == "https" {
			port = "443"
		}
		c.hostport = net.JoinHostPort(c.Base.Hostname(), port)
	}
	c.prepareTLS()
	prefix := strings.TrimSuffix(c.Base.EscapedPath(), "/")
	var q []string
	if len(c.Symbols) > 0 {
		q = append(q, "symbols="+url.QueryEscape(strings.Join(c.Symbols, ",")))
	}
	ep := Endpoint(c.Transport)
	if ep == "" {
		return fmt.Errorf("client: unknown transport %q", c.Transport)
	}
	c.path = prefix + ep
	switch c.Transport {
	case "ws":
		c.wsURL = "ws://" + c.Base.Host + c.path
		if c.tlsConf != nil {
			c.wsURL = "wss://" + c.Base.Host + c.path
		}
	case "poll":
		q = append(q, "max="+fmt.Sprint(c.PollMax))
	}
	if len(q) > 0 {
		c.path += "?" + strings.Join(q, "&")
		if c.wsURL != "" {
			c.wsURL += "?" + strings.Join(q, "&")
		}
	}
	c.h2URL = c.Base.Scheme + "://" + c.Base.Host + c.path
	return nil
}

// positiveOr sets *v to def unless it is positive: a zero or negative
// setting means "the default".
func positiveOr[T ~int | ~int64](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// New returns an unconnected client of cfg.Transport that dials with d and
// counts its bytes into counters (both shared with other clients).
func New(cfg *Config, d *Dialer, counters *Counters) (Client, error) {
	if cfg.path == "" {
		return nil, errors.New("client: Config not prepared")
	}
	var c interface {
		Client
		init(*Config, *Dialer, *Counters)
	}
	switch {
	case cfg.Proto == ProtoH2 && cfg.Transport == "sse":
		c = new(H2SSE)
	case cfg.Proto == ProtoH2 && cfg.Transport == "poll":
		c = new(H2Poll)
	case cfg.Transport == "sse":
		c = new(SSE)
	case cfg.Transport == "ws":
		c = new(WS)
	case cfg.Transport == "poll":
		c = new(Poll)
	default:
		return nil, fmt.Errorf("client: unknown transport %q", cfg.Transport)
	}
	c.init(cfg, d, counters)
	return c, nil
}

func (b *base) init(cfg *Config, d *Dialer, counters *Counters) {
	if counters == nil {
		counters = new(Counters)
	}
	b.cfg, b.dialer, b.counters = cfg, d, counters
}

// base is what the three clients share: configuration, dialer and the
// current connection, which Drop and Close may cut from another goroutine.
type base struct {
	cfg      *Config
	dialer   *Dialer
	counters *Counters

	mu     sync.Mutex
	conn   *Conn
	lc     *loopConn // the connection while a Loop serves it
	closed bool
}

func (b *base) loopBase() *base { return b }

// dial opens a connection (TLS: and shakes hands) and registers it so
// that Drop and Close can cut it, even during the handshakes.
func (b *base) dial(ctx context.Context) (*Conn, error) {
	raw, err := b.dialer.DialContext(ctx, "tcp", b.cfg.hostport)
	if err != nil {
		return nil, err
	}
	c := b.cfg.wrap(raw, b.counters)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = raw.Close()
		return nil, fmt.Errorf("client closed: %w", net.ErrClosed)
	}
	if b.conn != nil {
		_ = b.conn.Close()
	}
	b.conn = c
	b.mu.Unlock()
	if err := b.cfg.handshake(ctx, c); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// Drop closes the current connection, if any.
func (b *base) Drop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn != nil {
		_ = b.conn.Close()
	}
	b.cutLoop(false)
}

// Close closes the current connection and refuses new ones.
func (b *base) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.conn != nil {
		_ = b.conn.Close()
	}
	b.cutLoop(true)
	return nil
}

// cutOnCancel closes c when ctx is done before stop is called, so that a
// handshake blocked in a read ends with the run.
func cutOnCancel(ctx context.Context, c net.Conn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = c.Close() })
}

// Stall leaves c's connection unread on purpose, right after Connect (a
// slow consumer): the owner stops calling Next and reads nothing more. SSE
// and WebSocket need nothing else, the server goes on writing into a
// connection nobody reads; a long poll first sends its next request, whose
// answer is then never read.
func Stall(c Client) error {
	if p, ok := c.(interface{ stall() error }); ok {
		return p.stall()
	}
	return nil
}

// ReadRest reads and discards what c's current connection still brings,
// without parsing it, until the connection ends or deadline passes: after
// Stall it tells what the server did with the stalled connection. It
// returns the bytes read (also added to the client's counters) and ended,
// which is true when the peer had ended the connection (EOF or reset); on
// false, err says why reading stopped (a timeout: it was still open). Call
// it from the goroutine that owns c, instead of Next.
func ReadRest(c Client, deadline time.Time) (n int64, ended bool, err error) {
	if s, ok := c.(interface {
		readRest(time.Time) (int64, bool, error)
	}); ok {
		return s.readRest(deadline) // an HTTP/2 stream: its body
	}
	b, ok := c.(interface{ current() *Conn })
	if !ok {
		return 0, false, errors.New("client: not one of this package's clients")
	}
	conn := b.current()
	if conn == nil {
		return 0, false, fmt.Errorf("client: %w", net.ErrClosed)
	}
	// The raw connection: Conn.Read would move a rolling idle deadline.
	// Over TLS the socket under it: the bytes are discarded unread.
	raw := conn.socket()
	if err := raw.SetReadDeadline(deadline); err != nil {
		return 0, false, err
	}
	buf := make([]byte, 16<<10)
	for {
		k, err := raw.Read(buf)
		if k > 0 {
			n += int64(k)
			conn.counters.In.Add(int64(k))
		}
		if err != nil {
			return n, errors.Is(err, io.EOF) || Cause(err) == "reset", err
		}
	}
}

// current returns the connection Drop and Close would cut, or nil.
func (b *base) current() *Conn {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conn
}
