package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/pushbench/pushbench/loadgen/client"
	"github.com/pushbench/pushbench/loadgen/result"
)

// storm opens new connections at Rate per second (a reconnect storm), at
// most Clients at once, each measured for time to connect and time to
// first tick and then closed (or held for Hold). vegeta paces the opens
// and grows its workers when connections are slow, so a slow server does
// not lower the offered rate (open model); its requests go to stormRT,
// which performs one streaming connection per request.
func (r *run) storm(ctx context.Context) (*result.Result, error) {
	cfg := r.cfg
	rt := &stormRT{r: r, ctx: ctx}
	attacker := vegeta.NewAttacker(
		vegeta.Client(&http.Client{Transport: rt}),
		vegeta.Timeout(0), // stormRT bounds each connection itself
		vegeta.Workers(uint64(min(cfg.Clients, 16))),
		vegeta.MaxWorkers(uint64(cfg.Clients)),
		vegeta.MaxBody(0),
	)
	// ConstantPacer counts whole hits per period: express the rate per
	// 1000 s so that fractional rates work.
	pacer := vegeta.ConstantPacer{Freq: max(1, int(cfg.Rate*1000+0.5)), Per: 1000 * time.Second}
	target := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: cfg.URL.String()})

	aux := newAux(r)
	start, cpu0 := time.Now(), cpuTime()
	r.phase.Store("storm")
	unwatch := stopOnCancel(ctx, attacker)
	for range attacker.Attack(target, pacer, cfg.Duration, cfg.Transport) {
		// stormRT accounted each connection.
	}
	unwatch()
	out := r.result(start, cpu0, aux)
	rt.mu.Lock()
	out.Counts = rt.counts
	rt.mu.Unlock()
	out.Connected = rt.ok.Load()
	out.Messages = out.Counts.Received
	finishRates(out)
	return out, nil
}

// stormRT performs one storm connection per request.
type stormRT struct {
	r    *run
	ctx  context.Context
	next atomic.Uint64
	ok   atomic.Int64 // connections that got their first tick

	mu     sync.Mutex
	counts result.Counts
}

var errNoTick = errors.New("connection ended before its first tick")

func (s *stormRT) RoundTrip(req *http.Request) (*http.Response, error) {
	r := s.r
	i := int(s.next.Add(1))
	sh := r.shardFor(i)
	c, err := client.New(r.ccfg, r.dialerFor(i), &sh.counters)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	sub := r.newSubscription(c, sh)
	defer func() {
		s.mu.Lock()
		s.counts.Add(sub.counts(0))
		s.mu.Unlock()
	}()
	stop := context.AfterFunc(s.ctx, func() { _ = c.Close() })
	defer stop()

	sub.t0 = time.Now()
	if err := c.Connect(s.ctx); err != nil {
		sh.fail(client.Cause(err), err)
		return nil, err
	}
	sh.connected(time.Since(sub.t0))
	r.connected.Add(1)
	defer r.connected.Add(-1)

	// The first tick must come within the connect timeout.
	cut := time.AfterFunc(r.ccfg.ConnectTimeout, c.Drop)
	for {
		ev, err := c.Next()
		if err != nil {
			cut.Stop()
			if !sub.gotFirst {
				sh.fail("first_tick_"+client.Cause(err), err)
				return nil, fmt.Errorf("%w: %w", errNoTick, err)
			}
			break // the hold ended
		}
		first := !sub.gotFirst
		sub.handle(ev)
		if first && sub.gotFirst {
			cut.Stop()
			s.ok.Add(1)
			if r.cfg.Hold <= 0 {
				return okResponse(req), nil
			}
			cut = time.AfterFunc(r.cfg.Hold, c.Drop)
		}
	}
	return okResponse(req), nil
}

func okResponse(req *http.Request) *http.Response {
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: http.NoBody, Request: req,
	}
}

// stopOnCancel stops a when ctx ends (Ctrl-C ends an attack early) until
// the returned func is called; that func also waits for the watcher.
func stopOnCancel(ctx context.Context, a *vegeta.Attacker) (unwatch func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-ctx.Done():
			a.Stop()
		case <-quit:
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}
