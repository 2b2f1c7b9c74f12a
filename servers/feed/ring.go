package feed

import (
	"container/heap"
	"math"
	"math/bits"
	"strconv"
	"sync"
	"sync/atomic"
)

// DefaultHistory is the default number of ticks a Ring retains.
const DefaultHistory = 4096

// Gap says that ticks From..To-1 are no longer retained: the reader resumes at To.
type Gap struct {
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
}

// AppendGapJSON appends the gap as every transport sends it: {"from":F,"to":T}.
func AppendGapJSON(dst []byte, g Gap) []byte {
	dst = append(dst, `{"from":`...)
	dst = strconv.AppendUint(dst, g.From, 10)
	dst = append(dst, `,"to":`...)
	dst = strconv.AppendUint(dst, g.To, 10)
	return append(dst, '}')
}

// Filter selects symbols by index; the nil Filter selects all.
type Filter []uint64

// NewFilter returns a filter that selects the given symbol indices.
func NewFilter(nsymbols int, selected []int) Filter {
	f := make(Filter, (nsymbols+63)/64)
	for _, i := range selected {
		f[i/64] |= 1 << (uint(i) % 64)
	}
	return f
}

// Match reports whether the filter selects symbol index sym.
func (f Filter) Match(sym int) bool {
	if f == nil {
		return true
	}
	w := sym / 64
	return w < len(f) && f[w]&(1<<(uint(sym)%64)) != 0
}

// Ring is the bounded history shared by all subscribers. One goroutine
// publishes; readers only load atomics, so a thousand readers woken by one
// tick do not contend on a lock. A subscriber is nothing but a cursor (the
// last seq it has) into the ring.
//
// A waiter is woken only when a publish may concern it (see WaitFor):
// silent subscribers, whose resume point lies ahead of the feed or whose
// symbols are not being published, cost a publish nothing.
type Ring struct {
	slots  []atomic.Pointer[Frame]
	newest atomic.Uint64

	mu sync.Mutex
	// notify is the broadcast for the common case, waiters with a live
	// cursor and no filter: closed by the next Publish that follows a
	// WaitFor, and replaced then.
	notify chan struct{}
	takers uint64 // WaitFor calls that got the current notify
	// Every other waiter is in pending, a min-heap by the newest seq that
	// wakes it; filtered waiters with a live cursor are also in bySym, a
	// set per symbol index that a publish of that symbol wakes.
	pending  waitHeap
	bySym    []map[*waiter]struct{}
	filtered int    // waiters in bySym
	wakeups  uint64 // see Wakeups
	closed   bool
}

// waiter is one WaitFor that is neither on the broadcast nor woken yet.
// All its fields are guarded by Ring.mu.
type waiter struct {
	ch     chan struct{}
	after  uint64
	filter Filter
	at     uint64 // woken once newest >= at; key of pending
	index  int    // position in pending, -1 when not in it
	inSyms bool   // in bySym under every symbol of filter
	done   bool   // woken or cancelled
}

// NewRing returns a ring that retains the last capacity frames.
func NewRing(capacity int) *Ring {
	if capacity < 1 {
		capacity = 1
	}
	return &Ring{slots: make([]atomic.Pointer[Frame], capacity), notify: make(chan struct{})}
}

// Cap is the number of frames the ring retains.
func (r *Ring) Cap() int { return len(r.slots) }

// Newest is the seq of the newest published frame (0 before the first).
func (r *Ring) Newest() uint64 { return r.newest.Load() }

// Oldest is the seq of the oldest retained frame (1 while nothing was evicted).
func (r *Ring) Oldest() uint64 { return oldest(r.newest.Load(), uint64(len(r.slots))) }

func oldest(newest, capacity uint64) uint64 {
	if newest < capacity {
		return 1
	}
	return newest - capacity + 1
}

// Publish appends frames, which must continue the sequence without a hole,
// and wakes each waiter the frames concern (see WaitFor). It never blocks
// on a reader. Its cost beyond storing the frames is one channel close per
// waiter it wakes, a look at each frame's symbol while filtered waiters
// exist, and a heap peek.
func (r *Ring) Publish(frames ...*Frame) {
	if len(frames) == 0 {
		return
	}
	n := uint64(len(r.slots))
	for _, f := range frames {
		r.slots[f.Seq%n].Store(f)
	}
	newest := frames[len(frames)-1].Seq
	r.newest.Store(newest)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if r.takers > 0 {
		close(r.notify)
		r.notify = make(chan struct{})
		r.wakeups += r.takers
		r.takers = 0
	}
	// Waiters in bySym were placed when their cursor was at or behind the
	// previous newest, so every frame of this batch is news to them.
	if r.filtered > 0 {
		for _, f := range frames {
			if f.Sym < len(r.bySym) {
				for w := range r.bySym[f.Sym] {
					r.wake(w)
				}
			}
		}
	}
	for len(r.pending) > 0 && r.pending[0].at <= newest {
		w := heap.Pop(&r.pending).(*waiter)
		if w.inSyms {
			r.wake(w) // a filtered cursor about to be lapped
		} else {
			r.place(w, newest, frames) // a resume point that the feed reached
		}
	}
}

// WaitFor returns a channel that is closed once a publish after the call
// may have given Read(after, filter) something to return, or when the
// ring closes. Take it before Read, so that a publish between the two is
// seen by one or the other, and call cancel once done with the channel
// (cancel may be called more than once; it does not close the channel).
//
// What wakes the waiter:
//   - no filter and after <= Newest (the common case): the next publish.
//     All such waiters share one channel; WaitFor costs a lock and cancel
//     nothing.
//   - after > Newest, a resume point ahead of the feed: nothing until
//     Newest reaches after+1 (with a filter, until then a matching tick).
//   - a filter: a publish of one of its symbols. Such a reader's cursor
//     moves only when it is woken, so it is also woken when Newest reaches
//     after+Cap/2: it then moves its cursor (Read's next) past the ticks
//     it does not want before they are evicted, and reports no gap made
//     of them. A reader that waits again with the same after is woken
//     next when Read would report a gap (at once if it already would).
//
// Each waiter but the common case costs a few small allocations, a heap
// entry and, with a filter of k symbols, k map entries until it is woken
// or cancelled; a publish pays only for the waiters it wakes.
func (r *Ring) WaitFor(after uint64, filter Filter) (wake <-chan struct{}, cancel func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	newest := r.newest.Load()
	if r.closed || (filter == nil && after <= newest) {
		if !r.closed {
			r.takers++
		}
		return r.notify, func() {}
	}
	w := &waiter{ch: make(chan struct{}), after: after, filter: filter, index: -1}
	r.place(w, newest, nil)
	return w.ch, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.drop(w)
	}
}

// place files w by what can wake it now that the ring's newest is newest.
// batch, when not nil, is the publish that just reached w's resume point:
// it holds every frame after w.after. Called with r.mu held.
func (r *Ring) place(w *waiter, newest uint64, batch []*Frame) {
	capacity := uint64(len(r.slots))
	switch {
	case w.after >= newest:
		w.at = addSat(w.after, 1)
		heap.Push(&r.pending, w)
		return
	case w.filter == nil || newest-w.after > capacity: // ticks, or a gap
		r.wake(w)
		return
	}
	for _, f := range batch {
		if f.Seq > w.after && w.filter.Match(f.Sym) {
			r.wake(w)
			return
		}
	}
	if lap := addSat(w.after, max(capacity/2, 1)); newest < lap {
		w.at = lap
	} else {
		w.at = addSat(w.after, capacity+1) // when Read would report a gap
	}
	heap.Push(&r.pending, w)
	r.addSyms(w)
}

func addSat(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// addSyms enters w in the set of every symbol of its filter.
func (r *Ring) addSyms(w *waiter) {
	for i, word := range w.filter {
		for word != 0 {
			sym := i*64 + bits.TrailingZeros64(word)
			word &= word - 1
			if sym >= len(r.bySym) {
				r.bySym = append(r.bySym, make([]map[*waiter]struct{}, sym+1-len(r.bySym))...)
			}
			if r.bySym[sym] == nil {
				r.bySym[sym] = make(map[*waiter]struct{})
			}
			r.bySym[sym][w] = struct{}{}
		}
	}
	w.inSyms = true
	r.filtered++
}

// drop takes w out of every index without waking it.
func (r *Ring) drop(w *waiter) {
	if w.done {
		return
	}
	w.done = true
	if w.index >= 0 {
		heap.Remove(&r.pending, w.index)
	}
	if w.inSyms {
		for i, word := range w.filter {
			for word != 0 {
				delete(r.bySym[i*64+bits.TrailingZeros64(word)], w)
				word &= word - 1
			}
		}
		w.inSyms = false
		r.filtered--
	}
}

// wake drops w and closes its channel.
func (r *Ring) wake(w *waiter) {
	if w.done {
		return
	}
	r.drop(w)
	close(w.ch)
	r.wakeups++
}

// Wakeups is the number of waiters that Publish and Close have woken so
// far (a shared channel counts once per WaitFor that took it): the fan-out
// cost of the feed, for tests and benchmarks.
func (r *Ring) Wakeups() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wakeups
}

// Closed reports whether Close was called: no more frames will come.
func (r *Ring) Closed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Close wakes every waiter for good; WaitFor then returns a closed channel.
func (r *Ring) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	close(r.notify)
	r.wakeups += r.takers
	r.takers = 0
	for len(r.pending) > 0 { // every waiter not on notify is in pending
		r.wake(r.pending[0])
	}
}

// waitHeap is a min-heap of waiters by at, for container/heap.
type waitHeap []*waiter

func (h waitHeap) Len() int           { return len(h) }
func (h waitHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h waitHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *waitHeap) Push(x any) {
	w := x.(*waiter)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *waitHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	w.index = -1
	*h = old[:len(old)-1]
	return w
}

// Read appends to dst the retained frames after seq `after` that match
// filter, at most max of them (max <= 0 means no limit), and returns them
// with the cursor to pass next time: the last seq it scanned, which with a
// filter may lie beyond the last frame returned. When ticks after `after` are
// no longer retained, gap says which, and reading continues at gap.To.
// Read never blocks.
func (r *Ring) Read(after uint64, filter Filter, dst []*Frame, max int) (frames []*Frame, gap *Gap, next uint64) {
	n := uint64(len(r.slots))
	next = after
	for {
		newest := r.newest.Load()
		if next >= newest {
			return dst, gap, next
		}
		if old := oldest(newest, n); next+1 < old {
			if gap == nil {
				gap = &Gap{From: next + 1}
			}
			gap.To = old
			next = old - 1
		}
		for s := next + 1; s <= newest; s++ {
			f := r.slots[s%n].Load()
			if f == nil || f.Seq != s {
				// The publisher lapped this reader while it was reading:
				// recompute the oldest retained tick and report a gap.
				break
			}
			next = s
			if filter.Match(f.Sym) {
				dst = append(dst, f)
				if max > 0 && len(dst) >= max {
					return dst, gap, next
				}
			}
		}
	}
}
