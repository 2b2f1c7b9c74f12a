package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/protocol"
	"github.com/pushbench/pushbench/servers/server"
)

// proto is one way of reaching the server: plaintext HTTP/1.1, HTTP/1.1
// over TLS, HTTP/2 over TLS (ALPN) or cleartext HTTP/2 (prior knowledge).
type proto struct {
	name string
	tls  bool // serve TLS
	h2   bool // clients speak HTTP/2 (over TLS, or h2c without)
}

var protos = []proto{{name: "h1"}, {name: "tls", tls: true}, {name: "h2", tls: true, h2: true}, {name: "h2c", h2: true}}

// transports the table runs over p: WebSocket is an HTTP/1.1 upgrade, so
// over h2 and h2c it would repeat the h1 and tls runs (its answer over
// HTTP/2 is tested by TestWebSocketOverHTTP2Is400).
func (p proto) transports() []string {
	if p.h2 {
		return []string{"sse", "poll"}
	}
	return transports
}

// startOver serves cfg over p on 127.0.0.1 through srv.HTTP, as bin/server
// does, with a certificate made for the run; the clients it gives trust it.
func startOver(t testing.TB, p proto, cfg server.Config) *testServer {
	t.Helper()
	if cfg.Feed.Seed == 0 {
		cfg.Feed.Seed = testSeed
	}
	if cfg.Feed.Rate == 0 {
		cfg.Feed.Rate = 500
	}
	var roots *x509.CertPool
	if p.tls {
		cert, err := protocol.SelfSigned()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Protocol.TLS = protocol.TLSConfig(cert)
		roots = x509.NewCertPool()
		roots.AddCert(cert.Leaf)
	} else {
		cfg.Protocol.H2C = p.h2
	}
	srv, stopRun := runServer(t, cfg)
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	// net/http bounds a TLS handshake by the header timeout: under the race
	// detector, on a shared machine, 50 concurrent ECDSA handshakes have
	// taken longer than the default 5 s, which these tests do not measure.
	hs, l := srv.HTTP(ln, server.Limits{HeaderTimeout: time.Minute, SndBuf: server.DefaultSndBuf})
	serveDone := make(chan error, 1)
	go func() { serveDone <- hs.Serve(l) }()
	scheme := "http://"
	if p.tls {
		scheme = "https://"
	}
	ts := &testServer{srv: srv, base: scheme + ln.Addr().String(), proto: p, roots: roots}
	ts.h1 = func() *http.Client { return clientOf(roots, false, p.tls, false) }
	ts.client = ts.h1
	if p.h2 {
		// One client: its streams share connections, the point of HTTP/2.
		shared := clientOf(roots, true, p.tls, true)
		ts.client = func() *http.Client { return shared }
		ts.closeIdle = shared.CloseIdleConnections
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if ts.closeIdle != nil {
			ts.closeIdle()
		}
		if err := hs.Shutdown(sctx); err != nil {
			t.Errorf("http Shutdown: %v", err)
		}
		if err := <-serveDone; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		stopRun()
	})
	return ts
}

// clientOf is an HTTP client trusting roots. Without h2 it speaks
// HTTP/1.1 only and opens a fresh connection per request (as httpClient);
// with h2 it speaks HTTP/2 only, over TLS or cleartext (h2c), and keeps
// connections so that requests are streams on them.
func clientOf(roots *x509.CertPool, h2, overTLS, keepAlive bool) *http.Client {
	tr := &http.Transport{DisableKeepAlives: !keepAlive, Protocols: new(http.Protocols)}
	if overTLS {
		tr.TLSClientConfig = &tls.Config{RootCAs: roots}
	}
	switch {
	case !h2:
		tr.Protocols.SetHTTP1(true)
	case overTLS:
		tr.Protocols.SetHTTP2(true)
	default:
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	return &http.Client{Transport: tr}
}

// opts completes o with the clients of ts's protocol.
func (ts *testServer) opts(o subOpts) subOpts {
	if ts.client != nil {
		o.client, o.wsClient = ts.client(), ts.h1()
	}
	return o
}

// forEach runs fn for every protocol and every transport it serves.
func forEach(t *testing.T, fn func(t *testing.T, p proto, tr string)) {
	for _, p := range protos {
		for _, tr := range p.transports() {
			t.Run(p.name+"/"+tr, func(t *testing.T) { fn(t, p, tr) })
		}
	}
}

// TestWebSocketOverHTTP2Is400: gorilla does not do RFC 8441, so a /ws
// request that arrives over HTTP/2 cannot upgrade; it gets a clear 400, not
// a hang.
func TestWebSocketOverHTTP2Is400(t *testing.T) {
	for _, p := range protos {
		if !p.h2 {
			continue
		}
		t.Run(p.name, func(t *testing.T) {
			ts := startOver(t, p, server.Config{Transport: "ws"})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.base+"/ws", nil)
			resp, err := ts.client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTP/1.1") {
				t.Fatalf("%s %d %q; want HTTP/2 400 saying WebSocket needs HTTP/1.1", resp.Proto, resp.StatusCode, body)
			}
		})
	}
}

// countingConn counts the bytes read from the socket: below TLS, the
// ciphertext that crosses the network.
type countingConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// TestTLSBytesPerTick reads an SSE stream over HTTP/1.1 and TLS and counts
// the bytes both below TLS (ciphertext) and above it (plaintext). A batch
// must cross TLS as one write, so one record, not one per tick: a catch-up
// of thousands of ticks in batches costs next to nothing more than
// plaintext, and live ticks (a batch of about one tick, one record each)
// stay within 1.3x of plaintext, a TLS 1.3 record adding 22 bytes.
func TestTLSBytesPerTick(t *testing.T) {
	p := proto{name: "tls", tls: true}
	ts := startOver(t, p, server.Config{Transport: "sse", Feed: feed.Config{Rate: 400, History: 1 << 14}})
	roots := ts.h1().Transport.(*http.Transport).TLSClientConfig.RootCAs
	addr := strings.TrimPrefix(ts.base, "https://")
	// read opens a stream at resume and reads n ticks, returning the
	// ciphertext and plaintext bytes read after the handshake.
	read := func(resume uint64, n int) (cipher, plain int64) {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		cc := &countingConn{Conn: raw}
		tc := tls.Client(cc, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
		_ = tc.SetDeadline(time.Now().Add(30 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		cc.n.Store(0)
		pc := &countingConn{Conn: tc}
		if _, err := fmt.Fprintf(tc, "GET /sse?lastEventId=%d HTTP/1.1\r\nHost: x\r\n\r\n", resume); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReaderSize(pc, 256)
		want := resume + 1
		for want <= resume+uint64(n) {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("after seq %d: %v", want-1, err)
			}
			if id, ok := strings.CutPrefix(line, "id: "); ok {
				if got, _ := strconv.ParseUint(strings.TrimSpace(id), 10, 64); got != want {
					t.Fatalf("id %d, want %d", got, want)
				}
				want++
			}
		}
		return cc.n.Load(), pc.n.Load()
	}
	waitFor(t, 30*time.Second, "4000 ticks of history", func() bool { return ts.srv.Feed().Ring().Newest() >= 4000 })
	cipher, plain := read(0, 4000)
	t.Logf("catch-up: %d B ciphertext, %d B plaintext, %.3fx", cipher, plain, float64(cipher)/float64(plain))
	if float64(cipher) > 1.05*float64(plain) {
		t.Errorf("catch-up of 4000 ticks: %d B ciphertext for %d B plaintext (%.2fx): a batch is not one TLS record",
			cipher, plain, float64(cipher)/float64(plain))
	}
	cipher, plain = read(ts.srv.Feed().Ring().Newest(), 400)
	t.Logf("live: %d B ciphertext, %d B plaintext, %.3fx", cipher, plain, float64(cipher)/float64(plain))
	if float64(cipher) > 1.3*float64(plain) {
		t.Errorf("live ticks: %d B ciphertext for %d B plaintext (%.2fx), want at most 1.3x", cipher, plain, float64(cipher)/float64(plain))
	}
}

// TestH2StreamRefusalCounted opens one stream more than -h2-max-streams
// on one HTTP/2 connection: that stream is reset before any handler runs,
// the others stream, and the refusal is counted by protocol.
func TestH2StreamRefusalCounted(t *testing.T) {
	const limit = 2
	ts := startOver(t, proto{name: "h2c", h2: true}, server.Config{Transport: "sse", Protocol: protocol.Config{MaxStreams: limit}})
	c, err := net.Dial("tcp", strings.TrimPrefix(ts.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// Read the server's settings and ack them, so that the limit is known
	// to apply (a stream past it then is the client's fault).
	for acked := false; !acked; {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			if v, ok := sf.Value(http2.SettingMaxConcurrentStreams); !ok || v != limit {
				t.Fatalf("server's SETTINGS_MAX_CONCURRENT_STREAMS = %d (%v), want %d", v, ok, limit)
			}
			if err := fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
			acked = true
		}
	}
	var hb strings.Builder
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/sse"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := range limit + 1 {
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: []byte(hb.String()),
			EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	refused := uint32(2*limit + 1)
	answered := map[uint32]bool{}
	for reset := false; !reset || len(answered) < limit; {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reset %v, answered %v: %v", reset, answered, err)
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if f.StreamID != refused {
				t.Fatalf("stream %d reset (%v), want only %d", f.StreamID, f.ErrCode, refused)
			}
			reset = true
		case *http2.HeadersFrame:
			if f.StreamID == refused {
				t.Fatalf("stream %d past the limit was answered", refused)
			}
			answered[f.StreamID] = true
		}
	}
	if got := gaugeValue(t, ts.srv.Metrics().Refused.WithLabelValues("any", "h2_max_streams", "h2")); got != 1 {
		t.Errorf("refused{h2_max_streams,h2} = %v, want 1", got)
	}
	if got := ts.scrape(t, "pushbench_connections_open", `protocol="h2",transport="sse"`); got != limit {
		t.Errorf("connections_open{h2,sse} = %v, want %d", got, limit)
	}
}

// TestSlowClientDropsOverTLSAndH2: an SSE client that stops reading is
// disconnected at the write timeout and counted as such (write_timeout,
// and a write error of cause timeout) over TLS and over HTTP/2 too, where
// the stalled write is one stream's, ended by net/http's stream reset.
func TestSlowClientDropsOverTLSAndH2(t *testing.T) {
	for _, p := range []proto{{name: "tls", tls: true}, {name: "h2", tls: true, h2: true}, {name: "h2c", h2: true}} {
		t.Run(p.name, func(t *testing.T) {
			ts := startOver(t, p, server.Config{Transport: "sse", WriteTimeout: 300 * time.Millisecond,
				Feed: feed.Config{Rate: 5000, Symbols: 64, History: 4096}})
			if p.h2 {
				// An HTTP/2 client that takes the response and never reads
				// its body: a small stream window fills at once.
				tr := ts.client().Transport.(*http.Transport).Clone()
				tr.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerStream: 16 << 10}
				tr.DialContext = tinyReceiveBuffer().DialContext
				resp, err := (&http.Client{Transport: tr}).Get(ts.base + "/sse")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				defer tr.CloseIdleConnections()
			} else {
				raw, err := tinyReceiveBuffer().Dial("tcp", strings.TrimPrefix(ts.base, "https://"))
				if err != nil {
					t.Fatal(err)
				}
				defer raw.Close()
				roots := ts.h1().Transport.(*http.Transport).TLSClientConfig.RootCAs
				tc := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
				if _, err := io.WriteString(tc, rawGet("/sse")); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, time.Minute, "the drop", func() bool {
				return ts.scrape(t, "pushbench_drops_total", `cause="write_timeout",transport="sse"`) == 1
			})
			if v := ts.scrape(t, "pushbench_write_errors_total", `cause="timeout",transport="sse"`); v != 1 {
				t.Errorf("write_errors_total{cause=timeout} = %v, want 1", v)
			}
			// tls.Conn.Close would try a close_notify for 5 s on the stalled
			// socket first, holding the slot and the goroutines that long.
			waitFor(t, 2*time.Second, "the slot released", func() bool { return ts.srv.Open() == 0 })
		})
	}
}

// TestStalledStreamOnHealthyH2Connection: on one HTTP/2 connection, a
// stream whose client stops reading is reset at the write timeout (its
// flow-control window full, the connection still draining), while a
// stream beside it that reads goes on receiving long after the write
// timeout: the timeout bounds each write, not a stream's life.
func TestStalledStreamOnHealthyH2Connection(t *testing.T) {
	for _, p := range []proto{{name: "h2", tls: true, h2: true}, {name: "h2c", h2: true}} {
		t.Run(p.name, func(t *testing.T) {
			const writeTimeout = 300 * time.Millisecond
			ts := startOver(t, p, server.Config{Transport: "sse", WriteTimeout: writeTimeout,
				Feed: feed.Config{Rate: 2000, Symbols: 64, History: 4096}})
			tr := ts.client().Transport.(*http.Transport).Clone()
			tr.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerStream: 16 << 10}
			c := &http.Client{Transport: tr}
			defer tr.CloseIdleConnections()
			// get opens a stream and says which connection it rides on.
			get := func() (*http.Response, string) {
				var local string
				trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { local = ci.Conn.LocalAddr().String() }}
				req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, ts.base+"/sse", nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				return resp, local
			}
			stalled, on1 := get()
			defer stalled.Body.Close() // never read
			live, on2 := get()
			defer live.Body.Close()
			if on1 != on2 {
				t.Fatalf("the two streams ride on %s and %s, want one connection", on1, on2)
			}
			var got atomic.Int64 // bytes the live stream has read
			go func() { _, _ = io.Copy(countingWriter{&got}, live.Body) }()
			waitFor(t, 15*time.Second, "the stalled stream's drop", func() bool {
				return ts.scrape(t, "pushbench_drops_total", `cause="write_timeout",transport="sse"`) == 1
			})
			// The live stream outlives several write timeouts.
			before := got.Load()
			time.Sleep(4 * writeTimeout)
			if after := got.Load(); after <= before {
				t.Errorf("the live stream stopped receiving (%d bytes, then %d) after the stalled one was dropped", before, after)
			}
			if v := ts.scrape(t, "pushbench_drops_total", `cause="write_timeout",transport="sse"`); v != 1 {
				t.Errorf("drops_total{write_timeout} = %v, want 1 (the live stream was dropped too)", v)
			}
		})
	}
}

// countingWriter counts what is written to it.
type countingWriter struct{ n *atomic.Int64 }

func (w countingWriter) Write(b []byte) (int, error) { w.n.Add(int64(len(b))); return len(b), nil }

// TestHeldPollOutlivesWriteTimeout: a long poll held longer than the write
// timeout is answered, on every protocol. On HTTP/2 net/http's WriteTimeout
// runs from the request's start and resets the stream when it passes, even
// with nothing being written; the poll handler clears it while it holds.
func TestHeldPollOutlivesWriteTimeout(t *testing.T) {
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			ts := startOver(t, p, server.Config{Transport: "poll", WriteTimeout: 200 * time.Millisecond})
			cursor := ts.srv.Feed().Ring().Newest() + 1_000_000 // nothing comes: the poll is held to its timeout
			resp, err := ts.client().Get(fmt.Sprintf("%s/poll?cursor=%d&timeout=1s", ts.base, cursor))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			want := fmt.Sprintf(`{"cursor":%d,"ticks":[]}`+"\n", cursor)
			if err != nil || resp.StatusCode != 200 || string(body) != want {
				t.Fatalf("held poll: %s %d %q %v; want 200 %q", resp.Proto, resp.StatusCode, body, err, want)
			}
		})
	}
}
