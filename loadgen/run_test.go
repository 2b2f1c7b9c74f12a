package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushbench/pushbench/loadgen/internal/servertest"
	"github.com/pushbench/pushbench/loadgen/reach"
	"github.com/pushbench/pushbench/loadgen/result"
	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/server"
)

var streamTransports = []string{"sse", "ws", "poll"}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// testConfig is a small, quick run: the machine has two shared cores.
func testConfig(t testing.TB, transport, base string) Config {
	return Config{
		Transport: transport, URL: mustURL(t, base), Clients: 20,
		// The drain ends as soon as every client caught up; a long one only
		// keeps a starved machine from turning lateness into loss.
		Duration: time.Second, Drain: 10 * time.Second,
		Seed: 1, FeedSymbols: 16,
		ConnectTimeout: 20 * time.Second, IdleTimeout: time.Minute, PollTimeout: 2 * time.Second,
	}
}

func mustRun(t testing.TB, cfg Config) *result.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

// runAll runs the configurations at once and returns their results in
// order. t.Parallel would run only GOMAXPROCS subtests at a time, and a
// run mostly waits for ticks.
func runAll(t *testing.T, cfgs []Config) []*result.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res := make([]*result.Result, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Go(func() { res[i], errs[i] = Run(ctx, cfg) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("run %d (%s): %v", i, cfgs[i].Transport, err)
		}
	}
	return res
}

// startServer runs this project's server for one transport on a feed of
// 16 symbols (seed 1) at rate ticks/s, until the test ends.
func startServer(t testing.TB, transport string, rate float64) string {
	t.Helper()
	return servertest.Start(t, server.Config{Transport: transport, Feed: feed.Config{Seed: 1, Symbols: 16, Rate: rate, History: 4096}})
}

// clean checks that a run delivered everything exactly once.
func clean(t testing.TB, res *result.Result) {
	t.Helper()
	c := res.Counts
	if f := res.Counts.Faults(); len(f) > 0 {
		t.Errorf("faults: %v; counts %+v; failures %v %v", f, c, res.Failures, res.FailureSamples)
	}
	if c.Expected == 0 || c.Received != c.Expected || c.Gaps != 0 {
		t.Errorf("expected %d, received %d, gaps %d: want all expected received, no gap", c.Expected, c.Received, c.Gaps)
	}
	if res.Latency.Count != c.Received {
		t.Errorf("latency recorded for %d ticks, received %d", res.Latency.Count, c.Received)
	}
	if res.Bytes.Received == 0 || res.Bytes.Sent == 0 || res.Bytes.PerTick < 60 {
		t.Errorf("bytes %+v: want both directions counted, at least the tick JSON per tick", res.Bytes)
	}
	reachedAll(t, res)
}

// reachedAll checks that every tick of the run reached every subscription
// owed it, and that its reach figures are ordered: a tick reaches 50% of
// its subscriptions no later than 99%, and 99% no later than all.
func reachedAll(t testing.TB, res *result.Result) {
	t.Helper()
	rc := res.Reach
	if rc == nil {
		t.Errorf("no reach; warnings %q", res.Warnings)
		return
	}
	if rc.Ticks == 0 || rc.Arrived != rc.Owed || rc.Owed > res.Counts.Expected {
		t.Errorf("reach: %d ticks, %d arrivals of %d owed (expected %d): want every owed tick arrived", rc.Ticks, rc.Arrived, rc.Owed, res.Counts.Expected)
	}
	for _, d := range []struct {
		name string
		d    reach.Dist
	}{{"50%", rc.R50}, {"99%", rc.R99}, {"100%", rc.R100}} {
		if d.d.Reached != rc.Ticks || d.d.Never != 0 || d.d.P50 > d.d.P99 || d.d.P99 > d.d.Max {
			t.Errorf("reach %s: %+v of %d ticks", d.name, d.d, rc.Ticks)
		}
	}
	if rc.R50.Max > rc.R99.Max || rc.R99.Max > rc.R100.Max || rc.R50.P50 > rc.R100.P50 {
		t.Errorf("reach out of order: 50%% %+v, 99%% %+v, 100%% %+v", rc.R50, rc.R99, rc.R100)
	}
	if _, err := reach.Decode(rc.Data); err != nil {
		t.Errorf("reach data: %v", err)
	}
}

func TestRealServers(t *testing.T) {
	var cfgs []Config
	for _, tr := range streamTransports {
		cfg := testConfig(t, tr, startServer(t, tr, 200))
		cfg.Clients = 30
		cfgs = append(cfgs, cfg)
	}
	for i, res := range runAll(t, cfgs) {
		cfg := cfgs[i]
		t.Run(cfg.Transport, func(t *testing.T) {
			clean(t, res)
			if res.Connected != int64(cfg.Clients) || len(res.Failures) != 0 {
				t.Errorf("connected %d of %d, failures %v %v", res.Connected, cfg.Clients, res.Failures, res.FailureSamples)
			}
			if res.Connect.Count != int64(cfg.Clients) || res.FirstTick.Count != int64(cfg.Clients) {
				t.Errorf("connect %d, first tick %d measurements, want %d", res.Connect.Count, res.FirstTick.Count, cfg.Clients)
			}
			if res.FeedRate < 190 || res.FeedRate > 210 {
				t.Errorf("feed rate learned %.1f, want 200", res.FeedRate)
			}
		})
	}
}

// TestChurnResume drops every client about once a second; each reconnects
// with its resume point and must lose nothing and see nothing twice.
func TestChurnResume(t *testing.T) {
	var cfgs []Config
	for _, tr := range streamTransports {
		cfg := testConfig(t, tr, startServer(t, tr, 200))
		cfg.Duration, cfg.Churn = 2*time.Second, 1.0
		cfgs = append(cfgs, cfg)
	}
	for i, res := range runAll(t, cfgs) {
		t.Run(cfgs[i].Transport, func(t *testing.T) {
			clean(t, res)
			if res.Counts.Reconnects < int64(cfgs[i].Clients) {
				t.Errorf("%d reconnects, want at least %d", res.Counts.Reconnects, cfgs[i].Clients)
			}
		})
	}
}

func TestSymbolFilter(t *testing.T) {
	base := startServer(t, "all", 400)
	var cfgs []Config
	for _, tr := range streamTransports {
		cfg := testConfig(t, tr, base)
		cfg.Clients, cfg.Symbols = 10, []string{"AAPL", "NVDA"}
		cfgs = append(cfgs, cfg)
	}
	for i, res := range runAll(t, cfgs) {
		t.Run(cfgs[i].Transport, func(t *testing.T) {
			clean(t, res)
			// 2 of 16 symbols: about 1/8 of the feed.
			share := res.MsgsPerSec / float64(cfgs[i].Clients) / res.FeedRate
			if share < 0.05 || share > 0.25 {
				t.Errorf("received %.3f of the feed per client, want about 0.125", share)
			}
		})
	}
}

func TestShortPoll(t *testing.T) {
	base := startServer(t, "poll", 200)
	cfg := testConfig(t, "shortpoll", base)
	cfg.Interval, cfg.Duration = 100*time.Millisecond, 1500*time.Millisecond
	res := mustRun(t, cfg)
	clean(t, res)
	// 20 pollers every 100 ms for 1.5 s.
	if res.Requests < 200 || res.Requests > 340 {
		t.Errorf("%d requests, want about 300", res.Requests)
	}
	if res.Connected != int64(cfg.Clients) {
		t.Errorf("%d pollers answered, want %d", res.Connected, cfg.Clients)
	}
	// A tick waits on average half an interval for the next poll.
	if res.Latency.P50 < 20 {
		t.Errorf("p50 %.1f ms: short polling every 100 ms cannot be that fast", res.Latency.P50)
	}
}

func TestStorm(t *testing.T) {
	base := startServer(t, "all", 200)
	var cfgs []Config
	for _, tr := range streamTransports {
		cfg := testConfig(t, "storm-"+tr, base)
		cfg.Rate, cfg.Duration = 40, time.Second
		cfgs = append(cfgs, cfg)
	}
	for i, res := range runAll(t, cfgs) {
		t.Run(cfgs[i].Transport, func(t *testing.T) {
			if len(res.Failures) != 0 {
				t.Errorf("failures %v %v", res.Failures, res.FailureSamples)
			}
			if res.Connected < 30 || res.Connected > 45 {
				t.Errorf("%d storm connections, want about 40", res.Connected)
			}
			if res.Connect.Count < res.Connected || res.FirstTick.Count != res.Connected {
				t.Errorf("connect %d, first tick %d measurements for %d connections", res.Connect.Count, res.FirstTick.Count, res.Connected)
			}
			if res.Counts.WrongContent != 0 || res.Counts.Duplicates != 0 {
				t.Errorf("counts %+v", res.Counts)
			}
		})
	}
}

// TestFaultsReported runs against servers that break each stream in one
// way and checks that exactly that fault is reported, once per client.
func TestFaultsReported(t *testing.T) {
	faults := []struct {
		fault string
		check func(t *testing.T, c result.Counts, n int64)
	}{
		{faultNone, func(t *testing.T, c result.Counts, n int64) {
			if c.Received != c.Expected || c.Received == 0 {
				t.Errorf("received %d of %d", c.Received, c.Expected)
			}
		}},
		{faultDrop, func(t *testing.T, c result.Counts, n int64) {
			if c.Missing != n {
				t.Errorf("missing %d, want %d (one per client)", c.Missing, n)
			}
		}},
		{faultRepeat, func(t *testing.T, c result.Counts, n int64) {
			if c.Duplicates != n {
				t.Errorf("duplicates %d, want %d", c.Duplicates, n)
			}
		}},
		{faultReorder, func(t *testing.T, c result.Counts, n int64) {
			if c.OutOfOrder != n {
				t.Errorf("out of order %d, want %d", c.OutOfOrder, n)
			}
		}},
		{faultStall, func(t *testing.T, c result.Counts, n int64) {
			if c.Stalled != n || c.Missing < n {
				t.Errorf("stalled %d, missing %d: want %d stalled, each missing ticks", c.Stalled, c.Missing, n)
			}
		}},
		{faultWrong, func(t *testing.T, c result.Counts, n int64) {
			if c.WrongContent != n {
				t.Errorf("wrong content %d, want %d", c.WrongContent, n)
			}
		}},
		{faultGap, func(t *testing.T, c result.Counts, n int64) {
			if c.Gaps != n || c.GapTicks != 3*n {
				t.Errorf("gaps %d covering %d ticks, want %d covering %d", c.Gaps, c.GapTicks, n, 3*n)
			}
		}},
	}
	// Every other counter must stay zero: the fault is reported exactly.
	others := func(c result.Counts, keep string) map[string]int64 {
		all := map[string]int64{
			faultDrop: c.Missing, faultRepeat: c.Duplicates, faultReorder: c.OutOfOrder,
			faultStall: c.Stalled, faultWrong: c.WrongContent, faultGap: c.Gaps,
			"wrong symbol": c.WrongSymbol, "malformed": c.Malformed,
		}
		delete(all, keep)
		if keep == faultStall {
			delete(all, faultDrop) // a stalled stream misses what follows
		}
		for k, v := range all {
			if v == 0 {
				delete(all, k)
			}
		}
		return all
	}
	// One batch per transport: seven servers and runs at once keep the
	// test short without starving a two-core machine.
	for _, tr := range streamTransports {
		var cfgs []Config
		for _, f := range faults {
			cfg := testConfig(t, tr, newFaultServer(t, f.fault, 100).URL)
			if f.fault == faultStall {
				cfg.Drain = 300 * time.Millisecond // a stall holds the drain to its end
			}
			cfgs = append(cfgs, cfg)
		}
		for i, res := range runAll(t, cfgs) {
			f, n := faults[i], int64(cfgs[i].Clients)
			t.Run(f.fault+"/"+tr, func(t *testing.T) {
				if res.Connected != n {
					t.Errorf("connected %d of %d; failures %v %v", res.Connected, n, res.Failures, res.FailureSamples)
				}
				f.check(t, res.Counts, n)
				// Every fault is early in the run, inside reach's window: what
				// was owed and never arrived is what was missed or skipped.
				if rc := res.Reach; rc == nil || rc.Owed-rc.Arrived != res.Counts.Missing+res.Counts.GapTicks ||
					(rc.R100.Never > 0) != (rc.Owed > rc.Arrived) {
					t.Errorf("reach %+v; counts %+v; warnings %q", rc, res.Counts, res.Warnings)
				}
				if o := others(res.Counts, f.fault); len(o) > 0 {
					t.Errorf("other faults reported: %v (counts %+v)", o, res.Counts)
				}
			})
		}
	}
}

func TestServerDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	for _, tr := range []string{"sse", "ws", "poll", "shortpoll", "storm-ws"} {
		start := time.Now()
		_, err := Run(context.Background(), testConfig(t, tr, "http://"+addr))
		var pe *PreflightError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line saying connection refused", tr, err)
		}
		if time.Since(start) > 3*time.Second {
			t.Errorf("%s: took %s to say the server is down", tr, time.Since(start))
		}
	}
}

func TestWrongTransport(t *testing.T) {
	base := startServer(t, "ws", 100)
	_, err := Run(context.Background(), testConfig(t, "sse", base))
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "does not serve sse") {
		t.Errorf("got %v, want a 404 that says the server does not serve sse", err)
	}
}

func TestFileLimit(t *testing.T) {
	cfg := testConfig(t, "sse", "http://127.0.0.1:9")
	cfg.Clients = 50_000_000
	_, err := Run(context.Background(), cfg)
	var fe *FileLimitError
	if !errors.As(err, &fe) || fe.Fit <= 0 || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("got %v, want a FileLimitError saying how many fit", err)
	}
}

// TestNoGoroutineLeak checks that Run ends every goroutine it started.
func TestNoGoroutineLeak(t *testing.T) {
	ts := newFaultServer(t, faultNone, 100)
	before := runtime.NumGoroutine()
	for _, tr := range []string{"sse", "ws", "poll", "shortpoll", "storm-sse", "slow-ws"} {
		slow := strings.HasPrefix(tr, "slow-")
		cfg := testConfig(t, strings.TrimPrefix(tr, "slow-"), ts.URL)
		cfg.Clients, cfg.Duration, cfg.Interval = 10, 300*time.Millisecond, 50*time.Millisecond
		if slow {
			cfg.Slow = 0.5 // stalled clients' goroutines and connections end too
		}
		mustRun(t, cfg)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 { // the server's connection goroutines wind down
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSourceIPs checks that clients spread over the given source addresses.
func TestSourceIPs(t *testing.T) {
	fs := newFaultServer(t, faultNone, 100)
	for _, tr := range []string{"sse", "poll", "shortpoll", "storm-ws"} {
		cfg := testConfig(t, tr, fs.URL)
		cfg.Clients, cfg.Duration, cfg.Interval = 8, 300*time.Millisecond, 50*time.Millisecond
		cfg.SourceIPs, _ = ParseSourceIPs("127.0.0.2-127.0.0.3")
		mustRun(t, cfg)
	}
	got := fs.sourceAddrs()
	if got["127.0.0.2"] == 0 || got["127.0.0.3"] == 0 {
		t.Errorf("requests by source address: %v, want 127.0.0.2 and 127.0.0.3", got)
	}
	if got["127.0.0.1"] > 4 { // only the preflight connections
		t.Errorf("%d requests from 127.0.0.1: %v", got["127.0.0.1"], got)
	}
}

func TestSchedule(t *testing.T) {
	start := time.Unix(1000, 0)
	var s schedule
	if s.seqAt(start.UnixNano()) != 0 || s.known() {
		t.Error("empty schedule should know nothing")
	}
	s.observe(10, feed.ScheduledAt(start, 200, 10))
	s.observe(400, feed.ScheduledAt(start, 200, 400))
	for _, c := range []struct {
		at   time.Duration
		want uint64
	}{{0, 0}, {time.Second, 200}, {time.Second + 4*time.Millisecond, 200}, {10 * time.Second, 2000}} {
		if got := s.seqAt(start.Add(c.at).UnixNano()); got != c.want && got != c.want-1 {
			t.Errorf("seqAt(+%s) = %d, want %d", c.at, got, c.want)
		}
	}
	if r := s.rate(); r < 199.9 || r > 200.1 {
		t.Errorf("rate %f", r)
	}
}

func TestParseSourceIPs(t *testing.T) {
	ips, err := ParseSourceIPs("127.0.0.2-127.0.0.4,127.0.0.9")
	if err != nil || fmt.Sprint(ips) != "[127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.9]" {
		t.Errorf("got %v %v", ips, err)
	}
	for _, bad := range []string{"x", "127.0.0.5-127.0.0.1", "127.0.0.1-10.0.0.1", "127.0.0.1-::1", "10.0.0.0-10.1.0.0"} {
		if _, err := ParseSourceIPs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if ips, err := chooseSourceIPs(nil, "127.0.0.1", 100_000); err != nil || len(ips) < 4 || !ips[3].Equal(net.IPv4(127, 0, 0, 4)) {
		t.Errorf("auto for 100k loopback connections: %v %v", ips, err)
	}
	if ips, err := chooseSourceIPs(nil, "127.0.0.1", 1000); err != nil || ips != nil {
		t.Errorf("1000 connections need no source address: %v %v", ips, err)
	}
}
