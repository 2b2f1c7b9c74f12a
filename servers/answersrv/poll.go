package answersrv

import (
	"net/http"
	"strconv"
	"time"

	"github.com/pushbench/pushbench/servers/answer"
	"github.com/pushbench/pushbench/servers/metrics"
	"github.com/pushbench/pushbench/servers/poll"
	"github.com/pushbench/pushbench/servers/query"
)

// maxPollChunks bounds the chunks in one poll response; "done" stays false
// until the last one has been sent.
const maxPollChunks = 1024

// startPoll answers POST /answer for a polling client: 202 {"id":...} at
// once. The answer holds its slot until a poll carries its last chunk or
// nobody polls it for Idle (the janitor frees it then).
func (s *Service) startPoll(w http.ResponseWriter, rec *record, release func(string)) {
	s.store.mu.Lock()
	rec.release = release
	s.store.mu.Unlock()
	b := append(rec.id.appendJSON([]byte(`{"id":`)), '}', '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Answer-Id", rec.id.String())
	h.Set("Content-Length", strconv.Itoa(len(b)))
	s.respond(w, http.StatusAccepted, b)
}

// poll serves GET /answer/{id}?after=k&timeout=d: the chunks after k, held
// until at least one is due, the timeout passes, the client leaves or the
// server stops.
func (s *Service) poll(w http.ResponseWriter, r *http.Request, rec *record) {
	bad := s.cfg.Metrics.BadRequests.WithLabelValues(metrics.Poll)
	q, err := query.Values(r.URL.RawQuery)
	if err != nil {
		bad.Inc()
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	next, timeout := 0, poll.DefaultTimeout
	if v, ok := q["after"]; ok {
		after, err := query.Seq("after", v[0])
		if err != nil || after >= uint64(rec.req.Tokens) {
			bad.Inc()
			writeError(w, http.StatusBadRequest, "after must be a chunk index 0.."+strconv.Itoa(rec.req.Tokens-1))
			return
		}
		next = int(after) + 1
	}
	if v, ok := q["timeout"]; ok {
		if timeout, err = query.Duration("timeout", v[0], poll.MaxTimeout); err != nil {
			bad.Inc()
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	req := rec.req
	s.touch(rec, +1)
	defer s.touch(rec, -1)
	if next < req.Tokens && timeout > 0 {
		if due := req.Due(rec.arrival, next); due > time.Now().UnixNano() {
			wake := s.newChunkWake()
			if until := time.Now().Add(timeout).UnixNano(); until < due {
				wake.set(false, until) // the poll's timeout, not a chunk
			} else {
				wake.set(next == 0, due)
			}
			select {
			case <-wake.A:
			case <-wake.T:
			case <-r.Context().Done():
			case <-s.cfg.Shutdown.Done():
			}
			wake.stop()
		}
	}
	end := min(req.DueBy(rec.arrival, time.Now().UnixNano()), next+maxPollChunks)
	end = max(end, next)
	done := end == req.Tokens
	b := make([]byte, 0, 32+(end-next)*80)
	b = append(b, `{"chunks":[`...)
	var idj [idJSONLen]byte
	id := rec.id.appendJSON(idj[:0])
	for k := next; k < end; k++ {
		if k > next {
			b = append(b, ',')
		}
		b = answer.AppendChunkJSON(b, id, req.Seed, k, req.Due(rec.arrival, k))
	}
	b = append(b, `],"done":`...)
	b = strconv.AppendBool(b, done)
	b = append(b, "}\n"...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	if s.respond(w, http.StatusOK, b) {
		s.cfg.Metrics.Chunks.WithLabelValues(metrics.Poll).Add(float64(end - next))
		if done {
			s.store.mu.Lock()
			release := rec.release
			rec.release = nil
			s.store.mu.Unlock()
			if release != nil {
				release(metrics.AnswerDone)
			}
		}
	}
}

// touch counts a poll held (+1) or answered (-1) and when it was seen.
func (s *Service) touch(rec *record, held int) {
	s.store.mu.Lock()
	rec.held += held
	rec.seen = time.Now().UnixNano()
	s.store.mu.Unlock()
}

// respond writes a whole small response under the write deadline and
// reports whether it went out.
func (s *Service) respond(w http.ResponseWriter, code int, b []byte) bool {
	if s.cfg.WriteTimeout > 0 {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	}
	w.WriteHeader(code)
	n, err := w.Write(b)
	s.cfg.Metrics.Bytes.WithLabelValues(metrics.Poll).Add(float64(n))
	return err == nil
}
