// Package servertest runs this project's server on loopback for the load
// generator's tests, which need a real server to measure against: the
// loadgen package's end-to-end runs and the client package's loop tests
// start it the same way.
package servertest

import (
	"context"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pushbench/pushbench/servers/protocol"
	"github.com/pushbench/pushbench/servers/server"
)

// Protocols a test server speaks (Serve): "h1" (plain HTTP/1.1), "tls"
// (HTTPS: HTTP/2 and HTTP/1.1 by ALPN, as bin/server -tls) and "h2c"
// (HTTP/1.1 and cleartext HTTP/2 with prior knowledge, as -h2c).
var Protocols = []string{"h1", "tls", "h2c"}

// Start runs a server of cfg on 127.0.0.1 until the test ends, waits until
// its feed publishes, and returns its base URL.
func Start(tb testing.TB, cfg server.Config) string {
	tb.Helper()
	u, _ := serve(tb, cfg, "h1", nil)
	return u
}

// StartWrapped is Start with the server's listener wrapped by wrap (nil:
// as is), so that a test can make the server slow to accept.
func StartWrapped(tb testing.TB, cfg server.Config, wrap func(net.Listener) net.Listener) string {
	tb.Helper()
	u, _ := serve(tb, cfg, "h1", wrap)
	return u
}

// Serve is Start speaking proto (one of Protocols), served by srv.HTTP as
// bin/server serves it. With TLS the certificate is self-signed, the base
// URL https://, and caFile a PEM file of the certificate for the load
// generator's -ca; otherwise caFile is "".
func Serve(tb testing.TB, cfg server.Config, proto string) (base, caFile string) {
	tb.Helper()
	return serve(tb, cfg, proto, nil)
}

// ServeWrapped is Serve with the server's listener wrapped by wrap (nil:
// as is), so that a test can count the connections the server accepts.
func ServeWrapped(tb testing.TB, cfg server.Config, proto string, wrap func(net.Listener) net.Listener) (base, caFile string) {
	tb.Helper()
	return serve(tb, cfg, proto, wrap)
}

func serve(tb testing.TB, cfg server.Config, proto string, wrap func(net.Listener) net.Listener) (base, caFile string) {
	tb.Helper()
	switch proto {
	case "h1":
	case "tls":
		cert, err := protocol.SelfSigned()
		if err != nil {
			tb.Fatal(err)
		}
		cfg.Protocol.TLS = protocol.TLSConfig(cert)
		caFile = filepath.Join(tb.TempDir(), "server.pem")
		b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
		if err := os.WriteFile(caFile, b, 0o600); err != nil {
			tb.Fatal(err)
		}
	case "h2c":
		cfg.Protocol.H2C = true
	default:
		tb.Fatalf("servertest: unknown protocol %q", proto)
	}
	srv, err := server.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Run(ctx)
	}()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	hs, l := srv.HTTP(ln, server.Limits{})
	if wrap != nil {
		l = wrap(l)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = hs.Serve(l)
	}()
	tb.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		_ = hs.Shutdown(sctx)
		_ = hs.Close()
		<-served
		cancel()
		<-done
	})
	select {
	case <-srv.Feed().Ready():
	case <-time.After(5 * time.Second):
		tb.Fatal("feed did not start")
	}
	scheme := "http://"
	if caFile != "" {
		scheme = "https://"
	}
	return scheme + ln.Addr().String(), caFile
}
