package server

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pushbench/pushbench/servers/protocol"
)

// streamsState mirrors window.pushbenchStreams (web/streams.js).
type streamsState struct {
	N         int    `json:"n"`
	Transport string `json:"transport"`
	Received  []int  `json:"received"`
	Receiving int    `json:"receiving"`
}

// startProtoServer serves cfg on 127.0.0.1 through HTTP, as bin/server
// does: over TLS (a self-signed certificate, so HTTP/2 by ALPN) when
// overTLS, else plaintext HTTP/1.1.
func startProtoServer(t *testing.T, cfg Config, overTLS bool) (*Server, string) {
	t.Helper()
	if overTLS {
		cert, err := protocol.SelfSigned()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Protocol.TLS = protocol.TLSConfig(cert)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	hs, l := srv.HTTP(ln, Limits{})
	ctx, cancel := context.WithCancel(context.Background())
	runDone, serveDone := make(chan error, 1), make(chan error, 1)
	go func() { runDone <- srv.Run(ctx) }()
	go func() { serveDone <- hs.Serve(l) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := hs.Shutdown(sctx); err != nil {
			t.Errorf("http Shutdown: %v", err)
		}
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("feed: %v", err)
		}
		if err := <-serveDone; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	<-srv.Feed().Ready()
	scheme := "http://"
	if overTLS {
		scheme = "https://"
	}
	return srv, scheme + ln.Addr().String()
}

// browsers starts the two Chromiums of these tests, each with a fresh
// profile: one for plaintext, one told to accept the self-signed
// certificate (for its run only, not in any shared profile).
func browsers(t *testing.T) (plain, secure context.Context) {
	t.Helper()
	exe := requireChromium(t)
	return startBrowser(t, exe), startBrowser(t, exe, chromedp.IgnoreCertErrors)
}

// openTab opens url in a new tab of browser; the tab closes at cleanup,
// which also fails the test on any page exception.
func openTab(t *testing.T, browser context.Context, url string) context.Context {
	t.Helper()
	tab, closeTab := chromedp.NewContext(browser)
	exceptions := watchExceptions(t, tab)
	t.Cleanup(func() {
		closeTab()
		for _, e := range exceptions() {
			t.Errorf("page exception: %s", e)
		}
	})
	do(t, tab, chromedp.Navigate(url))
	return tab
}

// pageProtocol is the protocol Chromium loaded the page over ("http/1.1",
// "h2").
func pageProtocol(t *testing.T, tab context.Context) string {
	t.Helper()
	p, err := run(tab, chromedp.Evaluate[string](`performance.getEntriesByType('navigation')[0].nextHopProtocol`))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBrowserConnectionLimit measures, in Chromium, the claim that SSE is
// limited in connections and that HTTP/2 lifts the limit: one page opens 8
// subscriptions (?streams=8). Over HTTP/1.1 only 6 SSE subscriptions
// receive ticks, the other 2 wait for a connection; over HTTP/2 (TLS) all 8
// do, as streams of one connection. WebSocket beside it: 8 of 8 on both.
// The figures are README's (section "TLS and HTTP/2").
func TestBrowserConnectionLimit(t *testing.T) {
	plain, secure := browsers(t)
	const n = 8
	cfg := Config{Transport: "all", Feed: demoFeed}
	for _, tc := range []struct {
		name, transport string
		overTLS         bool
		want            int
		wantProto       string
	}{
		{"h1/sse", "sse", false, 6, "http/1.1"},
		{"h1/ws", "ws", false, n, "http/1.1"},
		{"h2/sse", "sse", true, n, "h2"},
		{"h2/ws", "ws", true, n, "h2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, base := startProtoServer(t, cfg, tc.overTLS)
			browser := plain
			if tc.overTLS {
				browser = secure
			}
			tab := openTab(t, browser, base+"/?transport="+tc.transport+"&streams=8")
			if p := pageProtocol(t, tab); p != tc.wantProto {
				t.Fatalf("page loaded over %q, want %q", p, tc.wantProto)
			}
			// Wait until the subscriptions that receive have had 2 s of the
			// feed each: a subscription that has nothing by then is waiting
			// for a connection, not late.
			var s streamsState
			eventually(t, tab, waitLimit, "the receiving subscriptions to have 100 ticks each", func() (bool, string) {
				var err error
				if s, err = run(tab, chromedp.Evaluate[streamsState](`window.pushbenchStreams`)); err != nil {
					t.Fatal(err)
				}
				if s.N != n || s.Receiving < tc.want {
					return false, fmtStreams(s)
				}
				for _, c := range s.Received {
					if c > 0 && c < 2*demoRate {
						return false, fmtStreams(s)
					}
				}
				return true, ""
			})
			t.Logf("%s: %s", tc.name, fmtStreams(s))
			if s.Receiving != tc.want {
				t.Errorf("%d of %d subscriptions receive, want %d: %s", s.Receiving, n, tc.want, fmtStreams(s))
			}
			// The server's view: SSE streams open by protocol (WebSocket is
			// always an HTTP/1.1 upgrade).
			proto := protocol.H1
			if tc.overTLS && tc.transport == "sse" {
				proto = protocol.H2
			}
			if got := value(t, srv.metrics.For(tc.transport).Over(proto).Open); int(got) != tc.want {
				t.Errorf("server: %v %s streams over %s open, want %d", got, tc.transport, proto, tc.want)
			}
		})
	}
}

// value reads a counter or gauge.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetGauge().GetValue() + d.GetCounter().GetValue()
}

func fmtStreams(s streamsState) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestDemoPageOverHTTP2 loads the demo page from a TLS server (as
// `bin/server -tls` serves it) in Chromium, over each transport: the page
// comes over HTTP/2, ticks arrive exactly once, and the server sees SSE and
// polls as HTTP/2 streams and WebSocket as an HTTP/1.1 upgrade.
func TestDemoPageOverHTTP2(t *testing.T) {
	_, secure := browsers(t)
	for _, tr := range []string{"sse", "ws", "poll"} {
		t.Run(tr, func(t *testing.T) {
			srv, base := startProtoServer(t, Config{Transport: "all", Feed: demoFeed}, true)
			tab := openTab(t, secure, base+"/?transport="+tr)
			if p := pageProtocol(t, tab); p != "h2" {
				t.Fatalf("page loaded over %q, want h2", p)
			}
			s := waitState(t, tab, waitLimit, "100 ticks", func(s pageState) bool { return s.Received >= 100 })
			checkExactlyOnce(t, s)
			m := srv.metrics.For(tr)
			want := m.Over(protocol.H2)
			if tr == "ws" {
				want = m
			}
			if d := value(t, want.Deliveries); d < 100 {
				t.Errorf("server: %v %s deliveries over the expected protocol, want at least 100", d, tr)
			}
		})
	}
}
