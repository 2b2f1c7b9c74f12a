package matrix

import (
	"time"

	"github.com/pushbench/pushbench/bench/report"
)

// Transports is the main table: every transport at growing client counts
// in every scenario, in the idealised setting (plaintext HTTP/1.1 on
// loopback, this project's servers, the price feed).
func Transports(sc Scale) Table {
	t := Table{
		Name: report.MainTable, Title: "Transports",
		About:      "SSE, WebSocket, long polling and short polling side by side, each at its best: this project's own servers, on loopback, over plaintext HTTP/1.1.",
		Default:    true,
		Scenarios:  []string{report.Steady, report.Slow, report.Churn, report.Storm},
		Transports: []string{"sse", "ws", "poll", "shortpoll"},
		Clients:    []int{100, 1000, 5000},
		Rate:       10, Duration: time.Second, Warmup: 500 * time.Millisecond, Repeat: 3,
	}
	if sc.Full {
		t.Clients = FullClients(sc.MaxClients)
		t.Duration, t.Warmup = 5*time.Second, 2*time.Second
	}
	return t
}

// FullClients is the full matrix's client counts: powers of ten and 5,000,
// up to the largest thousand one server process can hold.
func FullClients(most int) []int {
	var out []int
	for _, n := range []int{100, 1000, 5000, 10000} {
		if n <= most {
			out = append(out, n)
		}
	}
	if top := most / 1000 * 1000; top > 10000 {
		out = append(out, top)
	}
	return out
}
