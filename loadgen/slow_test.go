package loadgen

import (
	"testing"
	"time"

	"github.com/pushbench/pushbench/loadgen/internal/servertest"
	"github.com/pushbench/pushbench/loadgen/result"
	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/server"
)

func TestIsSlow(t *testing.T) {
	for _, c := range []struct {
		clients int
		share   float64
		want    []int
	}{
		{20, 0.25, []int{3, 7, 11, 15, 19}},
		{10, 0.1, []int{9}},
		{10, 0.01, []int{9}}, // at least one
		{3, 1, []int{0, 1, 2}},
		{7, 0, nil},
	} {
		cfg := Config{Clients: c.clients, Slow: c.share}
		var got []int
		for i := range c.clients {
			if cfg.isSlow(i) {
				got = append(got, i)
			}
		}
		if len(got) != len(c.want) || cfg.slowClients() != len(c.want) {
			t.Errorf("%d clients, -slow %g: stalled %v (slowClients %d), want %v", c.clients, c.share, got, cfg.slowClients(), c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%d clients, -slow %g: stalled %v, want %v", c.clients, c.share, got, c.want)
				break
			}
		}
	}
}

// TestSlowClients stalls a quarter of the clients against the real server
// on a fast feed with a short write timeout: the others must get every
// tick once, the stalled ones must be reported apart and not blamed on the
// server, and SSE and WebSocket must drop them.
func TestSlowClients(t *testing.T) {
	t.Parallel() // with TestWarmup: both mostly wait
	var cfgs []Config
	for _, tr := range streamTransports {
		// A stalled stream bites once the server's send buffer is full:
		// about 200 kB (grown from 64 kB by the kernel), 1.5 s at 2000
		// ticks/s. Polling needs no fast feed: nothing streams to it.
		rate := 2000.0
		if tr == "poll" {
			rate = 200
		}
		base := servertest.Start(t, server.Config{Transport: tr, WriteTimeout: 300 * time.Millisecond,
			Feed: feed.Config{Seed: 1, Symbols: 16, Rate: rate, History: 1 << 14}})
		cfg := testConfig(t, tr, base)
		cfg.Clients, cfg.Slow, cfg.Duration = 20, 0.25, 3*time.Second
		cfgs = append(cfgs, cfg)
	}
	for i, res := range runAll(t, cfgs) {
		tr := cfgs[i].Transport
		t.Run(tr, func(t *testing.T) {
			clean(t, res) // the 15 others: nothing missing, nothing twice, latency of each
			sl := res.Slow
			if res.SlowClients != 5 || sl.Stalled != 5 {
				t.Errorf("slow clients %d, stalled %d, want 5 and 5", res.SlowClients, sl.Stalled)
			}
			if res.Counts.Stalled != 0 || len(res.Failures) != 0 {
				t.Errorf("stalled subscriptions %d, failures %v: the stalled clients must not count", res.Counts.Stalled, res.Failures)
			}
			// A bug that kept the publisher waiting for a stalled client
			// would hold every other client for the write timeout.
			if res.Latency.P99 > 1000 {
				t.Errorf("p99 %.1f ms for the clients that kept up", res.Latency.P99)
			}
			if res.FirstTick.Count != 15 || res.Connect.Count != 20 {
				t.Errorf("first tick of %d clients, connect of %d: want 15 (the others) and 20 (all)", res.FirstTick.Count, res.Connect.Count)
			}
			if want := res.MsgsPerSec / 15; res.PerClient != want {
				t.Errorf("per client %.2f msgs/s, want msgs/s over the 15 others, %.2f", res.PerClient, want)
			}
			if sl.BytesSent == 0 || sl.BytesReceived == 0 || sl.BacklogBytes == 0 {
				t.Errorf("stalled clients' bytes: %+v", sl)
			}
			switch tr {
			case "poll":
				// The server answers the pending long poll (it fits in the
				// buffers) and waits for a request that never comes.
				if sl.Dropped+sl.Open != 5 {
					t.Errorf("dropped %d, open %d: want 5 in all", sl.Dropped, sl.Open)
				}
			default:
				// The buffers fill within 2 s; the 300 ms write timeout then
				// drops the client.
				if sl.Dropped != 5 {
					t.Errorf("%d of 5 stalled clients dropped by the server (open %d)", sl.Dropped, sl.Open)
				}
			}
		})
	}
}

// TestWarmup runs the same window with and without a warm-up: the warm-up's
// ticks are checked (nothing counted missing) but not recorded.
func TestWarmup(t *testing.T) {
	t.Parallel()
	base := startServer(t, "all", 200)
	plain := testConfig(t, "sse", base)
	plain.Clients, plain.Duration = 10, 2*time.Second
	warm := plain
	warm.Warmup, warm.Duration = time.Second, time.Second
	short := testConfig(t, "shortpoll", base)
	short.Clients, short.Interval = 10, 100*time.Millisecond
	short.Warmup, short.Duration = 500*time.Millisecond, time.Second
	res := runAll(t, []Config{plain, warm, short})
	p, w, s := res[0], res[1], res[2]
	clean(t, p)
	for _, r := range []struct {
		name string
		res  *result.Result
	}{{"sse", w}, {"shortpoll", s}} {
		c := r.res.Counts
		if f := r.res.Counts.Faults(); len(f) > 0 || c.Received != c.Expected || c.Received == 0 {
			t.Errorf("%s with warm-up: faults %v, received %d of %d", r.name, f, c.Received, c.Expected)
		}
		if n := r.res.Latency.Count; n == 0 || n >= c.Received {
			t.Errorf("%s with warm-up: latency of %d ticks, received %d: want the warm-up's left out", r.name, n, c.Received)
		}
		if r.res.Messages == 0 || r.res.Messages >= c.Received {
			t.Errorf("%s with warm-up: %d messages, received %d", r.name, r.res.Messages, c.Received)
		}
	}
	if w.Warmup != 1 || s.Warmup != 0.5 {
		t.Errorf("warm-up reported %g s and %g s, want 1 and 0.5", w.Warmup, s.Warmup)
	}
	// Same 2 s after the ramp; one of them recorded only the second half.
	if w.Messages >= p.Messages*3/4 {
		t.Errorf("%d messages recorded after a 1 s warm-up, %d without: want about half", w.Messages, p.Messages)
	}
	// Reach covers the ticks after the warm-up, every one of them.
	reachedAll(t, w)
	reachedAll(t, s)
	if w.Reach != nil && p.Reach != nil && w.Reach.Ticks >= p.Reach.Ticks*3/4 {
		t.Errorf("reach over %d ticks after a 1 s warm-up, %d without: want about half", w.Reach.Ticks, p.Reach.Ticks)
	}
	if w.Duration < 0.9 || w.Duration > 1.5 || s.Duration < 0.9 || s.Duration > 1.5 {
		t.Errorf("measured %.2f s and %.2f s, want about 1 s", w.Duration, s.Duration)
	}
}
