package feed

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// woken reports whether a wake channel is closed, without blocking.
func woken(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func TestRingWaitForWakesOnPublishAndClose(t *testing.T) {
	r := NewRing(4)
	w, cancel := r.WaitFor(0, nil)
	r.Publish(frames(1, 1, 1)...)
	if !woken(w) {
		t.Fatal("Publish did not wake a live waiter")
	}
	cancel()
	w, cancel = r.WaitFor(1, nil)
	defer cancel()
	if woken(w) {
		t.Fatal("a new waiter is woken before any publish")
	}
	r.Close()
	if !woken(w) {
		t.Fatal("Close did not wake a waiter")
	}
	if !r.Closed() {
		t.Fatal("Closed() false after Close")
	}
	if w, _ := r.WaitFor(1, nil); !woken(w) {
		t.Fatal("WaitFor after Close returned an open channel")
	}
}

// one returns a frame of seq and sym.
func one(seq uint64, sym int) *Frame { return &Frame{Tick: Tick{Seq: seq, Sym: sym}} }

func TestRingWaitForFilteredWakesOnlyForItsSymbols(t *testing.T) {
	r := NewRing(64)
	r.Publish(one(1, 0))
	w, cancel := r.WaitFor(1, NewFilter(4, []int{2, 3}))
	defer cancel()
	for s := uint64(2); s <= 10; s++ {
		r.Publish(one(s, int(s)%2)) // symbols 0 and 1 only
		if woken(w) {
			t.Fatalf("woken by seq %d of symbol %d, not in the filter", s, s%2)
		}
	}
	r.Publish(one(11, 0), one(12, 3))
	if !woken(w) {
		t.Fatal("not woken by a tick of its symbol 3")
	}
}

func TestRingWaitForFarFutureSleepsUntilReached(t *testing.T) {
	r := NewRing(16)
	r.Publish(one(1, 0))
	all, cancelAll := r.WaitFor(20, nil)
	defer cancelAll()
	flt, cancelFlt := r.WaitFor(20, NewFilter(4, []int{1}))
	defer cancelFlt()
	for s := uint64(2); s <= 20; s++ {
		r.Publish(one(s, 1))
		if woken(all) || woken(flt) {
			t.Fatalf("a waiter after 20 woken by seq %d", s)
		}
	}
	r.Publish(one(21, 0))
	if !woken(all) {
		t.Fatal("waiter after 20 without filter not woken by seq 21")
	}
	if woken(flt) {
		t.Fatal("waiter after 20 for symbol 1 woken by seq 21 of symbol 0")
	}
	r.Publish(one(22, 2), one(23, 1))
	if !woken(flt) {
		t.Fatal("waiter after 20 for symbol 1 not woken by seq 23 of symbol 1")
	}
	// A batch that reaches the resume point and holds a match wakes at once.
	w, cancel := r.WaitFor(30, NewFilter(4, []int{3}))
	defer cancel()
	var batch []*Frame
	for s := uint64(24); s <= 31; s++ {
		batch = append(batch, one(s, 3))
	}
	r.Publish(batch[:7]...) // up to 30: nothing after the resume point yet
	if woken(w) {
		t.Fatal("waiter after 30 woken by ticks up to 30")
	}
	r.Publish(batch[7])
	if !woken(w) {
		t.Fatal("waiter after 30 for symbol 3 not woken by seq 31 of symbol 3")
	}
}

func TestRingCloseWakesEveryWaiter(t *testing.T) {
	r := NewRing(8)
	r.Publish(one(1, 0))
	var ws []<-chan struct{}
	for _, c := range []struct {
		after  uint64
		filter Filter
	}{{1, nil}, {0, nil}, {1e18, nil}, {1, NewFilter(4, []int{2})}, {1e18, NewFilter(4, []int{2})}} {
		w, cancel := r.WaitFor(c.after, c.filter)
		defer cancel()
		ws = append(ws, w)
	}
	before := r.Wakeups()
	r.Close()
	for i, w := range ws {
		if !woken(w) {
			t.Errorf("waiter %d not woken by Close", i)
		}
	}
	if got := r.Wakeups() - before; got != uint64(len(ws)) {
		t.Errorf("Close counted %d wake-ups, want %d", got, len(ws))
	}
}

func TestRingWaitForCancel(t *testing.T) {
	r := NewRing(8)
	w, cancel := r.WaitFor(5, NewFilter(4, []int{1}))
	cancel()
	cancel() // idempotent
	r.Publish(frames(1, 8, 4)...)
	if woken(w) {
		t.Fatal("a cancelled waiter was woken")
	}
	if got := r.Wakeups(); got != 0 {
		t.Fatalf("%d wake-ups counted for a cancelled waiter", got)
	}
	if len(r.pending) != 0 || r.filtered != 0 {
		t.Fatalf("cancel left %d pending, %d filtered waiters", len(r.pending), r.filtered)
	}
}

// TestRingFilteredReaderSeesNoGapForSkippedTicks: a reader whose symbol is
// rarer than the ring is long must be woken to move its cursor past the
// ticks it does not want before they are evicted; else it would report a
// gap made only of ticks it never asked for.
func TestRingFilteredReaderSeesNoGapForSkippedTicks(t *testing.T) {
	const capacity, total = 16, 200
	r := NewRing(capacity)
	filter := NewFilter(4, []int{3})
	var cursor uint64
	wakes := 0
	wake, cancel := r.WaitFor(cursor, filter)
	for s := uint64(1); s <= total; s++ {
		sym := 0
		if s == total {
			sym = 3
		}
		r.Publish(one(s, sym))
		if !woken(wake) {
			continue
		}
		wakes++
		cancel()
		wake, cancel = r.WaitFor(cursor, filter)
		got, gap, next := r.Read(cursor, filter, nil, 0)
		if gap != nil {
			t.Fatalf("after seq %d: gap %+v for skipped ticks", s, *gap)
		}
		cursor = next
		if s == total && (len(got) != 1 || got[0].Seq != total) {
			t.Fatalf("the tick of symbol 3 was not read: %v", got)
		}
	}
	cancel()
	if cursor != total {
		t.Fatalf("cursor %d, want %d", cursor, total)
	}
	if limit := total/(capacity/2) + 1; wakes > limit {
		t.Errorf("%d wake-ups for %d ticks, want at most %d (one per half ring and the match)", wakes, total, limit)
	}
}

// TestRingSilentWaitersAreNotWoken is the wake-up storm in small: resume
// points far ahead of the feed and filters on a symbol the feed does not
// publish must cost a publish nothing, while subscribers that receive
// every tick are still woken once per tick. Each kind runs as subscriber
// goroutines do (WaitFor, Read, wait) and the test counts the wake-ups.
func TestRingSilentWaitersAreNotWoken(t *testing.T) {
	const silent, live, ticks = 200, 4, 100
	r := NewRing(DefaultHistory)
	r.Publish(one(1, 0))
	var (
		wg      sync.WaitGroup
		ready   sync.WaitGroup
		cursors [live]atomic.Uint64
		woke    atomic.Int64 // wake-ups seen by silent goroutines before Close
	)
	subscribe := func(cursor uint64, filter Filter, progress *atomic.Uint64) {
		first := true
		for {
			wake, cancel := r.WaitFor(cursor, filter)
			_, _, cursor = r.Read(cursor, filter, nil, 0)
			if progress != nil {
				progress.Store(cursor)
			}
			if first {
				ready.Done()
				first = false
			}
			<-wake
			cancel()
			if r.Closed() {
				return
			}
			if progress == nil {
				woke.Add(1)
			}
		}
	}
	ready.Add(2*silent + live)
	for i := range silent {
		wg.Go(func() { subscribe(1e18+uint64(i), nil, nil) })
		wg.Go(func() { subscribe(1, NewFilter(16, []int{7}), nil) })
	}
	for i := range live {
		var filter Filter // half all symbols, half filtered to the published one
		if i%2 == 1 {
			filter = NewFilter(16, []int{0})
		}
		wg.Go(func() { subscribe(1, filter, &cursors[i]) })
	}
	ready.Wait()
	before := r.Wakeups()
	for s := uint64(2); s <= ticks+1; s++ {
		r.Publish(one(s, 0))
		// Wait until every live subscriber has read the tick and waits again.
		for i := range cursors {
			for cursors[i].Load() < s {
				runtime.Gosched()
			}
		}
	}
	got := r.Wakeups() - before
	r.Close()
	wg.Wait()
	if want := uint64(live * ticks); got != want {
		t.Errorf("%d ticks woke subscribers %d times, want %d (%d live subscribers, once per tick); %d silent subscribers woke %d times",
			ticks, got, want, live, 2*silent, woke.Load())
	}
	if n := woke.Load(); n != 0 {
		t.Errorf("silent subscribers woke %d times", n)
	}
}

// TestRingNoLostWakeup runs readers against a concurrent publisher, each
// with its own filter and resume point, some of them far ahead of the
// feed, and checks that each one receives exactly the ticks it selected:
// a wake-up lost between WaitFor and Read would leave a reader stuck.
func TestRingNoLostWakeup(t *testing.T) {
	const (
		syms    = 8
		total   = 400
		readers = 12
	)
	iterations := 40
	if testing.Short() {
		iterations = 5
	}
	for it := range iterations {
		rng := rand.New(rand.NewPCG(uint64(it), 1))
		all := make([]*Frame, total)
		for i := range all {
			// Symbols 6 and 7 are rare, so filtered readers sleep long.
			sym := rng.IntN(syms - 2)
			if rng.IntN(50) == 0 {
				sym = syms - 2 + rng.IntN(2)
			}
			all[i] = &Frame{Tick: Tick{Seq: uint64(i + 1), Sym: sym}}
		}
		r := NewRing(total) // no eviction: every tick must arrive
		var wg sync.WaitGroup
		for k := range readers {
			var filter Filter
			if k%3 != 0 {
				filter = NewFilter(syms, []int{rng.IntN(syms), rng.IntN(syms)})
			}
			start := uint64(rng.IntN(total))
			var want []uint64
			for _, f := range all[start:] {
				if filter.Match(f.Sym) {
					want = append(want, f.Seq)
				}
			}
			wg.Go(func() {
				got, err := readUntil(r, start, filter, want)
				if err != nil {
					t.Errorf("iteration %d reader %d (from %d, filter %v): %v", it, k, start, filter, err)
					return
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("iteration %d reader %d: got %v, want %v", it, k, got, want)
				}
			})
		}
		// A churner takes and cancels waits of every kind meanwhile, so that
		// cancel races with the publishes that would wake it.
		done := make(chan struct{})
		var churn sync.WaitGroup
		churn.Go(func() {
			crng := rand.New(rand.NewPCG(uint64(it), 2))
			for !woken(done) {
				var filter Filter
				if crng.IntN(2) == 0 {
					filter = NewFilter(syms, []int{crng.IntN(syms)})
				}
				_, cancel := r.WaitFor(r.Newest()+uint64(crng.IntN(8)), filter)
				cancel()
			}
		})
		for i := 0; i < total; {
			n := min(1+rng.IntN(4), total-i)
			r.Publish(all[i : i+n]...)
			i += n
			if rng.IntN(4) == 0 {
				runtime.Gosched()
			}
		}
		wg.Wait()
		close(done)
		churn.Wait()
		if len(r.pending) != 0 || r.filtered != 0 {
			t.Fatalf("iteration %d: %d waiters pending, %d filtered after every wait was cancelled or woken", it, len(r.pending), r.filtered)
		}
		if t.Failed() {
			return
		}
	}
}

// readUntil reads after cursor as a subscriber does (WaitFor, Read, wait)
// until it has the last seq of want; a reader left waiting for 10 s after
// the last publish reports a lost wake-up.
func readUntil(r *Ring, cursor uint64, filter Filter, want []uint64) ([]uint64, error) {
	var got []uint64
	timer := time.NewTimer(0)
	defer timer.Stop()
	for len(got) < len(want) {
		wake, cancel := r.WaitFor(cursor, filter)
		frames, gap, next := r.Read(cursor, filter, nil, 0)
		if gap != nil {
			cancel()
			return got, fmt.Errorf("unexpected gap %+v", *gap)
		}
		for _, f := range frames {
			got = append(got, f.Seq)
		}
		cursor = next
		if len(got) >= len(want) {
			cancel()
			break
		}
		timer.Reset(10 * time.Second)
		select {
		case <-wake:
			cancel()
		case <-timer.C:
			cancel()
			return got, fmt.Errorf("lost wake-up: cursor %d, newest %d, %d of %d ticks", cursor, r.Newest(), len(got), len(want))
		}
	}
	return got, nil
}

// wakeKinds are the subscribers of the wake-up benchmarks: silent-future
// waits with a resume point far ahead of the feed, other-symbol is
// filtered to a symbol that is never published, live-all is the common
// case (all symbols, cursor at the newest tick).
var wakeKinds = []struct {
	name   string
	after  uint64
	filter Filter
}{
	{"silent-future", 1e18, nil},
	{"other-symbol", 0, NewFilter(16, []int{1})},
	{"live-all", 0, nil},
}

// BenchmarkRingWake publishes one tick of symbol 0 per op to N goroutines
// that wait as subscribers do (WaitFor, Read, wait), then waits until every
// goroutine the publish woke has read and waits again. ns/op is therefore
// the publish plus the wake-ups it caused; cpu-ns/publish adds the CPU of
// both cores; wakeups/publish is how many goroutines one tick woke.
func BenchmarkRingWake(b *testing.B) {
	for _, k := range wakeKinds {
		for _, n := range []int{1000, 6000} {
			b.Run(fmt.Sprintf("%s/waiters=%d", k.name, n), func(b *testing.B) {
				benchWake(b, n, k.after, k.filter)
			})
		}
	}
}

func benchWake(b *testing.B, n int, after uint64, filter Filter) {
	r := NewRing(DefaultHistory)
	stop := make(chan struct{})
	var handled atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			cursor := after
			buf := make([]*Frame, 0, 16)
			for {
				wake, cancel := r.WaitFor(cursor, filter)
				_, _, cursor = r.Read(cursor, filter, buf[:0], cap(buf))
				handled.Add(1)
				select {
				case <-wake:
					cancel()
				case <-stop:
					cancel()
					return
				}
			}
		})
	}
	for handled.Load() < int64(n) {
		runtime.Gosched()
	}
	h0, w0 := handled.Load(), r.Wakeups()
	cpu0 := cpuTime(b)
	var seq uint64
	for b.Loop() {
		seq++
		r.Publish(&Frame{Tick: Tick{Seq: seq}})
		want := int64(r.Wakeups() - w0)
		for handled.Load()-h0 < want {
			runtime.Gosched()
		}
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/publish")
	b.ReportMetric(float64(r.Wakeups()-w0)/float64(b.N), "wakeups/publish")
	close(stop)
	wg.Wait()
}

// cpuTime is the CPU time (user and system) the process has used, in ns.
func cpuTime(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkRingPublish is the ring's own part of BenchmarkRingWake, in one
// goroutine and without the scheduler: per op, one Publish of a symbol-0
// tick, then each of N subscribers checks its wake channel and, if it was
// woken, reads and takes a new one, as a subscriber loop does.
func BenchmarkRingPublish(b *testing.B) {
	for _, k := range wakeKinds {
		for _, n := range []int{1000, 6000} {
			b.Run(fmt.Sprintf("%s/waiters=%d", k.name, n), func(b *testing.B) {
				r := NewRing(DefaultHistory)
				type sub struct {
					cursor uint64
					wake   <-chan struct{}
					cancel func()
				}
				subs := make([]sub, n)
				buf := make([]*Frame, 0, 16)
				for i := range subs {
					subs[i].cursor = k.after
					subs[i].wake, subs[i].cancel = r.WaitFor(k.after, k.filter)
				}
				w0 := r.Wakeups()
				var seq uint64
				b.ReportAllocs()
				for b.Loop() {
					seq++
					r.Publish(&Frame{Tick: Tick{Seq: seq}})
					for i := range subs {
						s := &subs[i]
						if woken(s.wake) {
							s.cancel()
							_, _, s.cursor = r.Read(s.cursor, k.filter, buf[:0], cap(buf))
							s.wake, s.cancel = r.WaitFor(s.cursor, k.filter)
						}
					}
				}
				b.ReportMetric(float64(r.Wakeups()-w0)/float64(b.N), "wakeups/publish")
				for i := range subs {
					subs[i].cancel()
				}
			})
		}
	}
}
