package answersrv

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushbench/pushbench/servers/answer"
	"github.com/pushbench/pushbench/servers/metrics"
)

// record is an answer retained for resume and polls: only its request and
// arrival, since every chunk can be computed again from them. Thousands
// are retained at once (-answer-retain at the arrival rate), so it holds
// its id as a number, not as a string and its JSON.
type record struct {
	id      answerID
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

// answerID is an answer's id, written as 16 lowercase hex digits (the top
// bit is set, so there are always 16), random so that an id of an earlier
// server process does not name an answer of this one.
type answerID uint64

func newID() answerID { return answerID(rand.Uint64() | 1<<63) }

func (id answerID) String() string { return strconv.FormatUint(uint64(id), 16) }

// appendJSON appends id as a JSON string, for the chunk encoder.
func (id answerID) appendJSON(b []byte) []byte {
	b = strconv.AppendUint(append(b, '"'), uint64(id), 16)
	return append(b, '"')
}

// idJSONLen is the length of an answerID as JSON.
const idJSONLen = 18

// parseID reads an id as newID writes it; false for anything else.
func parseID(s string) (answerID, bool) {
	if len(s) != 16 {
		return 0, false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil || v < 1<<63 { // newID sets the top bit: no other id was written
		return 0, false
	}
	return answerID(v), true
}

// store holds the retained answers by id.
type store struct {
	mu       sync.Mutex
	byID     map[answerID]*record
	retained prometheus.Gauge
}

func (st *store) init(retained prometheus.Gauge) {
	st.byID = map[answerID]*record{}
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
	st.byID[rec.id] = rec
	st.retained.Set(float64(len(st.byID)))
	return rec
}

// get returns the answer id if it is still retained at now.
func (st *store) get(s string, now int64) *record {
	id, ok := parseID(s)
	if !ok {
		return nil
	}
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
