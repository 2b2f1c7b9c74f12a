package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/pushbench/pushbench/loadgen/client"
	"github.com/pushbench/pushbench/loadgen/result"
)

// poller is one short-polling client: it asks every Interval what happened
// since its cursor. The targeter (vegeta's workers) reads cursor and sets
// inflight; everything else belongs to the goroutine that reads results.
type poller struct {
	cursor   atomic.Uint64 // cursor+1; 0: none yet
	inflight atomic.Bool
	sub      *subscription
	ok       bool
}

// shortpoll runs the open model vegeta is built for: requests at a fixed
// rate (Clients per Interval), whatever the server's answer time, each a
// GET /poll?timeout=0 for one of the pollers in turn. Latency is still
// measured from each tick's scheduled ts to the end of the response that
// carried it, so the interval's cost shows up as latency.
func (r *run) shortpoll(ctx context.Context) (*result.Result, error) {
	cfg := r.cfg
	n := cfg.Clients
	polls := make([]*poller, n)
	for i := range polls {
		polls[i] = &poller{sub: r.newSubscription(nil, r.shardFor(i))}
	}
	r.startReach()
	base := strings.TrimSuffix(cfg.URL.String(), "/") + "/poll?timeout=0s&max=" + strconv.Itoa(client.DefaultPollMax)
	if len(cfg.Symbols) > 0 {
		base += "&symbols=" + url.QueryEscape(strings.Join(cfg.Symbols, ","))
	}

	counters := &r.shards[0].counters
	var dials atomic.Uint64
	// Connections are dialed as the clients dial theirs (TLS included,
	// its handshake inside the connect time), so that bytes are counted
	// below and above TLS alike.
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		i := int(dials.Add(1))
		t0 := time.Now()
		c, err := r.ccfg.Dial(ctx, r.dialerFor(i), counters)
		if err != nil {
			return nil, err
		}
		r.shardFor(i).connected(time.Since(t0))
		return c, nil
	}
	tr := &http.Transport{
		DialContext:           dial,
		DialTLSContext:        dial, // HTTP/1.1 over TLS: ALPN offers http/1.1 only
		MaxIdleConnsPerHost:   n,
		MaxConnsPerHost:       n,
		DisableCompression:    true, // count the bytes a plain client moves
		ResponseHeaderTimeout: r.ccfg.ConnectTimeout,
		IdleConnTimeout:       max(2*cfg.Interval, 30*time.Second),
	}
	defer tr.CloseIdleConnections()
	var inner http.RoundTripper = tr
	if r.ccfg.H2 != nil {
		// HTTP/2: the polls are streams of the run's few connections.
		inner = r.ccfg.H2.RoundTripper(r.ccfg, r.dialers[0], r.shards[0].connected)
	}
	rt := &failRT{next: inner, shard: r.shards[0], counters: counters}
	attacker := vegeta.NewAttacker(
		vegeta.Client(&http.Client{Transport: rt}),
		vegeta.Timeout(2*r.ccfg.ConnectTimeout),
		vegeta.Workers(uint64(min(n, 32))),
		vegeta.MaxWorkers(uint64(n)), // at most one request in flight per poller, on average
		vegeta.MaxBody(int64(r.ccfg.MaxEvent)*16),
	)

	var next atomic.Uint64
	targeter := func(t *vegeta.Target) error {
		id := int(next.Add(1) % uint64(n))
		for range min(n, 16) { // prefer a poller with no request in flight
			if polls[id].inflight.CompareAndSwap(false, true) {
				break
			}
			id = int(next.Add(1) % uint64(n))
		}
		u := base
		if c := polls[id].cursor.Load(); c > 0 {
			u += "&cursor=" + strconv.FormatUint(c-1, 10)
		}
		// The fragment never goes on the wire; it tells the result which
		// poller asked.
		t.Method, t.URL = http.MethodGet, u+"#"+strconv.Itoa(id)
		return nil
	}

	aux := newAux(r)
	start, cpu0 := time.Now(), cpuTime()
	r.phase.Store("run")
	if cfg.Warmup > 0 {
		// The attack lasts Warmup + Duration; answers that end in the
		// warm-up are checked but not recorded.
		r.phase.Store("warm")
		r.recordFrom.Store(start.Add(cfg.Warmup).UnixNano())
		warmT := time.AfterFunc(cfg.Warmup, func() { r.phase.Store("run") })
		defer warmT.Stop()
	}
	unwatch := stopOnCancel(ctx, attacker)
	pacer := vegeta.ConstantPacer{Freq: n, Per: cfg.Interval}
	var ans client.PollAnswer
	for res := range attacker.Attack(targeter, pacer, cfg.Warmup+cfg.Duration, "shortpoll") {
		r.pollResult(res, polls, &ans)
	}
	unwatch()
	out := r.result(start, cpu0, aux)
	out.Requests = counters.Requests.Load()
	subs := make([]owedTo, 0, len(polls))
	for _, p := range polls {
		if p.ok {
			out.Connected++
		}
		// A poller is owed exactly what the server said it covered.
		h := p.cursor.Load()
		if h > 0 {
			h--
		}
		out.Counts.Add(p.sub.counts(h))
		out.Messages += p.sub.recorded
		subs = append(subs, owedTo{p.sub.chk, h})
	}
	r.addReach(out, subs)
	if cfg.Warmup > 0 {
		out.Warmup = cfg.Warmup.Seconds()
		out.Duration = max(0, out.Duration-out.Warmup)
	}
	finishRates(out)
	return out, nil
}

// pollResult accounts one short-poll answer: its ticks, as events of the
// poller's subscription, all arrived when the answer ended.
func (r *run) pollResult(res *vegeta.Result, polls []*poller, ans *client.PollAnswer) {
	_, frag, _ := strings.Cut(res.URL, "#")
	id, err := strconv.Atoi(frag)
	if err != nil || id < 0 || id >= len(polls) {
		return
	}
	p := polls[id]
	p.inflight.Store(false)
	sub := p.sub
	if res.Code != http.StatusOK {
		if res.Code != 0 {
			sub.shard.fail("http_"+strconv.Itoa(int(res.Code)), errors.New(res.Error))
		}
		return // transport errors were counted by failRT
	}
	if err := client.DecodePoll(res.Body, ans); err != nil {
		sub.handle(&client.Event{Kind: client.KindMalformed, Err: err})
		return
	}
	p.ok = true
	var reqCursor uint64
	hadCursor := false
	if i := strings.Index(res.URL, "&cursor="); i >= 0 {
		s := res.URL[i+len("&cursor="):]
		if j := strings.IndexByte(s, '#'); j >= 0 {
			s = s[:j]
		}
		reqCursor, _ = strconv.ParseUint(s, 10, 64)
		hadCursor = true
	}
	cur := p.cursor.Load() // cursor+1
	// An answer to a request sent with an older cursor than the poller has
	// now overlaps a newer answer: its ticks up to the current cursor were
	// already accounted, and counting them again would blame the server
	// for duplicates it did not send.
	stale := cur > 0 && (!hadCursor || reqCursor != cur-1)
	ev := client.Event{RecvAt: res.End().UnixNano()}
	if !sub.chk.Started() {
		// A first answer of ticks from seq 0 on has nothing to skip.
		ev.Kind = client.KindStart
		switch {
		case hadCursor:
			ev.Seq = reqCursor
			sub.handle(&ev)
		case len(ans.Ticks) == 0:
			ev.Seq = ans.Cursor
			sub.handle(&ev)
		case ans.Ticks[0].Seq > 0:
			ev.Seq = ans.Ticks[0].Seq - 1
			sub.handle(&ev)
		}
	}
	if ans.HasGap {
		ev.Kind, ev.Gap = client.KindGap, ans.Gap
		sub.handle(&ev)
	}
	ev.Kind = client.KindTick
	for i := range ans.Ticks {
		if stale && ans.Ticks[i].Seq <= cur-1 {
			continue
		}
		ev.Tick = ans.Ticks[i]
		sub.handle(&ev)
	}
	// A stale answer to a request sent without a cursor ("from now") carries
	// no ticks, and its cursor is merely the newest seq when the server
	// read it: moving on to it would skip the ticks in between, which the
	// checker would rightly count as missing. Only an answer that covered
	// the seqs up to its cursor may move the poller on.
	if cur == 0 || (hadCursor && ans.Cursor > cur-1) {
		p.cursor.Store(ans.Cursor + 1)
	}
}

// failRT counts transport failures by cause (vegeta keeps only the error
// text, which errors.Is cannot sort) and strips vegeta's own request
// headers, so the bytes counted are those a plain poller would send.
type failRT struct {
	next     http.RoundTripper
	shard    *shard
	counters *client.Counters
}

func (f *failRT) RoundTrip(req *http.Request) (*http.Response, error) {
	r2 := *req
	r2.Header = req.Header.Clone()
	for k := range r2.Header {
		if strings.HasPrefix(k, "X-Vegeta-") {
			delete(r2.Header, k)
		}
	}
	f.counters.Requests.Add(1)
	resp, err := f.next.RoundTrip(&r2)
	if err != nil {
		f.shard.fail(client.Cause(err), err)
		return nil, fmt.Errorf("poll: %w", err)
	}
	resp.Body = &failBody{ReadCloser: resp.Body, shard: f.shard}
	return resp, nil
}

// failBody counts a body that breaks off.
type failBody struct {
	io.ReadCloser
	shard *shard
}

func (b *failBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		b.shard.fail(client.Cause(err), err)
	}
	return n, err
}
