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
// is part of the measurement (35-60 µs of its CPU per delivered tick
// here: 100 clients at 50 ticks/s took a quarter of its core).
func NetworksTable(sc Scale) Table {
	t := Table{
		Name: report.NetworksTable, Title: "Latency vs RTT",
		About: "Each transport with clients and server up to 150 ms apart: what the distance adds to each tick's latency " +
			"(one-way delay for streaming, a round trip more after each long-poll answer), and the proxy's cost beside it. " +
			"Default run: loopback and wan, 50 clients, 2 repeats (the spread is wider than the main table's).",
		Default:    true,
		Scenarios:  []string{report.Steady},
		Transports: []string{"sse", "ws", "poll", "shortpoll"},
		Clients:    []int{50},
		Dims:       map[string][]string{report.DimNetwork: {"loopback", "wan"}},
		Rate:       50, Duration: time.Second, Warmup: 500 * time.Millisecond, Repeat: 2,
		Columns: []string{"p50_ms", "p99_ms", "p50_over_one_way_ms", "p99_over_one_way_ms", "reach99_ms", "msgs_per_sec",
			"proxy_cpu_ms_per_1k", "proxy_cpu_share"},
		XDim: report.DimNetwork, XLabel: "RTT ms",
	}
	if sc.Full {
		t.Scenarios = []string{report.Steady, report.Churn, report.Slow}
		t.Dims = map[string][]string{report.DimNetwork: {"loopback", "lan", "wan", "mobile"}}
		t.Clients = []int{50, 200}
		t.Duration, t.Warmup, t.Repeat = 5*time.Second, 2*time.Second, 3
	}
	return t
}

// NetworkStormTable is "connecting vs RTT": new connections through the
// same profiles, timed to the handshake and to the first tick, where the
// round trips of connecting dominate.
func NetworkStormTable(sc Scale) Table {
	t := NetworksTable(sc)
	t.Name, t.Title = report.NetworkStormTable, "Connecting vs RTT"
	t.About = "New connections with clients and server up to 150 ms apart: the round trips a connection pays before its first tick. " +
		"The proxy does not delay the TCP handshake, only the HTTP request and answer (and WebSocket's Upgrade). " +
		"Default run: loopback and wan, 50 connections per second, 2 repeats."
	t.Scenarios = []string{report.Storm}
	t.Columns = []string{"connect_p99_ms", "first_tick_p50_ms", "first_tick_p99_ms", "conn_failures", "cpu_ms_per_1k_conns", "proxy_cpu_share"}
	return t
}
