package network_test

import (
	"context"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/pushbench/pushbench/loadgen"
	"github.com/pushbench/pushbench/loadgen/result"
	"github.com/pushbench/pushbench/network"
	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/server"
)

// startServer runs the project's server for one transport on 127.0.0.1
// until the test ends and returns its host:port. (loadgen's servertest
// does the same, but it is internal to loadgen.)
func startServer(t *testing.T, transport string, rate float64) string {
	t.Helper()
	srv, err := server.New(server.Config{Transport: transport, Feed: feed.Config{Seed: 1, Symbols: 16, Rate: rate, History: 4096}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Run(ctx)
	}()
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
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
		t.Fatal("feed did not start")
	}
	return ts.Listener.Addr().String()
}

// TestTransportsThroughWAN runs the real server and the load generator
// through the wan profile, for each streaming transport, with churn: every
// tick arrives exactly once (reconnects resume across the delayed path),
// and the physics show in the figures: the median tick latency is at least
// the one-way delay, and connecting (an HTTP request and its answer) takes
// at least a round trip less both jitters. The three run at once: a run
// mostly waits on the network.
func TestTransportsThroughWAN(t *testing.T) {
	prof, err := network.Parse("wan")
	if err != nil {
		t.Fatal(err)
	}
	transports := []string{"sse", "ws", "poll"}
	results := make([]*result.Result, len(transports))
	errs := make([]error, len(transports))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i, tr := range transports {
		p, err := network.Listen("127.0.0.1:0", startServer(t, tr, 50), prof)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		cfg := loadgen.Config{
			Transport: tr, URL: &url.URL{Scheme: "http", Host: p.Addr()},
			Clients: 30, Ramp: 300 * time.Millisecond, Duration: 2 * time.Second,
			Churn: 0.25, // a quarter of the clients per second reconnect with resume
			Drain: 10 * time.Second, Seed: 1, FeedSymbols: 16,
			ConnectTimeout: 20 * time.Second, IdleTimeout: time.Minute, PollTimeout: 2 * time.Second,
		}
		wg.Go(func() { results[i], errs[i] = loadgen.Run(ctx, cfg) })
	}
	wg.Wait()
	oneWay := float64(prof.OneWay()) / float64(time.Millisecond)
	connectFloor := float64(prof.RTT-2*prof.Jitter) / float64(time.Millisecond)
	for i, tr := range transports {
		res, err := results[i], errs[i]
		if err != nil {
			t.Errorf("%s: %v", tr, err)
			continue
		}
		c := res.Counts
		t.Logf("%s through %s: expected %d received %d reconnects %d; latency p50 %.1f p99 %.1f ms; connect p50 %.1f ms",
			tr, prof, c.Expected, c.Received, c.Reconnects, res.Latency.P50, res.Latency.P99, res.Connect.P50)
		if f := c.Faults(); len(f) > 0 || c.Gaps > 0 {
			t.Errorf("%s: faults %v, gaps %d; failures %v", tr, f, c.Gaps, res.FailureSamples)
		}
		if c.Expected == 0 || c.Received != c.Expected {
			t.Errorf("%s: received %d of %d expected ticks", tr, c.Received, c.Expected)
		}
		if c.Reconnects == 0 {
			t.Errorf("%s: no reconnect: churn did not happen", tr)
		}
		if res.Latency.P50 < oneWay {
			t.Errorf("%s: latency p50 %.2f ms below the one-way delay %.2f ms: the path is not shaped", tr, res.Latency.P50, oneWay)
		}
		if res.Connect.P50 < connectFloor {
			t.Errorf("%s: connect p50 %.2f ms below a round trip less both jitters (%.2f ms)", tr, res.Connect.P50, connectFloor)
		}
	}
}
