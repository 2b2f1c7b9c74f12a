package answer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbench/pushbench/loadgen/internal/servertest"
	gen "github.com/pushbench/pushbench/servers/answer"
	"github.com/pushbench/pushbench/servers/server"
)

// startServer runs the real server on loopback, serving only transport's
// flavour of /answer, and returns its base URL; wrap (nil: none) wraps
// its listener.
func startServer(t *testing.T, transport string, wrap func(net.Listener) net.Listener) *url.URL {
	t.Helper()
	u, err := url.Parse(servertest.StartWrapped(t, server.Config{Transport: transport}, wrap))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// arrivalsIn is how many arrivals the pacer draws in d: what a run must
// have offered, whatever the server did.
func arrivalsIn(cfg Config, d time.Duration) (n int64, last time.Duration) {
	p := &PoissonPacer{Freq: cfg.Rate, Seed: cfg.Seed}
	for ; p.At(uint64(n)) < d; n++ {
		last = p.At(uint64(n))
	}
	return n, last
}

// Every transport and connection mode delivers every chunk of every
// answer once, in order, with the seed's text, at a small concurrency;
// the arrivals are the pacer's, and the connections opened are the
// mode's.
func TestRunEveryTransport(t *testing.T) {
	cases := []struct{ transport, conn string }{
		{"sse", ConnKeepAlive}, {"sse", ConnFresh},
		{"ws", ConnMux}, {"ws", ConnKeepAlive}, {"ws", ConnFresh},
		{"poll", ConnKeepAlive}, {"poll", ConnFresh},
	}
	for _, tc := range cases {
		t.Run(tc.transport+"/"+tc.conn, func(t *testing.T) {
			cfg := Config{
				Transport: tc.transport, Base: startServer(t, tc.transport, nil), Conn: tc.conn, Conns: 2,
				Rate: 60, Concurrency: 10, Tokens: 12, TokenRate: 200, Think: 10 * time.Millisecond,
				Warmup: 200 * time.Millisecond, Duration: 400 * time.Millisecond, Drain: 10 * time.Second, Seed: 3,
			}
			checkRun(t, cfg, tc.conn, runOK(t, cfg))
		})
	}
}

// runOK runs cfg and fails the test if the run could not take place.
func runOK(t *testing.T, cfg Config) *Outcome {
	t.Helper()
	o, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// checkRun checks a run of cfg at a small concurrency: the arrivals are
// the pacer's, every answer sent completed with every chunk once, in
// order, with the seed's text, the histograms hold the measured window,
// the connections opened are the mode's (conn), and bytes were counted.
func checkRun(t *testing.T, cfg Config, conn string, o *Outcome) {
	t.Helper()
	a := o.Answer
	want, _ := arrivalsIn(cfg, cfg.Warmup+cfg.Duration)
	warm, _ := arrivalsIn(cfg, cfg.Warmup)
	if a.Answers.Arrivals != want || a.Answers.Arrivals != a.Answers.NotSentCap+a.Answers.Sent || a.Window.Arrivals != want-warm {
		t.Errorf("arrivals %d (%d not sent, %d sent), %d measured; want %d, the pacer's, %d after the warm-up",
			a.Answers.Arrivals, a.Answers.NotSentCap, a.Answers.Sent, a.Window.Arrivals, want, want-warm)
	}
	if a.Answers.Sent == 0 || a.Answers.Completed != a.Answers.Sent {
		t.Errorf("answers %+v: want every one sent completed; failures %v %v", a.Answers, o.Failures, o.Samples)
	}
	if f := a.Faults(); len(f) > 0 {
		t.Errorf("faults: %v", f)
	}
	if c := a.Chunks; c.Received != a.Answers.Sent*int64(cfg.Tokens) || c.Expected != c.Received {
		t.Errorf("chunks %+v, want %d received and expected", c, a.Answers.Sent*int64(cfg.Tokens))
	}
	// The histograms hold the measured window's answers only.
	if w := a.Window.Completed; w == 0 || a.TTFT.Count != w || a.ToServer.Count != w || a.E2E.Count != w ||
		a.ITL.Count != w*int64(cfg.Tokens-1) || a.ChunkLatency.Count != w*int64(cfg.Tokens) {
		t.Errorf("histogram counts TTFT %d, to server %d, E2E %d, ITL %d, chunk %d for %d measured answers of %d chunks",
			a.TTFT.Count, a.ToServer.Count, a.E2E.Count, a.ITL.Count, a.ChunkLatency.Count, w, cfg.Tokens)
	}
	// No answer can end before its think and its chunks' schedule.
	if min := float64(cfg.Length()) / 1e6; a.E2E.P50 < min || a.TTFT.P50 < float64(cfg.Think)/1e6 {
		t.Errorf("end to end p50 %.2f ms, TTFT p50 %.2f ms: shorter than the schedule (%.2f ms, think %s)", a.E2E.P50, a.TTFT.P50, min, cfg.Think)
	}
	// Every answer's TTFT is its way to the server, think, and its first
	// chunk's way back (the server writes it no earlier than due): each
	// quantile of TTFT is at least think over the same quantile of the
	// way to the server (within the histograms' 3 digits).
	think := float64(cfg.Think) / 1e6
	for _, q := range [][2]float64{{a.TTFT.P50, a.ToServer.P50}, {a.TTFT.P99, a.ToServer.P99}, {a.TTFT.Max, a.ToServer.Max}} {
		if q[0]*1.001 < q[1]+think {
			t.Errorf("TTFT %.3f ms < to server %.3f ms + think %s: the way to the server is not TTFT's first part", q[0], q[1], cfg.Think)
		}
	}
	opened, sent := a.ConnectionsOpened, a.Answers.Sent
	switch {
	case conn == ConnFresh && opened != sent:
		t.Errorf("-conn fresh opened %d connections for %d answers", opened, sent)
	case (conn == ConnMux || conn == ConnH2) && opened != int64(cfg.Conns):
		t.Errorf("-conn %s opened %d connections, want the %d of Conns", conn, opened, cfg.Conns)
	case conn == ConnKeepAlive && (opened < 1 || opened > int64(cfg.Concurrency)):
		t.Errorf("-conn keepalive opened %d connections, want 1..%d", opened, cfg.Concurrency)
	}
	if a.BytesPerChunk <= 0 || o.BytesSent <= 0 {
		t.Errorf("bytes per chunk %.1f, sent %d: the socket's bytes were not counted", a.BytesPerChunk, o.BytesSent)
	}
}

// countAccepts counts the connections a server accepts. A keep-alive
// connection that an SSE answer took over comes back through Accept once
// the answer is done (the same net.Conn), for net/http to serve its next
// request: each connection is counted once.
type countAccepts struct {
	net.Listener
	mu   *sync.Mutex
	seen map[net.Conn]bool
	n    *atomic.Int64
}

func newCountAccepts(l net.Listener, n *atomic.Int64) countAccepts {
	return countAccepts{Listener: l, mu: new(sync.Mutex), seen: map[net.Conn]bool{}, n: n}
}

func (l countAccepts) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		if !l.seen[c] {
			l.seen[c] = true
			l.n.Add(1)
		}
		l.mu.Unlock()
	}
	return c, err
}

// Over TLS (https, the certificate checked against the test's CA) every
// mode that speaks HTTP/1.1 delivers every answer whole, and -conn h2
// carries sse and poll answers as HTTP/2 streams over TLS and h2c: every
// chunk once, in order, done received, and the server accepted exactly
// Conns TCP connections, the ones the run says it opened.
func TestRunTLSAndH2(t *testing.T) {
	cases := []struct{ proto, transport, conn string }{
		{"tls", "sse", ConnKeepAlive}, {"tls", "sse", ConnFresh}, {"tls", "poll", ConnKeepAlive},
		{"tls", "ws", ConnMux},
		{"tls", "sse", ConnH2}, {"h2c", "sse", ConnH2}, {"tls", "poll", ConnH2}, {"h2c", "poll", ConnH2},
	}
	for _, tc := range cases {
		t.Run(tc.proto+"/"+tc.transport+"/"+tc.conn, func(t *testing.T) {
			var accepted atomic.Int64
			raw, caFile := servertest.ServeWrapped(t, server.Config{Transport: tc.transport}, tc.proto,
				func(l net.Listener) net.Listener { return newCountAccepts(l, &accepted) })
			base, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			cfg := Config{
				Transport: tc.transport, Base: base, Conn: tc.conn, Conns: 2,
				Rate: 60, Concurrency: 10, Tokens: 12, TokenRate: 200, Think: 10 * time.Millisecond,
				Warmup: 200 * time.Millisecond, Duration: 400 * time.Millisecond, Drain: 10 * time.Second, Seed: 3,
			}
			if caFile != "" {
				cfg.TLS = &tls.Config{RootCAs: trust(t, caFile)}
			}
			o := runOK(t, cfg)
			checkRun(t, cfg, tc.conn, o)
			if n := accepted.Load(); n != o.Answer.ConnectionsOpened {
				t.Errorf("the server accepted %d connections, the run says it opened %d", n, o.Answer.ConnectionsOpened)
			}
			// Over TLS the socket carries more than TLS carried: records,
			// the handshakes.
			if tls := tc.proto == "tls"; tls && !(o.PlainReceived > 0 && o.BytesReceived > o.PlainReceived) || !tls && o.PlainReceived != 0 {
				t.Errorf("bytes received %d on the socket, %d above TLS", o.BytesReceived, o.PlainReceived)
			}
		})
	}
}

// trust returns a pool of the PEM certificates in file.
func trust(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatalf("no certificate in %s", file)
	}
	return p
}

// slowAccept makes a server slow: each Accept first waits delay, so the
// server takes new connections one per delay at most.
type slowAccept struct {
	net.Listener
	delay time.Duration
}

func (l slowAccept) Accept() (net.Conn, error) {
	time.Sleep(l.delay)
	return l.Listener.Accept()
}

// A server slow to take connections shows as TTFT, measured from each
// request's intended send time, and never as a lower offered rate: every
// arrival the pacer drew is sent. With a connection per answer the last
// connection is accepted (n-1)·delay after the first answer's time at the
// earliest, so some answer waited at least that minus the arrivals'
// spread; a load generator that timed from the actual send, or that sent
// the next request only when a connection was free, would not see it.
func TestSlowServerShowsAsTTFT(t *testing.T) {
	const delay = 100 * time.Millisecond
	base := startServer(t, "sse", func(l net.Listener) net.Listener { return slowAccept{l, delay} })
	cfg := Config{
		Transport: "sse", Base: base, Conn: ConnFresh,
		Rate: 20, Concurrency: 1000, Tokens: 2, TokenRate: 1000, Think: 0,
		Duration: time.Second, Drain: 20 * time.Second, Seed: 5,
	}
	o, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := o.Answer
	n, last := arrivalsIn(cfg, cfg.Duration)
	first := (&PoissonPacer{Freq: cfg.Rate, Seed: cfg.Seed}).At(0)
	if a.Answers.Arrivals != n || a.Answers.Sent != n || a.Answers.Completed != n {
		t.Fatalf("answers %+v, want all %d arrivals sent and completed; failures %v", a.Answers, n, o.Failures)
	}
	bound := first + time.Duration(n-1)*delay - last
	if bound < 500*time.Millisecond {
		t.Fatalf("the test's draw gives a bound of only %s; pick another seed", bound)
	}
	if got := time.Duration(a.TTFT.Max * float64(time.Millisecond)); got < bound {
		t.Errorf("TTFT max %s, want at least %s: the accept queue's wait is missing", got, bound)
	}
	// The wait came before the server read the request: it is on the way
	// to the server, not the way back.
	if got := time.Duration(a.ToServer.Max * float64(time.Millisecond)); got < bound || a.ToServer.Count != a.TTFT.Count {
		t.Errorf("to server max %s of %d answers, want at least %s of %d: the wait is not on the request's way", got, a.ToServer.Count, bound, a.TTFT.Count)
	}
}

// A poll answer whose body is cut off (here by the run's end while the
// server is still sending it) breaks the answer; it is not a malformed
// message.
func TestPollCutBodyIsNotMalformed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"id":"x"}`))
			return
		}
		w.Header().Set("Content-Length", "200")
		_, _ = w.Write([]byte(`{"chunks":[{"id":"x","i":0,`))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	cfg := Config{Transport: "poll", Base: base, Rate: 1, Duration: time.Second}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r, done, err := newRunner(&cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	a := newAns(0, gen.Request{Tokens: 4, Rate: 50, Seed: 1}, time.Now().UnixNano(), r.stats[0])
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := r.poll(ctx, a); err == nil {
		t.Fatal("a cut answer ended without an error")
	}
	if a.c.Malformed != 0 {
		t.Errorf("%d malformed messages counted for a body cut short", a.c.Malformed)
	}
}

// WebSocket messages for no answer in flight (an unknown id, a chunk
// after its answer's done) are counted as stray, a fault.
func TestWSStrayMessages(t *testing.T) {
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		if _, _, err := c.ReadMessage(); err != nil {
			return
		}
		req := gen.Request{Tokens: 1, Rate: 50, Seed: 1}
		now := time.Now().UnixNano()
		for _, m := range [][]byte{
			[]byte(`{"id":"nobody","i":0,"text":" a","ts":1}`),
			gen.AppendChunkJSON(nil, []byte(`"r0"`), req.Seed, 0, req.Due(now, 0)),
			gen.AppendDoneJSON(nil, []byte(`"r0"`), 1, true),
			gen.AppendChunkJSON(nil, []byte(`"r0"`), req.Seed, 0, req.Due(now, 0)),
		} {
			if c.WriteMessage(websocket.TextMessage, m) != nil {
				return
			}
		}
		_, _, _ = c.ReadMessage() // until the client closes
	}))
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	cfg := Config{Transport: "ws", Base: base, Rate: 1, Duration: time.Second, Tokens: 1}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r, done, err := newRunner(&cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	a := newAns(0, gen.Request{Tokens: 1, Rate: 50, Seed: 1}, time.Now().UnixNano(), r.stats[0])
	if err := r.one(context.Background(), a); err != nil || a.doneAt == 0 || a.got != 1 {
		t.Fatalf("answer: err %v, done %v, chunks %d", err, a.doneAt != 0, a.got)
	}
	for deadline := time.Now().Add(5 * time.Second); r.stray.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if n := r.stray.Load(); n != 2 {
		t.Errorf("%d stray messages counted, want 2 (an unknown id, a chunk after done)", n)
	}
}
