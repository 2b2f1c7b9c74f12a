package answer

import (
	"testing"
	"time"

	"github.com/pushbench/pushbench/loadgen/result"
	gen "github.com/pushbench/pushbench/servers/answer"
)

// The checker counts each kind of fault once, and nothing for a clean
// answer; the expected texts and ts come from the server's generator.
func TestAnsChecks(t *testing.T) {
	req := gen.Request{Tokens: 5, Rate: 100, Think: 20 * time.Millisecond, Seed: 42}
	const arrival = int64(1_700_000_000_000_000_000)
	chunk := func(a *ans, i int) {
		a.chunk(a.id, i, gen.Text(req.Seed, i), req.Due(arrival, i), req.Due(arrival, i)+1000)
	}
	cases := []struct {
		name   string
		run    func(a *ans)
		want   result.ChunkCounts
		answer result.AnswerCounts
	}{
		{"clean", func(a *ans) {
			for i := range 5 {
				chunk(a, i)
			}
			a.done(5, arrival+1e9)
		}, result.ChunkCounts{Expected: 5, Received: 5}, result.AnswerCounts{Sent: 1, Completed: 1}},
		{"lost, duplicated, reordered", func(a *ans) {
			chunk(a, 0)
			chunk(a, 2)
			chunk(a, 1)
			chunk(a, 1)
			a.done(5, arrival+1e9)
		}, result.ChunkCounts{Expected: 5, Received: 4, Lost: 2, Duplicated: 1, Reordered: 1}, result.AnswerCounts{Sent: 1, Completed: 1}},
		{"wrong text, ts, index, id, count", func(a *ans) {
			chunk(a, 0)
			a.chunk(a.id, 1, " not the seed's", req.Due(arrival, 1), arrival)
			a.chunk(a.id, 2, gen.Text(req.Seed, 2), req.Due(arrival, 2)+1, arrival)
			a.chunk(a.id, 5, gen.Text(req.Seed, 5), req.Due(arrival, 5), arrival)
			a.chunk("other", 3, gen.Text(req.Seed, 3), req.Due(arrival, 3), arrival)
			chunk(a, 3)
			chunk(a, 4)
			a.done(4, arrival+1e9)
		}, result.ChunkCounts{Expected: 5, Received: 7, Wrong: 5}, result.AnswerCounts{Sent: 1, Completed: 1}},
		{"unfinished", func(a *ans) {
			a.started = true
			chunk(a, 0)
		}, result.ChunkCounts{Expected: 5, Received: 1}, result.AnswerCounts{Sent: 1, Unfinished: 1}},
		{"failed", func(a *ans) {}, result.ChunkCounts{}, result.AnswerCounts{Sent: 1, Failed: 1}},
		// Cut by the run's end before the server answered: sent, not
		// refused (run nil: finished with cause "cut").
		{"cut before the answer", nil, result.ChunkCounts{}, result.AnswerCounts{Sent: 1, Unfinished: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := newStats(1)[0]
			a := newAns(0, req, arrival-int64(time.Millisecond), st)
			a.id = "a1"
			cause := "closed"
			if tc.run == nil {
				cause = "cut"
			} else {
				tc.run(a)
			}
			a.finish(nil, cause)
			if st.chunks != tc.want {
				t.Errorf("chunks %+v, want %+v", st.chunks, tc.want)
			}
			if st.answers != tc.answer {
				t.Errorf("answers %+v, want %+v", st.answers, tc.answer)
			}
		})
	}
}
