package matrix

import (
	"time"

	"github.com/pushbench/pushbench/bench/report"
)

// NetworksTable is "latency vs RTT": every transport through network
// profiles of growing round-trip time, charted against the RTT. Latency
// is still measured from each tick's scheduled time, so the one-way delay
// is inside it; the "− one-way" columns take it out. The feed (50 ticks/s)
// is faster than the round trip, so that long polling's extra round trip
// after each answer shows; the client counts stay small because the proxy
// is part of the measurement (about 35-60 µs of its CPU per delivered tick
// here: 200 clients at 50 ticks/s take a third of its core).
func NetworksTable(sc Scale) Table {
	t := Table{
		Name: report.NetworksTable, Title: "Latency vs RTT",
		About: "Each transport between clients and server 0 to 150 ms apart: the round trip a long poll pays after each answer, " +
			"the handshakes a new connection pays, and the proxy's cost beside them. " +
			"Default run: loopback and wan, 100 clients, 2 repeats (the spread is wider than the main table's).",
		Default:    true,
		Scenarios:  []string{report.Steady, report.Storm},
		Transports: []string{"sse", "ws", "poll", "shortpoll"},
		Clients:    []int{100},
		Dims:       map[string][]string{report.DimNetwork: {"loopback", "wan"}},
		Rate:       50, Duration: time.Second, Warmup: 500 * time.Millisecond, Repeat: 2,
		Columns: []string{"p50_ms", "p99_ms", "p50_over_one_way_ms", "p99_over_one_way_ms", "connect_p99_ms",
			"first_tick_p50_ms", "first_tick_p99_ms", "msgs_per_sec", "proxy_cpu_ms_per_1k", "proxy_cpu_share"},
		XDim: report.DimNetwork, XLabel: "RTT ms",
	}
	if sc.Full {
		t.Scenarios = []string{report.Steady, report.Churn, report.Slow, report.Storm}
		t.Dims = map[string][]string{report.DimNetwork: {"loopback", "lan", "wan", "mobile"}}
		t.Clients = []int{50, 200}
		t.Duration, t.Warmup, t.Repeat = 5*time.Second, 2*time.Second, 3
	}
	return t
}
