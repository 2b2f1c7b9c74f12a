package answer

import (
	"sync"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/pushbench/pushbench/loadgen/result"
	gen "github.com/pushbench/pushbench/servers/answer"
)

// stats is one slice of the run's measurements; answers pick one by
// index, so that recording takes an uncontended lock most of the time.
type stats struct {
	mu       sync.Mutex
	h        result.AnswerHists
	answers  result.AnswerCounts
	chunks   result.ChunkCounts
	failures map[string]int64
	samples  map[string]string // one error message per cause
	// The measured window, Unix ns (set before any answer starts), and
	// what happened in it: answers that arrived in it and completed, and
	// chunks that arrived in it, whichever answer's.
	winFrom, winTo int64
	window         result.AnswerWindow
}

func newStats(n int) []*stats {
	s := make([]*stats, n)
	for i := range s {
		s[i] = &stats{h: result.NewAnswerHists(), failures: map[string]int64{}, samples: map[string]string{}}
	}
	return s
}

// record clamps v (ns) into the histograms' µs bounds. Caller holds mu.
func record(h *hdrhistogram.Histogram, ns int64) {
	_ = h.RecordValue(min(max(ns/1000, result.HistLowest), result.HistHighest))
}

// fail counts a failure by cause. Caller holds mu.
func (s *stats) fail(cause string, err error) {
	s.failures[cause]++
	if _, ok := s.samples[cause]; !ok && err != nil {
		s.samples[cause] = err.Error()
	}
}

// ans is one answer in flight: what was asked, when it was meant to be
// sent, and what came of it so far. One goroutine at a time updates it
// (the answer's own, or the WebSocket session's reader while the answer
// is registered with it).
type ans struct {
	n      uint64 // arrival index
	seed   uint64
	tokens int
	req    gen.Request // what was asked: the schedule the ts must follow
	id     string      // the answer's id on the wire, once known
	due    int64       // intended send time, Unix ns: every figure is timed from it
	st     *stats
	// arrival is when the server read the request (Unix ns), learned from
	// the first chunk's ts; every later ts must be on its schedule.
	arrival int64
	scratch []byte

	seen    []uint64 // bitset of indexes received
	got     int      // distinct chunks received
	maxI    int      // highest index received, -1 before the first
	lastAt  int64    // arrival of the previous chunk, 0 before the first
	doneAt  int64    // arrival of done, 0 before
	started bool     // the server accepted the request (or a chunk came)
	record  bool     // arrived in the measured window: its times are recorded
	c       result.ChunkCounts
}

func newAns(n uint64, req gen.Request, due int64, st *stats) *ans {
	return &ans{n: n, seed: req.Seed, tokens: req.Tokens, req: req, due: due, st: st,
		seen: make([]uint64, (req.Tokens+63)/64), maxI: -1, record: due >= st.winFrom}
}

// chunk checks and records chunk i (with the answer id and text it
// carried, scheduled at ts) that arrived at at (Unix ns).
func (a *ans) chunk(id string, i int, text string, ts, at int64) {
	a.started = true
	a.c.Received++
	if i < 0 || i >= a.tokens || (a.id != "" && id != a.id) {
		a.c.Wrong++
		return
	}
	w, bit := i/64, uint64(1)<<(i%64)
	if a.seen[w]&bit != 0 {
		a.c.Duplicated++
		return
	}
	a.seen[w] |= bit
	a.got++
	if i < a.maxI {
		a.c.Reordered++
	}
	a.maxI = max(a.maxI, i)
	// The text must be the seed's (the server's own generator says what
	// it is), and ts on the answer's schedule: arrival + think + i/rate.
	a.scratch = gen.AppendText(a.scratch[:0], a.seed, i)
	if a.arrival == 0 {
		a.arrival = ts - a.req.Due(0, i)
	}
	if text != string(a.scratch) || ts != a.req.Due(a.arrival, i) {
		a.c.Wrong++
	}
	st := a.st
	st.mu.Lock()
	if at >= st.winFrom && at < st.winTo {
		st.window.Chunks++
	}
	if a.record {
		record(st.h.ChunkLatency, at-ts)
		if a.lastAt == 0 {
			record(st.h.TTFT, at-a.due)
			record(st.h.ToServer, a.arrival-a.due)
		} else {
			record(st.h.ITL, at-a.lastAt)
		}
	}
	st.mu.Unlock()
	a.lastAt = at
}

// done records the done message, which said the answer had chunks chunks
// (-1: it does not say).
func (a *ans) done(chunks int, at int64) {
	if a.doneAt != 0 {
		a.c.Duplicated++
		return
	}
	a.started = true
	if chunks >= 0 && chunks != a.tokens {
		a.c.Wrong++
	}
	a.doneAt = at
}

// malformed counts a message that is none of the protocol's.
func (a *ans) malformed() { a.c.Malformed++ }

// finish accounts the answer once it is over: done came, or err ended it.
// An error before the server accepted the request (connect, status, error
// message) is a failed answer; after, an unfinished one (cause prefixed
// dropped_). One the run's end cut (cause "cut") is unfinished either
// way: it was sent, and the server had not refused it.
func (a *ans) finish(err error, cause string) {
	st := a.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.answers.Sent++
	switch {
	case a.doneAt != 0:
		st.answers.Completed++
		if a.record {
			st.window.Completed++
			record(st.h.E2E, a.doneAt-a.due)
		}
		a.c.Lost += int64(a.tokens - a.got)
	case !a.started && cause != "cut":
		st.answers.Failed++
		st.fail(cause, err)
	default:
		st.answers.Unfinished++
		if cause != "cut" {
			cause = "dropped_" + cause
		}
		st.fail(cause, err)
	}
	if a.started {
		a.c.Expected += int64(a.tokens)
	}
	st.chunks.Add(a.c)
}
