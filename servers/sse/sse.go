// Package sse serves the feed as Server-Sent Events on net/http.
//
// The handler goroutine is the connection's only writer: it parses the
// resume point, writes the retry hint, then runs the shared stream loop with
// a Writer that writes each batch of pre-built event bytes and flushes once
// through http.ResponseController, with a write deadline on every flush.
package sse

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/metrics"
	"github.com/pushbench/pushbench/servers/query"
	"github.com/pushbench/pushbench/servers/stream"
)

// Defaults double as flag defaults.
const (
	DefaultRetry        = 2 * time.Second
	DefaultHeartbeat    = 15 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// Handler serves GET /sse.
type Handler struct {
	Feed         *feed.Feed
	SymbolIndex  map[string]int
	Retry        time.Duration
	Heartbeat    time.Duration
	WriteTimeout time.Duration
	Metrics      *metrics.Transport
	// Admit is asked before a stream starts; it returns a release func, or
	// false with the reason the client is refused (the handler answers 503).
	Admit func() (release func(), reason string, ok bool)
	// Stop is closed when the server shuts down: streams end at once.
	Stop <-chan struct{}
	// Ctx bounds every stream (the server's lifetime).
	Ctx     context.Context
	Batches *sync.Pool
}

func badRequest(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), http.StatusBadRequest)
}

// ServeHTTP validates the request, then streams until the client leaves, a
// write fails or the server stops.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ring := h.Feed.Ring()
	q := r.URL.Query()
	var filter feed.Filter
	if v, ok := q["symbols"]; ok {
		f, err := query.Symbols(v[0], h.Feed.Symbols(), h.SymbolIndex)
		if err != nil {
			badRequest(w, err)
			return
		}
		filter = f
	}
	cursor := ring.Newest() // no resume point: live from now
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		v, err := query.Seq("Last-Event-ID", id)
		if err != nil {
			badRequest(w, err)
			return
		}
		cursor = v
	} else if v, ok := q["lastEventId"]; ok {
		s, err := query.Seq("lastEventId", v[0])
		if err != nil {
			badRequest(w, err)
			return
		}
		cursor = s
	}
	release, reason, ok := h.Admit()
	if !ok {
		h.Metrics.Refuse(reason)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "server at capacity: "+reason, http.StatusServiceUnavailable)
		return
	}
	defer release()
	h.Metrics.Open.Inc()
	defer h.Metrics.Open.Dec()

	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	sw := &writer{w: w, rc: http.NewResponseController(w), timeout: h.WriteTimeout}
	retry := "retry: " + strconv.FormatInt(h.Retry.Milliseconds(), 10) + "\n\n"
	if n, err := sw.write([]byte(retry)); err != nil {
		h.Metrics.WriteErrors.Inc()
		return
	} else {
		h.Metrics.Bytes.Add(float64(n))
	}
	ctx := r.Context()
	_ = stream.Run(ctx, h.Stop, stream.Config{
		Ring: ring, Cursor: cursor, Filter: filter,
		KeepAlive: h.Heartbeat, Metrics: h.Metrics, Batches: h.Batches,
	}, sw)
}

// writer writes SSE bytes through net/http and flushes once per call.
type writer struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	gapBuf  []byte
}

var _ stream.Writer = (*writer)(nil)

func (sw *writer) deadline() error {
	if sw.timeout <= 0 {
		return nil
	}
	return sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout))
}

func (sw *writer) write(b []byte) (int, error) {
	if err := sw.deadline(); err != nil {
		return 0, err
	}
	n, err := sw.w.Write(b)
	if err != nil {
		return n, err
	}
	return n, sw.rc.Flush()
}

func (sw *writer) WriteFrames(frames []*feed.Frame) (int, error) {
	if err := sw.deadline(); err != nil {
		return 0, err
	}
	total := 0
	for _, f := range frames {
		n, err := sw.w.Write(f.SSE)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, sw.rc.Flush()
}

func (sw *writer) WriteGap(g feed.Gap) (int, error) {
	b := append(sw.gapBuf[:0], "event: gap\ndata: {\"from\":"...)
	b = strconv.AppendUint(b, g.From, 10)
	b = append(b, `,"to":`...)
	b = strconv.AppendUint(b, g.To, 10)
	b = append(b, "}\n\n"...)
	sw.gapBuf = b
	return sw.write(b)
}

// heartbeat is an SSE comment: EventSource ignores it, proxies see traffic.
const heartbeat = ": ping\n\n"

func (sw *writer) KeepAlive() (int, error) { return sw.write([]byte(heartbeat)) }
