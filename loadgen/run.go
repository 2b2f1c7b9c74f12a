package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/pushbench/pushbench/loadgen/check"
	"github.com/pushbench/pushbench/loadgen/client"
	"github.com/pushbench/pushbench/loadgen/result"
	"github.com/pushbench/pushbench/servers/feed"
)

// slowProbe bounds the final read of each stalled client (-slow), which
// tells whether the server had dropped it.
const slowProbe = 500 * time.Millisecond

// Backoff after a failed connect or an unexpected disconnect. Failures are
// counted, then the client tries again, so a short server hiccup costs some
// of the run rather than the clients.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// PreflightError is a run that could not start: the server is down, or does
// not serve this transport.
type PreflightError struct {
	Msg string
	Err error
}

func (e *PreflightError) Error() string { return e.Msg }
func (e *PreflightError) Unwrap() error { return e.Err }

// run is the state of one Run shared by its goroutines. Everything in it is
// set before the goroutines start, except the atomics and the shards.
type run struct {
	cfg     *Config
	ccfg    *client.Config
	book    *check.Book // nil: feed unknown
	filter  feed.Filter
	dialers []*client.Dialer
	shards  []*shard

	// Stalled clients (-slow) dial with a small receive buffer and count
	// their bytes apart; slow holds what became of them.
	slowDialers  []*client.Dialer
	slowCounters client.Counters
	slow         struct{ stalled, dropped, open, backlog atomic.Int64 }

	// recordFrom is when recording starts (Unix ns): ticks that arrive
	// earlier are checked but not recorded (-warmup). 0: record all.
	recordFrom atomic.Int64

	connected     atomic.Int64
	everConnected atomic.Int64 // clients that connected at least once
	phase         atomic.Value // string for the progress line
}

// clientState is one subscription: its client, its checker and what the
// runner tracks about it. The client goroutine owns chk and the plain
// fields; the drain and churn goroutines touch only the atomics.
type clientState struct {
	c     client.Client
	chk   *check.Checker
	shard *shard

	slow        bool         // it stalls after connecting (-slow); set before the goroutines start
	up          atomic.Bool  // connected now
	churned     atomic.Bool  // the churner dropped it: reconnect at once
	connectedAt atomic.Int64 // Unix ns of the first successful connect

	gotFirst   bool
	reconnects int64
	malformed  int64
}

// Run performs one run. It returns an error only when the run could not take
// place (bad configuration, server down, limits); what went wrong during the
// run is counted in the result.
func Run(ctx context.Context, cfg Config) (*result.Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &run{cfg: &cfg}
	var err error
	if r.ccfg, err = cfg.clientConfig(); err != nil {
		return nil, err
	}
	if cfg.FeedSymbols > 0 {
		if r.book, err = check.NewBook(cfg.Seed, cfg.FeedSymbols); err != nil {
			return nil, err
		}
		if r.filter, err = r.book.Filter(cfg.Symbols); err != nil {
			return nil, err
		}
	}
	if err := fitFiles(cfg.Clients); err != nil {
		return nil, err
	}
	ips, err := chooseSourceIPs(cfg.SourceIPs, cfg.URL.Hostname(), cfg.Clients)
	if err != nil {
		return nil, err
	}
	connectTimeout := r.ccfg.ConnectTimeout
	if len(ips) == 0 {
		r.dialers = []*client.Dialer{client.NewDialer(nil, connectTimeout)}
	}
	for _, ip := range ips {
		r.dialers = append(r.dialers, client.NewDialer(ip, connectTimeout))
	}
	if cfg.Slow > 0 {
		for _, d := range r.dialers {
			r.slowDialers = append(r.slowDialers, d.WithSmallBuffers(SlowReceiveBuffer, SlowMSS))
		}
	}
	r.shards = newShards(min(max(4, 4*runtime.GOMAXPROCS(0)), cfg.Clients))
	r.phase.Store("starting")
	if !cfg.NoPreflight {
		if err := r.preflight(ctx); err != nil {
			return nil, err
		}
	}
	switch {
	case cfg.stream():
		return r.streams(ctx)
	case cfg.Transport == "shortpoll":
		return r.shortpoll(ctx)
	default:
		return r.storm(ctx)
	}
}

// preflight makes one trial connection, so that a server that is down or
// that does not serve this transport gives one clear error instead of
// thousands of counted failures.
func (r *run) preflight(ctx context.Context) error {
	c, err := client.New(r.ccfg, r.dialers[0], nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, r.ccfg.ConnectTimeout)
	defer cancel()
	err = c.Connect(ctx)
	_ = c.Close()
	if err == nil {
		return nil
	}
	u, tr := r.cfg.URL.String(), r.ccfg.Transport
	var se *client.StatusError
	switch cause := client.Cause(err); {
	case cause == "refused":
		return &PreflightError{fmt.Sprintf("cannot connect to %s: connection refused (is the server running?)", u), err}
	case errors.As(err, &se) && se.Code == 404:
		return &PreflightError{fmt.Sprintf("%s answers 404 on /%s: it does not serve %s (was it started with another -transport?)", u, tr, tr), err}
	case cause == "timeout":
		return &PreflightError{fmt.Sprintf("no answer from %s within %s", u, r.ccfg.ConnectTimeout), err}
	default:
		return &PreflightError{fmt.Sprintf("trial %s connection to %s failed: %v", tr, u, err), err}
	}
}

func (r *run) shardFor(i int) *shard { return r.shards[i%len(r.shards)] }

func (r *run) dialerFor(i int) *client.Dialer { return r.dialers[i%len(r.dialers)] }

// streams runs long-lived subscriptions (sse, ws, poll).
func (r *run) streams(ctx context.Context) (*result.Result, error) {
	cfg := r.cfg
	states := make([]*clientState, cfg.Clients)
	for i := range states {
		sh := r.shardFor(i)
		d, counters, slow := r.dialerFor(i), &sh.counters, cfg.isSlow(i)
		if slow {
			d, counters = r.slowDialers[i%len(r.slowDialers)], &r.slowCounters
		}
		c, err := client.New(r.ccfg, d, counters)
		if err != nil {
			return nil, err
		}
		states[i] = &clientState{c: c, chk: check.New(r.book, r.filter), shard: sh, slow: slow}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	churnCtx, stopChurn := context.WithCancel(runCtx)
	defer stopChurn()
	// The others end after the drain; the stalled clients stay stalled
	// until then, and are then read once more (slowWG waits for that)
	// before the run closes them.
	clientCtx, stopClients := context.WithCancel(runCtx)
	defer stopClients()
	stallCtx, stopStall := context.WithCancel(runCtx)
	defer stopStall()
	var slowWG sync.WaitGroup
	r.startReach()
	if cfg.Warmup > 0 {
		r.recordFrom.Store(math.MaxInt64) // until the warm-up ends
	}
	aux := newAux(r)
	start, cpu0 := time.Now(), cpuTime()

	var wg sync.WaitGroup
	sem := make(chan struct{}, cfg.Handshakes)
	r.phase.Store("ramp")
	spawned := make(chan struct{})
	wg.Go(func() {
		defer close(spawned)
		r.spawn(runCtx, clientCtx, stallCtx, states, sem, &wg, &slowWG)
	})
	if cfg.Churn > 0 {
		wg.Go(func() { r.churn(churnCtx, states) })
	}

	// The measured window starts once the ramp is over and every client
	// has connected (or ConnectTimeout after the ramp, when some cannot:
	// their failures are counted), so that neither a slow ramp nor a slow
	// connect storm dilutes the figures or ends the run before it began;
	// and after the warm-up, if any.
	winStart, winMsgs := start, int64(0)
	rampTimer := time.NewTimer(cfg.Ramp)
	defer rampTimer.Stop()
	limit := time.NewTimer(cfg.Ramp + r.ccfg.ConnectTimeout)
	defer limit.Stop()
	check := time.NewTicker(10 * time.Millisecond)
	defer check.Stop()
	var warmC, endC, settleC <-chan time.Time
	rampOver, started, measuring := false, false, false
	var timers []*time.Timer
	defer func() {
		for _, t := range timers {
			t.Stop()
		}
	}()
	measure := func() {
		measuring = true
		r.phase.Store("run")
		winStart, winMsgs = time.Now(), r.messages()
		if cfg.Warmup > 0 {
			r.recordFrom.Store(winStart.UnixNano())
		}
		endT, settleT := time.NewTimer(cfg.Duration), time.NewTimer(cfg.Duration/2)
		endC, settleC = endT.C, settleT.C
		timers = append(timers, endT, settleT)
	}
	startWindow := func() {
		started = true
		check.Stop()
		if cfg.Warmup <= 0 {
			measure()
			return
		}
		r.phase.Store("warm")
		warmT := time.NewTimer(cfg.Warmup)
		warmC = warmT.C
		timers = append(timers, warmT)
	}
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-rampTimer.C:
			rampOver = true
			r.phase.Store("connect")
		case <-check.C:
		case <-limit.C:
			if !started {
				startWindow()
			}
		case <-warmC:
			measure()
		case <-settleC:
			// Connecting leaves garbage (handshake buffers, headers); return
			// it to the OS so that the RSS measured at the end is what the
			// connected clients hold.
			debug.FreeOSMemory()
		case <-endC:
			break wait
		}
		if !started && rampOver && r.everConnected.Load() == int64(len(states)) {
			startWindow()
		}
	}
	stopChurn()
	end := time.Now()
	endMsgs := r.messages()
	connectedAtEnd := r.connected.Load()
	rss := currentRSS()

	sched := r.schedule()
	h := sched.seqAt(end.UnixNano())
	r.phase.Store("drain")
	r.drain(ctx, states, sched, h)

	// Close the others first, so that the final read of the stalled
	// clients adds nothing to their figures.
	stopClients()
	for _, st := range states {
		if !st.slow {
			_ = st.c.Close()
		}
	}
	stopStall()
	<-spawned // no stalled client starts any more
	slowWG.Wait()
	cancel()
	for _, st := range states {
		_ = st.c.Close()
	}
	wg.Wait()
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	lag := aux.stop()

	res := r.result(start, wall, cpu, lag)
	res.Connected = connectedAtEnd
	res.Self.RSSBytes = rss
	sched = r.schedule() // the drain saw more ticks
	for _, st := range states {
		if st.slow {
			res.SlowClients++
			continue
		}
		if at := st.connectedAt.Load(); !st.chk.Started() && at != 0 && sched.known() {
			// Connected, never got a tick: owed whatever was scheduled after
			// it connected (the server subscribed it before answering).
			st.chk.StartAfter(sched.seqAt(at))
		}
		addCounts(&res.Counts, st.chk.Finish(h))
		res.Counts.Reconnects += st.reconnects
		res.Counts.Malformed += st.malformed
	}
	r.addReach(res, streamSubs(states, h))
	if res.SlowClients > 0 {
		res.Slow = result.Slow{
			Stalled: r.slow.stalled.Load(), Dropped: r.slow.dropped.Load(), Open: r.slow.open.Load(),
			BacklogBytes: r.slow.backlog.Load(),
			BytesSent:    r.slowCounters.Out.Load(), BytesReceived: r.slowCounters.In.Load(),
		}
	}
	res.Messages, res.Duration = endMsgs-winMsgs, end.Sub(winStart).Seconds()
	if measuring {
		res.Warmup = cfg.Warmup.Seconds()
	}
	finishRates(res)
	return res, nil
}

// spawn starts the client goroutines, spread evenly over the ramp, until
// ctx ends: the others with clientCtx, the stalled clients in slowWG with
// stallCtx.
func (r *run) spawn(ctx, clientCtx, stallCtx context.Context, states []*clientState, sem chan struct{}, wg, slowWG *sync.WaitGroup) {
	n := len(states)
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for i, st := range states {
		if r.cfg.Ramp > 0 {
			at := start.Add(time.Duration(int64(r.cfg.Ramp) * int64(i) / int64(n)))
			if d := time.Until(at); d > 0 {
				t.Reset(d)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		if st.slow {
			slowWG.Go(func() { r.runSlow(ctx, stallCtx, st, sem) })
			continue
		}
		wg.Go(func() { r.runClient(clientCtx, st, sem) })
	}
}

// runClient connects, reads until the connection ends, and reconnects (with
// resume) until the run ends.
func (r *run) runClient(ctx context.Context, st *clientState, sem chan struct{}) {
	for {
		t0, ok := r.connect(ctx, st, sem)
		if !ok {
			return
		}
		err := r.read(st, t0)
		st.up.Store(false)
		r.connected.Add(-1)
		if ctx.Err() != nil {
			return
		}
		if st.churned.Swap(false) {
			continue // dropped on purpose: resume at once
		}
		st.shard.fail("dropped_"+client.Cause(err), err)
		wait := time.Second
		if s, ok := st.c.(*client.SSE); ok && s.Retry() > 0 {
			wait = s.Retry() // what an EventSource would do
		}
		if !sleep(ctx, jitter(wait)) {
			return
		}
	}
}

// connect connects st, counting failures and trying again after a backoff,
// until it succeeds (true, with the time the attempt began) or ctx ends.
func (r *run) connect(ctx context.Context, st *clientState, sem chan struct{}) (time.Time, bool) {
	var backoff time.Duration
	for ctx.Err() == nil {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return time.Time{}, false
		}
		t0 := time.Now()
		err := st.c.Connect(ctx)
		<-sem
		if err != nil {
			if ctx.Err() != nil {
				return time.Time{}, false
			}
			if !st.churned.Swap(false) {
				st.shard.fail(client.Cause(err), err)
			}
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			if !sleep(ctx, jitter(backoff)) {
				return time.Time{}, false
			}
			continue
		}
		now := time.Now()
		st.shard.connected(now.Sub(t0))
		if st.connectedAt.CompareAndSwap(0, now.UnixNano()) {
			r.everConnected.Add(1)
		} else {
			st.reconnects++
		}
		st.up.Store(true)
		r.connected.Add(1)
		return t0, true
	}
	return time.Time{}, false
}

// runSlow connects a stalled client (-slow) like any other, then reads
// nothing more until stallCtx ends (after the drain). It then reads the
// connection once more, for up to slowProbe, to learn whether the server
// had dropped it, and returns; the run closes it.
func (r *run) runSlow(ctx, stallCtx context.Context, st *clientState, sem chan struct{}) {
	if _, ok := r.connect(stallCtx, st, sem); !ok {
		return
	}
	defer func() {
		st.up.Store(false)
		r.connected.Add(-1)
	}()
	r.slow.stalled.Add(1)
	// A failed stall (a poll request that could not be sent) shows in
	// the final read: the connection has ended.
	_ = client.Stall(st.c)
	<-stallCtx.Done()
	if ctx.Err() != nil {
		return // the run was cancelled: no time to look
	}
	n, ended, err := client.ReadRest(st.c, time.Now().Add(slowProbe))
	r.slow.backlog.Add(n)
	switch {
	case ended:
		r.slow.dropped.Add(1)
	case client.Cause(err) == "timeout":
		r.slow.open.Add(1)
	}
}

// read consumes events until the connection ends.
func (r *run) read(st *clientState, t0 time.Time) error {
	for {
		ev, err := st.c.Next()
		if err != nil {
			return err
		}
		switch ev.Kind {
		case client.KindTick:
			t := &ev.Tick
			// The checker sees every tick; the histogram only those that
			// arrived after the warm-up.
			if st.chk.Tick(t.Seq, t.Sym, t.Price) {
				st.shard.tick(t.Seq, t.TS, ev.RecvAt, ev.RecvAt >= r.recordFrom.Load())
			}
			st.shard.messages.Add(1)
			if !st.gotFirst {
				st.gotFirst = true
				st.shard.firstTick(time.Unix(0, ev.RecvAt).Sub(t0))
			}
		case client.KindGap:
			st.chk.Gap(ev.Gap.From, ev.Gap.To)
		case client.KindStart:
			st.chk.StartAfter(ev.Seq)
		case client.KindMalformed:
			st.malformed++
		}
	}
}

// churn drops Churn × Clients connected clients per second, in steps of
// 100 ms; each reconnects at once and resumes.
func (r *run) churn(ctx context.Context, states []*clientState) {
	const step = 100 * time.Millisecond
	rng := rand.New(rand.NewPCG(uint64(len(states)), 0x5eed))
	t := time.NewTicker(step)
	defer t.Stop()
	var due float64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		due += r.cfg.Churn * float64(len(states)) * step.Seconds()
		for ; due >= 1; due-- {
			for range 8 { // a few tries to find a connected client
				st := states[rng.IntN(len(states))]
				if !st.slow && st.up.Load() && !st.churned.Load() {
					st.churned.Store(true)
					st.c.Drop()
					break
				}
			}
		}
	}
}

// messages returns the ticks received so far.
func (r *run) messages() int64 {
	var n int64
	for _, sh := range r.shards {
		n += sh.messages.Load()
	}
	return n
}

// schedule merges what the shards learned about the feed's clock.
func (r *run) schedule() schedule {
	var s schedule
	for _, sh := range r.shards {
		sh.mu.Lock()
		s.merge(sh.sched)
		sh.mu.Unlock()
	}
	return s
}

// drain waits until every subscription has what was scheduled up to h, or
// Drain passes: ticks in flight at the end are not counted as missing,
// while a stalled stream still is.
func (r *run) drain(ctx context.Context, states []*clientState, sched schedule, h uint64) {
	if h == 0 {
		return
	}
	deadline := time.NewTimer(r.cfg.Drain)
	defer deadline.Stop()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		done := true
		for _, st := range states {
			at := st.connectedAt.Load()
			if at == 0 || st.slow {
				continue
			}
			if st.chk.Last() == 0 {
				if sched.known() && st.chk.Owed(sched.seqAt(at), h) {
					done = false
					break
				}
				continue
			}
			if !st.chk.Reached(h) {
				done = false
				break
			}
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-t.C:
		}
	}
}

// result merges the shards into a Result (counts are added by the caller).
func (r *run) result(start time.Time, wall, cpu time.Duration, lag *hdrhistogram.Histogram) *result.Result {
	cfg := r.cfg
	res := &result.Result{
		SchemaVersion: result.SchemaVersion,
		Transport:     cfg.Transport,
		URL:           cfg.URL.String(),
		Clients:       cfg.Clients,
		Symbols:       cfg.Symbols,
		Start:         start.UTC(),
		Duration:      wall.Seconds(),
		Self:          selfCost(cpu, wall, lag),
	}
	hl, hc, hf := result.NewHistogram(), result.NewHistogram(), result.NewHistogram()
	for _, sh := range r.shards {
		sh.mu.Lock()
		hl.Merge(sh.lat)
		hc.Merge(sh.conn)
		hf.Merge(sh.first)
		for k, v := range sh.failures {
			if res.Failures == nil {
				res.Failures = map[string]int64{}
			}
			res.Failures[k] += v
		}
		sh.mu.Unlock()
		res.Bytes.Sent += sh.counters.Out.Load()
		res.Bytes.Received += sh.counters.In.Load()
		res.Requests += sh.counters.Requests.Load()
	}
	res.FailureSamples = r.samples()
	if len(res.FailureSamples) == 0 {
		res.FailureSamples = nil
	}
	sched := r.schedule()
	res.FeedRate = sched.rate()
	res.Latency, res.Connect, res.FirstTick = result.Summarize(hl), result.Summarize(hc), result.Summarize(hf)
	// Encoding cannot fail for histograms built with the shared bounds;
	// an empty string would merely make the histogram read as empty.
	res.HistLatency, _ = result.EncodeHist(hl)
	res.HistConnect, _ = result.EncodeHist(hc)
	res.HistFirstTick, _ = result.EncodeHist(hf)
	return res
}

// samples returns one error message per failure cause.
func (r *run) samples() map[string]string {
	out := map[string]string{}
	for _, sh := range r.shards {
		sh.mu.Lock()
		for k, v := range sh.samples {
			if _, ok := out[k]; !ok {
				out[k] = v
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// finishRates derives the rates and the warnings once the counts are in.
func finishRates(res *result.Result) {
	if res.Duration > 0 {
		res.MsgsPerSec = float64(res.Messages) / res.Duration
		res.PerClient = res.MsgsPerSec / float64(max(res.Clients-res.SlowClients, 1))
	}
	if res.Counts.Received > 0 {
		res.Bytes.PerTick = float64(res.Bytes.Received) / float64(res.Counts.Received)
	}
	c := res.Counts
	switch {
	case c.Received == 0:
		res.Warnings = append(res.Warnings, "no tick was received")
	case c.WrongContent > c.Received/2:
		res.Warnings = append(res.Warnings, "most ticks differ from the feed the checker replays: "+
			"do -seed and -feed-symbols match the server's -seed and -symbols?")
	}
	if res.Self.Warning != "" {
		res.Warnings = append(res.Warnings, res.Self.Warning)
	}
}

func addCounts(dst *result.Counts, c result.Counts) {
	dst.Expected += c.Expected
	dst.Received += c.Received
	dst.Duplicates += c.Duplicates
	dst.OutOfOrder += c.OutOfOrder
	dst.Missing += c.Missing
	dst.Gaps += c.Gaps
	dst.GapTicks += c.GapTicks
	dst.WrongSymbol += c.WrongSymbol
	dst.WrongContent += c.WrongContent
	dst.Reconnects += c.Reconnects
	dst.Stalled += c.Stalled
	dst.Malformed += c.Malformed
}

// sleep waits d or until ctx is done; false if ctx ended it.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// jitter spreads reconnects of many clients over ±25% so that they do not
// return as one wave.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d*3/4 + rand.N(d/2+1)
}
