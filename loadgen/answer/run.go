package answer

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushbench/pushbench/internal/alarm"
	"github.com/pushbench/pushbench/loadgen/client"
	"github.com/pushbench/pushbench/loadgen/result"
	gen "github.com/pushbench/pushbench/servers/answer"
)

// Outcome is what Run measured: the Answer part of a Result and what
// every result has (bytes on the wire, failures by cause). Duration is
// the measured window, after Warmup from Start, over which the rates are
// given.
type Outcome struct {
	Answer        *result.Answer
	Start         time.Time
	Warmup        time.Duration
	Duration      time.Duration
	BytesSent     int64
	BytesReceived int64
	// PlainSent and PlainReceived are the bytes above TLS (0 without).
	PlainSent     int64
	PlainReceived int64
	Requests      int64
	Failures      map[string]int64
	Samples       map[string]string
}

// Preflight asks for one answer of one chunk without think, as the run
// would, so that a server that is down or does not serve answers over
// cfg.Transport gives one clear error before the run. cfg is validated.
func Preflight(ctx context.Context, cfg Config, dialer *client.Dialer) error {
	r, done, err := newRunner(&cfg, dialer)
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	req := gen.Request{Tokens: 1, Rate: cfg.TokenRate, Think: 0, Seed: cfg.Seed}
	a := newAns(0, req, time.Now().UnixNano(), r.stats[0])
	if err := r.one(ctx, a); err != nil {
		return err
	}
	if a.doneAt == 0 || a.got != 1 {
		return fmt.Errorf("%s answer ended without its chunk and done: %w", cfg.Transport, client.ErrProtocol)
	}
	return nil
}

// Run performs an answer run: arrivals for cfg.Warmup + cfg.Duration,
// then up to cfg.Drain for the answers in flight, which are then cut; ctx
// ending stops the arrivals and the drain at once. dialer opens
// the connections (nil: from any source address). It returns an error
// only when the run could not take place.
func Run(ctx context.Context, cfg Config, dialer *client.Dialer) (*Outcome, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r, done, err := newRunner(&cfg, dialer)
	if err != nil {
		return nil, err
	}
	defer done()

	ansCtx, cut := context.WithCancel(context.WithoutCancel(ctx))
	defer cut()
	start := time.Now()
	from := start.Add(cfg.Warmup)
	for _, st := range r.stats {
		st.winFrom, st.winTo = from.UnixNano(), from.Add(cfg.Duration).UnixNano()
	}
	if err := r.arrivals(ctx, ansCtx, start); err != nil {
		return nil, err
	}
	// The last arrival came before the window's end: wait for the end to
	// count the answers in flight then.
	if sleepUntil(ctx, from.Add(cfg.Duration)) {
		r.inFlightAtEnd = int64(len(r.slots))
	}
	// The drain: wait for the answers in flight, then cut what is left.
	all := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(all)
	}()
	t := time.NewTimer(cfg.Drain)
	select {
	case <-all:
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	cut()
	<-all
	return r.outcome(start), nil
}

// newRunner prepares a run of cfg; done closes its connections once its
// answers ended.
func newRunner(cfg *Config, dialer *client.Dialer) (r *runner, done func(), err error) {
	r = &runner{cfg: cfg, dialer: dialer, stats: newStats(4), slots: make(chan struct{}, cfg.Concurrency)}
	if r.dialer == nil {
		r.dialer = client.NewDialer(nil, cfg.ConnectTimeout)
	}
	// The feed clients' configuration dials for the answers too: the
	// same TLS (server name, ALPN by protocol, handshake in the connect
	// timeout) and the same byte counting, on the socket and above TLS.
	r.ccfg = &client.Config{Transport: cfg.Transport, Base: cfg.Base, TLS: cfg.TLS, ConnectTimeout: cfg.ConnectTimeout}
	if cfg.Conn == ConnH2 {
		r.ccfg.Proto, r.ccfg.H2 = client.ProtoH2, client.NewH2Pool(cfg.Conns)
	}
	if err := r.ccfg.Prepare(); err != nil {
		return nil, nil, fmt.Errorf("answer: %w", err)
	}
	r.prefix = strings.TrimSuffix(cfg.Base.String(), "/")
	r.http = r.newTransport(cfg.Conn == ConnFresh && cfg.Transport == "sse")
	r.rt = r.http
	if r.ccfg.H2 != nil {
		r.rt = r.ccfg.H2.RoundTripper(r.ccfg, r.dialer, nil)
	}
	if cfg.Transport == "ws" {
		r.ws = newWSPool(r)
	}
	return r, func() {
		r.http.CloseIdleConnections()
		if r.ccfg.H2 != nil {
			_ = r.ccfg.H2.Close()
		}
		if r.ws != nil {
			r.ws.close()
		}
	}, nil
}

// runner is the state of one Run shared by its goroutines.
type runner struct {
	cfg    *Config
	dialer *client.Dialer
	stats  []*stats
	ccfg   *client.Config // dials (TLS) and, for -conn h2, holds the pool
	prefix string         // base URL without a trailing slash
	http   *http.Transport
	// rt carries the sse and poll requests: http, or for -conn h2 the
	// streams of ccfg.H2's connections in turn.
	rt http.RoundTripper
	ws *wsPool

	// slots holds a token per answer in flight (the cap).
	slots      chan struct{}
	wg         sync.WaitGroup // the answers' goroutines
	counters   client.Counters
	opened     atomic.Int64 // connections dialed
	arrived    atomic.Int64
	winArrived atomic.Int64 // in the measured window
	// inFlightAtEnd is set by Run once the arrivals are over.
	inFlightAtEnd int64
	capped        atomic.Int64
	stray         atomic.Int64 // ws messages for no answer in flight
}

// dial opens a connection for the answers (over TLS with its handshake
// done) and counts it and its bytes.
func (r *runner) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c, err := r.ccfg.Dial(ctx, r.dialer, &r.counters)
	if err != nil {
		return nil, err
	}
	r.opened.Add(1)
	return c, nil
}

// newTransport returns an HTTP/1.1 client transport over r.dial; fresh:
// a new connection per request. It holds at most Concurrency connections,
// one per answer in flight: net/http would otherwise dial a spare when a
// request finds none idle while another is being handed back. Over https
// r.dial is its DialTLSContext: the connection comes with TLS done, and
// ALPN offered http/1.1 only.
func (r *runner) newTransport(fresh bool) *http.Transport {
	return &http.Transport{
		DialContext:         r.dial,
		DialTLSContext:      r.dial,
		DisableKeepAlives:   fresh,
		MaxConnsPerHost:     r.cfg.Concurrency,
		DisableCompression:  true,
		MaxIdleConns:        r.cfg.Concurrency,
		MaxIdleConnsPerHost: r.cfg.Concurrency,
		IdleConnTimeout:     90 * time.Second,
		// The answers' bodies are small; a smaller buffer than the
		// default 4 KiB keeps the client's memory per connection down.
		ReadBufferSize:  1 << 10,
		WriteBufferSize: 1 << 10,
	}
}

// arrivals sends answers at the Poisson arrival times until cfg.Warmup +
// cfg.Duration or ctx ends; each answer runs in its own goroutine with
// ansCtx, timed from its arrival time however late this loop reaches it.
// The loop waits on an alarm, not a time.Timer: Go's timers fire up to a
// millisecond late in a quiet process, and every TTFT would carry that.
func (r *runner) arrivals(ctx, ansCtx context.Context, start time.Time) error {
	cfg := r.cfg
	p := &PoissonPacer{Freq: cfg.Rate, Seed: cfg.Seed}
	clock, stopClock, err := alarm.Start(ctx)
	if err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	defer stopClock()
	wake := clock.NewAlarm()
	for n := uint64(0); ; n++ {
		at := p.At(n)
		if at >= cfg.Warmup+cfg.Duration {
			return nil
		}
		if due := start.Add(at); time.Until(due) > 0 {
			wake.Set(due.UnixNano())
			select {
			case <-ctx.Done():
				return nil
			case <-wake.C:
			}
		} else if ctx.Err() != nil {
			return nil
		}
		r.arrived.Add(1)
		if trace.IsEnabled() { // loadgen -trace: each send, by seed, beside the server's arrival
			trace.Logf(ctx, "answer", "send seed %d due %d now %d", cfg.Seed+n, start.Add(at).UnixNano(), time.Now().UnixNano())
		}
		if at >= cfg.Warmup {
			r.winArrived.Add(1)
		}
		select {
		case r.slots <- struct{}{}:
		default:
			r.capped.Add(1)
			continue
		}
		req := gen.Request{Tokens: cfg.Tokens, Rate: cfg.TokenRate, Think: cfg.Think, Seed: cfg.Seed + n}
		a := newAns(n, req, start.Add(at).UnixNano(), r.stats[n%uint64(len(r.stats))])
		r.wg.Go(func() {
			defer func() { <-r.slots }()
			err := r.one(ansCtx, a)
			cause := client.Cause(err)
			if ansCtx.Err() != nil && a.doneAt == 0 {
				cause = "cut"
			}
			a.finish(err, cause)
		})
	}
}

// one runs answer a over the configured transport until its done, an
// error, or ctx ends.
func (r *runner) one(ctx context.Context, a *ans) error {
	switch r.cfg.Transport {
	case "sse":
		return r.sse(ctx, a)
	case "poll":
		return r.poll(ctx, a)
	default:
		return r.ws.answer(ctx, a)
	}
}

// body is the request of answer a, as JSON; req (ws) tags it.
func (r *runner) body(a *ans, req string) []byte {
	b := make([]byte, 0, 96)
	b = append(b, '{')
	if req != "" {
		b = append(b, `"req":`...)
		b = strconv.AppendQuote(b, req)
		b = append(b, ',')
	}
	b = append(b, `"tokens":`...)
	b = strconv.AppendInt(b, int64(a.req.Tokens), 10)
	b = append(b, `,"rate":`...)
	b = strconv.AppendFloat(b, a.req.Rate, 'g', -1, 64)
	b = append(b, `,"think":`...)
	b = strconv.AppendQuote(b, a.req.Think.String())
	b = append(b, `,"seed":`...)
	b = strconv.AppendUint(b, a.seed, 10)
	return append(b, '}')
}

// outcome merges the shards once every answer ended.
func (r *runner) outcome(start time.Time) *Outcome {
	cfg := r.cfg
	a := &result.Answer{
		Conn: cfg.Conn, Concurrency: cfg.Concurrency, Rate: cfg.Rate,
		Tokens: cfg.Tokens, TokenRate: cfg.TokenRate, ThinkMs: float64(cfg.Think) / float64(time.Millisecond),
		WarmupMs:          float64(cfg.Warmup) / float64(time.Millisecond),
		ConnectionsOpened: r.opened.Load(), InFlightAtEnd: r.inFlightAtEnd,
	}
	if cfg.Conn == ConnMux || cfg.Conn == ConnH2 {
		a.Conns = cfg.Conns
	}
	o := &Outcome{Answer: a, Start: start.UTC(), Duration: cfg.Duration, Warmup: cfg.Warmup,
		Failures: map[string]int64{}, Samples: map[string]string{}}
	h := result.NewAnswerHists()
	for _, s := range r.stats {
		s.mu.Lock()
		h.Merge(s.h)
		a.Answers.Add(s.answers)
		a.Chunks.Add(s.chunks)
		a.Window.Add(s.window)
		o.Failures = result.AddFailures(o.Failures, s.failures)
		for k, v := range s.samples {
			if _, ok := o.Samples[k]; !ok {
				o.Samples[k] = v
			}
		}
		s.mu.Unlock()
	}
	a.Answers.Arrivals, a.Answers.NotSentCap = r.arrived.Load(), r.capped.Load()
	a.Window.Arrivals = r.winArrived.Load()
	a.Chunks.Stray = r.stray.Load()
	// Encoding cannot fail for histograms with the shared bounds.
	a.AnswerDists, _ = h.Dists()
	o.BytesSent, o.BytesReceived, o.Requests = r.counters.Out.Load(), r.counters.In.Load(), r.counters.Requests.Load()
	o.PlainSent, o.PlainReceived = r.counters.PlainOut.Load(), r.counters.PlainIn.Load()
	if p := r.ccfg.H2; p != nil {
		// HTTP/2: the connections and their bytes are the pool's.
		a.ConnectionsOpened += p.Dials()
		o.BytesSent, o.BytesReceived = o.BytesSent+p.Counters().Out.Load(), o.BytesReceived+p.Counters().In.Load()
		o.PlainSent, o.PlainReceived = o.PlainSent+p.Counters().PlainOut.Load(), o.PlainReceived+p.Counters().PlainIn.Load()
	}
	a.SetRates(cfg.Duration.Seconds(), o.BytesReceived)
	return o
}

// errStatus reads an unexpected response into a StatusError.
func errStatus(what string, resp *http.Response) error {
	var buf [200]byte
	n, _ := resp.Body.Read(buf[:])
	return fmt.Errorf("%s: %w", what, &client.StatusError{Code: resp.StatusCode, Body: string(buf[:n])})
}

// sleepUntil waits until t or until ctx ends; false if ctx ended it.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}
