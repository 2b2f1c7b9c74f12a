package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// chunkConn is an in-memory net.Conn whose reads return the given chunks
// one by one (a chunk larger than the reader's buffer takes several reads)
// and then EOF; writes are recorded.
type chunkConn struct {
	mu     sync.Mutex
	chunks [][]byte
	w      bytes.Buffer
	closed bool
}

func (c *chunkConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	for len(c.chunks) > 0 && len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	return n, nil
}

func (c *chunkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.w.Write(p)
}

func (c *chunkConn) written() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.String()
}

func (c *chunkConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *chunkConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *chunkConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *chunkConn) SetDeadline(time.Time) error      { return nil }
func (c *chunkConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }

// describe renders an event for comparison (everything but the time, which
// must be set).
func describe(t testing.TB, ev *Event) string {
	t.Helper()
	if ev.RecvAt == 0 {
		t.Error("event without arrival time")
	}
	switch ev.Kind {
	case KindTick:
		return fmt.Sprintf("tick %d %s %d %d", ev.Tick.Seq, ev.Tick.Sym, ev.Tick.Price, ev.Tick.TS)
	case KindGap:
		return fmt.Sprintf("gap %d-%d", ev.Gap.From, ev.Gap.To)
	case KindStart:
		return fmt.Sprintf("start %d", ev.Seq)
	case KindMalformed:
		return fmt.Sprintf("malformed %v", ev.Err)
	}
	return fmt.Sprintf("kind %d", ev.Kind)
}

// readerRun is what one reader made of a stream: the events, the cause of
// its end, and what it wrote.
type readerRun struct {
	events  []string
	cause   string
	written string
}

func (r readerRun) String() string {
	return fmt.Sprintf("events %q\nend %s\nwritten %q", r.events, r.cause, r.written)
}

// connectChunks makes a client of cfg whose connection reads chunks, and
// connects it. A failed Connect returns a nil Client and the run so far.
func connectChunks(t testing.TB, cfg *Config, chunks [][]byte) (Client, *chunkConn, readerRun) {
	t.Helper()
	conn := &chunkConn{chunks: chunks}
	c, err := New(cfg, fakeDialer(func() net.Conn { return conn }), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(context.Background()); err != nil {
		return nil, conn, readerRun{cause: "connect " + Cause(err)}
	}
	return c, conn, readerRun{}
}

// goroutineRead runs the goroutine reader over chunks: Connect, then Next
// until an error (at most max events).
func goroutineRead(t testing.TB, cfg *Config, chunks [][]byte, max int) readerRun {
	t.Helper()
	c, conn, r := connectChunks(t, cfg, chunks)
	if c == nil {
		return r
	}
	for len(r.events) < max {
		ev, err := c.Next()
		if err != nil {
			r.cause = Cause(err)
			break
		}
		r.events = append(r.events, describe(t, ev))
	}
	r.written = conn.written()
	return r
}

// loopRead runs the loop's half of a client over the same bytes, without
// sockets: Connect reads head (which must be exactly what the handshake
// reads), then the body goes through loopConn.process in the pieces given,
// as the worker would hand them over, and EOF ends it.
func loopRead(t testing.TB, cfg *Config, head []byte, pieces [][]byte, max int) readerRun {
	t.Helper()
	c, conn, r := connectChunks(t, cfg, [][]byte{head})
	if c == nil {
		return r
	}
	lcl := c.(loopClient)
	_, pre, err := lcl.handoff()
	if err != nil {
		t.Fatal(err)
	}
	var end error
	ended := false
	lc := &loopConn{h: lcl, owner: lcl.loopBase(), counters: new(Counters), fd: -1,
		sink: func(ev *Event) {
			if len(r.events) < max {
				r.events = append(r.events, describe(t, ev))
			}
		},
		done: func(err error) { end, ended = err, true },
	}
	finish := func(err error) {
		if !ended {
			lc.done(err)
		}
	}
	if err := lc.h.loopStart(lc); err != nil {
		finish(err)
	}
	buf := make([]byte, 0, 1<<20)
	for _, p := range append([][]byte{pre}, pieces...) {
		if ended || len(r.events) >= max {
			break
		}
		buf = append(append(buf[:0], lc.tail...), p...)
		if err := lc.process(buf, len(lc.tail), len(p), time.Now().UnixNano()); err != nil {
			finish(err)
		}
	}
	if !ended && len(r.events) < max {
		finish(lc.h.loopEOF(lc))
	}
	if end = doneErr(end); end == nil && ended {
		r.cause = "reconnect"
	} else if end != nil {
		r.cause = Cause(end)
	}
	r.written = conn.written() + string(lc.out)
	return r
}

// splits returns body cut at k, and (for k = 0) body cut before every
// byte.
func splits(body []byte, k int) [][][]byte {
	if k > 0 {
		return [][][]byte{{body[:k], body[k:]}}
	}
	var bytewise [][]byte
	for i := range body {
		bytewise = append(bytewise, body[i:i+1])
	}
	return [][][]byte{{body}, bytewise}
}

// sameReads checks that both readers make the same events of head+body
// whatever the split: the goroutine reader with the stream cut at every
// position, the loop with the body cut at every position and byte by byte.
// Ends differ only in name where the two cannot tell them apart.
func sameReads(t *testing.T, cfg *Config, head, body []byte, max int, wantEvents int) {
	t.Helper()
	stream := append(append([]byte(nil), head...), body...)
	ref := goroutineRead(t, cfg, [][]byte{stream}, max)
	if len(ref.events) < wantEvents {
		t.Fatalf("reference read only %d events:\n%v", len(ref.events), ref)
	}
	for k := range len(stream) + 1 {
		if g := goroutineRead(t, cfg, [][]byte{stream[:k], stream[k:]}, max); fmt.Sprint(g.events) != fmt.Sprint(ref.events) {
			t.Fatalf("goroutine reader, cut at %d:\n%v\nwant\n%v", k, g, ref)
		}
	}
	for k := range len(body) + 1 {
		for _, pieces := range splits(body, k) {
			l := loopRead(t, cfg, head, pieces, max)
			if l.String() != ref.String() {
				t.Fatalf("loop, body cut at %d (%d pieces):\n%v\nwant\n%v", k, len(pieces), l, ref)
			}
		}
	}
}

func TestLoopSameAsGoroutineSSE(t *testing.T) {
	fr := frames(t, 3)
	cfg := prepared(t, "sse")
	cfg.Handoff = true
	body := sseChunks([]byte("retry: 1500\r\n\r\n"), fr[0].SSE,
		[]byte(": ping\n\nevent: gap\rdata: {\"from\":2,\"to\":3}\r\rid: 9\n"), []byte("\n"), fr[2].SSE,
		[]byte("event: other\ndata: x\n\ndata: not json\n\n"), fr[1].SSE[:20])
	// A stream that ends (cut off, then properly).
	sameReads(t, cfg, []byte(sseHead), body, 100, 4)
	sameReads(t, cfg, []byte(sseHead), append(body, "0\r\n\r\n"...), 100, 4)
	// A malformed chunk size ends it with a protocol error.
	sameReads(t, cfg, []byte(sseHead), append(sseChunks(fr[0].SSE), "zz\r\n"...), 100, 1)
	// An event too long for MaxEvent.
	cfg.MaxEvent, cfg.ReadBuffer = 64, 64
	sameReads(t, cfg, []byte(sseHead), sseChunks(fr[0].SSE[:30], bytes.Repeat([]byte("x"), 200)), 100, 0)
}

func TestLoopSameAsGoroutineWS(t *testing.T) {
	fr := frames(t, 3)
	cfg := prepared(t, "ws")
	cfg.Handoff = true
	var body []byte
	body = append(body, wsFrame(fr[0].JSON)...)
	body = append(body, 0x89, 3, 'a', 'b', 'c') // ping
	body = append(body, wsFrame([]byte(`{"gap":{"from":2,"to":5}}`))...)
	body = append(body, wsFrame(bytes.Repeat([]byte("y"), 300))...) // malformed, long
	body = append(body, 0x01, byte(len(fr[1].JSON[:10])))           // a fragmented tick
	body = append(append(body, fr[1].JSON[:10]...), 0x8A, 0)        // then a pong in between
	body = append(append(body, 0x80, byte(len(fr[1].JSON[10:]))), fr[1].JSON[10:]...)
	body = append(body, 0x82, 1, 'b')                  // binary
	body = append(body, 0x88, 4, 0x03, 0xe9, 'o', 'k') // close 1001
	// gorilla's Dial reads the head itself, so the goroutine reader cannot
	// be given a head whose key matches its random one: compare the loop
	// with the events and end the goroutine reader gives on a live
	// handshake (scriptConn answers the key).
	conn := &scriptConn{respond: func(req string) []byte { return append(wsHandshake(req), body...) }}
	c, err := New(prepared(t, "ws"), fakeDialer(func() net.Conn { return conn }), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	var ref readerRun
	for {
		ev, err := c.Next()
		if err != nil {
			ref.cause = Cause(err)
			break
		}
		ref.events = append(ref.events, describe(t, ev))
	}
	if ref.cause != "ws_close_1001" || len(ref.events) != 5 {
		t.Fatalf("reference: %v", ref)
	}
	for k := range len(body) + 1 {
		for _, pieces := range splits(body, k) {
			l := loopHandoffWS(t, cfg, pieces)
			if fmt.Sprint(l.events) != fmt.Sprint(ref.events) || l.cause != ref.cause {
				t.Fatalf("loop, body cut at %d (%d pieces):\n%v\nwant\n%v", k, len(pieces), l, ref)
			}
			// The loop answered the ping and the close, masked.
			if got := l.written; got != "pong abc, close 1001" {
				t.Fatalf("loop wrote %s", got)
			}
		}
	}
}

// loopHandoffWS connects a WebSocket client with a live handshake and
// feeds the loop's half the pieces.
func loopHandoffWS(t testing.TB, cfg *Config, pieces [][]byte) readerRun {
	t.Helper()
	conn := &scriptConn{respond: wsHandshake}
	c, err := New(cfg, fakeDialer(func() net.Conn { return conn }), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	lcl := c.(loopClient)
	if _, pre, err := lcl.handoff(); err != nil || len(pre) != 0 {
		t.Fatalf("handoff: %d bytes, %v", len(pre), err)
	}
	var r readerRun
	lc := &loopConn{h: lcl, owner: lcl.loopBase(), counters: new(Counters), fd: -1,
		sink: func(ev *Event) { r.events = append(r.events, describe(t, ev)) }}
	_ = lc.h.loopStart(lc)
	buf := make([]byte, 0, 4096)
	for _, p := range pieces {
		buf = append(append(buf[:0], lc.tail...), p...)
		if err := lc.process(buf, len(lc.tail), len(p), time.Now().UnixNano()); err != nil {
			r.cause = Cause(err)
			break
		}
	}
	r.written = unmaskFrames(t, lc.out)
	return r
}

// unmaskFrames decodes the client's frames (masked, short) as "op payload".
func unmaskFrames(t testing.TB, b []byte) string {
	t.Helper()
	var out []string
	for len(b) > 0 {
		if len(b) < 6 || b[1]&0x80 == 0 {
			t.Fatalf("not a masked client frame: %x", b)
		}
		n := int(b[1] & 0x7f)
		key, p := b[2:6], append([]byte(nil), b[6:6+n]...)
		for i := range p {
			p[i] ^= key[i&3]
		}
		switch b[0] {
		case 0x8A:
			out = append(out, "pong "+string(p))
		case 0x88:
			if len(p) < 2 {
				out = append(out, "close")
				break
			}
			out = append(out, fmt.Sprintf("close %d", int(p[0])<<8|int(p[1])))
		default:
			out = append(out, fmt.Sprintf("op %x", b[0]))
		}
		b = b[6+n:]
	}
	return strings.Join(out, ", ")
}

func TestLoopSameAsGoroutinePoll(t *testing.T) {
	fr := frames(t, 4)
	cfg := prepared(t, "poll")
	cfg.Handoff = true
	first := pollResponse(`{"cursor":7,"ticks":[]}`, "")
	var body []byte
	body = append(body, pollResponse(`{"cursor":9,"ticks":[`+string(fr[0].JSON)+`,`+string(fr[1].JSON)+`],"gap":{"from":4,"to":8}}`, "")...)
	chunked := "{\"cursor\":10,\"ticks\":[" + string(fr[2].JSON) + "]}"
	body = fmt.Appendf(body, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n%x;x=y\r\n%s\r\n0\r\nT: 1\r\n\r\n",
		10, chunked[:10], len(chunked)-10, chunked[10:])
	body = append(body, pollResponse(`{"cursor":11,"ticks":[`+string(fr[3].JSON)+`]}`, "")...)
	body = append(body, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\nfull\n"...)
	sameReads(t, cfg, first, body, 100, 6)
	// Connection: close after an answer: the loop asks for a reconnect,
	// the goroutine reader dials again (and finds EOF here).
	closing := pollResponse(`{"cursor":9,"ticks":[`+string(fr[0].JSON)+`]}`, "Connection: close\r\n")
	g := goroutineRead(t, cfg, [][]byte{first, closing}, 100)
	l := loopRead(t, cfg, first, [][]byte{closing}, 100)
	if fmt.Sprint(g.events) != fmt.Sprint(l.events) || l.cause != "reconnect" {
		t.Errorf("Connection: close: goroutine\n%v\nloop\n%v", g, l)
	}
	// A body over the limit.
	cfg.PollMax, cfg.MaxEvent = 1, 100
	sameReads(t, cfg, first, pollResponse(`{"cursor":9,"ticks":[`+string(fr[0].JSON)+`,`+string(fr[1].JSON)+`,`+string(fr[2].JSON)+`,`+string(fr[3].JSON)+`,`+string(fr[3].JSON)+`]}`, ""), 100, 0)
}
