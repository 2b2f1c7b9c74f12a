package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// HTTP/2 (Config.Proto h2): every SSE or poll client is a stream on one of
// a few shared connections, as a browser multiplexes its EventSources and
// requests on one connection per origin. Over TLS (https) the protocol is
// negotiated by ALPN; over http it is h2c with prior knowledge.
//
// Why x/net/http2's ClientConn on a net.Conn and not one http.Transport
// per connection: bytes are counted below TLS (the ciphertext on the
// socket) and above it (what TLS carried), and net/http runs HTTP/2 over
// TLS only on a *tls.Conn of its own making (it asserts the type to read
// the ALPN result), which leaves no place for a counting layer above TLS.
// http2.Transport.NewClientConn takes any net.Conn, so the stack is the
// same as HTTP/1.1's: socket (counts ciphertext), tls.Conn, Conn (counts
// plaintext), HTTP/2. Each pool slot is exactly one connection, and a
// stream past the server's concurrent-stream limit waits for a free one
// on its own connection (ClientConn.RoundTrip), as a browser's does,
// instead of opening another connection. x/net marks NewClientConn and
// the Transport's fields used here deprecated in favour of net/http's
// Transport.NewClientConn and HTTP2Config, which dial (and for TLS, make
// the *tls.Conn) themselves: the same limit as above.

// H2Pool holds the HTTP/2 connections of a run: New hands its slots to
// clients in turn (client k of a run on connection k mod n). A slot dials
// when its first stream needs it, and again after its connection broke
// or the server sent GOAWAY. Close ends every connection; it is the run's
// to call once its clients are closed.
type H2Pool struct {
	tr    http2.Transport
	slots []h2Slot
	next  atomic.Uint64
	dials atomic.Int64
	// counters count the bytes of every connection of the pool: streams
	// of all kinds share them, so their bytes cannot be told apart by
	// client (requests are counted by the client that made them).
	counters Counters

	mu     sync.Mutex
	closed bool
}

type h2Slot struct {
	pool *H2Pool
	mu   sync.Mutex
	cc   *http2.ClientConn
}

// NewH2Pool returns a pool of n connections (at least 1), none open yet.
func NewH2Pool(n int) *H2Pool {
	p := &H2Pool{slots: make([]h2Slot, max(1, n))}
	// As the HTTP/1.1 clients: no Accept-Encoding, so that the bytes
	// counted are those of the protocol, not of a compressor.
	p.tr.DisableCompression = true
	// A stream past the server's concurrent-stream limit waits for a slot
	// on its connection; without this it would fail ("client conn not
	// usable"), since the pool never opens another connection.
	p.tr.StrictMaxConcurrentStreams = true
	for i := range p.slots {
		p.slots[i].pool = p
	}
	return p
}

// Dials returns how many connections the pool opened (reopened ones
// included).
func (p *H2Pool) Dials() int64 { return p.dials.Load() }

// Counters returns the counters of the pool's connections.
func (p *H2Pool) Counters() *Counters { return &p.counters }

// Close closes every connection; later streams fail.
func (p *H2Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	for i := range p.slots {
		s := &p.slots[i]
		s.mu.Lock()
		if s.cc != nil {
			_ = s.cc.Close()
			s.cc = nil
		}
		s.mu.Unlock()
	}
	return nil
}

// slot returns the next slot in turn.
func (p *H2Pool) slot() *h2Slot {
	return &p.slots[(p.next.Add(1)-1)%uint64(len(p.slots))]
}

// conn returns the slot's connection, dialing it with d when it has none
// or that one can take no new stream (dialed says it did). Streams of the
// slot wait for the dial: they would share it.
func (s *h2Slot) conn(ctx context.Context, cfg *Config, d *Dialer) (cc *http2.ClientConn, dialed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pool.mu.Lock()
	closed := s.pool.closed
	s.pool.mu.Unlock()
	if closed {
		return nil, false, fmt.Errorf("h2: pool closed: %w", net.ErrClosed)
	}
	if s.cc != nil {
		if st := s.cc.State(); !st.Closed && !st.Closing {
			return s.cc, false, nil
		}
		_ = s.cc.Close()
		s.cc = nil
	}
	raw, err := d.DialContext(ctx, "tcp", cfg.hostport)
	if err != nil {
		return nil, false, err
	}
	c := cfg.wrap(raw, &s.pool.counters)
	stop := cutOnCancel(ctx, c)
	defer stop()
	if err := cfg.handshake(ctx, c); err != nil {
		_ = c.Close()
		return nil, false, err
	}
	if cfg.tlsConf != nil && negotiated(c) != "h2" {
		_ = c.Close()
		return nil, false, fmt.Errorf("h2: %w: the server did not negotiate h2 by ALPN (got %q)", ErrProtocol, negotiated(c))
	}
	if cc, err = s.pool.tr.NewClientConn(c); err != nil {
		_ = c.Close()
		return nil, false, fmt.Errorf("h2: %w", err)
	}
	s.pool.dials.Add(1)
	s.cc = cc
	return cc, true, nil
}

// RoundTripper returns an http.RoundTripper that sends each request as a
// stream of the pool's connections in turn (shortpoll over HTTP/2),
// dialing with d; dialed, if not nil, learns how long each new connection
// took to open (TLS handshake included).
func (p *H2Pool) RoundTripper(cfg *Config, d *Dialer, dialed func(time.Duration)) http.RoundTripper {
	return h2RT{p: p, cfg: cfg, d: d, dialed: dialed}
}

type h2RT struct {
	p      *H2Pool
	cfg    *Config
	d      *Dialer
	dialed func(time.Duration)
}

func (t h2RT) RoundTrip(req *http.Request) (*http.Response, error) {
	t0 := time.Now()
	cc, dialed, err := t.p.slot().conn(req.Context(), t.cfg, t.d)
	if err != nil {
		return nil, err
	}
	if t.dialed != nil && dialed {
		t.dialed(time.Since(t0))
	}
	return cc.RoundTrip(req)
}

// h2Stream is what the HTTP/2 clients share: their connection's slot, the
// request in flight, its body, and the means to cut it from another
// goroutine (Drop, Close, the idle timer).
type h2Stream struct {
	cfg      *Config
	slot     *h2Slot
	dialer   *Dialer
	counters *Counters

	mu     sync.Mutex
	cancel context.CancelFunc // of the request in flight
	closed bool

	body     io.ReadCloser
	lastRead int64 // Unix ns when the last body read returned
	idle     *time.Timer
	idleFor  time.Duration
	setAt    int64
	idled    atomic.Bool // the idle timer cut the stream
}

func (s *h2Stream) init(cfg *Config, d *Dialer, counters *Counters) {
	if counters == nil {
		counters = new(Counters)
	}
	s.cfg, s.dialer, s.counters = cfg, d, counters
	s.slot = cfg.H2.slot()
}

// errNoAnswer is a request whose response head did not come in time.
var errNoAnswer = fmt.Errorf("no response in time: %w", os.ErrDeadlineExceeded)

// request sends GET url as a new stream and waits up to the connect
// timeout (plus wait, a long poll's hold) for the response head; the body
// is then s.body. The request lives until the next request, Drop or Close,
// or until ctx ends.
func (s *h2Stream) request(ctx context.Context, url string, wait time.Duration, accept, lastID string) (*http.Response, error) {
	s.stopBody()
	rctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		return nil, fmt.Errorf("client closed: %w", net.ErrClosed)
	}
	s.cancel = cancel
	s.mu.Unlock()
	head := time.AfterFunc(s.cfg.ConnectTimeout+wait, cancel)
	resp, err := s.roundTrip(rctx, url, accept, lastID)
	if !head.Stop() && err != nil {
		err = errNoAnswer
	}
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var b [200]byte
		n, _ := io.ReadFull(resp.Body, b[:])
		_ = resp.Body.Close()
		cancel()
		return nil, &StatusError{Code: resp.StatusCode, Body: string(b[:n])}
	}
	s.body = resp.Body
	return resp, nil
}

// roundTrip sends one request on the slot's connection; once more on a
// fresh connection if the one it found had just become unusable (GOAWAY,
// closed by the server).
func (s *h2Stream) roundTrip(ctx context.Context, url, accept, lastID string) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		cc, _, err := s.slot.conn(ctx, s.cfg, s.dialer)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("User-Agent", "pushbench-loadgen")
		req.Header.Set("Accept", accept)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		s.counters.Requests.Add(1)
		resp, err := cc.RoundTrip(req)
		if err == nil {
			return resp, nil
		}
		if st := cc.State(); attempt > 0 || ctx.Err() != nil || !(st.Closed || st.Closing) {
			return nil, err
		}
	}
}

// startIdle cuts the stream once no body read returned for d; reads move
// the deadline when half of d has passed since it was last moved, as
// Conn's rolling deadline does.
func (s *h2Stream) startIdle(d time.Duration) {
	s.idled.Store(false)
	s.idleFor, s.setAt = d, time.Now().UnixNano()
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if s.idle != nil {
		s.idle.Stop()
	}
	s.idle = time.AfterFunc(d, func() {
		s.idled.Store(true)
		cancel()
	})
}

// Read reads the body and stamps the arrival time.
func (s *h2Stream) Read(p []byte) (int, error) {
	n, err := s.body.Read(p)
	now := time.Now().UnixNano()
	s.lastRead = now
	if s.idle != nil && now-s.setAt > int64(s.idleFor)/2 {
		s.setAt = now
		s.idle.Reset(s.idleFor)
	}
	if err != nil && s.idled.Load() {
		err = fmt.Errorf("idle for %s: %w", s.idleFor, os.ErrDeadlineExceeded)
	}
	return n, err
}

// stopBody ends the current request, if any.
func (s *h2Stream) stopBody() {
	if s.idle != nil {
		s.idle.Stop()
		s.idle = nil
	}
	s.mu.Lock()
	if s.cancel != nil {
		s.cancel()
		s.cancel = nil
	}
	s.mu.Unlock()
	if s.body != nil {
		_ = s.body.Close()
		s.body = nil
	}
}

// Drop resets the current stream (the connection stays for the others).
func (s *h2Stream) Drop() {
	s.mu.Lock()
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Unlock()
}

// Close resets the current stream and refuses new ones.
func (s *h2Stream) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Unlock()
	return nil
}

// readRest is ReadRest for a stream: it reads and discards its body.
func (s *h2Stream) readRest(deadline time.Time) (n int64, ended bool, err error) {
	if s.body == nil {
		return 0, false, fmt.Errorf("h2: %w", net.ErrClosed)
	}
	var late atomic.Bool
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	t := time.AfterFunc(time.Until(deadline), func() {
		late.Store(true)
		cancel()
	})
	defer t.Stop()
	buf := make([]byte, 16<<10)
	for {
		k, err := s.body.Read(buf)
		n += int64(k)
		if err != nil {
			if late.Load() {
				return n, false, fmt.Errorf("h2: %w", os.ErrDeadlineExceeded)
			}
			return n, true, err
		}
	}
}

// isMedia reports whether a Content-Type header is of media type mt.
func isMedia(ct, mt string) bool {
	m, _, err := mime.ParseMediaType(ct)
	return err == nil && m == mt
}

// H2SSE is an SSE client on an HTTP/2 stream; it resumes with
// Last-Event-ID as SSE does.
type H2SSE struct {
	h2Stream
	p     *Parser
	ev    Event
	ready bool
}

var _ Client = (*H2SSE)(nil)

// Connect opens the stream.
func (s *H2SSE) Connect(ctx context.Context) error {
	s.ready = false
	lastID := ""
	if s.p != nil {
		lastID = string(s.p.LastEventID())
	}
	resp, err := s.request(ctx, s.cfg.h2URL, 0, "text/event-stream", lastID)
	if err != nil {
		return fmt.Errorf("sse: %w", err)
	}
	if ct := resp.Header.Get("Content-Type"); !isMedia(ct, "text/event-stream") {
		s.stopBody()
		return fmt.Errorf("sse: %w: Content-Type %q, want text/event-stream", ErrProtocol, ct)
	}
	s.startIdle(s.cfg.IdleTimeout)
	if s.p == nil {
		s.p = NewParser(&s.h2Stream, s.cfg.ReadBuffer, s.cfg.MaxEvent)
	} else {
		s.p.Reset(&s.h2Stream)
	}
	s.ready = true
	return nil
}

// Next returns the next tick or gap; events of other types are skipped.
func (s *H2SSE) Next() (*Event, error) {
	if !s.ready {
		return nil, fmt.Errorf("sse: not connected")
	}
	for {
		e, err := s.p.Next()
		if err != nil {
			s.ready = false
			s.stopBody()
			return nil, fmt.Errorf("sse: %w", err)
		}
		if ev := sseEvent(&s.ev, e, s.lastRead); ev != nil {
			return ev, nil
		}
	}
}

// Retry returns the reconnection time the server asked for (retry:), or 0.
func (s *H2SSE) Retry() time.Duration {
	if s.p == nil {
		return 0
	}
	return s.p.Retry()
}

// H2Poll is a long-polling client whose requests are streams of an HTTP/2
// connection: the same requests and cursor as Poll.
type H2Poll struct {
	h2Stream
	pollState
	ctx    context.Context // Connect's: the polls of Next run under it
	url    []byte
	answer []byte // the last answer's body
}

var _ Client = (*H2Poll)(nil)

// Connect makes sure the connection is up; the first call also fixes the
// starting cursor with an immediate poll.
func (p *H2Poll) Connect(ctx context.Context) error {
	p.ctx = ctx
	if p.hasCursor {
		if _, _, err := p.slot.conn(ctx, p.cfg, p.dialer); err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		return nil
	}
	if err := p.poll(0); err != nil {
		return err
	}
	p.begin()
	return nil
}

// Next returns the next event, polling as needed.
func (p *H2Poll) Next() (*Event, error) {
	for {
		if ev := p.pending(); ev != nil {
			return ev, nil
		}
		p.ans.Ticks = p.ans.Ticks[:0]
		if err := p.poll(p.cfg.PollTimeout); err != nil {
			return nil, err
		}
	}
}

// poll sends one request (timeout 0 or the configured one) and decodes
// its answer into p.ans.
func (p *H2Poll) poll(timeout time.Duration) error {
	if p.ctx == nil {
		return fmt.Errorf("poll: not connected")
	}
	if _, err := p.send(timeout); err != nil {
		return err
	}
	defer p.stopBody()
	if err := p.readBody(max(p.cfg.MaxEvent, p.cfg.PollMax*512)); err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	if err := DecodePoll(p.answer, &p.ans); err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	p.accept(p.lastRead)
	return nil
}

// send sends one GET /poll with the current cursor; the answer's body is
// then the stream's to read.
func (p *H2Poll) send(timeout time.Duration) (*http.Response, error) {
	p.url = append(p.url[:0], p.cfg.h2URL...)
	if p.hasCursor {
		p.url = append(p.url, "&cursor="...)
		p.url = strconv.AppendUint(p.url, p.cursor, 10)
	}
	p.url = append(p.url, "&timeout="...)
	if timeout == 0 {
		p.url = append(p.url, "0s"...)
	} else {
		p.url = append(p.url, p.cfg.pollWait...)
	}
	resp, err := p.request(p.ctx, string(p.url), timeout, "application/json", "")
	if err != nil {
		return nil, fmt.Errorf("poll: %w", err)
	}
	return resp, nil
}

// readBody reads the whole answer into p.answer (reusing its storage), at
// most limit bytes.
func (p *H2Poll) readBody(limit int) error {
	var err error
	p.answer, err = readAllInto(p.answer[:0], &p.h2Stream, limit)
	return err
}

// stall sends the next long poll and leaves its answer unread (see Stall).
func (p *H2Poll) stall() error {
	_, err := p.send(p.cfg.PollTimeout)
	return err
}

// errAnswered is what ReadRest says of a stalled poll whose answer came
// whole: the server still holds the connection, as it would hold the
// keep-alive connection of an HTTP/1.1 poll, so it counts as open.
var errAnswered = fmt.Errorf("poll: the answer ended, the connection stays: %w", os.ErrDeadlineExceeded)

// readRest is ReadRest for a stalled long poll: the end of its answer is
// not the server dropping it.
func (p *H2Poll) readRest(deadline time.Time) (int64, bool, error) {
	n, ended, err := p.h2Stream.readRest(deadline)
	if ended && errors.Is(err, io.EOF) {
		return n, false, errAnswered
	}
	return n, ended, err
}
