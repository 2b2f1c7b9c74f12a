//go:build linux

package client

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pushbench/pushbench/loadgen/internal/servertest"
	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/server"
)

// realServer runs this project's server on loopback until the test ends.
func realServer(t testing.TB, transport string, rate float64) *url.URL {
	t.Helper()
	u, err := url.Parse(servertest.Start(t, server.Config{Transport: transport, Feed: feed.Config{Seed: 1, Symbols: 16, Rate: rate, History: 4096}}))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// seqLog collects the tick seqs one client received; safe for the loop's
// worker and the test goroutine.
type seqLog struct {
	mu    sync.Mutex
	seqs  []uint64
	other int // gaps, malformed
	ends  chan error
}

func newSeqLog() *seqLog { return &seqLog{ends: make(chan error, 4)} }

func (s *seqLog) sink(ev *Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ev.RecvAt == 0 {
		s.other++
	}
	switch ev.Kind {
	case KindTick:
		s.seqs = append(s.seqs, ev.Tick.Seq)
	case KindStart:
	default:
		s.other++
	}
}

func (s *seqLog) done(err error) { s.ends <- err }

func (s *seqLog) snapshot() ([]uint64, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seqs), s.other
}

// waitFor polls cond until it holds, or fails the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *seqLog) atLeast(n int) func() bool {
	return func() bool {
		seqs, _ := s.snapshot()
		return len(seqs) >= n
	}
}

// contiguous reports the first break in seqs.
func contiguous(seqs []uint64) error {
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			return fmt.Errorf("seq %d after %d (index %d)", seqs[i], seqs[i-1], i)
		}
	}
	return nil
}

// TestLoopRealServer runs a goroutine-read client and a loop-served client
// against the same real server and compares what they received: the same
// ticks over the time both were connected, none lost across a Drop and a
// resumed reconnect, and about the same bytes per tick.
func TestLoopRealServer(t *testing.T) {
	l, err := NewLoop(2)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tr := range Transports {
		t.Run(tr, func(t *testing.T) {
			base := realServer(t, tr, 400)
			newCfg := func(handoff bool) *Config {
				cfg := &Config{Transport: tr, Base: base, PollTimeout: 2 * time.Second, Handoff: handoff}
				if err := cfg.Prepare(); err != nil {
					t.Fatal(err)
				}
				return cfg
			}
			gCount, lCount := new(Counters), new(Counters)
			gc, err := New(newCfg(false), NewDialer(nil, 5*time.Second), gCount)
			if err != nil {
				t.Fatal(err)
			}
			lclient, err := New(newCfg(true), NewDialer(nil, 5*time.Second), lCount)
			if err != nil {
				t.Fatal(err)
			}
			gl, ll := newSeqLog(), newSeqLog()
			if err := gc.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					ev, err := gc.Next()
					if err != nil {
						gl.done(err)
						return
					}
					gl.sink(ev)
				}
			})
			defer func() {
				_ = gc.Close()
				wg.Wait()
			}()
			if err := lclient.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := l.Serve(lclient, ll.sink, ll.done); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "ticks before the drop", ll.atLeast(100))
			lclient.Drop()
			select {
			case err := <-ll.ends:
				if Cause(err) != "closed" {
					t.Errorf("after Drop, done got %v (%s), want closed", err, Cause(err))
				}
			case <-time.After(5 * time.Second):
				t.Fatal("done not called after Drop")
			}
			if err := lclient.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := l.Serve(lclient, ll.sink, ll.done); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "ticks after the reconnect", ll.atLeast(400))
			waitFor(t, "the goroutine reader", func() bool {
				ls, _ := ll.snapshot()
				gs, _ := gl.snapshot()
				return len(gs) > 0 && gs[len(gs)-1] >= ls[len(ls)-1]
			})
			if err := lclient.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-ll.ends:
				if Cause(err) != "closed" {
					t.Errorf("after Close, done got %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("done not called after Close")
			}
			ls, lother := ll.snapshot()
			gs, gother := gl.snapshot()
			if err := contiguous(ls); err != nil {
				t.Errorf("loop client across the reconnect: %v", err)
			}
			if err := contiguous(gs); err != nil {
				t.Errorf("goroutine client: %v", err)
			}
			if lother != 0 || gother != 0 {
				t.Errorf("unexpected events: loop %d, goroutine %d", lother, gother)
			}
			// Over the seqs both were connected for, the same ticks.
			lo, hi := max(ls[0], gs[0]), min(ls[len(ls)-1], gs[len(gs)-1])
			in := func(s []uint64) []uint64 {
				return slices.DeleteFunc(slices.Clone(s), func(q uint64) bool { return q < lo || q > hi })
			}
			if a, b := in(ls), in(gs); !slices.Equal(a, b) || len(a) < 300 {
				t.Errorf("seqs %d..%d: loop got %d, goroutine %d", lo, hi, len(a), len(b))
			}
			// Both count the bytes on the socket: per tick about the same
			// (the loop's include one more handshake).
			lb := float64(lCount.In.Load()) / float64(len(ls))
			gb := float64(gCount.In.Load()) / float64(len(gs))
			if lb < gb*0.8 || lb > gb*1.25 || lCount.Out.Load() == 0 {
				t.Errorf("bytes in per tick: loop %.1f, goroutine %.1f; loop out %d", lb, gb, lCount.Out.Load())
			}
		})
	}
}

// silentServer answers each connection's request with head and then stays
// silent, holding the connection until the test ends.
func silentServer(t *testing.T, head func(req string) []byte) *url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			buf := make([]byte, 4096)
			n, _ := c.Read(buf)
			_, _ = c.Write(head(string(buf[:n])))
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}
}

// TestLoopIdleTimeout: a stream that goes silent is cut after the idle
// time, as the goroutine reader's read deadline does, and Loop.Close ends
// what is still served.
func TestLoopIdleTimeout(t *testing.T) {
	l, err := NewLoop(1)
	if err != nil {
		t.Fatal(err)
	}
	base := silentServer(t, func(string) []byte { return []byte(sseHead) })
	quick := &Config{Transport: "sse", Base: base, IdleTimeout: 100 * time.Millisecond, Handoff: true}
	slow := &Config{Transport: "sse", Base: base, Handoff: true}
	for _, cfg := range []*Config{quick, slow} {
		if err := cfg.Prepare(); err != nil {
			t.Fatal(err)
		}
	}
	logs := []*seqLog{newSeqLog(), newSeqLog()}
	for i, cfg := range []*Config{quick, slow} {
		c, err := New(cfg, NewDialer(nil, time.Second), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := l.Serve(c, logs[i].sink, logs[i].done); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-logs[0].ends:
		if Cause(err) != "timeout" {
			t.Errorf("idle connection ended with %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("idle connection not cut")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-logs[1].ends:
		if Cause(err) != "closed" {
			t.Errorf("Loop.Close ended it with %v", err)
		}
	default:
		t.Fatal("Loop.Close returned before done was called")
	}
}

// TestLoopWebSocketControl: over a real socket, the loop answers a ping
// with a masked pong carrying the same payload, and a close frame with a
// close frame of the same code; done gets ws_close_1001. Frames the server
// sends in the same write as its 101 reach the loop (Config.Handoff).
func TestLoopWebSocketControl(t *testing.T) {
	fr := frames(t, 1)
	got := make(chan []byte, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		n, _ := c.Read(buf)
		m := wsKey.FindSubmatch(buf[:n])
		if m == nil {
			return
		}
		h := sha1.Sum(append(m[1], "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"...))
		resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			base64.StdEncoding.EncodeToString(h[:]) + "\r\n\r\n"
		// The 101 and the first frames in one segment.
		_, _ = c.Write(append(append([]byte(resp), wsFrame(fr[0].JSON)...), 0x89, 4, 'p', 'i', 'n', 'g'))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var in []byte
		for len(in) < 10 { // the pong: 2 + 4 + 4
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			in = append(in, buf[:n]...)
		}
		_, _ = c.Write([]byte{0x88, 2, 0x03, 0xe9})
		for len(in) < 18 { // and the close: 2 + 4 + 2
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			in = append(in, buf[:n]...)
		}
		got <- in
	}()
	cfg := &Config{Transport: "ws", Base: &url.URL{Scheme: "http", Host: ln.Addr().String()}, Handoff: true}
	if err := cfg.Prepare(); err != nil {
		t.Fatal(err)
	}
	l, err := NewLoop(1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := New(cfg, NewDialer(nil, time.Second), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	log := newSeqLog()
	if err := l.Serve(c, log.sink, log.done); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-log.ends:
		if Cause(err) != "ws_close_1001" {
			t.Errorf("ended with %v, want ws_close_1001", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not ended")
	}
	if seqs, _ := log.snapshot(); !slices.Equal(seqs, []uint64{1}) {
		t.Errorf("ticks %v, want the one sent with the 101", seqs)
	}
	select {
	case in := <-got:
		if s := unmaskFrames(t, in); s != "pong ping, close 1001" {
			t.Errorf("server got %s", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server got nothing")
	}
}

// writeHandler writes a large request from loopStart, so that the socket
// would block, and ends at EOF.
type writeHandler struct{ payload []byte }

func (h *writeHandler) loopStart(lc *loopConn) error {
	for b := h.payload; len(b) > 0; b = b[min(len(b), 1000):] {
		if err := lc.write(b[:min(len(b), 1000)]); err != nil {
			return err
		}
	}
	return nil
}
func (h *writeHandler) loopData(_ *loopConn, _ []byte, _ int, _ int64) ([]byte, error) {
	return nil, nil
}
func (h *writeHandler) loopEOF(*loopConn) error { return io.EOF }
func (h *writeHandler) loopClose(*loopConn)     {}

// TestLoopWriteWouldBlock: what the socket does not take at once is kept
// and written when it becomes writable, in order, and counted.
func TestLoopWriteWouldBlock(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 4096); err != nil {
		t.Fatal(err)
	}
	peer := fds[1]
	defer unix.Close(peer)
	if err := unix.SetNonblock(peer, false); err != nil {
		t.Fatal(err)
	}
	l, err := NewLoop(1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	payload := bytes.Repeat([]byte("0123456789abcdef"), 3000) // 48 KB, over the buffers
	counters := new(Counters)
	b := &base{cfg: prepared(t, "sse"), counters: counters}
	log := newSeqLog()
	lc := &loopConn{h: &writeHandler{payload}, owner: b, counters: counters, fd: fds[0], sink: log.sink, done: log.done}
	lc.w = l.workers[0]
	if !lc.w.add(lc) {
		t.Fatal("not added")
	}
	var got []byte
	buf := make([]byte, 4096)
	for len(got) < len(payload) {
		n, err := unix.Read(peer, buf)
		if err != nil || n == 0 {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, payload) {
		t.Error("the peer got other bytes than were written")
	}
	// The worker counts a write once it returns, which may be after the
	// peer read it.
	waitFor(t, fmt.Sprintf("%d bytes counted out", len(payload)), func() bool {
		return counters.Out.Load() == int64(len(payload))
	})
	unix.Shutdown(peer, unix.SHUT_WR)
	select {
	case err := <-log.ends:
		if err != io.EOF {
			t.Errorf("ended with %v, want EOF", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not ended at EOF")
	}
}
