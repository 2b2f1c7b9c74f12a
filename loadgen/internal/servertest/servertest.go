// Package servertest runs this project's server on loopback for the load
// generator's tests, which need a real server to measure against: the
// loadgen package's end-to-end runs and the client package's loop tests
// start it the same way.
package servertest

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pushbench/pushbench/servers/server"
)

// Start runs a server of cfg on 127.0.0.1 until the test ends, waits until
// its feed publishes, and returns its base URL.
func Start(tb testing.TB, cfg server.Config) string {
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
	ts := httptest.NewServer(srv)
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
