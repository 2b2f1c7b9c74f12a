package report

import (
	"strings"
	"testing"
	"time"

	"github.com/pushbench/pushbench/loadgen/result"
)

// networksReport is a latency-vs-RTT table of loopback and wan (60 ms RTT),
// each transport's latency spread evenly over [lo, hi] µs, first ticks at
// ft ms, and the proxy's CPU share in the wan cells.
func networksReport(t *testing.T, lat map[string][2][2]int64, ft map[string][2]float64, proxyShare float64) *Report {
	t.Helper()
	nets := []string{"loopback", "wan"}
	tb := Table{Name: NetworksTable, Title: "Latency vs RTT", Vary: []string{DimNetwork}, DimValues: map[string][]string{DimNetwork: nets},
		Scenarios: []string{Steady, Storm}, Transports: []string{"sse", "ws", "poll", "shortpoll"}, Clients: []int{100},
		Rate: 50, Duration: Duration(time.Second), Repeat: 1}
	r := New(Config{Tables: []Table{tb}, PollInterval: Duration(time.Second)}, Env{}, t0)
	for i, n := range nets {
		dims := Dims{Network: n}
		for tr, lh := range lat {
			run := Run{Table: NetworksTable, Dims: dims, Scenario: Steady, Transport: tr, Clients: 100, Repeat: 1, Start: t0,
				Result: fixture(t, tr, 100, lh[i][0], lh[i][1], 1000), Server: server(100, 0.5, 10000)}
			if n != "loopback" {
				run.Side = &Side{Name: "netshape wan", CPUSeconds: proxyShare * 5, WindowSeconds: 5}
			}
			r.Add(run)
		}
		for tr, ms := range ft {
			res := fixture(t, tr, 100, 1000, 2000, 100)
			res.FirstTick = result.Percentiles{Count: 100, P50: ms[i], P99: ms[i]}
			r.Add(Run{Table: NetworksTable, Dims: dims, Scenario: Storm, Transport: tr, Clients: 100, Repeat: 1, Start: t0,
				Result: res, Server: server(100, 0.5, 10000)})
		}
	}
	if err := r.Close(t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	return r
}

func findingsOf(r *Report) string {
	var out []string
	for _, sec := range r.Sections() {
		out = append(out, networkFindings(r, sec)...)
	}
	return strings.Join(out, "\n")
}

// TestNetworkFindingsExpectedShape: figures that follow the physics are
// said to (one-way delay on streaming, one more round trip on long
// polling's p99, interval/2 + one-way on short polling, a round trip to the
// first tick, a proxy under its target), and figures that do not are said
// not to.
func TestNetworkFindingsExpectedShape(t *testing.T) {
	// Latency ranges (µs) on loopback and wan. p50 is the middle, p99
	// near the top: sse and ws gain 30 ms, poll's p99 gains 30 + 60 ms,
	// shortpoll's median sits at 500 + 30 ms.
	good := map[string][2][2]int64{
		"sse":       {{1000, 3000}, {31000, 33000}},
		"ws":        {{1000, 3000}, {31000, 33000}},
		"poll":      {{1000, 3000}, {31000, 93000}},
		"shortpoll": {{0, 1000000}, {30000, 1030000}},
	}
	ft := map[string][2]float64{"sse": {2, 63}, "ws": {2, 64}, "poll": {3, 65}}
	got := findingsOf(networksReport(t, good, ft, 0.1))
	for _, want := range []string{
		"steady, 100 clients through wan (RTT 60ms): sse's median latency is 32.00 ms, 30.00 ms over loopback: the one-way delay (30.0 ms ± 3.0), as expected.",
		"ws's median latency is 32.00 ms",
		"long polling's p99 latency is",
		"1.0 round trips more, about one round trip more, as expected",
		"against half its 1s interval plus the one-way delay, 530 ms: as expected.",
		"storm, 100 clients through wan (RTT 60ms): sse's median time to first tick is 63.0 ms, 61.0 ms more than on loopback: 1.0 round trips, within the 1 to 2 expected",
		"the network proxy used at most 10 % of its core (sse wan at 100 clients)",
		"under the 30% target in every cell",
		"nothing was lost or duplicated through the shaped networks, in any of their 4 cells.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("findings lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "NOT") || strings.Contains(got, "OVER") {
		t.Errorf("findings on data of the expected shape say it is not:\n%s", got)
	}

	bad := map[string][2][2]int64{
		"sse":  {{1000, 3000}, {41000, 43000}}, // 10 ms more than the one-way delay
		"ws":   {{1000, 3000}, {31000, 33000}},
		"poll": {{1000, 3000}, {31000, 33000}}, // no extra round trip
	}
	got = findingsOf(networksReport(t, bad, map[string][2]float64{"sse": {2, 300}}, 0.5))
	for _, want := range []string{
		"over loopback: NOT the one-way delay (30.0 ms ± 3.0) the profile should add, but 10.02 ms off",
		"-0.1 round trips more, NOT the one extra round trip expected",
		"5.0 round trips, NOT the 1 to 2 round trips expected",
		"OVER the 30% target",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("findings lack %q:\n%s", want, got)
		}
	}
}

// TestChartsOfOneNetwork: a table that charts against the network
// (XDim) but was run with one profile (bench -networks wan) charts
// against the clients instead, and every chart renders. Before, the
// latency chart had no point to draw and bench failed writing it.
func TestChartsOfOneNetwork(t *testing.T) {
	tb := Table{Name: NetworksTable, Title: "Latency vs RTT", XDim: DimNetwork, XLabel: "RTT ms",
		Scenarios: []string{Steady}, Transports: []string{"sse", "ws"}, Clients: []int{100}, Rate: 50, Duration: Duration(time.Second), Repeat: 1}
	r := New(Config{Tables: []Table{tb}}, Env{}, t0)
	for _, tr := range []string{"sse", "ws"} {
		r.Add(Run{Table: NetworksTable, Dims: Dims{Network: "wan"}, Scenario: Steady, Transport: tr, Clients: 100, Repeat: 1, Start: t0,
			Result: fixture(t, tr, 100, 30000, 40000, 1000), Server: server(100, 0.5, 10000)})
	}
	if err := r.Close(t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	charts := Charts(r, "svg")
	if len(charts) == 0 {
		t.Fatal("no charts")
	}
	for _, c := range charts {
		if c.XDim != "" {
			t.Errorf("%s charts against %s with one value", c.File, c.XDim)
		}
		render(t, NewChartReporter(r, c))
	}
}
