package reach

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestBuckets(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	vals := []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, math.MaxUint32, math.MaxUint64}
	for range 100000 {
		vals = append(vals, r.Uint64N(1<<uint(1+r.IntN(63))))
	}
	for _, v := range vals {
		i := bucketOf(v)
		if i >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, beyond %d buckets", v, i, numBuckets)
		}
		u := upper(i)
		if u < v || u-v > v/64 {
			t.Fatalf("upper(bucketOf(%d)) = %d: not within 1/64 above", v, u)
		}
		if v < subCount && u != v {
			t.Fatalf("%d below %d not exact: %d", v, subCount, u)
		}
		if bucketOf(u) != i || (i > 0 && bucketOf(upper(i-1)+1) != i) {
			t.Fatalf("bucket %d is not [upper(%d)+1, upper(%d)]", i, i-1, i)
		}
	}
}

// world is a brute-force model of one run: per seq the owed count and
// every arrival's latency in µs.
type world struct {
	lo, hi uint64
	spans  []Span
	match  func(uint64) bool
	lat    map[uint64][]uint32
}

// randomWorld makes subs subscriptions over seqs lo..hi with random start
// and end points, a filter that drops every third seq, and arrivals for a
// random share of what each is owed, with latencies spread over several
// octaves (and a few exact small ones), recorded in per-shard recorders.
func randomWorld(r *rand.Rand, subs int, lo, hi uint64, recs []*Recorder) *world {
	w := &world{lo: lo, hi: hi, lat: map[uint64][]uint32{}, match: func(s uint64) bool { return s%3 != 0 }}
	for i := range subs {
		from := lo + r.Uint64N(hi-lo+1)/(1+uint64(r.IntN(3)))
		to := from + r.Uint64N(hi-from+1+5) // some run past hi (drained late)
		w.spans = append(w.spans, Span{from, to})
		keep := r.Float64()
		rec := recs[i%len(recs)]
		for seq := from; seq <= to; seq++ {
			if !w.match(seq) || r.Float64() > keep {
				continue
			}
			ns := int64(r.ExpFloat64() * float64(int64(1)<<uint(7+r.IntN(14))) * 1000)
			if r.IntN(10) == 0 {
				ns = int64(r.IntN(200_000)) // below 200 µs: partly exact
			}
			rec.Record(seq, ns)
			if seq >= lo && seq <= hi {
				w.lat[seq] = append(w.lat[seq], uint32(ns/1000))
			}
		}
	}
	return w
}

func (w *world) owed(seq uint64) uint32 {
	if !w.match(seq) {
		return 0
	}
	var n uint32
	for _, sp := range w.spans {
		if sp.From <= seq && seq <= sp.To {
			n++
		}
	}
	return n
}

// exact returns the true reach of seq at pct: the k-th smallest latency.
func (w *world) exact(seq uint64, pct uint32) (uint32, bool) {
	owed := w.owed(seq)
	k := int((uint64(owed)*uint64(pct) + 99) / 100)
	v := slices.Clone(w.lat[seq])
	slices.Sort(v)
	if owed == 0 || k > len(v) {
		return 0, false
	}
	return v[max(k, 1)-1], true
}

// within reports whether got is the true value or at most 1/64 above it.
func within(got, want float64) bool {
	return got >= want && got <= want+want/64+1e-9
}

func TestReachAgainstBruteForce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		subs   int
		lo, hi uint64
		shards int
	}{
		{"one subscription", 1, 5, 40, 1},
		{"few", 7, 100, 300, 2},
		{"many", 300, 1000, 1060, 4},
		{"long", 20, 1, 2000, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(tc.subs), tc.hi))
			recs := make([]*Recorder, tc.shards)
			for i := range recs {
				recs[i] = &Recorder{}
			}
			w := randomWorld(r, tc.subs, tc.lo, tc.hi, recs)
			s, err := Build(tc.lo, tc.hi, w.spans, w.match, recs...)
			if err != nil {
				t.Fatal(err)
			}
			want := map[uint32][]float64{}
			never := map[uint32]int64{}
			var ticks, owed, arrived int64
			for seq := tc.lo; seq <= tc.hi; seq++ {
				if o := w.owed(seq); o > 0 {
					ticks++
					owed += int64(o)
					arrived += int64(len(w.lat[seq]))
				}
				for _, pct := range Shares {
					ev, eok := w.exact(seq, pct)
					got, ok := s.Reach(seq, pct)
					if ok != eok {
						t.Fatalf("seq %d at %d%%: reached %v, want %v (owed %d, arrived %d)", seq, pct, ok, eok, w.owed(seq), len(w.lat[seq]))
					}
					if !ok {
						if w.owed(seq) > 0 {
							never[pct]++
						}
						continue
					}
					want[pct] = append(want[pct], float64(ev))
					if pct == 100 && got != ev {
						t.Fatalf("seq %d at 100%%: %d µs, want exactly %d", seq, got, ev)
					}
					if !within(float64(got), float64(ev)) {
						t.Fatalf("seq %d at %d%%: %d µs, true %d: beyond the 1/64 bound", seq, pct, got, ev)
					}
					if ev < subCount && got != ev {
						t.Fatalf("seq %d at %d%%: %d µs, want exactly %d below %d µs", seq, pct, got, ev, subCount)
					}
				}
			}
			sum := s.Summarize()
			if sum.Ticks != ticks || sum.Owed != owed || sum.Arrived != arrived {
				t.Errorf("summary ticks/owed/arrived %d/%d/%d, want %d/%d/%d", sum.Ticks, sum.Owed, sum.Arrived, ticks, owed, arrived)
			}
			for _, pct := range Shares {
				d, v := sum.Dist(pct), want[pct]
				if d.Reached != int64(len(v)) || d.Never != never[pct] {
					t.Errorf("%d%%: reached %d never %d, want %d and %d", pct, d.Reached, d.Never, len(v), never[pct])
				}
				if len(v) == 0 {
					continue
				}
				slices.Sort(v)
				nr := func(p int) float64 { return v[max((len(v)*p+99)/100, 1)-1] / 1000 }
				for _, c := range []struct {
					name      string
					got, want float64
				}{{"p50", d.P50, nr(50)}, {"p99", d.P99, nr(99)}, {"max", d.Max, v[len(v)-1] / 1000}} {
					if pct == 100 && c.got != c.want || !within(c.got, c.want) {
						t.Errorf("%d%% %s = %v ms, true %v ms", pct, c.name, c.got, c.want)
					}
				}
			}
			if never[100] == 0 {
				t.Error("the random world has no tick that missed someone: the never count is untested")
			}
		})
	}
}

func TestMergeIsRecordAllInOne(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const lo, hi = 50, 400
	// Three processes side by side, two shards each; and one process with
	// one recorder that sees every arrival in the same order.
	all := &Recorder{}
	var spans []Span
	var sets []*Set
	var match func(uint64) bool
	for p := range 3 {
		recs := []*Recorder{{}, {}}
		w := randomWorld(r, 40+p*30, lo, hi, recs)
		match = w.match
		spans = append(spans, w.spans...)
		s, err := Build(lo, hi, w.spans, match, recs...)
		if err != nil {
			t.Fatal(err)
		}
		sets = append(sets, s)
		// Replay the same arrivals into the single recorder.
		for _, seq := range sortedSeqs(w.lat) {
			for _, us := range w.lat[seq] {
				all.Record(seq, int64(us)*1000)
			}
		}
	}
	one, err := Build(lo, hi, spans, match, all)
	if err != nil {
		t.Fatal(err)
	}
	merged := Merge(sets...)
	if got, want := merged.Encode(), one.Encode(); got != want {
		t.Fatalf("merge differs from one recorder of everything:\n%s\n%s", got, want)
	}
	if merged.Summarize() != one.Summarize() {
		t.Errorf("summaries differ: %+v\n%+v", merged.Summarize(), one.Summarize())
	}
	// Merging in another order, and through the encoding, changes nothing.
	var back []*Set
	for i := len(sets) - 1; i >= 0; i-- {
		d, err := Decode(sets[i].Encode())
		if err != nil {
			t.Fatal(err)
		}
		back = append(back, d)
	}
	if got := Merge(back...).Encode(); got != one.Encode() {
		t.Error("merge of decoded sets in reverse order differs")
	}
}

func sortedSeqs(m map[uint64][]uint32) []uint64 {
	var out []uint64
	for s := range m {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// TestMergeWindows checks that a merge covers only the seqs every process
// covered, and that a process that covered nothing takes nothing away.
func TestMergeWindows(t *testing.T) {
	mk := func(lo, hi uint64) *Set {
		var rec Recorder
		for seq := lo; seq <= hi; seq++ {
			rec.Record(seq, 1000)
		}
		s, err := Build(lo, hi, []Span{{lo, hi}}, nil, &rec)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	m := Merge(mk(10, 50), mk(12, 60))
	if lo, hi, ok := m.Window(); !ok || lo != 12 || hi != 50 {
		t.Errorf("window %d..%d (%v), want 12..50", lo, hi, ok)
	}
	if s := m.Summarize(); s.Ticks != 39 || s.Owed != 78 || s.R100.Reached != 39 {
		t.Errorf("summary %+v: want 39 ticks each owed twice and reached", s)
	}
	empty, err := Build(1, 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := Merge(mk(10, 50), empty).Summarize().Ticks; got != 0 {
		// An empty window intersects to nothing: the merge cannot vouch
		// for any seq of a process it knows nothing about.
		t.Errorf("merge with an empty set: %d ticks, want 0", got)
	}
}

func TestBuildRefusesMoreArrivalsThanOwed(t *testing.T) {
	var rec Recorder
	rec.Record(7, 1000)
	rec.Record(7, 2000)
	if _, err := Build(1, 10, []Span{{1, 10}}, nil, &rec); err == nil || !strings.Contains(err.Error(), "seq 7 has 2 arrivals for 1") {
		t.Errorf("Build = %v, want a refusal for seq 7", err)
	}
	// A seq the filter excludes owes nothing, so an arrival there is wrong too.
	if _, err := Build(1, 10, []Span{{1, 10}, {1, 10}}, func(s uint64) bool { return s != 7 }, &rec); err == nil {
		t.Error("arrivals on a seq the filter excludes were accepted")
	}
}

func TestRecorderBounds(t *testing.T) {
	var rec Recorder
	rec.Record(MaxSeqs, 5000)
	rec.Record(1, 5000)            // exactly MaxSeqs apart: kept
	rec.Record(MaxSeqs+1, 5000)    // one too far: dropped
	rec.Record(1<<40, 5000)        // wild: dropped
	rec.Record(MaxSeqs/2, -3000)   // negative latency: 0
	rec.Record(MaxSeqs/2+1, 1<<62) // huge latency: clamped
	if rec.Dropped() != 2 {
		t.Errorf("dropped %d, want 2", rec.Dropped())
	}
	for _, c := range []struct {
		seq  uint64
		want uint32
	}{{1, 5}, {MaxSeqs, 5}, {MaxSeqs / 2, 0}, {MaxSeqs/2 + 1, math.MaxUint32}} {
		s, err := Build(c.seq, c.seq, []Span{{1, MaxSeqs}}, nil, &rec)
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := s.Reach(c.seq, 100); !ok || v != c.want {
			t.Errorf("seq %d: %d µs (%v), want %d", c.seq, v, ok, c.want)
		}
		if sum := s.Summarize(); sum.Dropped != 2 || sum.Ticks != 1 {
			t.Errorf("seq %d: summary %+v", c.seq, sum)
		}
	}
	// A window wider than MaxSeqs keeps its last MaxSeqs seqs.
	s, err := Build(1, MaxSeqs+10, nil, nil)
	if lo, hi, _ := s.Window(); err != nil || lo != 11 || hi != MaxSeqs+10 {
		t.Errorf("window %d..%d, %v", lo, hi, err)
	}
}

// TestOverflowingCounts checks buckets whose count exceeds what one packed
// entry holds, through a merge and the encoding.
func TestOverflowingCounts(t *testing.T) {
	var a tick
	a.owed = 3 * countMask
	a.add(bucketOf(5000), countMask-1)
	a.add(bucketOf(5000), 5)
	a.add(bucketOf(100), countMask)
	a.add(bucketOf(9000), countMask+7)
	a.n = 3*countMask + 11
	a.max = 9000
	if a.n > a.owed {
		a.owed = a.n
	}
	s := &Set{lo: 1, hi: 1, entries: []entry{{1, a}}}
	d, err := Decode(s.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if d.Encode() != s.Encode() {
		t.Error("round trip changed the set")
	}
	for _, c := range []struct {
		pct  uint32
		want uint32
	}{{50, uint32(upper(bucketOf(5000)))}, {100, 9000}} {
		if v, ok := d.Reach(1, c.pct); !ok || v != c.want {
			t.Errorf("%d%%: %d (%v), want %d", c.pct, v, ok, c.want)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	var rec Recorder
	rec.Record(3, 700_000)
	good, err := Build(1, 5, []Span{{1, 5}}, nil, &rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(good.Encode()); err != nil {
		t.Fatalf("good data refused: %v", err)
	}
	for _, bad := range []string{
		"", "!!", "UgE=", // base64 of "R\x01": truncated
		"UgIAAAA=", // version 2
		"eAEAAAA=", // wrong magic
	} {
		if _, err := Decode(bad); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
}

func FuzzDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	recs := []*Recorder{{}, {}}
	w := randomWorld(r, 6, 10, 40, recs)
	s, err := Build(10, 40, w.spans, w.match, recs...)
	if err != nil {
		f.Fatal(err)
	}
	empty, _ := Build(1, 0, nil, nil)
	f.Add(s.Encode())
	f.Add(empty.Encode())
	f.Add("UgEBAQABAQEBFAEUAQ==")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := Decode(text)
		if err != nil {
			return
		}
		// Whatever decodes is a valid set: it encodes to text that decodes
		// to the same set, merges with itself to twice the counts, and
		// summarises without panicking.
		enc := s.Encode()
		back, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded set refused: %v", err)
		}
		if back.Encode() != enc {
			t.Fatal("encoding is not stable")
		}
		sum := s.Summarize()
		twice := Merge(s, back).Summarize()
		if twice.Owed != 2*sum.Owed || twice.Arrived != 2*sum.Arrived || twice.R100 != sum.R100 {
			t.Fatalf("self-merge %+v from %+v", twice, sum)
		}
		if sum.Arrived > sum.Owed {
			t.Fatalf("more arrivals than owed: %+v", sum)
		}
	})
}
