package report

import (
	"strings"
	"testing"
	"time"

	"github.com/pushbench/pushbench/loadgen/result"
)

// answerFixture is an answer run's result: timed answers whose TTFT is
// ttftMs each, toServerMs of it on the way to the server (0: not
// measured, as in results from before it was), their chunks 20 ms apart,
// 100 B each on the wire.
func answerFixture(t *testing.T, transport string, inFlight, timed int, ttftMs, toServerMs float64, unfinished int64) *result.Result {
	t.Helper()
	h := result.NewAnswerHists()
	for range timed {
		_ = h.TTFT.RecordValue(int64(ttftMs * 1000))
		if toServerMs > 0 {
			_ = h.ToServer.RecordValue(int64(toServerMs * 1000))
		}
		_ = h.E2E.RecordValue(int64(ttftMs*1000) + 63*20_000)
		for range 63 {
			_ = h.ITL.RecordValue(20_000)
		}
		_ = h.ChunkLatency.RecordValue(500)
	}
	d, err := h.Dists()
	if err != nil {
		t.Fatal(err)
	}
	a := &result.Answer{Conn: "keepalive", Concurrency: 2*inFlight + 10, Rate: 70, Tokens: 64, TokenRate: 50, ThinkMs: 200,
		Answers:       result.AnswerCounts{Arrivals: 100, Sent: 100, Completed: 100 - unfinished, Unfinished: unfinished},
		Chunks:        result.ChunkCounts{Expected: 6400, Received: 6400},
		Window:        result.AnswerWindow{Arrivals: 100, Completed: 100, Chunks: 3200},
		InFlightAtEnd: int64(inFlight), AnswerDists: d}
	a.SetRates(1, 6400*100)
	return &result.Result{SchemaVersion: result.SchemaVersion, Transport: transport, Workload: "answer", URL: "http://127.0.0.1:1",
		Clients: inFlight, Start: t0, Duration: 1, Warmup: 1.5, Connected: int64(inFlight), Messages: 3200, MsgsPerSec: 3200,
		Bytes: result.Bytes{Received: 640_000}, Self: result.Self{CPUSeconds: 0.1, CPUCores: 0.1, GOMAXPROCS: 1}, Answer: a}
}

// The answer figures come from result.Answer and the server's samples;
// an unfinished answer makes the run INCORRECT; the findings check TTFT
// p99 against think + 2 ms at 100 in flight and name who misses it.
func TestAnswerFiguresAndFindings(t *testing.T) {
	tb := Table{Name: "answer", Title: "Answer streaming", Scenarios: []string{Steady}, Transports: []string{"sse", "ws", "poll"},
		Clients: []int{100}, ClientsHeader: "in flight", Repeat: 1, Rate: 10, Duration: Duration(time.Second),
		Columns: []string{MetricTTFT50.Key, MetricTTFT99.Key, MetricITL99.Key, MetricE2E99.Key, MetricBytesChunk.Key, MetricCPUChunks.Key, MetricRSSAnswer.Key}}
	r := New(Config{Tables: []Table{tb}}, Env{}, t0)
	ttft := map[string]float64{"sse": 201, "ws": 201.5, "poll": 230}
	timed := map[string]int{"sse": 100, "ws": 100, "poll": 40} // a p99 of 40 answers is their worst
	toServer := map[string]float64{"poll": 25}                 // the others' results predate it
	for _, tr := range tb.Transports {
		var unfinished int64
		if tr == "ws" {
			unfinished = 3
		}
		srv := Server{IdleRSSBytes: 10 << 20, RSSBytes: 10<<20 + 100*8192, CPUSeconds: 0.32, WindowSeconds: 1, Samples: 5}
		r.Add(Run{Table: "answer", Dims: Dims{Workload: "answer"}, Scenario: Steady, Transport: tr, Clients: 100, Repeat: 1,
			Start: t0, Loadgens: 1, Result: answerFixture(t, tr, 100, timed[tr], ttft[tr], toServer[tr], unfinished), Server: srv})
	}
	if err := r.Close(t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, c := range r.Cells {
		f := c.Runs[0].Figures
		if d := float64(f.TTFT99) - ttft[c.Transport]; d < -0.5 || d > 0.5 || float64(f.ITL99) < 19.9 || float64(f.ITL99) > 20.1 {
			t.Errorf("%s: TTFT p99 %v (recorded %v), ITL p99 %v (recorded 20)", c.Transport, f.TTFT99, ttft[c.Transport], f.ITL99)
		}
		// 0.32 s of CPU for 3200 chunks: 100 ms per 1,000; 800 KiB for 100 answers.
		if f.BytesPerChunk != 100 || f.CPUPer1kChunks != 100 || f.RSSPerAnswer != 8192 {
			t.Errorf("%s: B/chunk %v, CPU ms/1k chunks %v, RSS per answer %v; want 100, 100, 8192", c.Transport, f.BytesPerChunk, f.CPUPer1kChunks, f.RSSPerAnswer)
		}
		if f.Incorrect != (c.Transport == "ws") || (c.Transport == "ws" && !strings.Contains(f.Why, "3 unfinished answers")) {
			t.Errorf("%s: incorrect %v (%s)", c.Transport, f.Incorrect, f.Why)
		}
	}
	got := strings.Join(Findings(r), "\n")
	for _, want := range []string{
		"Answer streaming, 100 in flight: TTFT p99 misses the target, think (200 ms) + 2 ms, on **poll** (over think: sse +1.1 ms of 100 answers, ws +1.6 ms of 100 answers (flagged INCORRECT), poll +30.0 ms of 40 answers, the worst of them (to the server 25.0 ms at p99))",
		"ITL p99 against a token interval of 20 ms: sse 20.0 ms (100 B/chunk)",
		"scripts/answer-floor.sh measures it with a bare TCP client and server that keep the same schedule",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("findings lack %q:\n%s", want, got)
		}
	}
}
