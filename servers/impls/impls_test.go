package impls_test

// Tests across implementations: each one runs in a real server process
// (server.Server on 127.0.0.1, served by net/http or by the library's own
// engine, as bin/server does) and is read by plain clients. Every claim of
// the registry is checked both ways: a feature an implementation claims
// must work, and one it does not claim must show its absence, so that a
// wrong claim fails.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/impls"
	"github.com/pushbench/pushbench/servers/impls/host"
	"github.com/pushbench/pushbench/servers/server"
)

// wait is the bound of every wait on the server; tests poll conditions
// under it and never sleep for a fixed time.
const wait = 10 * time.Second

type running struct {
	srv  *server.Server
	base string
	stop func() // shuts the server down and waits for it; idempotent
}

// start runs impl's server for its transport with cfg's feed and flags.
func start(t *testing.T, im impls.Impl, cfg server.Config) *running {
	t.Helper()
	if raceEnabled && im.NewEngine != nil {
		// nbio's engine reads and writes its connections' fields from its
		// accept and poller goroutines unsynchronised (its source marks
		// them go:norace), which the race detector reports as races of the
		// library's own. Its tests run without -race.
		t.Skipf("%s: the library's engine is not race-detector clean; run without -race", im.Name)
	}
	cfg.Transport, cfg.Impl = im.Transport, im.Name
	if cfg.Feed.Seed == 0 {
		cfg.Feed.Seed = 7
	}
	if cfg.Feed.Rate == 0 {
		cfg.Feed.Rate = 200
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var hs host.Engine
	var l net.Listener = ln
	lim := server.Limits{Conns: 1000, Reserve: 10, SndBuf: server.DefaultSndBuf}
	if eng := srv.Engine(lim); eng != nil {
		hs = eng
	} else {
		var h *http.Server
		h, l = srv.HTTP(ln, lim)
		hs = h
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- srv.Run(ctx) }()
	serveDone := make(chan error, 1)
	go func() { serveDone <- hs.Serve(l) }()
	<-srv.Feed().Ready()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		sctx, scancel := context.WithTimeout(context.Background(), wait)
		defer scancel()
		errc := make(chan error, 1)
		go func() { errc <- srv.Shutdown(sctx) }()
		if err := hs.Shutdown(sctx); err != nil {
			t.Errorf("%s: engine shutdown: %v", im.Name, err)
			_ = hs.Close()
		}
		if err := <-errc; err != nil {
			t.Errorf("%s: shutdown: %v", im.Name, err)
		}
		if err := <-serveDone; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("%s: serve: %v", im.Name, err)
		}
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("%s: run: %v", im.Name, err)
		}
	}
	t.Cleanup(stop)
	return &running{srv: srv, base: "http://" + ln.Addr().String(), stop: stop}
}

// msg is what a client got: a tick (its JSON bytes and SSE id) or a gap
// signal, or (heartbeat) an SSE comment or WebSocket ping.
type msg struct {
	json      []byte
	id        string // SSE only
	seq       uint64
	sym       string
	gap       bool
	heartbeat bool
}

// client reads one subscription; next returns its messages in order.
type client struct {
	msgs   chan msg
	done   chan struct{}
	err    error
	cursor string // the resume point to reconnect with: last SSE id, seq, or poll cursor
	close  func()
}

// subscribe opens a subscription with the query q (symbols, resume point)
// and an SSE Last-Event-ID header when lastID is not "".
func subscribe(t *testing.T, r *running, transport string, q url.Values, lastID string) *client {
	t.Helper()
	c, status := trySubscribe(t, r, transport, q, lastID)
	if status != http.StatusOK {
		t.Fatalf("%s subscribe: status %d", transport, status)
	}
	return c
}

func trySubscribe(t *testing.T, r *running, transport string, q url.Values, lastID string) (*client, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &client{msgs: make(chan msg, 4096), done: make(chan struct{})}
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	push := func(m msg) bool {
		select {
		case c.msgs <- m:
			return true
		case <-ctx.Done():
			return false
		}
	}
	switch transport {
	case "sse":
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/sse?"+q.Encode(), nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := hc.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("sse: %v", err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			cancel()
			return nil, resp.StatusCode
		}
		go func() {
			defer close(c.done)
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			var id, event, data string
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					c.err = err
					return
				}
				line = strings.TrimSuffix(line, "\n")
				switch {
				case line == "":
					if data == "" {
						continue
					}
					m := msg{json: []byte(data), id: id, gap: event == "gap"}
					if !m.gap {
						m.parse(t)
					}
					id, event, data = "", "", ""
					if !push(m) {
						return
					}
				case strings.HasPrefix(line, ":"):
					if !push(msg{heartbeat: true}) {
						return
					}
				case strings.HasPrefix(line, "id: "):
					id = line[4:]
				case strings.HasPrefix(line, "event: "):
					event = line[7:]
				case strings.HasPrefix(line, "data: "):
					data = line[6:]
				}
			}
		}()
	case "ws":
		u := "ws" + strings.TrimPrefix(r.base, "http") + "/ws?" + q.Encode()
		conn, resp, err := (&websocket.Dialer{HandshakeTimeout: wait}).DialContext(ctx, u, nil)
		if err != nil {
			cancel()
			if resp != nil {
				return nil, resp.StatusCode
			}
			t.Fatalf("ws: %v", err)
		}
		conn.SetPingHandler(func(string) error {
			push(msg{heartbeat: true})
			return conn.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second))
		})
		stopRead := context.AfterFunc(ctx, func() { conn.Close() })
		go func() {
			defer close(c.done)
			defer stopRead()
			defer conn.Close()
			for {
				_, b, err := conn.ReadMessage()
				if err != nil {
					c.err = err
					return
				}
				m := msg{json: b, gap: strings.HasPrefix(string(b), `{"gap":`)}
				if !m.gap {
					m.parse(t)
				}
				if !push(m) {
					return
				}
			}
		}()
	case "poll":
		get := func(q url.Values) (*http.Response, error) {
			q.Set("timeout", "2s")
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/poll?"+q.Encode(), nil)
			return hc.Do(req)
		}
		resp, err := get(q)
		if err != nil {
			cancel()
			t.Fatalf("poll: %v", err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			cancel()
			return nil, resp.StatusCode
		}
		go func() {
			defer close(c.done)
			for {
				var body struct {
					Cursor uint64            `json:"cursor"`
					Ticks  []json.RawMessage `json:"ticks"`
					Gap    *feed.Gap         `json:"gap"`
				}
				err := json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				if err != nil {
					c.err = err
					return
				}
				if body.Gap != nil && !push(msg{gap: true}) {
					return
				}
				for _, raw := range body.Ticks {
					m := msg{json: raw}
					m.parse(t)
					if !push(m) {
						return
					}
				}
				q.Set("cursor", strconv.FormatUint(body.Cursor, 10))
				if resp, err = get(q); err != nil {
					c.err = err
					return
				}
			}
		}()
	}
	c.close = func() { cancel(); <-c.done }
	t.Cleanup(c.close)
	return c, http.StatusOK
}

func (m *msg) parse(t *testing.T) {
	var tk struct {
		Seq uint64 `json:"seq"`
		Sym string `json:"sym"`
	}
	if err := json.Unmarshal(m.json, &tk); err != nil {
		t.Errorf("bad tick %q: %v", m.json, err)
	}
	m.seq, m.sym = tk.Seq, tk.Sym
}

// next returns the next tick or gap (heartbeats skipped), failing after wait.
func (c *client) next(t *testing.T) msg {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case m := <-c.msgs:
			if m.heartbeat {
				continue
			}
			if m.id != "" {
				c.cursor = m.id
			} else if !m.gap {
				c.cursor = strconv.FormatUint(m.seq, 10)
			}
			return m
		case <-c.done:
			select {
			case m := <-c.msgs:
				c.msgs <- m // keep order: read it on the next call
				continue
			default:
			}
			t.Fatalf("stream ended: %v", c.err)
		case <-deadline:
			t.Fatalf("no message within %v", wait)
		}
	}
}

// eventually polls cond until it holds or wait passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", wait, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// frameOf is the frame the server published with seq.
func frameOf(t *testing.T, r *running, seq uint64) *feed.Frame {
	t.Helper()
	frames, gap, _ := r.srv.Feed().Ring().Read(seq-1, nil, nil, 1)
	if gap != nil || len(frames) != 1 || frames[0].Seq != seq {
		t.Fatalf("seq %d no longer retained", seq)
	}
	return frames[0]
}

// TestTickBytes: every implementation sends each tick's JSON exactly as
// the feed encoded it, in seq order; an SSE implementation that claims
// resume uses the seq as event id, the id a client resumes from; and the
// deliveries metric counts exactly where the registry says it does.
func TestTickBytes(t *testing.T) {
	for _, im := range impls.List() {
		t.Run(im.Transport+"/"+im.Name, func(t *testing.T) {
			r := start(t, im, server.Config{})
			c := subscribe(t, r, im.Transport, url.Values{}, "")
			var last uint64
			for range 20 {
				m := c.next(t)
				if m.gap {
					t.Fatal("gap on a fresh subscription")
				}
				if want := frameOf(t, r, m.seq).JSON; string(m.json) != string(want) {
					t.Fatalf("tick %d bytes\n got %s\nwant %s", m.seq, m.json, want)
				}
				if last != 0 && m.seq <= last {
					t.Fatalf("seq %d after %d", m.seq, last)
				}
				last = m.seq
				if im.Transport == "sse" && im.Has(host.Resume) && m.id != strconv.FormatUint(m.seq, 10) {
					t.Fatalf("sse id %q for seq %d", m.id, m.seq)
				}
			}
			// The deliveries metric counts where the registry says it can.
			if n := r.srv.Metrics().For(im.Transport).DeliveredTotal(); (im.Deliveries == impls.CountNone) != (n == 0) {
				t.Fatalf("deliveries counted %q, yet pushbench_deliveries_total is %d after 20 ticks received", im.Deliveries, n)
			}
		})
	}
}

// TestResume: a client that reconnects with the resume point it was given
// (the last SSE id, WebSocket seq, poll cursor) continues exactly after
// its last tick where the implementation claims resume; elsewhere the
// reconnect shows the consequence: a hole or a duplicate.
func TestResume(t *testing.T) {
	for _, im := range impls.List() {
		t.Run(im.Transport+"/"+im.Name, func(t *testing.T) {
			r := start(t, im, server.Config{})
			c := subscribe(t, r, im.Transport, url.Values{}, "")
			var last uint64
			for range 5 {
				last = c.next(t).seq
			}
			c.close()
			ring := r.srv.Feed().Ring()
			eventually(t, "five more ticks published", func() bool { return ring.Newest() >= last+5 })
			q, header := url.Values{}, ""
			switch im.Transport {
			case "sse":
				header = c.cursor
			case "ws":
				q.Set("since", c.cursor)
			case "poll":
				q.Set("cursor", c.cursor)
			}
			c2 := subscribe(t, r, im.Transport, q, header)
			first := c2.next(t)
			if im.Has(host.Resume) {
				if first.gap || first.seq != last+1 {
					t.Fatalf("claims resume: after seq %d reconnected at %d (gap %v)", last, first.seq, first.gap)
				}
				return
			}
			if first.seq == last+1 {
				t.Fatalf("resume not claimed, yet the reconnect continued at %d after %d", first.seq, last)
			}
			t.Logf("without resume: after seq %d the reconnect got seq %d", last, first.seq)
		})
	}
}

// TestGap: a resume point older than the history gets a gap signal first
// where claimed; elsewhere the loss is silent.
func TestGap(t *testing.T) {
	for _, im := range impls.List() {
		t.Run(im.Transport+"/"+im.Name, func(t *testing.T) {
			r := start(t, im, server.Config{Feed: feed.Config{History: 16}, Heartbeat: time.Hour, Ping: time.Hour})
			ring := r.srv.Feed().Ring()
			eventually(t, "the first ticks evicted", func() bool { return ring.Oldest() > 10 })
			q, header := url.Values{}, ""
			switch im.Transport {
			case "sse":
				header = "2"
			case "ws":
				q.Set("since", "2")
			case "poll":
				q.Set("cursor", "2")
			}
			c := subscribe(t, r, im.Transport, q, header)
			first := c.next(t)
			if im.Has(host.Gap) != first.gap {
				t.Fatalf("claims gap %v, first message after an evicted resume point is a gap: %v (seq %d)", im.Has(host.Gap), first.gap, first.seq)
			}
		})
	}
}

// TestFilters: ?symbols=X limits the stream to X where claimed (and an
// unknown symbol is a 400); elsewhere other symbols come through.
func TestFilters(t *testing.T) {
	for _, im := range impls.List() {
		t.Run(im.Transport+"/"+im.Name, func(t *testing.T) {
			r := start(t, im, server.Config{Feed: feed.Config{Symbols: 4}, Heartbeat: time.Hour, Ping: time.Hour})
			sym := r.srv.Feed().Symbols()[0]
			c := subscribe(t, r, im.Transport, url.Values{"symbols": {sym}}, "")
			others := 0
			for range 30 {
				if m := c.next(t); !m.gap && m.sym != sym {
					others++
				}
			}
			if im.Has(host.Filters) != (others == 0) {
				t.Fatalf("claims filters %v, got %d ticks of other symbols than %s in 30", im.Has(host.Filters), others, sym)
			}
			if im.Has(host.Filters) {
				if _, status := trySubscribe(t, r, im.Transport, url.Values{"symbols": {"NOPE"}}, ""); status != http.StatusBadRequest {
					t.Fatalf("unknown symbol: status %d, want 400", status)
				}
			}
		})
	}
}

// TestHeartbeat: with a short heartbeat (SSE) or ping (WebSocket) period
// and a feed much slower than it, a claiming implementation sends keep-
// alives between ticks; the others send none.
func TestHeartbeat(t *testing.T) {
	for _, im := range impls.List() {
		if im.Transport == "poll" {
			continue // a poll is a request: there is nothing to keep alive
		}
		t.Run(im.Transport+"/"+im.Name, func(t *testing.T) {
			// gorilla's chat example waits only a ninth of the ping period
			// longer for the pong (pongWait = period*10/9): at 20 ms a
			// loaded CI machine missed that 2 ms and the hub dropped the
			// client. 500 ms pings leave 55 ms, and three of them still
			// come before three ticks at 1 tick/s.
			r := start(t, im, server.Config{Feed: feed.Config{Rate: 1}, Heartbeat: 20 * time.Millisecond, Ping: 500 * time.Millisecond})
			c := subscribe(t, r, im.Transport, url.Values{}, "")
			beats, ticks := 0, 0
			deadline := time.After(wait)
			for ticks < 3 && beats < 3 {
				select {
				case m := <-c.msgs:
					if m.heartbeat {
						beats++
					} else {
						ticks++
					}
				case <-c.done:
					t.Fatalf("stream ended: %v", c.err)
				case <-deadline:
					t.Fatal("neither 3 ticks nor 3 heartbeats")
				}
			}
			if im.Has(host.Heartbeat) != (beats >= 3) {
				t.Fatalf("claims heartbeat %v: %d keep-alives before %d ticks at 1 tick/s (SSE heartbeat 20ms, WebSocket ping 500ms)", im.Has(host.Heartbeat), beats, ticks)
			}
		})
	}
}

// stalled opens a stream over a raw socket with a tiny receive buffer and
// never reads it, the way a stalled client behaves.
func stalled(t *testing.T, r *running, transport string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// Connection: close, so that a stream the server ends also closes.
	req := "GET /sse HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	if transport == "ws" {
		req = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	}
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	return conn
}

// TestSlowClient: a client that stops reading is dropped where claimed
// (the server closes its connection) while a healthy client keeps
// receiving; elsewhere it is still connected when the healthy client has
// been owed many ticks more than the stalled one's buffers hold.
func TestSlowClient(t *testing.T) {
	for _, im := range impls.List() {
		if im.Transport == "poll" {
			continue // a poll that is not read holds one answer, nothing more
		}
		t.Run(im.Transport+"/"+im.Name, func(t *testing.T) {
			r := start(t, im, server.Config{Feed: feed.Config{Rate: 5000, History: 1024}, WriteTimeout: 300 * time.Millisecond,
				Heartbeat: time.Hour, Ping: time.Hour})
			conn := stalled(t, r, im.Transport)
			// The stalled client is dropped once the server closes its
			// end: drain what the kernel holds, then read EOF or a reset.
			dropped := make(chan error, 1)
			go func() {
				// Stall first: read nothing until the server had time to fill
				// every buffer, as long as 20000 ticks take to publish.
				ring := r.srv.Feed().Ring()
				start := ring.Newest()
				for ring.Newest() < start+20000 {
					time.Sleep(10 * time.Millisecond)
				}
				// A dropped stream ends within this; an open one keeps
				// sending until it. Draining a dropped stream's kernel
				// buffers through a 4 KiB window takes some 30 round trips,
				// which under the race detector on a loaded machine took
				// over 3 s in CI: the bound leaves room for that.
				_ = conn.SetReadDeadline(time.Now().Add(8 * time.Second))
				_, err := io.Copy(io.Discard, conn)
				dropped <- err
			}()
			var err error
			select {
			case err = <-dropped:
			case <-time.After(2 * wait):
				t.Fatal("stalled reader never finished")
			}
			var ne net.Error
			timedOut := errors.As(err, &ne) && ne.Timeout()
			if im.Has(host.SlowDrop) == timedOut {
				t.Fatalf("claims slow-client drop %v; after stalling for 20000 ticks the stream %s", im.Has(host.SlowDrop),
					map[bool]string{true: "was still open", false: fmt.Sprintf("was closed (%v)", err)}[timedOut])
			}
		})
	}
}

// leaksAtShutdown are the implementations whose library leaves a goroutine
// per subscriber behind when it is closed: r3labs' handler starts one that
// waits for the request to end and then sends on the stream's deregister
// channel, which nobody reads once the stream is closed.
// The value is the function they are left blocked in.
var leaksAtShutdown = map[string]string{"sse/r3labs": "r3labs/sse/v2.(*Subscriber).close"}

// stacksIn counts the goroutines whose stack has fn.
func stacksIn(fn string) int {
	buf := make([]byte, 1<<22)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// TestShutdown: with clients connected, shutdown ends every stream and the
// process returns to its goroutine count from before the server started
// (except where the library leaks: then the test shows the leak).
func TestShutdown(t *testing.T) {
	for _, im := range impls.List() {
		t.Run(im.Transport+"/"+im.Name, func(t *testing.T) {
			base := runtime.NumGoroutine()
			leak := leaksAtShutdown[im.Transport+"/"+im.Name]
			leakedBefore := 0 // by earlier tests of the same library
			if leak != "" {
				leakedBefore = stacksIn(leak)
			}
			r := start(t, im, server.Config{})
			var cs []*client
			for range 10 {
				c := subscribe(t, r, im.Transport, url.Values{}, "")
				c.next(t)
				cs = append(cs, c)
			}
			r.stop()
			for _, c := range cs {
				select {
				case <-c.done:
				case <-time.After(wait):
					t.Fatal("a stream outlived the shutdown")
				}
			}
			if leak != "" {
				leaked := 0
				eventually(t, "the server's own goroutines end", func() bool {
					leaked = stacksIn(leak) - leakedBefore
					return runtime.NumGoroutine()-leaked <= base
				})
				if leaked != len(cs) {
					t.Fatalf("listed as leaking a goroutine per subscriber in %s, found %d for %d subscribers", leak, leaked, len(cs))
				}
				return
			}
			deadline := time.Now().Add(wait)
			for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > base {
				buf := make([]byte, 1<<20)
				t.Fatalf("%d goroutines after shutdown, %d before start:\n%s", n, base, buf[:runtime.Stack(buf, true)])
			}
		})
	}
}
