package main

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/pushbench/pushbench/bench/report"
	"github.com/pushbench/pushbench/bench/runner"
)

// progress shows which run is going, how many are left, the elapsed time
// and an ETA: a bar on a terminal, one plain line per event otherwise (CI,
// a pipe, a log file), since a redrawn bar in a log is noise.
type progress struct {
	w       io.Writer
	bar     *progressbar.ProgressBar // nil: plain lines
	start   time.Time
	planned time.Duration // the estimate of the whole plan
}

func newProgress(w io.Writer, bar bool, total int, planned time.Duration) *progress {
	p := &progress{w: w, start: time.Now(), planned: planned}
	if bar {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("starting"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetWidth(20),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	return p
}

// eta scales the estimate of what is left by how far off the estimates
// have been so far, which absorbs this machine's start-up and stop costs.
func (p *progress) eta(e runner.Event) time.Duration {
	elapsed := time.Since(p.start)
	done := p.planned - e.Estimate
	if done <= 0 || elapsed <= 0 {
		return e.Estimate
	}
	return time.Duration(float64(e.Estimate) * float64(elapsed) / float64(done))
}

func (p *progress) event(e runner.Event) {
	if p.bar != nil {
		if !e.Done {
			p.bar.Describe(fmt.Sprintf("%-40s ETA %s", e.Spec.String(), p.eta(e).Round(time.Second)))
			return
		}
		_ = p.bar.Add(1)
		if e.Run != nil && !e.Run.OK() {
			// A failure stays visible above the bar.
			_ = p.bar.Clear()
			fmt.Fprintf(p.w, "%s: %s\n", e.Spec, e.Run.Error)
		}
		return
	}
	elapsed := time.Since(p.start).Round(time.Second)
	if !e.Done {
		fmt.Fprintf(p.w, "[%*d/%d] %s (elapsed %s, ETA %s)\n", width(e.Total), e.Index+1, e.Total, e.Spec, elapsed, p.eta(e).Round(time.Second))
		return
	}
	fmt.Fprintf(p.w, "[%*d/%d] %s\n", width(e.Total), e.Index+1, e.Total, outcome(e.Run))
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
	}
}

// outcome is one line about a finished run.
func outcome(r *report.Run) string {
	switch {
	case r == nil:
		return "no result"
	case r.Crashed:
		return "SERVER CRASHED: " + r.Error
	case !r.OK():
		return "FAILED: " + r.Error
	}
	f := r.Figures
	lat, name := f.P99, "p99"
	if r.Scenario == report.Storm {
		lat, name = f.FT99, "first-tick p99"
	}
	s := fmt.Sprintf("done in %.1fs: %s %s ms, %.0f msgs/s, %d/%d connected", r.Wall, name, report.MetricP99.Format(float64(lat)),
		float64(f.MsgsPerSec), r.Result.Connected, r.Clients)
	if f.Saturated {
		s += ", LOADGEN SATURATED"
	}
	if f.Incorrect {
		s += ", INCORRECT: " + f.Why
	}
	return s
}

func width(n int) int { return len(fmt.Sprint(n)) }
