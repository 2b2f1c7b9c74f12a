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
		for i := 0; i < total; {
			n := min(1+rng.IntN(4), total-i)
			r.Publish(all[i : i+n]...)
			i += n
			if rng.IntN(4) == 0 {
				runtime.Gosched()
			}
		}
		wg.Wait()
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

// BenchmarkRingWake publishes one tick of symbol 0 per op to N goroutines
// that wait as subscribers do (WaitFor, Read, wait), then waits until every
// goroutine the publish woke has read and waits again. ns/op is therefore
// the publish plus the wake-ups it caused; cpu-ns/publish adds the CPU of
// both cores; wakeups/publish is how many goroutines one tick woke.
// Kinds: silent-future waits with a resume point far ahead of the feed,
// other-symbol is filtered to a symbol that is never published, live-all
// is the common case (all symbols, cursor at the newest tick).
func BenchmarkRingWake(b *testing.B) {
	kinds := []struct {
		name   string
		after  uint64
		filter Filter
	}{
		{"silent-future", 1e18, nil},
		{"other-symbol", 0, NewFilter(16, []int{1})},
		{"live-all", 0, nil},
	}
	for _, k := range kinds {
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
