package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

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
	drv     driver // reads the streams' connections
	// readerName is the reader for the result: "epoll", "goroutine".
	readerName string

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

// Run performs one run. It returns an error only when the run could not take
// place (bad configuration, server down, limits); what went wrong during the
// run is counted in the result.
func Run(ctx context.Context, cfg Config) (*result.Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Workload == WorkloadAnswer {
		return runAnswers(ctx, cfg)
	}
	r := &run{cfg: &cfg, drv: cfg.reader}
	var err error
	if r.ccfg, err = cfg.clientConfig(); err != nil {
		return nil, err
	}
	if r.ccfg.H2 != nil {
		defer r.ccfg.H2.Close() // after every client is closed
	}
	if cfg.stream() {
		stop, err := r.useReader()
		if err != nil {
			return nil, err
		}
		defer stop()
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
	switch {
	case cfg.Slow > 0 && cfg.Proto == client.ProtoH2:
		// A stalled stream shares its connection with the others: the
		// connection keeps the buffers every stream needs, and what
		// stalls is the stream's flow-control window.
		r.slowDialers = r.dialers
	case cfg.Slow > 0:
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
	ccfg := r.ccfg
	if ccfg.H2 != nil {
		// A connection of its own, whose bytes the run does not count,
		// as those of an HTTP/1.1 trial connection.
		own := *r.ccfg
		own.H2 = client.NewH2Pool(1)
		defer own.H2.Close()
		ccfg = &own
	}
	c, err := client.New(ccfg, r.dialers[0], nil)
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
	case cause == "tls_cert":
		return &PreflightError{fmt.Sprintf("%s: the server's certificate is not trusted (%v): give it with -ca FILE, or -insecure", u, certReason(err)), err}
	case cause == "tls":
		return &PreflightError{fmt.Sprintf("TLS with %s failed (is it serving TLS, started with -tls?): %v", u, err), err}
	case cause == "timeout":
		return &PreflightError{fmt.Sprintf("no answer from %s within %s", u, r.ccfg.ConnectTimeout), err}
	default:
		return &PreflightError{fmt.Sprintf("trial %s connection to %s failed: %v", tr, u, err), err}
	}
}

// certReason is what crypto/x509 says of a certificate error, without
// the layers of context around it.
func certReason(err error) error {
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return cve.Err
	}
	return err
}

func (r *run) shardFor(i int) *shard { return r.shards[i%len(r.shards)] }

func (r *run) dialerFor(i int) *client.Dialer { return r.dialers[i%len(r.dialers)] }

// streams runs long-lived subscriptions (sse, ws, poll).
func (r *run) streams(ctx context.Context) (*result.Result, error) {
	cfg := r.cfg
	subs := make([]*subscription, cfg.Clients)
	for i := range subs {
		sh := r.shardFor(i)
		d, counters, slow := r.dialerFor(i), &sh.counters, cfg.isSlow(i)
		if slow {
			d, counters = r.slowDialers[i%len(r.slowDialers)], &r.slowCounters
		}
		c, err := client.New(r.ccfg, d, counters)
		if err != nil {
			return nil, err
		}
		subs[i] = r.newSubscription(c, sh)
		subs[i].slow = slow
	}

	r.startReach()
	if cfg.Warmup > 0 {
		r.recordFrom.Store(math.MaxInt64) // until the warm-up ends
	}
	aux := newAux(r)
	start, cpu0 := time.Now(), cpuTime()
	f := r.startFleet(ctx, subs)
	defer f.cancel()
	w := r.pace(ctx, start, f)
	aux.stopLag() // the figures' span ends with the drain
	w.rss = settledRSS()
	f.stop()
	res := r.result(start, cpu0, aux)
	res.Connected = w.connected
	res.Self.RSSBytes = w.rss
	sched := r.schedule() // the drain saw more ticks
	for _, s := range subs {
		if s.slow {
			res.SlowClients++
			continue
		}
		if at := s.connectedAt.Load(); !s.chk.Started() && at != 0 && sched.known() {
			// Connected, never got a tick: owed whatever was scheduled after
			// it connected (the server subscribed it before answering).
			s.chk.StartAfter(sched.seqAt(at))
		}
		res.Counts.Add(s.counts(w.h))
	}
	r.addReach(res, streamSubs(subs, w.h))
	if res.SlowClients > 0 {
		res.Slow = result.Slow{
			Stalled: r.slow.stalled.Load(), Dropped: r.slow.dropped.Load(), Open: r.slow.open.Load(),
			BacklogBytes: r.slow.backlog.Load(),
			BytesSent:    r.slowCounters.Out.Load(), BytesReceived: r.slowCounters.In.Load(),
		}
	}
	res.Messages, res.Duration = w.endMsgs-w.startMsgs, w.end.Sub(w.start).Seconds()
	if w.measured {
		res.Warmup = cfg.Warmup.Seconds()
	}
	finishRates(res)
	return res, nil
}

// settledRSS returns the RSS once connecting's garbage (handshake buffers,
// headers) went back to the OS, so that it is what the connected clients
// hold. Call it only after the drain: the forced collection holds the
// process for milliseconds (13 ms at 5000 clients on one core), which in
// the window would delay every client's reads and show as latency.
func settledRSS() int64 {
	debug.FreeOSMemory()
	return currentRSS()
}

// window is what pace saw of the measured window and of the run at its
// end.
type window struct {
	measured           bool      // the window began (not cancelled before)
	start, end         time.Time // start is the run's when it never began
	startMsgs, endMsgs int64     // ticks received by then
	connected          int64     // clients connected at the end
	rss                int64     // after the drain (settledRSS)
	h                  uint64    // the newest seq scheduled at the end: what every subscription is owed
}

// pace drives a stream run through its phases until the drain is over or
// ctx ends: it looks at the clock and at the clients, asks the plan where
// the run is, acts on entering a phase, and sleeps until the plan's next
// change, or shortly while the plan waits for an observation.
func (r *run) pace(ctx context.Context, start time.Time, f *fleet) window {
	const (
		connectPoll = 10 * time.Millisecond
		drainPoll   = 20 * time.Millisecond
	)
	p := newPlan(r.cfg, r.ccfg.ConnectTimeout)
	obs := observed{allIn: -1}
	w := window{start: start}
	var sched schedule
	end := func() {
		f.stopChurn() // the drain must see no new reconnects
		w.end = time.Now()
		w.endMsgs, w.connected = r.messages(), r.connected.Load()
		sched = r.schedule()
		w.h = sched.seqAt(w.end.UnixNano())
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for cur := phase(-1); ; {
		el := time.Since(start)
		if obs.allIn < 0 && r.everConnected.Load() == int64(len(f.subs)) {
			obs.allIn = el
		}
		if cur == phaseDrain {
			obs.caughtUp = r.caughtUp(f.subs, sched, w.h)
		}
		next, wait := p.at(el, obs)
		if next != cur {
			if cur < phaseMeasure && next >= phaseMeasure {
				w.measured = true
				w.start, w.startMsgs = time.Now(), r.messages()
				if r.cfg.Warmup > 0 {
					r.recordFrom.Store(w.start.UnixNano())
				}
			}
			if cur < phaseDrain && next >= phaseDrain {
				end()
			}
			cur = next
			r.phase.Store(cur.String())
			continue // look again at once: the drain may be over already
		}
		switch cur {
		case phaseDone:
			return w
		case phaseConnect:
			wait = min(wait, connectPoll)
		case phaseDrain:
			wait = min(wait, drainPoll)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			if cur < phaseDrain {
				end()
			}
			return w
		case <-timer.C:
		}
	}
}

// fleet owns the lifecycles of a stream run's clients, the spawner that
// starts them over the ramp and the churner. stopChurn ends the churn when
// the window ends; stop ends everything after the drain; cancel (deferred
// by the run) ends whatever is left when the run is cut short.
type fleet struct {
	subs      []*subscription
	cancel    context.CancelFunc
	stopChurn context.CancelFunc
	// The others end with stopClients after the drain; the stalled
	// clients stay stalled until stopStall, and are then read once more
	// (slowWG waits for that) before the run closes them.
	stopClients, stopStall context.CancelFunc
	spawned                chan struct{} // closed when the spawner returned
	wg, slowWG             sync.WaitGroup
}

func (r *run) startFleet(ctx context.Context, subs []*subscription) *fleet {
	f := &fleet{subs: subs, spawned: make(chan struct{})}
	ctx, f.cancel = context.WithCancel(ctx)
	churnCtx, stopChurn := context.WithCancel(ctx)
	clientCtx, stopClients := context.WithCancel(ctx)
	stallCtx, stopStall := context.WithCancel(ctx)
	f.stopChurn, f.stopClients, f.stopStall = stopChurn, stopClients, stopStall
	sem := make(chan struct{}, r.cfg.Handshakes)
	f.wg.Go(func() {
		defer close(f.spawned)
		r.spawn(ctx, clientCtx, stallCtx, subs, sem, &f.wg, &f.slowWG)
	})
	if r.cfg.Churn > 0 {
		f.wg.Go(func() { r.churn(churnCtx, subs) })
	}
	return f
}

// stop ends every client and waits for all of the fleet's goroutines. The
// others are closed first, so that the final read of the stalled clients
// adds nothing to their figures.
func (f *fleet) stop() {
	f.stopChurn()
	f.stopClients()
	for _, s := range f.subs {
		if !s.slow {
			_ = s.c.Close()
		}
	}
	f.stopStall()
	<-f.spawned // no stalled client starts any more
	f.slowWG.Wait()
	f.cancel()
	for _, s := range f.subs {
		_ = s.c.Close()
	}
	f.wg.Wait()
}

// spawn starts the clients' lifecycles, spread evenly over the ramp, until
// ctx ends: the others in wg with clientCtx, the stalled clients in slowWG
// with stallCtx.
func (r *run) spawn(ctx, clientCtx, stallCtx context.Context, subs []*subscription, sem chan struct{}, wg, slowWG *sync.WaitGroup) {
	n := len(subs)
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for i, s := range subs {
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
		if s.slow {
			slowWG.Go(func() { r.stall(ctx, stallCtx, s, sem) })
			continue
		}
		wg.Go(func() { r.live(clientCtx, s, sem, wg) })
	}
}

// churn drops Churn × Clients connected clients per second, in steps of
// 100 ms; each reconnects at once and resumes.
func (r *run) churn(ctx context.Context, subs []*subscription) {
	const step = 100 * time.Millisecond
	rng := rand.New(rand.NewPCG(uint64(len(subs)), 0x5eed))
	t := time.NewTicker(step)
	defer t.Stop()
	var due float64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		due += r.cfg.Churn * float64(len(subs)) * step.Seconds()
		for ; due >= 1; due-- {
			for range 8 { // a few tries to find a connected client
				s := subs[rng.IntN(len(subs))]
				if !s.slow && s.up.Load() && !s.churned.Load() {
					s.churned.Store(true)
					s.c.Drop()
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

// caughtUp reports whether every subscription has what was scheduled up
// to h, so that the drain can end before -drain: ticks in flight at the
// end are not counted as missing, while a stalled stream still is.
func (r *run) caughtUp(subs []*subscription, sched schedule, h uint64) bool {
	if h == 0 {
		return true
	}
	for _, s := range subs {
		at := s.connectedAt.Load()
		if at == 0 || s.slow {
			continue
		}
		if s.chk.Last() == 0 {
			if sched.known() && s.chk.Owed(sched.seqAt(at), h) {
				return false
			}
			continue
		}
		if !s.chk.Reached(h) {
			return false
		}
	}
	return true
}

// result stops aux and merges the shards into a Result (counts are added
// by the caller); wall and CPU time are measured from start and cpu0.
func (r *run) result(start time.Time, cpu0 time.Duration, aux *aux) *result.Result {
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	lag := aux.stop()
	cfg := r.cfg
	res := &result.Result{
		SchemaVersion: result.SchemaVersion,
		Transport:     cfg.Transport,
		URL:           cfg.URL.String(),
		Clients:       cfg.Clients,
		Symbols:       cfg.Symbols,
		Start:         start.UTC(),
		Duration:      wall.Seconds(),
		Reader:        r.readerName,
		Protocol:      cfg.Protocol(),
		Self:          selfCost(cpu, wall, lag),
	}
	hs := result.NewHists()
	for _, sh := range r.shards {
		sh.mu.Lock()
		hs.Merge(result.Hists{Latency: sh.lat, Connect: sh.conn, FirstTick: sh.first})
		res.Failures = result.AddFailures(res.Failures, sh.failures)
		sh.mu.Unlock()
		res.Bytes.Sent += sh.counters.Out.Load()
		res.Bytes.Received += sh.counters.In.Load()
		res.Bytes.PlainSent += sh.counters.PlainOut.Load()
		res.Bytes.PlainReceived += sh.counters.PlainIn.Load()
		res.Requests += sh.counters.Requests.Load()
	}
	// HTTP/2: the connections' bytes are the pool's. An answer run
	// (answers.go) has no feed clients, so no client config.
	if r.ccfg != nil && r.ccfg.H2 != nil {
		p := r.ccfg.H2
		res.Bytes.Sent += p.Counters().Out.Load()
		res.Bytes.Received += p.Counters().In.Load()
		res.Bytes.PlainSent += p.Counters().PlainOut.Load()
		res.Bytes.PlainReceived += p.Counters().PlainIn.Load()
	}
	res.FailureSamples = r.samples()
	if len(res.FailureSamples) == 0 {
		res.FailureSamples = nil
	}
	sched := r.schedule()
	res.FeedRate = sched.rate()
	// Encoding cannot fail for histograms built with the shared bounds;
	// empty Dists would merely read as no measurement.
	res.Dists, _ = hs.Dists()
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
	res.SetRates()
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
