package loadgen

import (
	"fmt"
	"math"
	"strings"

	"github.com/pushbench/pushbench/loadgen/check"
	"github.com/pushbench/pushbench/loadgen/reach"
	"github.com/pushbench/pushbench/loadgen/result"
)

// startReach gives every shard a reach recorder. Only the modes whose
// subscriptions last the run (sse, ws, poll, shortpoll) call it: a storm's
// connections live for one tick or two, so "reached every subscription"
// means nothing there.
func (r *run) startReach() {
	for _, sh := range r.shards {
		sh.mu.Lock()
		sh.reach = &reach.Recorder{}
		sh.mu.Unlock()
	}
}

// owedTo is one subscription's checker and the horizon it is owed up to.
type owedTo struct {
	chk *check.Checker
	h   uint64
}

// streamSubs lists the checkers of the subscriptions that count (stalled
// clients do not), all owed up to h.
func streamSubs(subs []*subscription, h uint64) []owedTo {
	out := make([]owedTo, 0, len(subs))
	for _, s := range subs {
		if !s.slow {
			out = append(out, owedTo{s.chk, h})
		}
	}
	return out
}

// addReach puts the run's per-tick reach into res, over the seqs from the
// start of the measured window to the lowest horizon: with -warmup the
// first seq scheduled after the warm-up (the latency histogram leaves the
// warm-up out too), else the first seq any subscription was owed. Seqs
// past the horizon are left out: only the subscriptions that got them in
// the drain would count. A reach that cannot be built (the recording and
// the checkers disagree) becomes a warning, not a failed run.
func (r *run) addReach(res *result.Result, subs []owedTo) {
	var spans []reach.Span
	lo, hi := uint64(math.MaxUint64), uint64(math.MaxUint64)
	for _, s := range subs {
		if from, to, ok := s.chk.Span(s.h); ok {
			spans = append(spans, reach.Span{From: from, To: to})
			lo, hi = min(lo, from), min(hi, s.h)
		}
	}
	if len(spans) == 0 {
		lo, hi = 1, 0
	}
	if r.cfg.Warmup > 0 {
		switch from, sched := r.recordFrom.Load(), r.schedule(); {
		case from == math.MaxInt64 || !sched.known():
			lo, hi = 1, 0 // the warm-up never ended: nothing was measured
		default:
			lo = max(lo, sched.seqAt(from)+1)
		}
	}
	var match func(uint64) bool
	if r.book != nil && r.filter != nil {
		match = func(seq uint64) bool {
			n, ok := r.book.Count(seq, seq, r.filter)
			return ok && n == 1
		}
	}
	var recs []*reach.Recorder
	for _, sh := range r.shards {
		sh.mu.Lock()
		if sh.reach != nil {
			recs = append(recs, sh.reach)
		}
		sh.mu.Unlock()
	}
	set, err := reach.Build(lo, hi, spans, match, recs...)
	if err != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("no reach figures: %v", err))
		return
	}
	res.Reach = result.NewReach(set)
	if d := res.Reach.Dropped; d > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("reach: %d arrivals not kept (seqs more than %d apart)", d, reach.MaxSeqs))
	}
}

// reachLine is the summary's line on reach, "" without reach: per share,
// the p50, p99 and max over the ticks of the time to reach it, and the
// ticks that never did.
func reachLine(rc *result.Reach) string {
	if rc == nil {
		return ""
	}
	if rc.Ticks == 0 {
		return "reach        no tick owed in the measured window\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "reach        time until a tick reached 50%% / 99%% / 100%% of the subscriptions owed it, over %d ticks:\n", rc.Ticks)
	for _, pct := range reach.Shares {
		d := rc.Dist(pct)
		fmt.Fprintf(&b, "  %4d%%      ", pct)
		if d.Reached > 0 {
			fmt.Fprintf(&b, "p50 %s  p99 %s  max %s ms", ms(d.P50), ms(d.P99), ms(d.Max))
		} else {
			b.WriteString("none")
		}
		if d.Never > 0 {
			fmt.Fprintf(&b, "  (%d ticks never did)", d.Never)
		}
		b.WriteString("\n")
	}
	return b.String()
}
