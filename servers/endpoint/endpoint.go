// Package endpoint is the front half every transport handler shares: what
// the server injects (the feed, the symbol index, metrics, admission, the
// shutdown signal, the goroutine start hook), the strict parsing of a
// subscription's query (symbols and resume point), the 503 at a limit, and
// the start of a taken-over connection's goroutine with its cleanup.
//
// Ownership: a Base is built once per handler by the server and only read
// afterwards, so handlers share it across requests without locks.
package endpoint

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/metrics"
	"github.com/pushbench/pushbench/servers/protocol"
	"github.com/pushbench/pushbench/servers/query"
)

// Base is embedded by the SSE, WebSocket and poll handlers.
type Base struct {
	Feed         *feed.Feed
	SymbolIndex  map[string]int // symbol name -> index in Feed.Symbols()
	WriteTimeout time.Duration  // deadline of every write; 0: none
	// Metrics are the transport's instruments over HTTP/1.1; MetricsOf
	// gives those of a request's protocol.
	Metrics *metrics.Transport
	// Admit is asked before a client is served or held; it returns a
	// release func, or false with the reason the client is refused.
	Admit func() (release func(), reason string, ok bool)
	// Shutdown is canceled when the server shuts down: the one signal that
	// ends streams (WebSocket: with 1001) and answers held polls.
	Shutdown context.Context
	// Go starts a taken-over connection's goroutine so that the server can
	// wait for it on shutdown; false means the server is shutting down.
	Go func(func()) bool
	// Enter counts a stream served on net/http's own goroutine (SSE over
	// HTTP/2) among those the server waits for on shutdown; leave ends it.
	// false means the server is shutting down.
	Enter func() (leave func(), ok bool)
	// Batches lends batch buffers (*[]*feed.Frame) so that an idle client
	// holds none.
	Batches *sync.Pool
}

// Request is a subscription's parsed query.
type Request struct {
	Query     url.Values  // the whole query, parsed strictly
	Filter    feed.Filter // nil: all symbols
	Cursor    uint64      // the resume point, or the newest seq without one
	HasCursor bool        // the client gave a resume point
}

// Parse reads the query strictly (a malformed one is an error, see
// query.Values), the symbols filter, and the resume point: the header
// named header when the request has it (SSE's Last-Event-ID; "" for none),
// else the query parameter param. Errors are fit for a 400 body.
func (b *Base) Parse(r *http.Request, header, param string) (Request, error) {
	q, err := query.Values(r.URL.RawQuery)
	if err != nil {
		return Request{}, err
	}
	req := Request{Query: q}
	if v, ok := q["symbols"]; ok {
		if req.Filter, err = query.Symbols(v[0], b.Feed.Symbols(), b.SymbolIndex); err != nil {
			return Request{}, err
		}
	}
	name, value, has := param, "", false
	if v, ok := q[param]; ok {
		value, has = v[0], true
	}
	if header != "" {
		if v := r.Header.Get(header); v != "" {
			name, value, has = header, v, true
		}
	}
	if has {
		if req.Cursor, err = query.Seq(name, value); err != nil {
			return Request{}, err
		}
		req.HasCursor = true
	} else {
		req.Cursor = b.Feed.Ring().Newest() // no resume point: from now
	}
	return req, nil
}

// MetricsOf are the transport's instruments over r's protocol.
func (b *Base) MetricsOf(r *http.Request) *metrics.Transport { return b.Metrics.Over(protocol.Of(r)) }

// Take admits one client, or answers 503 with Retry-After through fail
// (the transport's error body) and counts the refusal by r's protocol.
func (b *Base) Take(w http.ResponseWriter, r *http.Request, fail func(w http.ResponseWriter, code int, msg string)) (release func(), ok bool) {
	release, reason, ok := b.Admit()
	if !ok {
		b.MetricsOf(r).Refuse(reason)
		w.Header().Set("Retry-After", "1")
		fail(w, http.StatusServiceUnavailable, "server at capacity: "+reason)
		return nil, false
	}
	return release, true
}

// Start runs a taken-over connection's goroutine, fn, with a context that
// ends at shutdown or when fn's connection cancels it, and counts the
// connection open while fn runs; release is called when fn returns. If
// the server is already shutting down, nothing runs: abort closes the
// connection and the slot is released at once.
func (b *Base) Start(release func(), abort func(), fn func(ctx context.Context, cancel context.CancelFunc)) {
	b.Metrics.Open.Inc()
	ctx, cancel := context.WithCancel(b.Shutdown)
	started := b.Go(func() {
		defer release()
		defer b.Metrics.Open.Dec()
		defer cancel()
		fn(ctx, cancel)
	})
	if !started {
		cancel()
		abort()
		b.Metrics.Open.Dec()
		release()
	}
}

// Serve runs fn, a stream served on the calling goroutine (net/http's,
// for a stream that cannot be taken over: HTTP/2), with a context that ends
// when the client goes away (r's context) or at shutdown, and counts the
// stream open (by r's protocol) while fn runs; release is called when fn returns. It reports
// false, running nothing and releasing the slot, once the server is
// shutting down.
func (b *Base) Serve(r *http.Request, release func(), fn func(ctx context.Context)) bool {
	defer release()
	leave, ok := b.Enter()
	if !ok {
		return false
	}
	defer leave()
	m := b.MetricsOf(r)
	m.Open.Inc()
	defer m.Open.Dec()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(b.Shutdown, cancel)
	defer stop()
	fn(ctx)
	return true
}

// HTTPError writes msg as a plain-text error (SSE, WebSocket handshakes).
func HTTPError(w http.ResponseWriter, code int, msg string) { http.Error(w, msg, code) }
