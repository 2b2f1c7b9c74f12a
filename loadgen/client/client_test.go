package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbench/pushbench/servers/feed"
)

// scriptConn is an in-memory net.Conn: each complete request written to it
// is answered by respond, and once the answers are read it streams loop
// forever (a server pushing ticks), or reports EOF when loop is nil.
type scriptConn struct {
	mu      sync.Mutex
	respond func(req string) []byte
	loop    []byte
	pos     int
	pending []byte
	off     int // read position in pending
	wbuf    []byte
	reqs    []string
	closed  bool
	quiet   bool // do not record requests (benchmarks)
}

func (c *scriptConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	if c.off < len(c.pending) {
		n := copy(p, c.pending[c.off:])
		c.off += n
		if c.off == len(c.pending) {
			c.pending, c.off = c.pending[:0], 0 // reuse the storage
		}
		return n, nil
	}
	if c.loop == nil {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) {
		k := copy(p[n:], c.loop[c.pos:])
		n += k
		c.pos = (c.pos + k) % len(c.loop)
	}
	return n, nil
}

func (c *scriptConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	c.wbuf = append(c.wbuf, p...)
	for {
		i := bytes.Index(c.wbuf, []byte("\r\n\r\n"))
		if i < 0 || c.respond == nil {
			return len(p), nil
		}
		var req string
		if !c.quiet || len(c.reqs) == 0 { // the first request may matter (WebSocket key)
			req = string(c.wbuf[:i+4])
			c.reqs = append(c.reqs, req)
		}
		c.wbuf = append(c.wbuf[:0], c.wbuf[i+4:]...)
		c.pending = append(c.pending, c.respond(req)...)
	}
}

func (c *scriptConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *scriptConn) requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.reqs...)
}

func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// fakeDialer returns a Dialer whose connections are made by mk.
func fakeDialer(mk func() net.Conn) *Dialer {
	return &Dialer{fake: func(context.Context, string, string) (net.Conn, error) { return mk(), nil }}
}

func prepared(t testing.TB, transport string, symbols ...string) *Config {
	t.Helper()
	cfg := &Config{Transport: transport, Base: &url.URL{Scheme: "http", Host: "127.0.0.1:8080"}, Symbols: symbols,
		PollTimeout: 7 * time.Second}
	if err := cfg.Prepare(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// frame is the server's encoding of tick seq (feed seed 1, 16 symbols).
func frames(t testing.TB, n int) []*feed.Frame {
	t.Helper()
	g, err := feed.NewGenerator(1, 16)
	if err != nil {
		t.Fatal(err)
	}
	names := feed.SymbolNames(16)
	out := make([]*feed.Frame, n)
	for i := range out {
		tk := g.Next()
		tk.TS = 1732400000123456789 + int64(i)*1e7
		out[i] = feed.NewFrame(tk, names[tk.Sym])
	}
	return out
}

const sseHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"

// sseChunks encodes events as the Go server sends them: one chunk per flush.
func sseChunks(evs ...[]byte) []byte {
	var b []byte
	for _, e := range evs {
		b = fmt.Appendf(b, "%x\r\n%s\r\n", len(e), e)
	}
	return b
}

func TestSSEClient(t *testing.T) {
	fr := frames(t, 3)
	var conns []*scriptConn
	mk := func() net.Conn {
		c := &scriptConn{respond: func(string) []byte {
			return append([]byte(sseHead), sseChunks([]byte("retry: 1500\n\n"), fr[0].SSE,
				[]byte(": ping\n\nevent: gap\ndata: {\"from\":2,\"to\":3}\n\n"), fr[2].SSE, []byte("event: other\ndata: x\n\n"))...)
		}}
		conns = append(conns, c)
		return c
	}
	counters := new(Counters)
	c, err := New(prepared(t, "sse", "AAPL", "MSFT"), fakeDialer(mk), counters)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		if err := c.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			ev, err := c.Next()
			if err != nil {
				if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
					t.Errorf("stream ended with %v", err)
				}
				break
			}
			switch ev.Kind {
			case KindTick:
				got = append(got, fmt.Sprintf("tick %d %s %d", ev.Tick.Seq, ev.Tick.Sym, ev.Tick.Price))
				if ev.RecvAt == 0 {
					t.Error("no arrival time")
				}
			case KindGap:
				got = append(got, fmt.Sprintf("gap %d-%d", ev.Gap.From, ev.Gap.To))
			default:
				got = append(got, fmt.Sprint("kind ", ev.Kind))
			}
		}
		want := []string{
			fmt.Sprintf("tick 1 %s %d", feed.SymbolNames(16)[fr[0].Sym], fr[0].Price), "gap 2-3",
			fmt.Sprintf("tick 3 %s %d", feed.SymbolNames(16)[fr[2].Sym], fr[2].Price),
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("round %d: got %q, want %q", round, got, want)
		}
	}
	req0, req1 := conns[0].requests()[0], conns[1].requests()[0]
	if !strings.HasPrefix(req0, "GET /sse?symbols=AAPL%2CMSFT HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n") || strings.Contains(req0, "Last-Event-ID") {
		t.Errorf("first request:\n%s", req0)
	}
	if !strings.Contains(req1, "\r\nLast-Event-ID: 3\r\n") {
		t.Errorf("resumed request lacks Last-Event-ID: 3:\n%s", req1)
	}
	if c.(*SSE).Retry() != 1500*time.Millisecond {
		t.Errorf("retry %v", c.(*SSE).Retry())
	}
	if counters.Out.Load() != int64(len(req0)+len(req1)) || counters.In.Load() == 0 || counters.Requests.Load() != 2 {
		t.Errorf("counted out %d in %d requests %d", counters.Out.Load(), counters.In.Load(), counters.Requests.Load())
	}
}

func TestSSEClientRefusals(t *testing.T) {
	cases := []struct {
		resp  string
		cause string
	}{
		{"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n", "http_404"},
		{"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfull\n\r\n0\r\n\r\n", "http_503"},
		{"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", "protocol"},
		{"SSH-2.0-OpenSSH\r\n\r\n", "protocol"},
		{"HTTP/1.1 200 OK\r\nContent-Le", "closed"},
	}
	for _, tc := range cases {
		mk := func() net.Conn { return &scriptConn{respond: func(string) []byte { return []byte(tc.resp) }} }
		c, _ := New(prepared(t, "sse"), fakeDialer(mk), nil)
		err := c.Connect(context.Background())
		if got := Cause(err); got != tc.cause {
			t.Errorf("%q: %v (cause %s), want %s", tc.resp, err, got, tc.cause)
		}
	}
}

func pollResponse(body string, extra string) []byte {
	return fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s", extra, len(body), body)
}

func TestPollClient(t *testing.T) {
	fr := frames(t, 3)
	answers := []string{
		`{"cursor":7,"ticks":[]}`,
		`{"cursor":9,"ticks":[` + string(fr[0].JSON) + `,` + string(fr[1].JSON) + `],"gap":{"from":4,"to":8}}`,
		`{"cursor":12,"ticks":[]}`,
	}
	var mu sync.Mutex // the dial and the test goroutine share n and conns
	n := 0
	var conns []*scriptConn
	mk := func() net.Conn {
		c := &scriptConn{respond: func(string) []byte {
			mu.Lock()
			defer mu.Unlock()
			extra := ""
			if n == 1 {
				extra = "Connection: close\r\n" // the next poll needs a new connection
			}
			b := pollResponse(answers[min(n, len(answers)-1)], extra)
			n++
			return b
		}}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		return c
	}
	second := func() *scriptConn {
		mu.Lock()
		defer mu.Unlock()
		if len(conns) < 2 {
			return nil
		}
		return conns[1]
	}
	counters := new(Counters)
	c, _ := New(prepared(t, "poll"), fakeDialer(mk), counters)
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := nextEvents(t, c, 4)
	if fmt.Sprint(got) != "[start 7 gap 4-8 tick 1 tick 2]" {
		t.Errorf("events %q", got)
	}
	// The next Next polls on a new connection after Connection: close.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for { // answers come at once here: poll until Close cuts the connection
			if _, err := c.Next(); err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for c2 := second(); c2 == nil || len(c2.requests()) == 0; c2 = second() {
		if time.Now().After(deadline) {
			t.Fatal("no request on a second connection")
		}
		time.Sleep(time.Millisecond)
	}
	c.Close()
	<-done
	reqs := append(conns[0].requests(), second().requests()...)
	if !strings.HasPrefix(reqs[0], "GET /poll?max=512&timeout=0s HTTP/1.1\r\n") {
		t.Errorf("first poll: %q", reqs[0])
	}
	if !strings.HasPrefix(reqs[1], "GET /poll?max=512&cursor=7&timeout=7s HTTP/1.1\r\n") {
		t.Errorf("second poll: %q", reqs[1])
	}
	if !strings.HasPrefix(reqs[2], "GET /poll?max=512&cursor=9&timeout=7s HTTP/1.1\r\n") {
		t.Errorf("third poll: %q", reqs[2])
	}
}

func TestPollClientErrors(t *testing.T) {
	for resp, cause := range map[string]string{
		"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 28\r\n\r\n{\"error\":\"cursor is bad\"}\n\n\n": "http_400",
		string(pollResponse(`{"cursor":1}`, "")): "other",
	} {
		mk := func() net.Conn { return &scriptConn{respond: func(string) []byte { return []byte(resp) }} }
		c, _ := New(prepared(t, "poll"), fakeDialer(mk), nil)
		err := c.Connect(context.Background())
		if Cause(err) != cause {
			t.Errorf("%q: %v, want cause %s", resp, err, cause)
		}
		if cause == "http_400" && !strings.Contains(err.Error(), "cursor is bad") {
			t.Errorf("error does not carry the body: %v", err)
		}
	}
}

var wsKey = regexp.MustCompile(`(?i)Sec-WebSocket-Key: (\S+)`)

// wsHandshake answers a WebSocket upgrade request.
func wsHandshake(req string) []byte {
	m := wsKey.FindStringSubmatch(req)
	if m == nil {
		return []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
	}
	h := sha1.Sum([]byte(m[1] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(h[:]) + "\r\n\r\n")
}

// wsFrame is an unmasked server text frame.
func wsFrame(payload []byte) []byte {
	if len(payload) < 126 {
		return append([]byte{0x81, byte(len(payload))}, payload...)
	}
	return append([]byte{0x81, 126, byte(len(payload) >> 8), byte(len(payload))}, payload...)
}

func TestWSClient(t *testing.T) {
	fr := frames(t, 2)
	var conns []*scriptConn
	mk := func() net.Conn {
		c := &scriptConn{respond: func(req string) []byte {
			b := wsHandshake(req)
			b = append(b, wsFrame(fr[0].JSON)...)
			b = append(b, wsFrame([]byte(`{"gap":{"from":2,"to":5}}`))...)
			b = append(b, wsFrame(bytes.Repeat([]byte("x"), 300))...) // malformed, long
			return append(b, 0x88, 2, 0x03, 0xe9)                     // close 1001
		}}
		conns = append(conns, c)
		return c
	}
	c, _ := New(prepared(t, "ws"), fakeDialer(mk), nil)
	for range 2 {
		if err := c.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		var kinds []Kind
		for {
			ev, err := c.Next()
			if err != nil {
				if Cause(err) != "ws_close_1001" {
					t.Errorf("ended with %v (%s), want ws_close_1001", err, Cause(err))
				}
				break
			}
			kinds = append(kinds, ev.Kind)
		}
		if fmt.Sprint(kinds) != fmt.Sprint([]Kind{KindTick, KindGap, KindMalformed}) {
			t.Errorf("kinds %v", kinds)
		}
	}
	if r := conns[1].requests()[0]; !strings.HasPrefix(r, "GET /ws?since=4 HTTP/1.1") {
		t.Errorf("resumed request: %q", r)
	}
}

func TestResponseBodies(t *testing.T) {
	cases := []struct {
		in, body string
		err      bool
	}{
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n", "abc0123456789", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcdEXTRA", "abcd", false},
		{"HTTP/1.0 200 OK\r\n\r\nuntil close", "until close", false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "", true},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", "abc", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", "abc", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "", true},
		{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", false},
	}
	for _, c := range cases {
		r := response{br: bufio.NewReaderSize(strings.NewReader(c.in), 16)}
		err := r.readHeader()
		var body []byte
		if err == nil {
			body, err = io.ReadAll(&r)
		}
		if string(body) != c.body || (err != nil) != c.err {
			t.Errorf("%q: body %q, err %v; want %q, error %v", c.in, body, err, c.body, c.err)
		}
	}
}

// FuzzResponse: the HTTP reader never panics, and never returns more body
// than the input held.
func FuzzResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := response{br: bufio.NewReaderSize(bytes.NewReader(in), 16)}
		if r.readHeader() != nil {
			return
		}
		body, _ := io.ReadAll(io.LimitReader(&r, int64(len(in))+1))
		if len(body) > len(in) {
			t.Fatalf("body %d bytes from %d of input", len(body), len(in))
		}
	})
}

func TestCause(t *testing.T) {
	for err, want := range map[error]string{
		&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}: "refused",
		fmt.Errorf("read: %w", syscall.ECONNRESET):                                         "reset",
		fmt.Errorf("accept: %w", syscall.EMFILE):                                           "emfile",
		fmt.Errorf("x: %w", os.ErrDeadlineExceeded):                                        "timeout",
		context.DeadlineExceeded:                                                           "timeout",
		fmt.Errorf("sse: %w", &StatusError{Code: 503}):                                     "http_503",
		fmt.Errorf("ws: %w", &websocket.CloseError{Code: 1001}):                            "ws_close_1001",
		io.ErrUnexpectedEOF:                                                                "closed",
		fmt.Errorf("%w: bad", ErrProtocol):                                                 "protocol",
		syscall.EADDRNOTAVAIL:                                                              "no_port",
		errors.New("something"):                                                            "other",
		fmt.Errorf("%w with h: %w", ErrTLS, &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}): "tls_cert",
		fmt.Errorf("sse: %w", x509.HostnameError{Host: "h"}):                                                      "tls_cert",
		fmt.Errorf("%w with h: %w", ErrTLS, tls.RecordHeaderError{Msg: "not TLS"}):                                "tls",
		fmt.Errorf("%w with h: %w", ErrTLS, os.ErrDeadlineExceeded):                                               "timeout",
		fmt.Errorf("sse: %w", &net.OpError{Op: "local error", Err: errors.New("tls: bad record MAC")}):            "tls",
	} {
		if got := Cause(err); got != want {
			t.Errorf("Cause(%v) = %s, want %s", err, got, want)
		}
	}
}

// TestSmallBuffers checks that a stalling client's socket gets its small
// receive buffer and MSS, and that ReadRest tells an ended connection from
// an open one.
func TestSmallBuffers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	d := NewDialer(nil, time.Second).WithSmallBuffers(4096, 1460)
	raw, err := d.DialContext(context.Background(), "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rc, err := raw.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var rcv, mss int
	var serr error
	_ = rc.Control(func(fd uintptr) {
		if rcv, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF); serr == nil {
			mss, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG)
		}
	})
	if serr != nil || rcv > 16<<10 || mss > 1460 {
		t.Errorf("SO_RCVBUF %d, MSS %d (%v): want about 8 KiB (4 KiB doubled) and at most 1460", rcv, mss, serr)
	}

	// ReadRest: the peer sends a little, then still open (a timeout);
	// then it closes (ended).
	cfg := &Config{Transport: "sse", Base: &url.URL{Scheme: "http", Host: l.Addr().String()}}
	if err := cfg.Prepare(); err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg, NewDialer(nil, time.Second), nil)
	if err != nil {
		t.Fatal(err)
	}
	sse := c.(*SSE)
	if _, err := sse.dial(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-accepted // the first dial's
	peer := <-accepted
	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	n, ended, err := ReadRest(c, time.Now().Add(100*time.Millisecond))
	if n != 5 || ended || Cause(err) != "timeout" {
		t.Errorf("open connection: read %d, ended %v, %v; want 5, false, a timeout", n, ended, err)
	}
	_, _ = peer.Write([]byte("bye"))
	peer.Close()
	n, ended, err = ReadRest(c, time.Now().Add(5*time.Second))
	if n != 3 || !ended {
		t.Errorf("closed connection: read %d, ended %v, %v; want 3, true", n, ended, err)
	}
}

// TestPollClientFirstAnswerWithTicks: a poll without a cursor means "from
// now", and a tick published just after the server read "now" can be in the
// first answer, with the cursor after it. The subscription must start before
// that tick, or the checker would count it as a duplicate.
func TestPollClientFirstAnswerWithTicks(t *testing.T) {
	fr := frames(t, 2)
	first := `{"cursor":2,"ticks":[` + string(fr[0].JSON) + `,` + string(fr[1].JSON) + `]}`
	mk := func() net.Conn {
		return &scriptConn{respond: func(string) []byte { return pollResponse(first, "") }}
	}
	c, _ := New(prepared(t, "poll"), fakeDialer(mk), new(Counters))
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := nextEvents(t, c, 3)
	if fmt.Sprint(got) != "[start 0 tick 1 tick 2]" {
		t.Errorf("events %q, want the start before the first tick", got)
	}
}

// nextEvents reads n start, gap or tick events from c, in short form
// ("start 7", "gap 4-8", "tick 1"); other events are not counted.
func nextEvents(t testing.TB, c Client, n int) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		ev, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Kind {
		case KindStart:
			got = append(got, fmt.Sprint("start ", ev.Seq))
		case KindGap:
			got = append(got, fmt.Sprintf("gap %d-%d", ev.Gap.From, ev.Gap.To))
		case KindTick:
			got = append(got, fmt.Sprint("tick ", ev.Tick.Seq))
		}
	}
	return got
}
