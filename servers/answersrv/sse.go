package answersrv

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushbench/pushbench/servers/answer"
	"github.com/pushbench/pushbench/servers/metrics"
	"github.com/pushbench/pushbench/servers/query"
)

// bufs lends write buffers, so that an answer waiting for its next chunk
// holds none.
var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxBatch bounds the chunks written in one write (a resume long after
// the answer began has them all due at once).
const maxBatch = 256

// resume serves GET /answer/{id} as SSE: the chunks after Last-Event-ID
// (header, or lastEventId in the query), on the answer's original schedule.
func (s *Service) resume(w http.ResponseWriter, r *http.Request, rec *record) {
	bad := s.cfg.Metrics.BadRequests.WithLabelValues(metrics.SSE)
	q, err := query.Values(r.URL.RawQuery)
	if err != nil {
		bad.Inc()
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	from := 0
	name, value := "lastEventId", q.Get("lastEventId")
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		name, value = "Last-Event-ID", v
	}
	if value != "" {
		last, err := query.Seq(name, value)
		if err != nil || last >= uint64(rec.req.Tokens) {
			bad.Inc()
			writeError(w, http.StatusBadRequest, name+" must be a chunk index 0.."+strconv.Itoa(rec.req.Tokens-1))
			return
		}
		from = int(last) + 1
	}
	conn, _ := r.Context().Value(connKey{}).(*atomic.Int64)
	release, reason, ok := s.take(metrics.SSE, conn)
	if !ok {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "server at capacity: "+reason)
		return
	}
	s.cfg.Metrics.Resumes.Inc()
	s.serveSSE(w, r, rec, from, release)
}

// serveSSE delivers an admitted SSE answer from chunk from on and frees
// its slot (release) with the outcome: over HTTP/1.x on the connection,
// taken over from net/http (see takeOver), over HTTP/2 on the handler
// goroutine (streamSSE).
func (s *Service) serveSSE(w http.ResponseWriter, r *http.Request, rec *record, from int, release func(outcome string)) {
	if r.ProtoMajor == 1 && s.takeOver(w, r, rec, from, release) {
		return
	}
	release(s.streamSSE(w, r, rec, from))
}

// streamSSE writes the answer's chunks from index from on as SSE events as
// they fall due, then event: done, and returns how the delivery ended. It
// runs in the request's handler goroutine, the response's one writer, with
// one timer for the whole answer: an HTTP/2 stream, which cannot be taken
// over, being one of many on its connection.
func (s *Service) streamSSE(w http.ResponseWriter, r *http.Request, rec *record, from int) string {
	m := s.cfg.Metrics
	chunks, bytes := m.Chunks.WithLabelValues(metrics.SSE), m.Bytes.WithLabelValues(metrics.SSE)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Answer-Id", rec.id.String())
	// write sends b with a deadline and flushes it.
	write := func(b []byte) error {
		if s.cfg.WriteTimeout > 0 {
			if err := rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout)); err != nil {
				return err
			}
		}
		n, err := w.Write(b)
		bytes.Add(float64(n))
		if err != nil {
			return err
		}
		return rc.Flush()
	}
	w.WriteHeader(http.StatusOK)
	if err := write(nil); err != nil { // the head goes out before the think time
		return outcomeOf(err)
	}
	req, next := rec.req, from
	wake := s.newChunkWake()
	defer wake.stop()
	for {
		if due := req.DueBy(rec.arrival, time.Now().UnixNano()); due > next {
			bp := bufs.Get().(*[]byte)
			end := min(due, next+maxBatch)
			b := appendBatch((*bp)[:0], rec, next, end)
			err := write(b)
			*bp = b[:0]
			bufs.Put(bp)
			if err != nil {
				return outcomeOf(err)
			}
			chunks.Add(float64(end - next))
			next = end
			if next == req.Tokens {
				return metrics.AnswerDone
			}
			continue // more may be due already (a batch was cut at maxBatch)
		}
		wake.set(next == 0, req.Due(rec.arrival, next))
		select {
		case <-wake.A:
		case <-wake.T:
		case <-r.Context().Done():
			return metrics.AnswerDeparted
		case <-s.cfg.Shutdown.Done():
			return metrics.AnswerShutdown
		}
	}
}

// appendBatch appends chunks next..end-1 as SSE events and, when end is
// the answer's last, the done event.
func appendBatch(b []byte, rec *record, next, end int) []byte {
	var idj [idJSONLen]byte
	id := rec.id.appendJSON(idj[:0])
	for k := next; k < end; k++ {
		b = appendEvent(b, rec, id, k)
	}
	if end == rec.req.Tokens {
		b = append(b, "event: done\ndata: "...)
		b = answer.AppendDoneJSON(b, id, rec.req.Tokens, false)
		b = append(b, "\n\n"...)
	}
	return b
}

// appendEvent appends chunk k as an SSE event: "id: k\ndata: JSON\n\n";
// id is the answer's id as JSON.
func appendEvent(b []byte, rec *record, id []byte, k int) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendInt(b, int64(k), 10)
	b = append(b, "\ndata: "...)
	b = answer.AppendChunkJSON(b, id, rec.req.Seed, k, rec.req.Due(rec.arrival, k))
	return append(b, "\n\n"...)
}
