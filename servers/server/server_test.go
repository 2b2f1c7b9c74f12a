package server_test

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"

	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/protocol"
	"github.com/pushbench/pushbench/servers/server"
)

const testSeed = 7

type testServer struct {
	srv  *server.Server
	hs   *httptest.Server
	base string
	// Set by startOver: the protocol, the clients for SSE and polls
	// (client) and for WebSocket handshakes (h1), and closeIdle, which
	// closes a shared client's idle connections.
	proto      proto
	client, h1 func() *http.Client
	closeIdle  func()
	roots      *x509.CertPool // trusts the server's certificate (TLS)
}

func startServer(t testing.TB, cfg server.Config) *testServer {
	t.Helper()
	if cfg.Feed.Seed == 0 {
		cfg.Feed.Seed = testSeed
	}
	if cfg.Feed.Rate == 0 {
		cfg.Feed.Rate = 500
	}
	srv, stopRun := runServer(t, cfg)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		hs.Close()
		stopRun()
	})
	return &testServer{srv: srv, hs: hs, base: hs.URL}
}

// runServer builds a server of cfg and runs its feed until stop, which
// waits for Run to return; it returns once the feed publishes.
func runServer(t testing.TB, cfg server.Config) (srv *server.Server, stop func()) {
	t.Helper()
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		if err := srv.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	<-srv.Feed().Ready()
	return srv, func() { cancel(); <-runDone }
}

func ptr(v uint64) *uint64 { return &v }

// subscribeMany subscribes n clients of tr, 50 at a time, with o, and
// fails the test unless every one was answered 200.
func subscribeMany(t *testing.T, base, tr string, n int, o subOpts) []*sub {
	t.Helper()
	subs := make([]*sub, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	for i := range subs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			subs[i], errs[i] = trySubscribe(t, base, tr, o)
		})
	}
	wg.Wait()
	for i := range subs {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		if subs[i].status != 200 {
			t.Fatalf("client %d: status %d", i, subs[i].status)
		}
	}
	return subs
}

// expected replays the feed's generator: the (sym, price) of seqs 1..n.
func expected(t testing.TB, seed uint64, symbols, n int) []feed.Tick {
	t.Helper()
	g, err := feed.NewGenerator(seed, symbols)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]feed.Tick, n)
	for i := range out {
		out[i] = g.Next()
	}
	return out
}

func priceString(cents int64) string { return fmt.Sprintf("%d.%02d", cents/100, cents%100) }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSameTicksOnEveryTransport reads seqs 1..N from one server over the
// three transports: each gets every tick once, in order, with the
// generator's (sym, price) and byte-identical JSON across transports.
func TestSameTicksOnEveryTransport(t *testing.T) {
	const n = 200
	want := expected(t, testSeed, 20, n)
	names := feed.SymbolNames(20)
	raws := map[string][]string{}
	for _, p := range protos {
		ts := startOver(t, p, server.Config{Transport: "all", Feed: feed.Config{Symbols: 20}})
		for _, tr := range p.transports() {
			t.Run(p.name+"/"+tr, func(t *testing.T) {
				s := subscribe(t, ts.base, tr, ts.opts(subOpts{resume: ptr(0)}))
				if s.status != 200 {
					t.Fatalf("status %d", s.status)
				}
				for i := 0; i < n; i++ {
					m := s.next(t, 5*time.Second)
					if m.gap != nil {
						t.Fatalf("unexpected gap %+v", *m.gap)
					}
					w := want[i]
					if m.tick.Seq != w.Seq || m.tick.Sym != names[w.Sym] || strconv.FormatFloat(m.tick.Price, 'f', 2, 64) != priceString(w.Price) {
						t.Fatalf("tick %d = %s, want seq %d %s %s", i, m.raw, w.Seq, names[w.Sym], priceString(w.Price))
					}
					w.TS = m.tick.TS
					if got := string(feed.AppendJSON(nil, w, names[w.Sym])); got != m.raw {
						t.Fatalf("tick JSON %s, want %s", m.raw, got)
					}
					raws[p.name+"/"+tr] = append(raws[p.name+"/"+tr], m.raw)
				}
			})
		}
	}
	// Each protocol has its server, whose start stamps the ticks' ts: the
	// bytes compare within one server.
	for k, v := range raws {
		p, _, _ := strings.Cut(k, "/")
		if !slices.Equal(raws[p+"/sse"], v) {
			t.Errorf("%s sent other bytes for the same ticks than %s/sse", k, p)
		}
	}
}

// TestResume disconnects after 20 ticks and resumes: the first tick after
// the resume point follows on without a hole or a duplicate.
func TestResume(t *testing.T) {
	cases := []struct {
		name, transport string
		viaQuery        bool
	}{{"sse/Last-Event-ID", "sse", false}, {"sse/lastEventId", "sse", true}, {"ws/since", "ws", false}, {"poll/cursor", "poll", false}}
	for _, p := range protos {
		for _, tc := range cases {
			if p.h2 && tc.transport == "ws" {
				continue
			}
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				ts := startOver(t, p, server.Config{Transport: tc.transport})
				s := subscribe(t, ts.base, tc.transport, ts.opts(subOpts{resume: ptr(0)}))
				var last uint64
				for range 20 {
					last = s.next(t, 5*time.Second).tick.Seq
				}
				s.close()
				// Let the feed move on, so that the resume replays from history.
				waitFor(t, 5*time.Second, "feed to move on", func() bool { return ts.srv.Feed().Ring().Newest() > last+50 })
				s2 := subscribe(t, ts.base, tc.transport, ts.opts(subOpts{resume: ptr(last), viaQuery: tc.viaQuery}))
				for i := range 100 {
					m := s2.next(t, 5*time.Second)
					if m.gap != nil || m.tick.Seq != last+1+uint64(i) {
						t.Fatalf("after resume at %d: message %d is %q, want seq %d", last, i, m.raw, last+1+uint64(i))
					}
				}
			})
		}
	}
}

// TestResumeBeyondNewest: a resume point from an earlier run of the server
// waits for the feed to reach it and then continues after it.
func TestResumeBeyondNewest(t *testing.T) {
	forEach(t, func(t *testing.T, p proto, tr string) {
		{
			ts := startOver(t, p, server.Config{Transport: tr})
			from := ts.srv.Feed().Ring().Newest() + 300
			s := subscribe(t, ts.base, tr, ts.opts(subOpts{resume: ptr(from)}))
			for i := range 10 {
				if m := s.next(t, 5*time.Second); m.gap != nil || m.tick.Seq != from+1+uint64(i) {
					t.Fatalf("message %d is %q, want seq %d", i, m.raw, from+1+uint64(i))
				}
			}
		}
	})
}

// TestGapSignal resumes from a point the small history no longer holds.
func TestGapSignal(t *testing.T) {
	forEach(t, func(t *testing.T, p proto, tr string) {
		{
			ts := startOver(t, p, server.Config{Transport: tr, Feed: feed.Config{History: 16, Rate: 1000}})
			waitFor(t, 5*time.Second, "100 ticks", func() bool { return ts.srv.Feed().Ring().Newest() > 100 })
			s := subscribe(t, ts.base, tr, ts.opts(subOpts{resume: ptr(5)}))
			m := s.next(t, 5*time.Second)
			if m.gap == nil || m.gap.From != 6 || m.gap.To <= 85 {
				t.Fatalf("first message %q, want a gap from 6 to past 85", m.raw)
			}
			next := s.next(t, 5*time.Second)
			if next.gap != nil || next.tick.Seq != m.gap.To {
				t.Fatalf("after gap to %d got %q", m.gap.To, next.raw)
			}
			// A gap at a reconnecting client's resume point is no drop; a
			// poll's cursor is where its previous answer ended, so there it is.
			want := 0.0
			if tr == "poll" {
				want = 1
			}
			if got := ts.scrape(t, "pushbench_drops_total", `cause="gap",transport="`+tr+`"`); got != want {
				t.Errorf("drops_total{cause=gap} = %v after a resume gap, want %v", got, want)
			}
		}
	})
}

func TestSymbolFilter(t *testing.T) {
	const symbols = 16
	want := expected(t, testSeed, symbols, 2000)
	names := feed.SymbolNames(symbols)
	var wantSeqs []uint64
	for _, w := range want {
		if names[w.Sym] == "MSFT" || names[w.Sym] == "TSLA" {
			wantSeqs = append(wantSeqs, w.Seq)
		}
	}
	forEach(t, func(t *testing.T, p proto, tr string) {
		ts := startOver(t, p, server.Config{Transport: tr, Feed: feed.Config{Symbols: symbols, Rate: 2000}})
		s := subscribe(t, ts.base, tr, ts.opts(subOpts{resume: ptr(0), symbols: "MSFT,TSLA"}))
		for i := range 60 {
			m := s.next(t, 5*time.Second)
			if m.gap != nil || m.tick.Seq != wantSeqs[i] || (m.tick.Sym != "MSFT" && m.tick.Sym != "TSLA") {
				t.Fatalf("message %d is %q, want seq %d (MSFT or TSLA)", i, m.raw, wantSeqs[i])
			}
		}
	})
}

func TestBadInputIs400(t *testing.T) {
	ts := startServer(t, server.Config{Transport: "all"})
	cases := []struct {
		path, header, mention string
	}{
		{"/sse", "abc", "Last-Event-ID"},
		{"/sse", "-1", "Last-Event-ID"},
		{"/sse?lastEventId=1.5", "", "lastEventId"},
		{"/sse?symbols=NOPE", "", "symbols"},
		{"/sse?symbols=", "", "symbols"},
		{"/ws?since=x", "", "since"},
		{"/ws?since=99999999999999999999", "", "since"},
		{"/ws?symbols=AAPL,,MSFT", "", "symbols"},
		{"/poll?cursor=-3", "", "cursor"},
		{"/poll?timeout=abc", "", "timeout"},
		{"/poll?timeout=-1s", "", "timeout"},
		{"/poll?max=0", "", "max"},
		{"/poll?max=100000", "", "max"},
		{"/poll?symbols=ZZZZ", "", "symbols"},
	}
	for _, tc := range cases {
		t.Run(tc.path+tc.header, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, ts.base+tc.path, nil)
			if tc.header != "" {
				req.Header.Set("Last-Event-ID", tc.header)
			}
			resp, err := httpClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), tc.mention) {
				t.Fatalf("status %d body %q; want 400 mentioning %s", resp.StatusCode, body, tc.mention)
			}
			if strings.HasPrefix(tc.path, "/poll") {
				var e struct{ Error string }
				if json.Unmarshal(body, &e) != nil || e.Error == "" {
					t.Errorf("poll error body %q is not {\"error\":...}", body)
				}
			}
		})
	}
}

// TestMalformedQueryIs400: a query that url.ParseQuery refuses is a 400 on
// every transport, never a stream that silently lost its resume point.
func TestMalformedQueryIs400(t *testing.T) {
	ts := startServer(t, server.Config{Transport: "all"})
	for _, path := range []string{
		"/sse?lastEventId=%zz", "/sse?symbols=AAPL;lastEventId=5",
		"/ws?since=%zz", "/ws?since=5;symbols=AAPL",
		"/poll?cursor=%zz", "/poll?cursor=5;timeout=0",
	} {
		t.Run(path, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := httpClient().Do(newGet(ctx, ts.base, path))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), "malformed query") {
				t.Errorf("body %q does not say the query is malformed", body)
			}
		})
	}
}

func TestOtherTransportsPathsAre404(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ts := startServer(t, server.Config{Transport: tr})
			for _, other := range transports {
				if other == tr {
					continue
				}
				resp, err := httpClient().Get(ts.base + "/" + other)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNotFound {
					t.Errorf("%s server: /%s status %d, want 404", tr, other, resp.StatusCode)
				}
			}
			resp, err := httpClient().Get(ts.base + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("/healthz status %d", resp.StatusCode)
			}
		})
	}
}

func TestSSEWireFormat(t *testing.T) {
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			ts := startOver(t, p, server.Config{Transport: "sse", Retry: 1500 * time.Millisecond, Heartbeat: 50 * time.Millisecond,
				Feed: feed.Config{Rate: 1}})
			resp, err := ts.client().Get(ts.base + "/sse?symbols=AAPL")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if want := map[bool]int{false: 1, true: 2}[p.h2]; resp.ProtoMajor != want {
				t.Errorf("answered over %s, want HTTP/%d", resp.Proto, want)
			}
			for k, v := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			br := bufio.NewReader(resp.Body)
			head := make([]byte, len("retry: 1500\n\n: ping\n\n"))
			if _, err := io.ReadFull(br, head); err != nil {
				t.Fatal(err)
			}
			if string(head) != "retry: 1500\n\n: ping\n\n" {
				t.Fatalf("stream starts %q, want the retry hint then a heartbeat", head)
			}
		})
	}
}

// tinyReceiveBuffer dials with a 2 KiB receive buffer, so that a client
// that stops reading blocks the server's writes soon.
func tinyReceiveBuffer() *net.Dialer {
	return &net.Dialer{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048) })
		if err != nil {
			return err
		}
		return serr
	}}
}

// stalledConn opens a raw connection with a tiny receive buffer, sends
// request, and then never reads.
func stalledConn(t *testing.T, addr, request string) net.Conn {
	t.Helper()
	d := tinyReceiveBuffer()
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestStalledClientDoesNotDelayOthers: clients that never read sit beside a
// client that does; the reader gets every tick, on time, while the stalled
// clients' writes block on their full socket buffers.
func TestStalledClientDoesNotDelayOthers(t *testing.T) {
	requests := map[string]string{
		"sse":  rawGet("/sse?lastEventId=0"),
		"ws":   rawGet("/ws?since=0"),
		"poll": rawGet("/poll?cursor=0&max=10000"),
	}
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			const rate = 2000
			ts := startServer(t, server.Config{Transport: tr, Feed: feed.Config{Rate: rate, Symbols: 64, History: 1 << 16}})
			addr := strings.TrimPrefix(ts.base, "http://")
			for range 5 {
				stalledConn(t, addr, requests[tr])
			}
			s := subscribe(t, ts.base, tr, subOpts{resume: ptr(0)})
			// 4 s of ticks: far longer than the stalled sockets take to fill.
			var worst time.Duration
			for i := range 4 * rate {
				m := s.next(t, 5*time.Second)
				if m.gap != nil || m.tick.Seq != uint64(i+1) {
					t.Fatalf("message %d is %q", i, m.raw)
				}
				if i > rate/2 { // past the catch-up of the first ticks
					worst = max(worst, time.Since(time.Unix(0, m.tick.TS)))
				}
			}
			// Generous: a publisher coupled to the stalled clients would be
			// late by the 10 s write timeout, not by a scheduling hiccup.
			if worst > 2*time.Second {
				t.Errorf("reader's worst latency %v beside stalled clients", worst)
			}
		})
	}
}

// TestGoroutinesReturnToIdle: 500 clients connect and leave; the server
// goes back to its idle goroutine count and releases every slot.
func TestGoroutinesReturnToIdle(t *testing.T) {
	forEach(t, func(t *testing.T, p proto, tr string) {
		n := 500
		if p.name != "h1" {
			n = 100 // the same code paths; fewer handshakes on a shared machine
		}
		// A slow feed: 500 clients under the race detector on a shared
		// 2-core machine must not saturate the server.
		ts := startOver(t, p, server.Config{Transport: tr, Feed: feed.Config{Rate: 20}})
		idle := runtime.NumGoroutine()
		t0 := time.Now()
		defer func() { t.Logf("total %v", time.Since(t0)) }()
		subs := subscribeMany(t, ts.base, tr, n, ts.opts(subOpts{}))
		if tr != "poll" {
			waitFor(t, time.Minute, "every client open", func() bool { return ts.srv.Open() == int64(n) })
		}
		t.Logf("subscribed %v", time.Since(t0))
		for _, s := range subs {
			s.next(t, time.Minute)
		}
		t.Logf("received %v", time.Since(t0))
		var wg sync.WaitGroup
		for _, s := range subs {
			wg.Go(s.close)
		}
		wg.Wait()
		t.Logf("closed %v", time.Since(t0))
		waitFor(t, time.Minute, "slots released", func() bool { return ts.srv.Open() == 0 })
		if ts.closeIdle != nil {
			ts.closeIdle() // the HTTP/2 connections the streams were on
		}
		waitFor(t, time.Minute, "idle goroutine count", func() bool { return runtime.NumGoroutine() <= idle })
	})
}

func TestShutdown(t *testing.T) {
	forEach(t, func(t *testing.T, p proto, tr string) {
		ts := startOver(t, p, server.Config{Transport: tr})
		switch tr {
		case "sse":
			s := subscribe(t, ts.base, "sse", ts.opts(subOpts{}))
			s.next(t, 5*time.Second)
			go ts.srv.Shutdown(context.Background())
			if err, ok := s.ended(5 * time.Second); !ok || err != io.EOF {
				t.Fatalf("stream did not end cleanly on shutdown: ended=%v err=%v", ok, err)
			}
		case "ws":
			s := subscribe(t, ts.base, "ws", ts.opts(subOpts{}))
			s.next(t, 5*time.Second)
			go ts.srv.Shutdown(context.Background())
			if _, ok := s.ended(5 * time.Second); !ok || s.closeCode != websocket.CloseGoingAway {
				t.Fatalf("close code %d (ended %v), want 1001", s.closeCode, ok)
			}
		case "poll":
			cursor := ts.srv.Feed().Ring().Newest() + 1_000_000 // nothing for a long time: the poll is held
			type answer struct {
				status int
				body   string
				err    error
			}
			got := make(chan answer, 1)
			go func() {
				resp, err := ts.client().Get(fmt.Sprintf("%s/poll?cursor=%d&timeout=60s", ts.base, cursor))
				if err != nil {
					got <- answer{err: err}
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				got <- answer{resp.StatusCode, string(b), err}
			}()
			waitFor(t, 5*time.Second, "poll held", func() bool { return ts.srv.Open() == 1 })
			go ts.srv.Shutdown(context.Background())
			select {
			case a := <-got:
				want := fmt.Sprintf(`{"cursor":%d,"ticks":[]}`+"\n", cursor)
				if a.err != nil || a.status != 200 || a.body != want {
					t.Fatalf("held poll answered %d %q %v, want 200 %q", a.status, a.body, a.err, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("held poll not answered on shutdown")
			}
		}
	})
}

// TestShutdownClosesEveryWebSocket: with hundreds of clients open, every
// one of them gets the 1001 close frame, not a bare TCP close.
func TestShutdownClosesEveryWebSocket(t *testing.T) {
	const n = 400
	// One tick a second: nobody drains the clients' 1024-message buffers,
	// and a client whose buffer is full stops reading (and would miss the
	// close frame) on a machine slow enough to take minutes.
	ts := startServer(t, server.Config{Transport: "ws", Feed: feed.Config{Rate: 1}})
	subs := subscribeMany(t, ts.base, "ws", n, subOpts{})
	waitFor(t, time.Minute, "every client open", func() bool { return ts.srv.Open() == n })
	if err := ts.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i, s := range subs {
		if _, ok := s.ended(10 * time.Second); !ok || s.closeCode != websocket.CloseGoingAway {
			if bad++; bad <= 5 {
				t.Errorf("client %d: close code %d (ended %v, %v), want 1001", i, s.closeCode, ok, s.err)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d clients got no 1001", bad, n)
	}
}

// scrape reads one sample of /metrics (labels as exposed: sorted by name)
// and fails the test if it is absent.
func scrape(t testing.TB, base, name, labels string) float64 {
	t.Helper()
	return scrapeWith(t, httpClient(), base, name, labels)
}

// scrape is scrape over ts's protocol.
func (ts *testServer) scrape(t testing.TB, name, labels string) float64 {
	t.Helper()
	return scrapeWith(t, ts.client(), ts.base, name, labels)
}

func scrapeWith(t testing.TB, c *http.Client, base, name, labels string) float64 {
	t.Helper()
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	prefix := name + "{" + labels + "} "
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s%s: %v", prefix, v, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", prefix)
	return 0
}

// TestDropsMetricExistsAtZero: every transport and cause is exposed before
// the first drop, and so is every cause of write_errors_total.
func TestDropsMetricExistsAtZero(t *testing.T) {
	ts := startServer(t, server.Config{Transport: "all"})
	for _, tr := range transports {
		for _, cause := range []string{"write_timeout", "gap", "flood"} {
			if v := scrape(t, ts.base, "pushbench_drops_total", `cause="`+cause+`",transport="`+tr+`"`); v != 0 {
				t.Errorf("drops %s/%s = %v on a new server", tr, cause, v)
			}
		}
		for _, cause := range []string{"timeout", "departed", "other"} {
			if v := scrape(t, ts.base, "pushbench_write_errors_total", `cause="`+cause+`",transport="`+tr+`"`); v != 0 {
				t.Errorf("write errors %s/%s = %v on a new server", tr, cause, v)
			}
		}
	}
}

// TestSlowClientDrops: a streaming client that stops reading is counted as
// a drop: with a short write timeout it is disconnected (write_timeout);
// with a long one it falls behind the history and, once it reads again,
// gets a gap (gap).
func TestSlowClientDrops(t *testing.T) {
	for _, tr := range []string{"sse", "ws"} {
		for _, cause := range []string{"write_timeout", "gap"} {
			t.Run(tr+"/"+cause, func(t *testing.T) {
				const rate = 5000
				cfg := server.Config{Transport: tr, WriteTimeout: 30 * time.Second,
					Feed: feed.Config{Rate: rate, Symbols: 64, History: 4096}}
				if cause == "write_timeout" {
					cfg.WriteTimeout = 300 * time.Millisecond
				}
				ts := startServer(t, cfg)
				c := stalledConn(t, strings.TrimPrefix(ts.base, "http://"), rawGet("/"+tr))
				m := ts.srv.Metrics().For(tr)
				ring := ts.srv.Feed().Ring()
				labels := `cause="` + cause + `",transport="` + tr + `"`
				if cause == "write_timeout" {
					waitFor(t, time.Minute, "the drop", func() bool { return scrape(t, ts.base, "pushbench_drops_total", labels) == 1 })
					if v := scrape(t, ts.base, "pushbench_write_errors_total", `cause="timeout",transport="`+tr+`"`); v != 1 {
						t.Errorf("write_errors_total{cause=timeout} = %v, want 1", v)
					}
					return
				}
				// Blocked (the feed is far ahead of what was written), then
				// more than the history behind; then read again.
				waitFor(t, time.Minute, "the writer to block", func() bool { return ring.Newest() > uint64(m.DeliveredTotal())+2000 })
				behind := ring.Newest() + 4096
				waitFor(t, time.Minute, "the history to move on", func() bool { return ring.Newest() > behind })
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				br := bufio.NewReaderSize(c, 64<<10)
				for {
					line, err := br.ReadSlice('}')
					if err != nil && err != bufio.ErrBufferFull {
						t.Fatalf("no gap before %v", err)
					}
					if strings.Contains(string(line), `"from":`) {
						break
					}
				}
				waitFor(t, 5*time.Second, "drops_total{"+labels+"} = 1", func() bool {
					return scrape(t, ts.base, "pushbench_drops_total", labels) == 1
				})
			})
		}
	}
}

// TestMaxConns: past -max-conns a client gets 503 and the refusal is counted.
func TestMaxConns(t *testing.T) {
	forEach(t, func(t *testing.T, p proto, tr string) {
		{
			ts := startOver(t, p, server.Config{Transport: tr, MaxConns: 2})
			far := ts.srv.Feed().Ring().Newest() + 1_000_000 // keeps polls held
			for range 2 {
				if tr != "poll" {
					subscribe(t, ts.base, tr, ts.opts(subOpts{resume: ptr(far)}))
					continue
				}
				// A poll that waits for a far cursor is held until canceled.
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				t.Cleanup(func() { cancel(); <-done })
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/poll?cursor=%d&timeout=60s", ts.base, far), nil)
				go func() {
					defer close(done)
					if resp, err := ts.client().Do(req); err == nil {
						resp.Body.Close()
					}
				}()
			}
			waitFor(t, 5*time.Second, "2 admitted", func() bool { return ts.srv.Open() == 2 })
			path := map[string]string{"sse": "/sse", "ws": "/ws", "poll": "/poll?timeout=10s"}[tr]
			client, label := ts.client(), protocol.H1
			if tr == "ws" {
				client = ts.h1()
			} else if p.h2 {
				label = protocol.H2
			}
			resp, err := client.Do(newGet(context.Background(), ts.base, path))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("third client: status %d, want 503", resp.StatusCode)
			}
			var m dto.Metric
			if err := ts.srv.Metrics().Refused.WithLabelValues(tr, "max_conns", label).Write(&m); err != nil {
				t.Fatal(err)
			}
			if refused := m.GetCounter().GetValue(); refused != 1 {
				t.Fatalf("refused counter %v, want 1", refused)
			}
		}
	})
}

// TestWebSocketPongKeepsWriteTimeout: a client that stops reading but sends
// a ping keeps its connection for the write timeout. The server's pong
// reply must not cut the blocked tick write short (gorilla writes pongs with
// a one-second deadline of its own), and no byte of the stream may be lost:
// once the client reads again it gets the pong and every tick in order.
func TestWebSocketPongKeepsWriteTimeout(t *testing.T) {
	const rate = 5000
	ts := startServer(t, server.Config{Transport: "ws", WriteTimeout: 20 * time.Second,
		Feed: feed.Config{Rate: rate, Symbols: 64, History: 1 << 17}})
	d := websocket.Dialer{NetDialContext: tinyReceiveBuffer().DialContext}
	c, _, err := d.Dial("ws"+strings.TrimPrefix(ts.base, "http")+"/ws?since=0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pong := make(chan struct{}, 1)
	c.SetPongHandler(func(string) error { pong <- struct{}{}; return nil })
	// The writer is blocked once the feed is far ahead of what was written:
	// a writer that is not blocked delivers each tick within a batch.
	m := ts.srv.Metrics().For("ws")
	ring := ts.srv.Feed().Ring()
	waitFor(t, 30*time.Second, "the tick writer to block", func() bool {
		return ring.Newest() > uint64(m.DeliveredTotal())+2000
	})
	if err := c.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	// Stay stalled past gorilla's one-second pong deadline, well inside the
	// 20 s write timeout: the server must keep the client.
	time.Sleep(2500 * time.Millisecond)
	until := ring.Newest()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for want := uint64(1); want <= until; want++ {
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("stream ended at seq %d of %d: %v", want, until, err)
		}
		m := parseTick(t, string(data))
		if m.gap != nil || m.tick.Seq != want {
			t.Fatalf("got %s, want seq %d", data, want)
		}
	}
	select {
	case <-pong:
	default:
		t.Error("no pong among the messages read")
	}
}

// TestWebSocketFloodIs1008: a client that floods small frames (data or
// pings) is closed with 1008 and counted as a flood drop.
func TestWebSocketFloodIs1008(t *testing.T) {
	for _, kind := range []string{"text", "ping"} {
		t.Run(kind, func(t *testing.T) {
			ts := startServer(t, server.Config{Transport: "ws", Feed: feed.Config{Rate: 10}})
			c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.base, "http")+"/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			readErr := make(chan error, 1)
			go func() {
				_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
				for {
					if _, _, err := c.ReadMessage(); err != nil {
						readErr <- err
						return
					}
				}
			}()
			send := func() error {
				if kind == "ping" {
					return c.WriteControl(websocket.PingMessage, []byte("x"), time.Now().Add(time.Second))
				}
				return c.WriteMessage(websocket.TextMessage, []byte("x"))
			}
			// Writes may fail once the server has closed.
			for range 10000 {
				if send() != nil {
					break
				}
			}
			err = <-readErr
			if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
				t.Fatalf("got %v, want close 1008", err)
			}
			waitFor(t, 5*time.Second, "the flood drop counted", func() bool {
				return scrape(t, ts.base, "pushbench_drops_total", `cause="flood",transport="ws"`) == 1
			})
		})
	}
}

func TestWebSocketReadLimitAndOrigin(t *testing.T) {
	ts := startServer(t, server.Config{Transport: "ws", AllowOrigin: []string{"http://allowed.test"}})
	wsURL := "ws" + strings.TrimPrefix(ts.base, "http") + "/ws"
	t.Run("read limit 1009", func(t *testing.T) {
		c, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.WriteMessage(websocket.TextMessage, make([]byte, 4096)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, _, err = c.ReadMessage(); err != nil {
				break
			}
		}
		if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
			t.Fatalf("got %v, want close 1009", err)
		}
	})
	for _, tc := range []struct {
		origin string
		ok     bool
	}{{"http://allowed.test", true}, {"http://evil.test", false}, {ts.base, true}} {
		t.Run("origin "+tc.origin, func(t *testing.T) {
			c, resp, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Origin": {tc.origin}})
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				c.Close()
				return
			}
			if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("cross-origin dial: err %v, want 403", err)
			}
		})
	}
}
