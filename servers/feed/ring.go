package feed

import (
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
type Ring struct {
	slots  []atomic.Pointer[Frame]
	newest atomic.Uint64

	mu      sync.Mutex
	notify  chan struct{} // closed and replaced on every Publish
	takers  uint64        // WaitFor calls that got the current notify
	wakeups uint64        // waiters woken so far, see Wakeups
	closed  bool
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
// and wakes every waiting reader once. It never blocks on a reader.
func (r *Ring) Publish(frames ...*Frame) {
	if len(frames) == 0 {
		return
	}
	n := uint64(len(r.slots))
	for _, f := range frames {
		r.slots[f.Seq%n].Store(f)
	}
	r.newest.Store(frames[len(frames)-1].Seq)
	r.mu.Lock()
	if !r.closed {
		close(r.notify)
		r.notify = make(chan struct{})
		r.wakeups += r.takers
		r.takers = 0
	}
	r.mu.Unlock()
}

// WaitFor returns a channel that is closed by the next Publish (or by
// Close), for a reader whose cursor is after and whose symbols are filter.
// Take it before Read so that a publish between the two is not missed, and
// call cancel once done with the channel.
func (r *Ring) WaitFor(after uint64, filter Filter) (wake <-chan struct{}, cancel func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.takers++
	}
	return r.notify, func() {}
}

// Wakeups is the number of waiters that Publish and Close have woken so
// far: the fan-out cost that is paid whether or not a waiter had anything
// to read.
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
	if !r.closed {
		r.closed = true
		close(r.notify)
		r.wakeups += r.takers
		r.takers = 0
	}
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
