package matrix

import (
	"time"

	"github.com/pushbench/pushbench/bench/report"
)

// AnswerTable is the answer workload (issue 13): SSE, WebSocket and long
// polling streaming per-request answers at 10, 100 and 1000 answers in
// flight, measured as users feel them (TTFT, ITL, end to end) and as the
// server pays for them (CPU per chunk, memory per answer in flight).
func AnswerTable(sc Scale) Table {
	t := Table{
		Name: "answer", Title: "Answer streaming",
		About: "Each request gets a stream of its own, like a chat assistant's reply: time to first token (TTFT) and " +
			"inter-token latency (ITL) per transport at a number of answers in flight. The warm-up (1.5 s, longer than one answer) " +
			"fills the pipeline; the answers that arrive in the measured window are timed to their end. The window is 4 s so that " +
			"p99 at 100 in flight is a percentile of a few hundred answers, not the worst of a few dozen (at 10 in flight it is still " +
			"the worst of about 27). One repeat per cell in make bench.",
		Default:    true,
		Scenarios:  []string{report.Steady},
		Transports: []string{"sse", "ws", "poll"},
		Clients:    []int{10, 100, 1000},
		Dims:       map[string][]string{report.DimWorkload: {"answer"}},
		Rate:       10, Duration: 4 * time.Second, Warmup: 1500 * time.Millisecond, Repeat: 1,
		Columns: []string{report.MetricTTFT50.Key, report.MetricTTFT99.Key, report.MetricITL99.Key, report.MetricE2E99.Key,
			report.MetricBytesChunk.Key, report.MetricCPUChunks.Key, report.MetricRSSAnswer.Key},
		ClientsHeader: "in flight",
	}
	if sc.Full {
		// Answers as HTTP/2 streams beside HTTP/1.1 keep-alive, and through
		// a 60 ms network, where a fresh connection's round trips decide TTFT.
		t.Dims[report.DimProtocol] = []string{"h1", "h2"}
		t.Dims[report.DimNetwork] = []string{"loopback", "wan"}
		t.Duration, t.Repeat = 5*time.Second, 3
	}
	return t
}
