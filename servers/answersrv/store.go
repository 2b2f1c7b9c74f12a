package answersrv

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushbench/pushbench/servers/answer"
	"github.com/pushbench/pushbench/servers/metrics"
)

// record is an answer retained for resume and polls: only its request and
// arrival, since every chunk can be computed again from them.
type record struct {
	id      string
	idJSON  []byte
	req     answer.Request
	arrival int64 // Unix ns
	until   int64 // retained until (Unix ns): the last chunk's due time + Retain

	// A polling answer's slot, guarded by store.mu: release is nil once
	// freed (done delivered, or idle); held counts the polls waiting now
	// and seen is when the last poll arrived or was answered.
	release func(outcome string)
	held    int
	seen    int64
}

// store holds the retained answers by id.
type store struct {
	mu       sync.Mutex
	byID     map[string]*record
	retained prometheus.Gauge
}

func (st *store) init(retained prometheus.Gauge) {
	st.byID = map[string]*record{}
	st.retained = retained
}

func (st *store) add(req answer.Request, arrival int64, retain time.Duration) *record {
	rec := &record{req: req, arrival: arrival, seen: arrival}
	rec.until = req.Due(arrival, req.Tokens-1) + retain.Nanoseconds()
	st.mu.Lock()
	defer st.mu.Unlock()
	for {
		rec.id = newID()
		if _, taken := st.byID[rec.id]; !taken {
			break
		}
	}
	rec.idJSON = idJSON(rec.id)
	st.byID[rec.id] = rec
	st.retained.Set(float64(len(st.byID)))
	return rec
}

// get returns the answer id if it is still retained at now.
func (st *store) get(id string, now int64) *record {
	st.mu.Lock()
	defer st.mu.Unlock()
	rec := st.byID[id]
	if rec == nil || now > rec.until {
		return nil
	}
	return rec
}

// sweep drops the answers retained past their time and frees the slots of
// polling answers that nobody polled for idle nanoseconds.
func (st *store) sweep(now, idle int64) {
	var idled []func(string)
	st.mu.Lock()
	for id, rec := range st.byID {
		if rec.release != nil && rec.held == 0 && now-rec.seen > idle {
			idled = append(idled, rec.release)
			rec.release = nil
		}
		if now > rec.until {
			if rec.release != nil { // retention shorter than idle: the slot goes with the answer
				idled = append(idled, rec.release)
				rec.release = nil
			}
			delete(st.byID, id)
		}
	}
	st.retained.Set(float64(len(st.byID)))
	st.mu.Unlock()
	for _, release := range idled {
		release(metrics.AnswerIdle)
	}
}
