// Package check decides, per subscription, whether a client got exactly what
// the feed published: every tick of its symbols once, in seq order, with the
// right content, across reconnects.
//
// The feed is deterministic, so a Book (shared by all clients of a process)
// replays feed.Generator and knows which seq carries which (sym, price). A
// Checker follows one subscription. It starts at the first tick it sees (or
// after a cursor the server gave, for polling): ticks published before a
// fresh subscription are not owed to it. From then on every matching seq up
// to the end of the run is expected, including those published while the
// client was away and resuming.
//
// Concurrency: a Checker belongs to the goroutine that reads its client;
// only Last and Reached may be called from other goroutines (they read one
// atomic and the Book).
package check

import (
	"sync/atomic"

	"github.com/pushbench/pushbench/loadgen/result"
	"github.com/pushbench/pushbench/servers/feed"
)

// maxHoles bounds the list of seq ranges a checker still waits for. A client
// that sees hundreds of separate holes is broken beyond counting each one;
// the oldest hole is then written off as missing for good (if its ticks
// arrive after all, they count as duplicates).
const maxHoles = 256

// span is an inclusive range of seqs not yet received, with the number of
// matching seqs in it.
type span struct {
	from, to uint64
	n        int64
}

// Checker follows one subscription. The zero value is not usable: call New.
type Checker struct {
	book   *Book       // nil: the feed is unknown; content is not checked and filter must be nil
	filter feed.Filter // nil: all symbols

	started bool
	first   uint64 // first seq owed to the subscription
	last    uint64 // highest seq received (or the start cursor)
	lastA   atomic.Uint64

	holes     []span
	holesLost int64 // matching seqs written off when holes overflowed
	c         result.Counts
}

// New returns a checker for a subscription with this filter. book may be nil
// only with a nil filter: then every seq is expected and content is not
// checked.
func New(book *Book, filter feed.Filter) *Checker {
	if book == nil {
		filter = nil
	}
	return &Checker{book: book, filter: filter}
}

// StartAfter says the subscription is owed every matching tick after seq
// (a poll's first cursor). It does nothing once the checker has started.
func (k *Checker) StartAfter(seq uint64) {
	if k.started {
		return
	}
	k.started, k.first, k.last = true, seq+1, seq
	k.lastA.Store(seq)
}

// Started reports whether the checker knows where its subscription began.
func (k *Checker) Started() bool { return k.started }

// Last returns the highest seq received so far (or the start cursor). Safe
// to call from any goroutine.
func (k *Checker) Last() uint64 { return k.lastA.Load() }

// count returns the matching seqs in [from, to].
func (k *Checker) count(from, to uint64) int64 {
	if k.book == nil {
		if to < from {
			return 0
		}
		return int64(to - from + 1)
	}
	n, _ := k.book.Count(from, to, k.filter)
	return n
}

// Reached reports whether the subscription has everything it is owed up to
// seq h: it received h or later, or no seq after its last one up to h
// matches its filter. Safe to call from any goroutine.
func (k *Checker) Reached(h uint64) bool {
	last := k.lastA.Load()
	if last >= h {
		return true
	}
	if last == 0 {
		return false
	}
	return k.count(last+1, h) == 0
}

// Owed reports whether any seq in (after, h] matches the subscription: a
// client that connected when seq `after` was newest and has received
// nothing yet is owed something by h. Safe to call from any goroutine.
func (k *Checker) Owed(after, h uint64) bool {
	return h > after && k.count(after+1, h) > 0
}

// Tick accounts one received tick: seq, the symbol name as sent, the price in
// cents. It returns true when the tick was new for the subscription (not a
// duplicate nor a tick outside it), which is when the caller should count
// its latency as a delivery.
func (k *Checker) Tick(seq uint64, sym []byte, price int64) bool {
	k.c.Received++
	if idx, ok := k.book.right(seq, sym, price); ok {
		if !k.filter.Match(idx) {
			k.c.WrongSymbol++
			return false
		}
	} else if k.book != nil {
		idx, ok := k.book.Index(sym)
		if !ok || !k.filter.Match(idx) {
			k.c.WrongSymbol++
			return false
		}
		bsym, bprice, ok := k.book.Lookup(seq)
		if !ok {
			k.c.WrongContent++ // a seq the feed cannot have published in this run
			return false
		}
		if bsym != idx || bprice != price {
			k.c.WrongContent++
			if !k.filter.Match(bsym) {
				return false // the feed's tick at seq is not this subscription's
			}
			// The seq slot was delivered, with wrong content: account its seq.
		}
	}
	if seq == 0 {
		k.c.WrongContent++ // seqs start at 1
		return false
	}
	if !k.started {
		k.started, k.first, k.last = true, seq, seq
		k.lastA.Store(seq)
		return true
	}
	switch {
	case seq > k.last:
		if seq > k.last+1 {
			k.addHole(k.last+1, seq-1)
		}
		k.last = seq
		k.lastA.Store(seq)
		return true
	case seq == k.last:
		k.c.Duplicates++
		return false
	case seq < k.first:
		k.c.OutOfOrder++ // older than anything owed: late, not a repeat
		return false
	case k.fillHole(seq):
		k.c.OutOfOrder++ // a hole filled late: delivered, but out of order
		return true
	default:
		k.c.Duplicates++
		return false
	}
}

// Gap accounts a gap signal: ticks from..to-1 are no longer retained and the
// stream goes on at to. The matching ticks it covers that the subscription
// still waited for count as GapTicks, not as missing.
func (k *Checker) Gap(from, to uint64) {
	k.c.Gaps++
	if to <= from {
		return
	}
	from = max(from, 1)
	end := to - 1
	if !k.started {
		k.started, k.first, k.last = true, from, from-1
	}
	// Holes inside the gap are explained by it. (A new slice: one hole may
	// split in two.)
	var kept []span
	for _, h := range k.holes {
		if h.to < from || h.from > end {
			kept = append(kept, h)
			continue
		}
		lo, hi := max(h.from, from), min(h.to, end)
		k.c.GapTicks += k.count(lo, hi)
		if h.from < lo {
			kept = append(kept, span{h.from, lo - 1, k.count(h.from, lo-1)})
		}
		if h.to > hi {
			kept = append(kept, span{hi + 1, h.to, k.count(hi+1, h.to)})
		}
	}
	k.holes = kept
	if end > k.last {
		lo := max(from, k.last+1)
		if lo > k.last+1 {
			k.addHole(k.last+1, lo-1) // silent loss before the gap began
		}
		k.c.GapTicks += k.count(lo, end)
		k.last = end
		k.lastA.Store(end)
	}
}

func (k *Checker) addHole(from, to uint64) {
	n := k.count(from, to)
	if n == 0 {
		return
	}
	if len(k.holes) == maxHoles {
		k.holesLost += k.holes[0].n
		k.holes = append(k.holes[:0], k.holes[1:]...)
	}
	k.holes = append(k.holes, span{from, to, n})
}

// fillHole removes seq from the holes; false if it was not in one.
func (k *Checker) fillHole(seq uint64) bool {
	for i, h := range k.holes {
		if seq < h.from || seq > h.to {
			continue
		}
		var parts []span
		if h.from < seq {
			parts = append(parts, span{h.from, seq - 1, k.count(h.from, seq-1)})
		}
		if seq < h.to {
			parts = append(parts, span{seq + 1, h.to, k.count(seq+1, h.to)})
		}
		k.holes = append(k.holes[:i], append(parts, k.holes[i+1:]...)...)
		return true
	}
	return false
}

// Span returns the seqs the subscription is owed at horizon h, from to to
// inclusive (those its symbol filter selects): what Finish counts as
// Expected. Every tick Tick accepted lies in it. ok is false when the
// checker never started (it is owed nothing).
func (k *Checker) Span(h uint64) (from, to uint64, ok bool) {
	if !k.started {
		return 0, 0, false
	}
	return k.first, max(h, k.last), true
}

// Finish closes the books at horizon h, the last seq the run owes every
// subscription (the newest tick scheduled by the end of the run). Ticks
// received past h are owed too. A checker that never started returns only
// what it received. Finish may be called more than once.
func (k *Checker) Finish(h uint64) result.Counts {
	c := k.c
	if !k.started {
		return c
	}
	from, end, _ := k.Span(h)
	c.Expected = k.count(from, end)
	c.Missing = k.holesLost
	for _, s := range k.holes {
		c.Missing += s.n
	}
	if h > k.last {
		c.Missing += k.count(k.last+1, h)
	}
	if !k.Reached(h) {
		c.Stalled = 1
	}
	return c
}
