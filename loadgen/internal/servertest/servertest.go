// Package servertest runs this project's server on loopback for the load
// generator's tests, which need a real server to measure against: the
// loadgen package's end-to-end runs and the client package's loop tests
// start it the same way.
package servertest

import (
	"context"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pushbench/pushbench/servers/server"
)

// Start runs a server of cfg on 127.0.0.1 until the test ends, waits until
// its feed publishes, and returns its base URL.
func Start(tb testing.TB, cfg server.Config) string {
	tb.Helper()
	return StartWrapped(tb, cfg, nil)
}

// StartWrapped is Start with the server's listener wrapped by wrap (nil:
// as is), so that a test can make the server slow to accept.
func StartWrapped(tb testing.TB, cfg server.Config, wrap func(net.Listener) net.Listener) string {
	tb.Helper()
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
	ts := httptest.NewUnstartedServer(srv)
	if wrap != nil {
		ts.Listener = wrap(ts.Listener)
	}
	ts.Start()
	tb.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		scancel()
		ts.Close()
		cancel()
		<-done
	})
	select {
	case <-srv.Feed().Ready():
	case <-time.After(5 * time.Second):
		tb.Fatal("feed did not start")
	}
	return ts.URL
}
