// Package poll serves the feed by long polling, and by short polling when a
// client asks with timeout=0.
//
// A poll is a cursor too: it reads the shared Ring after `cursor`, answers
// at once when anything is retained, and otherwise holds the request until
// the next publish wakes it, its timeout passes or the server stops. The
// response embeds each tick's pre-encoded JSON, so nothing is re-encoded
// per client.
package poll

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/pushbench/pushbench/servers/endpoint"
	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/metrics"
	"github.com/pushbench/pushbench/servers/query"
)

// Defaults double as flag defaults.
const (
	DefaultTimeout      = 25 * time.Second
	MaxTimeout          = 2 * time.Minute
	DefaultMax          = 512
	MaxMax              = 10000
	DefaultWriteTimeout = 10 * time.Second
)

// Handler serves GET /poll. Its Batches pool lends the slice of frames a
// response is built from (*[]*feed.Frame, grown past its pooled capacity
// when max asks for more), and Admit is asked only before a request is held
// (timeout > 0): an answer ready at once takes no slot.
type Handler struct {
	endpoint.Base
	Requests interface{ Inc() }
}

type params struct {
	endpoint.Request
	timeout time.Duration
	max     int
}

func (h *Handler) parse(r *http.Request) (params, error) {
	p := params{timeout: DefaultTimeout, max: DefaultMax}
	var err error
	if p.Request, err = h.Parse(r, "", "cursor"); err != nil {
		return p, err
	}
	if v, ok := p.Query["timeout"]; ok {
		if p.timeout, err = query.Duration("timeout", v[0], MaxTimeout); err != nil {
			return p, err
		}
	}
	if v, ok := p.Query["max"]; ok {
		if p.max, err = query.Int("max", v[0], MaxMax); err != nil {
			return p, err
		}
	}
	return p, nil
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b := append([]byte(`{"error":`), strconv.Quote(msg)...)
	_, _ = w.Write(append(b, "}\n"...))
}

// ServeHTTP answers one poll.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	p, err := h.parse(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ring := h.Feed.Ring()
	m := h.MetricsOf(r)
	// An answer that is ready now is read straight away; otherwise the
	// request is held without a batch buffer, so that thousands of held
	// polls cost only their goroutines, and read once something arrived.
	if p.timeout > 0 && !h.ready(p.Cursor, p.Filter) {
		release, ok := h.Take(w, r, writeError)
		if !ok {
			return
		}
		// net/http's WriteTimeout runs from the request's start: on HTTP/2
		// it resets the stream when it passes, even with nothing being
		// written, which would cut a poll held longer. respond sets the
		// deadline of the answer's write.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		m.Open.Inc()
		h.hold(r.Context(), p)
		m.Open.Dec()
		release()
	}
	bp := h.Batches.Get().(*[]*feed.Frame)
	defer func() { clear(*bp); *bp = (*bp)[:0]; h.Batches.Put(bp) }()
	frames, gap, next := ring.Read(p.Cursor, p.Filter, (*bp)[:0], p.max)
	if len(frames) == 0 && gap == nil {
		next = p.Cursor // nothing to answer (timeout): the cursor is unchanged
	}
	*bp = frames
	h.respond(w, m, next, frames, gap)
}

// ready reports whether a Read after cursor would return a tick or a gap.
func (h *Handler) ready(cursor uint64, filter feed.Filter) bool {
	var one [1]*feed.Frame
	frames, gap, _ := h.Feed.Ring().Read(cursor, filter, one[:0], 1)
	return len(frames) > 0 || gap != nil
}

// hold waits until a tick after p.Cursor of the client's symbols (or a gap)
// is retained, the timeout passes, the client leaves or the server stops.
func (h *Handler) hold(ctx context.Context, p params) {
	ring := h.Feed.Ring()
	timer := time.NewTimer(p.timeout)
	defer timer.Stop()
	for {
		// Wait before checking, so that a publish in between is not missed.
		wake, cancel := ring.WaitFor(p.Cursor, p.Filter)
		if ring.Closed() || h.ready(p.Cursor, p.Filter) {
			cancel()
			return
		}
		select {
		case <-wake:
			cancel()
			continue
		case <-timer.C:
		case <-ctx.Done():
		case <-h.Shutdown.Done():
		}
		cancel()
		return
	}
}

func (h *Handler) respond(w http.ResponseWriter, m *metrics.Transport, cursor uint64, frames []*feed.Frame, gap *feed.Gap) {
	h.Requests.Inc()
	size := 40
	for _, f := range frames {
		size += len(f.JSON) + 1
	}
	b := make([]byte, 0, size)
	b = append(b, `{"cursor":`...)
	b = strconv.AppendUint(b, cursor, 10)
	b = append(b, `,"ticks":[`...)
	for i, f := range frames {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, f.JSON...)
	}
	b = append(b, ']')
	if gap != nil {
		b = feed.AppendGapJSON(append(b, `,"gap":`...), *gap)
		// A poll's cursor is where its previous answer ended: a gap means
		// the client came back later than the history lasts (too slow).
		m.Gaps.Inc()
		m.Behind.Inc()
	}
	b = append(b, "}\n"...)
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("Content-Length", strconv.Itoa(len(b)))
	if h.WriteTimeout > 0 {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.WriteTimeout))
	}
	n, err := w.Write(b)
	m.Bytes.Add(float64(n))
	if err != nil {
		m.WriteFailed(err)
		return
	}
	m.Delivered(len(frames))
}
