package loadgen

import (
	"fmt"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/pushbench/pushbench/loadgen/result"
)

// aux owns the goroutines that watch a run rather than drive it: the lag
// probe and the progress reporter. stopLag ends the probe (the span the
// figures come from is over: what follows, closing thousands of clients
// and writing the result, must not count as lag); stop ends both and
// waits for them.
type aux struct {
	quit, lagQuit chan struct{}
	lagDone       chan *hdrhistogram.Histogram
	lag           *hdrhistogram.Histogram // once stopLag returned
	progDone      chan struct{}
}

func newAux(r *run) *aux {
	a := &aux{quit: make(chan struct{}), lagQuit: make(chan struct{}),
		lagDone: make(chan *hdrhistogram.Histogram, 1), progDone: make(chan struct{})}
	go func() { a.lagDone <- lagProbe(a.lagQuit) }()
	go func() {
		defer close(a.progDone)
		r.progress(a.quit)
	}()
	return a
}

// stopLag ends the lag probe and returns its histogram; later calls
// return the same one.
func (a *aux) stopLag() *hdrhistogram.Histogram {
	if a.lag == nil {
		close(a.lagQuit)
		a.lag = <-a.lagDone
	}
	return a.lag
}

// stop ends the goroutines and returns the lag histogram.
func (a *aux) stop() *hdrhistogram.Histogram {
	close(a.quit)
	<-a.progDone
	return a.stopLag()
}

// progress writes the live progress until quit: one line redrawn in place
// on a terminal, a plain line every ProgressEvery otherwise (logs, CI).
func (r *run) progress(quit <-chan struct{}) {
	cfg := r.cfg
	if cfg.Progress == nil {
		return
	}
	every := cfg.ProgressEvery
	if cfg.Live {
		every = 500 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	start := time.Now()
	tmp := result.NewHistogram()
	var lastMsgs int64
	last := start
	for {
		select {
		case <-quit:
			if cfg.Live {
				fmt.Fprint(cfg.Progress, "\r\033[K")
			}
			return
		case now := <-t.C:
			tmp.Reset()
			var msgs, fails int64
			for _, sh := range r.shards {
				msgs += sh.messages.Load()
				sh.mu.Lock()
				tmp.Merge(sh.lat)
				for _, v := range sh.failures {
					fails += v
				}
				sh.mu.Unlock()
			}
			rate := float64(msgs-lastMsgs) / now.Sub(last).Seconds()
			lastMsgs, last = msgs, now
			phase, _ := r.phase.Load().(string)
			line := fmt.Sprintf("%6.1fs %-5s %s  clients %d/%d  msgs %s/s  p99 %.1f ms  failures %d",
				now.Sub(start).Seconds(), phase, cfg.Transport, r.connected.Load(), cfg.Clients,
				si(rate), float64(tmp.ValueAtQuantile(99))/1000, fails)
			if cfg.Slow > 0 {
				line += fmt.Sprintf("  stalled %d", r.slow.stalled.Load())
			}
			if cfg.Live {
				fmt.Fprint(cfg.Progress, "\r\033[K"+line)
			} else {
				fmt.Fprintln(cfg.Progress, line)
			}
		}
	}
}

// si formats a count with a k/M suffix.
func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
