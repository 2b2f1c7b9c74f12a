// Package reach measures how long a tick takes to reach everyone: for each
// seq, the time from its scheduled ts until 50%, 99% and 100% of the
// subscriptions owed that seq had it. Latency percentiles over all
// deliveries cannot say this: a p99 of 5 ms may hide that every tick waits
// 40 ms for its last hundred subscribers.
//
// A Recorder keeps, per seq, a sparse log-bucketed histogram of the
// arrivals' latencies plus their exact maximum. Buckets are 64 per octave
// (exact below 128 µs), so a bucket's upper edge is at most 1/64 (1.6%)
// above any value in it. One tick reaches every client within a narrow
// window, so a seq holds few buckets.
//
// At the end of a run Build turns the recorders of one process, plus the
// range of seqs each subscription was owed, into a Set: per seq the owed
// count, the arrivals and their histogram. Sets of load-generator processes
// that ran side by side merge exactly (Merge: buckets and owed counts add,
// maxima take the larger), so the figures of the merge are those of one
// process that recorded everything. Summarize computes them:
//
//   - reach at share q of seq s: the smallest latency by which
//     ceil(q × owed(s)) arrivals had happened. For q = 100% it is the exact
//     maximum; for 50% and 99% it is the upper edge of the bucket that
//     holds that arrival (never below the true value, at most 1/64 above
//     it, exact below 128 µs), capped at the exact maximum.
//   - a seq with fewer arrivals than that never reached q: it is counted,
//     not left out.
//   - over all seqs: the p50, p99 (nearest rank) and maximum of each share,
//     which inherit the same bound.
//
// Latencies are kept in whole microseconds (truncated), as the latency
// histograms of loadgen/result are.
//
// Concurrency: a Recorder and a Set are not safe for concurrent use; the
// load generator keeps one Recorder per shard, under the shard's lock.
package reach

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// MaxSeqs bounds the seqs one Recorder or Set spans: 2^20 seqs, 8.7 minutes
// at 2,000 ticks/s, 40 MiB of Recorder slots. Arrivals of seqs beyond it
// (a run far longer, or a server sending wild seqs) are counted as Dropped.
const MaxSeqs = 1 << 20

// Bucket layout: values below subCount are exact; above, each octave
// [2^k, 2^(k+1)) has half buckets of width 2^(k-6).
const (
	subCount   = 128
	half       = subCount / 2
	numBuckets = subCount + (64-7)*half // for any uint64 value
	countBits  = 20                     // a packed bucket: index<<countBits | count
	countMask  = 1<<countBits - 1
)

// bucketOf returns the bucket of a latency in µs.
func bucketOf(v uint64) uint32 {
	if v < subCount {
		return uint32(v)
	}
	e := bits.Len64(v) - 7 // v>>e is in [64, 128)
	return uint32(subCount + (e-1)*half + int(v>>e) - half)
}

// upper returns the largest value of bucket i.
func upper(i uint32) uint64 {
	if i < subCount {
		return uint64(i)
	}
	e := (i-subCount)/half + 1
	m := uint64(half + (i-subCount)%half)
	return (m+1)<<e - 1
}

// tick is one seq: its arrivals' buckets (packed, sorted by index; an index
// repeats only when a count would overflow countMask), how many arrived,
// their maximum (µs) and, in a Set, how many subscriptions were owed it.
type tick struct {
	b    []uint32
	n    uint32
	max  uint32
	owed uint32
	hint uint32 // the entry record touched last (a hint: may be stale)
}

// add counts c arrivals in bucket idx and returns the position of the last
// entry it touched.
func (t *tick) add(idx, c uint32) (pos int) {
	for c > 0 {
		// The entry after which idx belongs: the last one with an index <= idx.
		j, _ := slices.BinarySearchFunc(t.b, idx, func(e, idx uint32) int {
			if e>>countBits <= idx {
				return -1
			}
			return 1
		})
		if j > 0 && t.b[j-1]>>countBits == idx && t.b[j-1]&countMask < countMask {
			d := min(c, countMask-t.b[j-1]&countMask)
			t.b[j-1] += d
			c, pos = c-d, j-1
			continue
		}
		d := min(c, countMask)
		t.b = slices.Insert(t.b, j, idx<<countBits|d)
		c, pos = c-d, j
	}
	return pos
}

// record counts one arrival of latency us.
func (t *tick) record(us uint32) {
	idx := bucketOf(uint64(us))
	// Arrivals of one seq come in time order, so their latency mostly
	// grows: the bucket touched last, the next one, or a new last one is
	// the likely one. Else (or when the bucket is full) search.
	h, n := int(t.hint), len(t.b)
	switch {
	case h < n && t.b[h]>>countBits == idx && t.b[h]&countMask < countMask:
		t.b[h]++
	case h+1 < n && t.b[h+1]>>countBits == idx && t.b[h+1]&countMask < countMask:
		t.b[h+1]++
		t.hint++
	case n == 0 || t.b[n-1]>>countBits < idx:
		t.b = append(t.b, idx<<countBits|1)
		t.hint = uint32(n)
	default:
		t.hint = uint32(t.add(idx, 1))
	}
	t.n++
	t.max = max(t.max, us)
}

// merge adds o's arrivals and owed subscriptions to t.
func (t *tick) merge(o *tick) {
	for _, e := range o.b {
		t.add(e>>countBits, e&countMask)
	}
	t.n += o.n
	t.owed += o.owed
	t.max = max(t.max, o.max)
}

// at returns the latency (µs) by which k arrivals had happened; k must be
// in 1..n.
func (t *tick) at(k uint32) uint32 {
	if k >= t.n {
		return t.max // exact
	}
	var cum uint32
	for _, e := range t.b {
		cum += e & countMask
		if cum >= k {
			return uint32(min(upper(e>>countBits), uint64(t.max)))
		}
	}
	return t.max // unreachable: the counts add up to n
}

// Recorder collects arrivals per seq. The zero value is ready to use.
type Recorder struct {
	lo      uint64 // seq of ticks[0]
	ticks   []tick
	dropped int64
	room    int // buckets a new seq's list starts with room for
}

// Record counts one arrival of seq, ns after its scheduled ts. Call it once
// per subscription and seq: for the ticks the checker accepts, never for
// duplicates. A negative latency (clocks agree here, so only rounding) is 0.
func (r *Recorder) Record(seq uint64, ns int64) {
	t := r.slot(seq)
	if t == nil {
		r.dropped++
		return
	}
	us := max(ns, 0) / 1000
	if t.b == nil {
		// A seq's arrivals spread over about as many buckets as the last
		// seq's did: start with the room the last growth made, less an
		// eighth (so that it follows a spread that narrows), instead of
		// growing from 8 (each growth an allocation, and with them GC).
		t.b = make([]uint32, 0, max(8, r.room))
		r.room -= r.room / 8
	}
	had := cap(t.b)
	t.record(uint32(min(us, math.MaxUint32)))
	if cap(t.b) != had {
		r.room = cap(t.b) // it grew: the spread is wider than room
	}
}

// slot returns the tick of seq, growing the window to it, or nil when that
// would span more than MaxSeqs.
func (r *Recorder) slot(seq uint64) *tick {
	switch {
	case len(r.ticks) == 0:
		r.lo = seq
		r.ticks = append(r.ticks, tick{})
	case seq < r.lo:
		if r.lo-seq > MaxSeqs-uint64(len(r.ticks)) {
			return nil
		}
		r.ticks = slices.Insert(r.ticks, 0, make([]tick, r.lo-seq)...)
		r.lo = seq
	case seq-r.lo >= uint64(len(r.ticks)):
		if seq-r.lo >= MaxSeqs {
			return nil
		}
		for uint64(len(r.ticks)) <= seq-r.lo {
			r.ticks = append(r.ticks, tick{})
		}
	}
	return &r.ticks[seq-r.lo]
}

// Dropped returns the arrivals Record could not keep (see MaxSeqs).
func (r *Recorder) Dropped() int64 { return r.dropped }

// Span is a subscription's owed range of seqs, From to To inclusive.
type Span struct{ From, To uint64 }

// entry is one seq of a Set.
type entry struct {
	seq uint64
	tick
}

// Set is the reach data of seqs Lo..Hi: per seq with something owed or
// received, the owed count and the arrivals. Its zero value is empty.
type Set struct {
	lo, hi  uint64
	entries []entry // by seq, all in lo..hi
	dropped int64   // arrivals the recorders could not keep
}

// Window returns the seqs the set covers, lo..hi; ok is false when empty.
func (s *Set) Window() (lo, hi uint64, ok bool) { return s.lo, s.hi, s.hi >= s.lo && s.hi > 0 }

// Build makes the Set of seqs lo..hi (at most MaxSeqs of them; hi-lo+1
// beyond that keeps the last MaxSeqs): owed(s) is the number of spans that
// cover s when match(s) (the subscriptions' symbol filter; nil matches
// every seq), else 0; the arrivals are every recorder's. Arrivals outside
// lo..hi are left out: they are outside the measured window. It fails when
// a seq has more arrivals than owed subscriptions, which would mean the
// recording and the spans disagree.
func Build(lo, hi uint64, spans []Span, match func(seq uint64) bool, recs ...*Recorder) (*Set, error) {
	s := &Set{}
	for _, r := range recs {
		s.dropped += r.dropped
	}
	lo = max(lo, 1)
	if hi < lo {
		return s, nil
	}
	if hi-lo >= MaxSeqs {
		lo = hi - MaxSeqs + 1
	}
	s.lo, s.hi = lo, hi
	n := hi - lo + 1
	// owed as a difference array over the window.
	diff := make([]int32, n+1)
	for _, sp := range spans {
		from, to := max(sp.From, lo), min(sp.To, hi)
		if from > to {
			continue
		}
		diff[from-lo]++
		diff[to-lo+1]--
	}
	var cover int32
	for i := range n {
		cover += diff[i]
		seq := lo + i
		var t tick
		for _, r := range recs {
			if seq >= r.lo && seq-r.lo < uint64(len(r.ticks)) {
				t.merge(&r.ticks[seq-r.lo])
			}
		}
		if cover > 0 && (match == nil || match(seq)) {
			t.owed = uint32(cover)
		}
		if t.n > t.owed {
			return nil, fmt.Errorf("reach: seq %d has %d arrivals for %d owed subscriptions", seq, t.n, t.owed)
		}
		if t.owed > 0 {
			s.entries = append(s.entries, entry{seq, t})
		}
	}
	return s, nil
}

// Merge combines the sets of load-generator processes that ran side by
// side: over the seqs every one of them covers (the intersection of their
// windows, so that each seq counts every process's subscriptions), owed
// counts and arrivals add up and maxima take the larger. The result is
// what one process recording everything would have built.
func Merge(sets ...*Set) *Set {
	out := &Set{}
	if len(sets) == 0 {
		return out
	}
	out.lo, out.hi = sets[0].lo, sets[0].hi
	for _, s := range sets {
		out.dropped += s.dropped
		out.lo, out.hi = max(out.lo, s.lo), min(out.hi, s.hi)
	}
	if out.hi < out.lo {
		out.lo, out.hi = 0, 0
		return out
	}
	byseq := map[uint64]*tick{}
	var seqs []uint64
	for _, s := range sets {
		for i := range s.entries {
			e := &s.entries[i]
			if e.seq < out.lo || e.seq > out.hi {
				continue
			}
			t, ok := byseq[e.seq]
			if !ok {
				t = &tick{}
				byseq[e.seq] = t
				seqs = append(seqs, e.seq)
			}
			t.merge(&e.tick)
		}
	}
	slices.Sort(seqs)
	out.entries = make([]entry, 0, len(seqs))
	for _, seq := range seqs {
		out.entries = append(out.entries, entry{seq, *byseq[seq]})
	}
	return out
}

// Shares are the shares of the owed subscriptions reach is reported at, in
// percent.
var Shares = [3]uint32{50, 99, 100}

// Dist is the distribution over ticks of the time to reach one share of
// their owed subscriptions.
type Dist struct {
	Reached int64 `json:"reached"` // ticks that reached the share
	// Never counts the ticks that did not: fewer arrivals than
	// ceil(share × owed). They are not in the percentiles.
	Never int64   `json:"never"`
	P50   float64 `json:"p50_ms"` // nearest rank, over the ticks that reached it
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Summary is a Set's figures: per share, the distribution over its ticks.
type Summary struct {
	Ticks   int64 `json:"ticks"`   // seqs owed to at least one subscription
	Owed    int64 `json:"owed"`    // owed (seq, subscription) pairs
	Arrived int64 `json:"arrived"` // arrivals at those seqs
	// Dropped arrivals could not be kept (more than MaxSeqs seqs apart).
	Dropped int64 `json:"dropped,omitempty"`
	R50     Dist  `json:"r50"`
	R99     Dist  `json:"r99"`
	R100    Dist  `json:"r100"`
}

// Dist returns the distribution of share pct (one of Shares).
func (s *Summary) Dist(pct uint32) *Dist {
	switch pct {
	case 50:
		return &s.R50
	case 99:
		return &s.R99
	case 100:
		return &s.R100
	}
	return nil
}

// Reach returns the latency (µs) by which seq's arrivals reached pct
// percent of its owed subscriptions, and false when they never did or
// seq owes nothing.
func (s *Set) Reach(seq uint64, pct uint32) (uint32, bool) {
	i, ok := slices.BinarySearchFunc(s.entries, seq, func(e entry, seq uint64) int {
		switch {
		case e.seq < seq:
			return -1
		case e.seq > seq:
			return 1
		}
		return 0
	})
	if !ok {
		return 0, false
	}
	return s.entries[i].reach(pct)
}

func (t *tick) reach(pct uint32) (uint32, bool) {
	k := uint32((uint64(t.owed)*uint64(pct) + 99) / 100) // ceil(pct% of owed)
	if t.owed == 0 || k > t.n {
		return 0, false
	}
	return t.at(max(k, 1)), true
}

// Summarize computes the distribution of each share over the set's ticks.
func (s *Set) Summarize() Summary {
	out := Summary{Dropped: s.dropped}
	vals := make([]uint32, 0, len(s.entries))
	for _, pct := range Shares {
		vals = vals[:0]
		d := out.Dist(pct)
		for i := range s.entries {
			if v, ok := s.entries[i].reach(pct); ok {
				vals = append(vals, v)
			} else {
				d.Never++
			}
		}
		d.Reached = int64(len(vals))
		if len(vals) > 0 {
			slices.Sort(vals)
			d.P50, d.P99, d.Max = ms(rank(vals, 50)), ms(rank(vals, 99)), ms(vals[len(vals)-1])
		}
	}
	for i := range s.entries {
		out.Ticks++
		out.Owed += int64(s.entries[i].owed)
		out.Arrived += int64(s.entries[i].n)
	}
	return out
}

// rank returns the nearest-rank pct percentile of sorted v.
func rank(v []uint32, pct int) uint32 {
	k := (len(v)*pct + 99) / 100
	return v[max(k, 1)-1]
}

func ms(us uint32) float64 { return float64(us) / 1000 }
