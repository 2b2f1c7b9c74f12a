package loadgen

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushbench/pushbench/loadgen/check"
	"github.com/pushbench/pushbench/loadgen/client"
	"github.com/pushbench/pushbench/loadgen/result"
)

// subscription is one subscription as the run sees it: its client, its
// checker and what the run tracks about it. Every mode accounts what its
// clients receive through handle, so a tick is checked, timed and counted
// the same way whether it came from a stream, a storm connection or a
// short-poll answer.
//
// Ownership: whoever delivers the events (the client's goroutine, an event
// loop's worker, the short-poll result loop) owns chk and the plain fields,
// one goroutine at a time; the drain and the churner touch only the
// atomics and the checker's atomic progress (Last, Reached).
type subscription struct {
	c          client.Client // nil for a short-poll poller (vegeta holds its connections)
	chk        *check.Checker
	shard      *shard
	recordFrom *atomic.Int64 // the run's: ticks that arrive earlier are checked, not recorded

	slow        bool         // it stalls after connecting (-slow); set before the run starts
	up          atomic.Bool  // connected now
	churned     atomic.Bool  // the churner dropped it: reconnect at once
	connectedAt atomic.Int64 // Unix ns of the first successful connect

	// t0 is when the connect that led to the first tick began: the time to
	// first tick runs from it. Zero: not timed (short-poll pollers have no
	// connect of their own).
	t0         time.Time
	gotFirst   bool
	recorded   int64 // ticks recorded, i.e. received after the warm-up
	reconnects int64
	malformed  int64
}

func (r *run) newSubscription(c client.Client, sh *shard) *subscription {
	return &subscription{c: c, chk: check.New(r.book, r.filter), shard: sh, recordFrom: &r.recordFrom}
}

// handle accounts one event. The checker sees every tick; the latency
// histogram and the recorded count only those that arrived after the
// warm-up. It must not be called for one subscription from two goroutines
// at once, and ev is not kept.
func (s *subscription) handle(ev *client.Event) {
	switch ev.Kind {
	case client.KindTick:
		t := &ev.Tick
		record := ev.RecvAt >= s.recordFrom.Load()
		if s.chk.Tick(t.Seq, t.Sym, t.Price) {
			s.shard.tick(t.Seq, t.TS, ev.RecvAt, record)
		}
		s.shard.messages.Add(1)
		if record {
			s.recorded++
		}
		if !s.gotFirst {
			s.gotFirst = true
			if !s.t0.IsZero() {
				s.shard.firstTick(time.Unix(0, ev.RecvAt).Sub(s.t0))
			}
		}
	case client.KindGap:
		s.chk.Gap(ev.Gap.From, ev.Gap.To)
	case client.KindStart:
		s.chk.StartAfter(ev.Seq)
	case client.KindMalformed:
		s.malformed++
	}
}

// counts finishes the checker with the run owing every tick up to h and
// adds what only the subscription knows.
func (s *subscription) counts(h uint64) result.Counts {
	c := s.chk.Finish(h)
	c.Reconnects += s.reconnects
	c.Malformed += s.malformed
	return c
}

// driver reads a connected client's events. Serve passes each event to
// sink and calls done exactly once with the error that ended the
// connection, never concurrently with sink. A blocking driver (readLoop)
// does all of it before it returns; a non-blocking one (an event loop)
// returns at once and calls sink and done later from its own goroutine.
// An error from Serve means it did not take the connection and will not
// call done.
type driver interface {
	Serve(c client.Client, sink func(*client.Event), done func(error)) error
}

// readLoop is the goroutine reader: the calling goroutine reads the client
// until its connection ends.
type readLoop struct{}

func (readLoop) Serve(c client.Client, sink func(*client.Event), done func(error)) error {
	for {
		ev, err := c.Next()
		if err != nil {
			done(err)
			return nil
		}
		sink(ev)
	}
}

// live runs s until ctx ends: connect (with backoff), hand the connection
// to the driver, and once it ended reconnect (with resume) after a churn at
// once, after a drop as an EventSource would.
//
// Who goes on after a connection ended depends on the driver. With a
// blocking one, done has been called by the time Serve returns, and the
// loop goes on in this goroutine: one goroutine per client for the whole
// run. With a non-blocking one, Serve returns first and this goroutine
// ends; done, called later on the driver's goroutine, starts the next turn
// in a new goroutine of wg (it must not sleep a backoff on the driver's
// goroutine). turn says which came first. wg also counts every connection
// handed to the driver until its end is handled, so that wg.Wait returns
// only once no connection is live.
func (r *run) live(ctx context.Context, s *subscription, sem chan struct{}, wg *sync.WaitGroup) {
	for r.connect(ctx, s, sem) {
		const (
			doneFirst  = 1
			serveFirst = 2
		)
		var turn atomic.Int32
		var ended error
		wg.Add(1) // the connection, until its end is handled
		err := r.drv.Serve(s.c, s.handle, func(err error) {
			if turn.CompareAndSwap(0, doneFirst) {
				ended = err
				return
			}
			wg.Go(func() {
				if r.reconnect(ctx, s, err) {
					r.live(ctx, s, sem, wg)
				}
			})
			wg.Done()
		})
		if err != nil {
			s.c.Drop() // the driver did not take it and will not call done
			ended = err
		} else if turn.CompareAndSwap(0, serveFirst) {
			return // done goes on
		}
		wg.Done()
		if !r.reconnect(ctx, s, ended) {
			return
		}
	}
}

// reconnect accounts the end of s's connection (err) and waits before the
// next connect: not at all after a churn, otherwise what the server asked
// (SSE retry) or a second. It returns false when ctx ended.
func (r *run) reconnect(ctx context.Context, s *subscription, err error) bool {
	s.up.Store(false)
	r.connected.Add(-1)
	if ctx.Err() != nil {
		return false
	}
	if s.churned.Swap(false) {
		return true // dropped on purpose: resume at once
	}
	s.shard.fail("dropped_"+client.Cause(err), err)
	wait := time.Second
	if sse, ok := s.c.(*client.SSE); ok && sse.Retry() > 0 {
		wait = sse.Retry() // what an EventSource would do
	}
	return sleep(ctx, jitter(wait))
}

// connect connects s, counting failures and trying again after a backoff,
// until it succeeds (true) or ctx ends. At most cap(sem) connects are in
// flight at once.
func (r *run) connect(ctx context.Context, s *subscription, sem chan struct{}) bool {
	var backoff time.Duration
	for ctx.Err() == nil {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		t0 := time.Now()
		err := s.c.Connect(ctx)
		<-sem
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			if !s.churned.Swap(false) {
				s.shard.fail(client.Cause(err), err)
			}
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			if !sleep(ctx, jitter(backoff)) {
				return false
			}
			continue
		}
		now := time.Now()
		s.shard.connected(now.Sub(t0))
		if !s.gotFirst {
			s.t0 = t0
		}
		if s.connectedAt.CompareAndSwap(0, now.UnixNano()) {
			r.everConnected.Add(1)
		} else {
			s.reconnects++
		}
		s.up.Store(true)
		r.connected.Add(1)
		return true
	}
	return false
}

// stall connects a stalled client (-slow) like any other, then reads
// nothing more until stallCtx ends (after the drain). It then reads the
// connection once more, for up to slowProbe, to learn whether the server
// had dropped it, and returns; the run closes it.
func (r *run) stall(ctx, stallCtx context.Context, s *subscription, sem chan struct{}) {
	if !r.connect(stallCtx, s, sem) {
		return
	}
	defer func() {
		s.up.Store(false)
		r.connected.Add(-1)
	}()
	r.slow.stalled.Add(1)
	// A failed stall (a poll request that could not be sent) shows in
	// the final read: the connection has ended.
	_ = client.Stall(s.c)
	<-stallCtx.Done()
	if ctx.Err() != nil {
		return // the run was cancelled: no time to look
	}
	n, ended, err := client.ReadRest(s.c, time.Now().Add(slowProbe))
	r.slow.backlog.Add(n)
	switch {
	case ended:
		r.slow.dropped.Add(1)
	case client.Cause(err) == "timeout":
		r.slow.open.Add(1)
	}
}
