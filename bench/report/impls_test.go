package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/pushbench/pushbench/loadgen/result"
)

// implsReport is a report of the impls table: sse by pushbench (keeps up),
// go-sse (a stalled broadcast: open streams, ticks missing) and nethttp
// (streams dropped, memory growing), and ws by pushbench alone.
func implsReport(t *testing.T) *Report {
	t.Helper()
	cfg := Config{Transports: []string{"sse", "ws"}, Clients: []int{2000}, Scenarios: []string{Steady}, Repeat: 1,
		Duration: Duration(5 * time.Second), Rate: 100, Symbols: 16, Seed: 1,
		Tables: []Table{{Name: ImplsTable, Title: "Implementations", Vary: []string{DimImpl}, Scenarios: []string{Steady},
			Transports: []string{"sse", "ws"}, Clients: []int{2000}, Rate: 100, Duration: Duration(5 * time.Second), Repeat: 1,
			DimValues: map[string][]string{DimImpl: {"pushbench", "go-sse", "nethttp"}},
			Columns:   []string{MetricDelivered.Key, MetricP99.Key}}}}
	r := New(cfg, Env{Time: t0}, t0)
	add := func(tr, impl string, edit func(*Run)) {
		res := fixture(t, tr, 2000, 1000, 10000, 1000)
		run := Run{Table: ImplsTable, Dims: DefaultDims, Scenario: Steady, Transport: tr, Clients: 2000, Repeat: 1, Start: t0,
			Wall: 8, Loadgens: 1, Result: res, Server: server(2000, 0.5, 10000)}
		run.Dims.Impl = impl
		if edit != nil {
			edit(&run)
		}
		r.Add(run)
	}
	add("sse", "pushbench", nil)
	add("sse", "go-sse", func(run *Run) {
		run.Result.Counts.Received, run.Result.Counts.Missing, run.Result.Counts.Stalled = 400, 600, 900
		run.Server.Deliveries = 0 // the library hides its writes
	})
	add("sse", "nethttp", func(run *Run) {
		run.Result.Counts.Received, run.Result.Counts.Missing = 600, 400
		run.Result.Failures = map[string]int64{"dropped_closed": 700}
		run.Result.Slow = result.Slow{Stalled: 200, Dropped: 50, Open: 150}
		run.Server.RSSGrowthBytes = 200 << 20
	})
	add("ws", "pushbench", nil)
	if err := r.Close(t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestImplsFindings: the generated text names who kept up and why the
// others did not, from what the runs show.
func TestImplsFindings(t *testing.T) {
	r := implsReport(t)
	f := strings.Join(Findings(r), "\n")
	for _, want := range []string{
		"sse at 2000 clients: kept up (≥ 99.5% delivered): pushbench (p99",
		"go-sse delivered 40.0% (900 streams stayed open but had not caught up by the end)",
		"nethttp delivered 60.0% (700 streams failed or were dropped, server memory grew 200.0 MiB during the run), 25% of the stalled clients dropped",
		"ws at 2000 clients: kept up (≥ 99.5% delivered): pushbench",
	} {
		if !strings.Contains(f, want) {
			t.Errorf("findings lack %q:\n%s", want, f)
		}
	}
	for _, c := range r.Cells {
		if d := c.Runs[0].Figures.StalledDropped; c.Dims.Impl == "nethttp" && d != 25 || c.Dims.Impl != "nethttp" && d.Valid() {
			t.Errorf("%s: stalled dropped %v", c.Dims.Impl, d)
		}
	}
	// CPU per delivery falls back on the clients' count where the server
	// counted none.
	for _, c := range r.Cells {
		if c.Dims.Impl == "go-sse" && !c.Runs[0].Figures.CPUPer1kFromClients {
			t.Errorf("go-sse: CPU per 1k not from the clients' count: %+v", c.Runs[0].Figures)
		}
		if c.Dims.Impl == "pushbench" && c.Runs[0].Figures.CPUPer1kFromClients {
			t.Errorf("pushbench: CPU per 1k from the clients' count though the server counted")
		}
	}
}

// TestImplsCharts: a delivered and a latency chart per transport, each
// with the lines of its own transport's implementations only.
func TestImplsCharts(t *testing.T) {
	r := implsReport(t)
	var got []string
	for _, c := range Charts(r, "svg") {
		if c.Transport == "" {
			continue
		}
		got = append(got, c.File)
		b := render(t, NewChartReporter(r, c))
		if c.Transport == "ws" && (bytes.Contains(b, []byte("sse pushbench")) || !bytes.Contains(b, []byte("ws pushbench"))) {
			t.Errorf("%s: wrong lines", c.File)
		}
		if c.Transport == "sse" && !bytes.Contains(b, []byte("sse go-sse")) {
			t.Errorf("%s: lacks go-sse", c.File)
		}
	}
	want := "impls_steady_sse_delivered.svg impls_steady_sse_latency.svg impls_steady_ws_delivered.svg impls_steady_ws_latency.svg"
	if strings.Join(got, " ") != want {
		t.Errorf("charts %v, want %s", got, want)
	}
}
