package check

import (
	"math/rand/v2"
	"testing"

	"github.com/pushbench/pushbench/loadgen/result"
	"github.com/pushbench/pushbench/servers/feed"
)

// ticks replays the feed: ticks[seq] for seq 1..n.
func ticks(t testing.TB, seed uint64, symbols, n int) []feed.Tick {
	t.Helper()
	g, err := feed.NewGenerator(seed, symbols)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]feed.Tick, n+1)
	for i := 1; i <= n; i++ {
		out[i] = g.Next()
	}
	return out
}

func TestBookMatchesGenerator(t *testing.T) {
	const n = 3*chunkSize + 77
	want := ticks(t, 7, 40, n)
	b, err := NewBook(7, 40)
	if err != nil {
		t.Fatal(err)
	}
	// Start in the middle, then look before (rebuild) and after (growth).
	order := []uint64{2*chunkSize + 5, 3, chunkSize, n, 1, chunkSize - 1, 2 * chunkSize}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		order = append(order, 1+r.Uint64N(n))
	}
	for _, seq := range order {
		sym, price, ok := b.Lookup(seq)
		if !ok || sym != want[seq].Sym || price != want[seq].Price {
			t.Fatalf("Lookup(%d) = %d, %d, %v; want %d, %d", seq, sym, price, ok, want[seq].Sym, want[seq].Price)
		}
	}
	if _, _, ok := b.Lookup(0); ok {
		t.Error("Lookup(0) ok; seq 0 does not exist")
	}
	if _, _, ok := b.Lookup(1 << 62); ok {
		t.Error("Lookup(2^62) ok; it must refuse to replay that far")
	}
	names := feed.SymbolNames(40)
	filter, err := b.Filter([]string{names[3], names[17]})
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		from := 1 + r.Uint64N(n)
		to := from + r.Uint64N(n-from+1)
		var brute int64
		for s := from; s <= to; s++ {
			if filter.Match(want[s].Sym) {
				brute++
			}
		}
		if got, ok := b.Count(from, to, filter); !ok || got != brute {
			t.Fatalf("Count(%d, %d) = %d, %v; want %d", from, to, got, ok, brute)
		}
	}
	if _, err := b.Filter([]string{"NOPE"}); err == nil {
		t.Error("Filter accepted an unknown symbol")
	}
}

// step is one thing a checker is fed: a tick by seq (content from the
// feed, optionally altered) or a gap.
type step struct {
	seq      uint64
	gapTo    uint64 // > 0: a gap seq..gapTo-1
	badPrice bool
	badSym   bool
}

func seqs(from, to uint64) []step {
	var s []step
	for i := from; i <= to; i++ {
		s = append(s, step{seq: i})
	}
	return s
}

func cat(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestChecker(t *testing.T) {
	const symbols = 16
	feedTicks := ticks(t, 1, symbols, 200)
	names := feed.SymbolNames(symbols)
	book, err := NewBook(1, symbols)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		steps   []step
		start   uint64 // StartAfter, if > 0
		horizon uint64
		want    result.Counts
	}{
		{"in order", seqs(10, 40), 0, 40,
			result.Counts{Expected: 31, Received: 31}},
		{"ticks past the horizon are owed too", seqs(10, 40), 0, 30,
			result.Counts{Expected: 31, Received: 31}},
		{"drop", cat(seqs(10, 19), seqs(21, 40)), 0, 40,
			result.Counts{Expected: 31, Received: 30, Missing: 1}},
		{"repeat", cat(seqs(10, 20), seqs(20, 40)), 0, 40,
			result.Counts{Expected: 31, Received: 32, Duplicates: 1}},
		{"repeat of an old tick", cat(seqs(10, 30), seqs(15, 15), seqs(31, 40)), 0, 40,
			result.Counts{Expected: 31, Received: 32, Duplicates: 1}},
		{"swap", cat(seqs(10, 19), seqs(21, 21), seqs(20, 20), seqs(22, 40)), 0, 40,
			result.Counts{Expected: 31, Received: 31, OutOfOrder: 1}},
		{"late and before the start", cat(seqs(10, 20), seqs(5, 5), seqs(21, 40)), 0, 40,
			result.Counts{Expected: 31, Received: 32, OutOfOrder: 1}},
		{"stall", seqs(10, 25), 0, 40,
			result.Counts{Expected: 31, Received: 16, Missing: 15, Stalled: 1}},
		{"gap signalled", cat(seqs(10, 19), []step{{seq: 20, gapTo: 25}}, seqs(25, 40)), 0, 40,
			result.Counts{Expected: 31, Received: 26, Gaps: 1, GapTicks: 5}},
		{"gap explains a hole", cat(seqs(10, 19), seqs(26, 30), []step{{seq: 20, gapTo: 24}}, seqs(31, 40)), 0, 40,
			result.Counts{Expected: 31, Received: 25, Gaps: 1, GapTicks: 4, Missing: 2}},
		{"wrong price", cat(seqs(10, 19), []step{{seq: 20, badPrice: true}}, seqs(21, 40)), 0, 40,
			result.Counts{Expected: 31, Received: 31, WrongContent: 1}},
		{"wrong symbol name", cat(seqs(10, 19), []step{{seq: 20, badSym: true}}, seqs(21, 40)), 0, 40,
			result.Counts{Expected: 31, Received: 31, WrongSymbol: 1, Missing: 1}},
		{"start after a cursor: a lost first tick counts", seqs(11, 40), 9, 40,
			result.Counts{Expected: 31, Received: 30, Missing: 1}},
		{"never started", nil, 0, 40, result.Counts{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := New(book, nil)
			if tt.start > 0 {
				k.StartAfter(tt.start)
			}
			var fresh int64
			var accepted []uint64
			for _, s := range tt.steps {
				if s.gapTo > 0 {
					k.Gap(s.seq, s.gapTo)
					continue
				}
				ft := feedTicks[s.seq]
				sym, price := names[ft.Sym], ft.Price
				if s.badPrice {
					price++
				}
				if s.badSym {
					sym = "NOPE"
				}
				if k.Tick(s.seq, []byte(sym), price) {
					fresh++
					accepted = append(accepted, s.seq)
				}
			}
			got := k.Finish(tt.horizon)
			if got != tt.want {
				t.Errorf("counts\n got %+v\nwant %+v", got, tt.want)
			}
			// The span is what Expected counts, and holds every tick the
			// checker accepted (so the reach of a seq never counts more
			// arrivals than owed subscriptions).
			from, to, ok := k.Span(tt.horizon)
			if n, _ := book.Count(from, to, nil); ok != k.Started() || ok && n != got.Expected {
				t.Errorf("span %d..%d (%v) holds %d seqs, expected %d", from, to, ok, n, got.Expected)
			}
			for _, seq := range accepted {
				if seq < from || seq > to {
					t.Errorf("accepted seq %d outside the span %d..%d", seq, from, to)
				}
			}
			if got.Expected != fresh+got.Missing+got.GapTicks {
				t.Errorf("expected %d != fresh %d + missing %d + gap ticks %d", got.Expected, fresh, got.Missing, got.GapTicks)
			}
		})
	}
}

// TestCheckerFilter feeds a filtered subscription exactly its ticks, then
// the same stream with each kind of fault, using the feed to know which
// seqs carry the subscribed symbols.
func TestCheckerFilter(t *testing.T) {
	const symbols, n = 16, 400
	feedTicks := ticks(t, 3, symbols, n)
	names := feed.SymbolNames(symbols)
	book, err := NewBook(3, symbols)
	if err != nil {
		t.Fatal(err)
	}
	filter, err := book.Filter([]string{names[2], names[5]})
	if err != nil {
		t.Fatal(err)
	}
	var mine []uint64
	for s := uint64(1); s <= n; s++ {
		if filter.Match(feedTicks[s].Sym) {
			mine = append(mine, s)
		}
	}
	if len(mine) < 20 {
		t.Fatalf("only %d matching ticks", len(mine))
	}
	feedAll := func(k *Checker, list []uint64) {
		for _, s := range list {
			k.Tick(s, []byte(names[feedTicks[s].Sym]), feedTicks[s].Price)
		}
	}
	last := mine[len(mine)-1]
	owed := int64(len(mine))

	k := New(book, filter)
	feedAll(k, mine)
	if got := k.Finish(last); got.Expected != owed || got.Missing != 0 || got.Received != owed {
		t.Errorf("clean stream: %+v, want expected=received=%d", got, owed)
	}

	k = New(book, filter)
	feedAll(k, append(append([]uint64{}, mine[:10]...), mine[11:]...))
	if got := k.Finish(last); got.Missing != 1 || got.Expected != owed {
		t.Errorf("one dropped: %+v, want missing 1 of %d", got, owed)
	}

	// A tick of another symbol is outside the subscription.
	var other uint64
	for s := mine[3] + 1; s < mine[4]; s++ {
		other = s
	}
	k = New(book, filter)
	feedAll(k, mine[:4])
	if other != 0 {
		k.Tick(other, []byte(names[feedTicks[other].Sym]), feedTicks[other].Price)
		if got := k.Finish(mine[3]); got.WrongSymbol != 1 {
			t.Errorf("foreign tick: %+v, want wrong symbol 1", got)
		}
	}
	// Reached: everything up to just before the next matching seq is in.
	k = New(book, filter)
	feedAll(k, mine[:5])
	if !k.Reached(mine[5]-1) || k.Reached(mine[5]) {
		t.Errorf("Reached around %d wrong", mine[5])
	}
}

func TestCheckerUnknownFeed(t *testing.T) {
	k := New(nil, nil)
	for _, s := range []uint64{5, 6, 8, 8, 7, 9} {
		k.Tick(s, []byte("ANY"), 1)
	}
	want := result.Counts{Expected: 6, Received: 6, Duplicates: 1, OutOfOrder: 1}
	if got := k.Finish(10); got != (result.Counts{Expected: 6, Received: 6, Duplicates: 1, OutOfOrder: 1, Missing: 1, Stalled: 1}) {
		t.Errorf("got %+v, want %+v plus seq 10 missing (stalled)", got, want)
	}
}

func TestHolesBounded(t *testing.T) {
	k := New(nil, nil)
	for s := uint64(1); s < 4*maxHoles; s += 2 { // every other seq lost
		k.Tick(s, nil, 0)
	}
	if len(k.holes) > maxHoles {
		t.Fatalf("%d holes kept, bound %d", len(k.holes), maxHoles)
	}
	got := k.Finish(4*maxHoles - 1)
	if got.Missing != 2*maxHoles-1 {
		t.Errorf("missing %d, want %d", got.Missing, 2*maxHoles-1)
	}
}

func BenchmarkCheckerTick(b *testing.B) {
	const symbols = 16
	book, _ := NewBook(1, symbols)
	ft := ticks(b, 1, symbols, 1<<16)
	names := feed.SymbolNames(symbols)
	syms := make([][]byte, len(names))
	for i, n := range names {
		syms[i] = []byte(n)
	}
	k := New(book, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := uint64(i%(1<<16-1)) + 1
		if s == 1 {
			k = New(book, nil)
		}
		k.Tick(s, syms[ft[s].Sym], ft[s].Price)
	}
}
