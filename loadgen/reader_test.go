package loadgen

import (
	"runtime"
	"testing"
)

// TestReadersAgree runs each reader against the same real server at the
// same time, with churn: both get every tick exactly once, count about the
// same bytes per tick and requests per tick, and say which reader read.
func TestReadersAgree(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the event loop needs epoll")
	}
	var cfgs []Config
	for _, tr := range streamTransports {
		base := startServer(t, tr, 200)
		for _, rd := range []string{ReaderGoroutine, ReaderLoop} {
			cfg := testConfig(t, tr, base)
			cfg.Reader, cfg.Churn = rd, 0.5
			cfgs = append(cfgs, cfg)
		}
	}
	res := runAll(t, cfgs)
	for i := 0; i < len(res); i += 2 {
		g, l := res[i], res[i+1]
		t.Run(cfgs[i].Transport, func(t *testing.T) {
			clean(t, g)
			clean(t, l)
			if g.Reader != "goroutine" || l.Reader != "epoll" {
				t.Errorf("readers %q and %q, want goroutine and epoll", g.Reader, l.Reader)
			}
			if g.Counts.Reconnects == 0 || l.Counts.Reconnects == 0 {
				t.Errorf("reconnects %d and %d: churn did not happen", g.Counts.Reconnects, l.Counts.Reconnects)
			}
			// A stream's framing per tick is fixed; a long poll's depends on
			// how many ticks each answer carries, which the reader's speed
			// changes. The requests are the same bytes either way.
			if r := l.Bytes.PerTick / g.Bytes.PerTick; cfgs[i].Transport != "poll" && (r < 0.9 || r > 1.1) {
				t.Errorf("bytes per tick: loop %.1f, goroutine %.1f", l.Bytes.PerTick, g.Bytes.PerTick)
			}
			gr := float64(g.Bytes.Sent) / float64(g.Requests)
			lr := float64(l.Bytes.Sent) / float64(l.Requests)
			if lr < gr*0.95 || lr > gr*1.05 {
				t.Errorf("bytes per request: loop %.1f, goroutine %.1f", lr, gr)
			}
		})
	}
}
