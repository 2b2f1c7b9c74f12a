package matrix

import "github.com/pushbench/pushbench/bench/report"

// Workloads is the workload dimension: what the clients ask of the server.
// feed is the broadcast price feed every client subscribes to; answer is
// per-request answer streams (PROTOCOL.md "Answer streaming"), where the
// clients column counts answers in flight.
func Workloads() Dimension {
	return Dimension{Name: report.DimWorkload, Default: report.DefaultDims.Workload, Values: []Value{
		{Name: "feed", About: "the broadcast price feed"},
		{Name: "answer", About: "per-request answer streams, as chat assistants stream replies: " +
			"requests arrive open-loop (seeded Poisson) to keep the clients column's answers in flight on average, " +
			"each for 64 chunks at 50/s after 200 ms think (the server's default request), timed from its intended send time; " +
			"SSE and polling on HTTP/1.1 keep-alive (one answer at a time per connection; with protocol h2 or h2c, streams over one connection per 32 answers of the cap), " +
			"WebSocket multiplexed over one session per 32 answers of the cap; " +
			"the server's answer service serves them whatever the implementation (the implementation's words describe its feed): " +
			"SSE answers on connections taken over from net/http, one goroutine per answer (HTTP/2: net/http's handler goroutine), WebSocket sessions on gorilla/websocket with one writer each, " +
			"long polls held in net/http handlers; an answer's first chunk wakes to the microsecond (a timerfd), the later ones on Go timers",
			Loadgen:     []string{"-workload", "answer"},
			Transports:  []string{"sse", "ws", "poll"},
			Unsupported: "short polling has no answer flavour (a long poll is the polling answer)",
			Scenarios:   []string{report.Steady}},
	}}
}
