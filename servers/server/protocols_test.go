package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

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
	hs, l := srv.HTTP(ln, server.Limits{HeaderTimeout: time.Minute})
	serveDone := make(chan error, 1)
	go func() { serveDone <- hs.Serve(l) }()
	scheme := "http://"
	if p.tls {
		scheme = "https://"
	}
	ts := &testServer{srv: srv, base: scheme + ln.Addr().String(), proto: p}
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
