// Package alarm wakes goroutines at exact instants.
//
// Go's timers fire late by up to a millisecond when a process has nothing
// else to do: the runtime waits for its next timer in epoll_wait, whose
// timeout counts whole milliseconds. Measured on the 2-core machine this
// suite is developed on, a time.Timer of 1-6 ms in an idle process fired
// 0.6 ms late at the median and 1.1 ms late at p99. A server that promises
// a chunk at its scheduled time, or a load generator that times a request
// from its intended send time, adds that lateness to every figure it
// publishes. On Linux a Clock keeps one timerfd (expiry to the
// nanosecond, no timer slack) in Go's netpoller, armed for the earliest of
// its alarms, so the goroutine waiting on an alarm wakes when it is due;
// elsewhere the Clock waits with a time.Timer and is as late as Go's.
//
// One goroutine (Run) delivers every alarm of a Clock: an alarm costs a
// heap entry, not a goroutine or a runtime timer.
package alarm

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Clock delivers its alarms while Run runs. It is safe for concurrent use.
type Clock struct {
	w waker

	mu     sync.Mutex
	alarms alarmHeap
	armed  int64 // the due the waker is armed for; 0: none
	closed bool  // Run ended: every alarm set fires at once
}

// waker waits for one instant at a time: arm replaces the instant (0:
// none), wait blocks until it passed (Run looks at the clock, so an early
// return costs only a loop) and fails once close was called.
type waker interface {
	arm(due int64) error
	wait() error
	close() error
}

// New returns a Clock; its alarms fire once Run runs.
func New() (*Clock, error) {
	w, err := newWaker()
	if err != nil {
		return nil, err
	}
	return &Clock{w: w}, nil
}

// Start returns a new Clock with Run already running in a goroutine of
// its own, for an owner that needs the clock for a while: stop ends Run
// and waits for its goroutine (so does ctx ending, but only stop waits).
func Start(ctx context.Context) (c *Clock, stop func(), err error) {
	c, err = New()
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx) // ends with ctx
	}()
	return c, func() { cancel(); <-done }, nil
}

// Run delivers alarms until ctx ends, then releases the Clock: alarms set
// after that fire at once, so that no one waits forever on a stopped
// Clock. It returns ctx's error, or the error that stopped it waiting
// (the Clock is released then too).
func (c *Clock) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, c.release)
	defer stop()
	for {
		if err := c.w.wait(); err != nil {
			c.release()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		now := time.Now().UnixNano()
		c.mu.Lock()
		for len(c.alarms) > 0 && c.alarms[0].due <= now {
			heap.Pop(&c.alarms).(*Alarm).fire()
		}
		c.armed = 0
		if len(c.alarms) > 0 && !c.closed {
			c.armed = c.alarms[0].due
			_ = c.w.arm(c.armed) // a failure shows as a wait error
		}
		c.mu.Unlock()
	}
}

// release fires every pending alarm, makes later ones fire at once and
// closes the waker (which ends a wait); calling it again does nothing.
func (c *Clock) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	for len(c.alarms) > 0 {
		heap.Pop(&c.alarms).(*Alarm).fire()
	}
	_ = c.w.close()
}

// NewAlarm returns an alarm of c that is not set.
func (c *Clock) NewAlarm() *Alarm {
	return &Alarm{C: make(chan struct{}, 1), c: c, idx: -1}
}

// Alarm is one instant a goroutine waits for: after Set, a value arrives
// on C once the instant has passed. One goroutine owns an Alarm.
type Alarm struct {
	// C receives one value per Set, when its instant has passed.
	C   chan struct{}
	c   *Clock
	due int64 // Unix ns
	idx int   // in the heap; -1: not set
}

// Set makes a value arrive on C at due (Unix ns, as time.Now().UnixNano()),
// replacing what was set before; a value from an earlier Set that was not
// received is dropped. A due in the past fires at once.
func (a *Alarm) Set(due int64) {
	c := a.c
	c.mu.Lock()
	defer c.mu.Unlock()
	a.drain()
	a.due = due
	if c.closed || due <= time.Now().UnixNano() {
		if a.idx >= 0 {
			heap.Remove(&c.alarms, a.idx)
		}
		a.fire()
		return
	}
	if a.idx >= 0 {
		heap.Fix(&c.alarms, a.idx)
	} else {
		heap.Push(&c.alarms, a)
	}
	if first := c.alarms[0].due; first != c.armed && (c.armed == 0 || first < c.armed) {
		// Only an earlier instant re-arms: a later one would cost a
		// system call now, and the early wake-up costs Run no more.
		c.armed = first
		_ = c.w.arm(first)
	}
}

// Stop unsets a; a value not received yet is dropped.
func (a *Alarm) Stop() {
	c := a.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if a.idx >= 0 {
		heap.Remove(&c.alarms, a.idx)
	}
	a.drain()
}

func (a *Alarm) fire() {
	select {
	case a.C <- struct{}{}:
	default:
	}
}

func (a *Alarm) drain() {
	select {
	case <-a.C:
	default:
	}
}

// alarmHeap orders the set alarms by due, earliest first.
type alarmHeap []*Alarm

func (h alarmHeap) Len() int           { return len(h) }
func (h alarmHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h alarmHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *alarmHeap) Push(x any) {
	a := x.(*Alarm)
	a.idx = len(*h)
	*h = append(*h, a)
}
func (h *alarmHeap) Pop() any {
	old := *h
	a := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	a.idx = -1
	return a
}
