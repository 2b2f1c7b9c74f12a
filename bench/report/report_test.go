package report

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushbench/pushbench/loadgen/reach"
	"github.com/pushbench/pushbench/loadgen/result"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var t0 = time.Date(2026, 11, 25, 4, 30, 0, 0, time.UTC)

// fixture builds a load-generator result whose latency histogram holds
// values spread evenly between lo and hi microseconds.
func fixture(t *testing.T, transport string, clients int, loUS, hiUS int64, n int) *result.Result {
	t.Helper()
	h, ft := result.NewHistogram(), result.NewHistogram()
	for i := 0; i < n; i++ {
		if err := h.RecordValue(loUS + (hiUS-loUS)*int64(i)/int64(max(n-1, 1))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < clients; i++ {
		if err := ft.RecordValue(int64(1000 + i)); err != nil {
			t.Fatal(err)
		}
	}
	hl, err := result.EncodeHist(h)
	if err != nil {
		t.Fatal(err)
	}
	hf, err := result.EncodeHist(ft)
	if err != nil {
		t.Fatal(err)
	}
	dur := 5.0
	rc := reachFixture(t, min(clients, 20), loUS, hiUS, false)
	if transport == "poll" {
		rc = nil // as in results of a load generator before reach
	}
	return &result.Result{
		Reach:         rc,
		SchemaVersion: result.SchemaVersion, Transport: transport, URL: "http://127.0.0.1:1", Clients: clients,
		Start: t0, Duration: dur, Connected: int64(clients),
		Messages: int64(n), MsgsPerSec: float64(n) / dur, PerClient: float64(n) / dur / float64(clients),
		Counts: result.Counts{Expected: int64(n), Received: int64(n)},
		Bytes:  result.Bytes{Received: int64(n) * 100, PerTick: 100},
		Self:   result.Self{CPUSeconds: 1, CPUCores: 0.2, GOMAXPROCS: 1},
		Dists: result.Dists{Latency: result.Summarize(h), FirstTick: result.Summarize(ft),
			HistLatency: hl, HistFirstTick: hf},
	}
}

// reachFixture records 40 ticks (seqs 101..140) to subs subscriptions,
// subscription i getting every tick loUS + i × (hiUS-loUS)/subs µs after
// its ts; with lose, subscriptions 0 and 1 miss seq 120 (it reaches 50% but
// not 99% nor 100% of them when subs < 100).
func reachFixture(t *testing.T, subs int, loUS, hiUS int64, lose bool) *result.Reach {
	t.Helper()
	var rec reach.Recorder
	var spans []reach.Span
	for i := range subs {
		spans = append(spans, reach.Span{From: 101, To: 140})
		for seq := uint64(101); seq <= 140; seq++ {
			if lose && i < 2 && seq == 120 {
				continue
			}
			rec.Record(seq, (loUS+int64(i)*(hiUS-loUS)/int64(subs))*1000)
		}
	}
	s, err := reach.Build(101, 140, spans, nil, &rec)
	if err != nil {
		t.Fatal(err)
	}
	return result.NewReach(s)
}

func server(clients int, cpu float64, deliveries float64) Server {
	return Server{
		IdleRSSBytes: 10 << 20, IdleGoroutines: 10,
		RSSBytes: 10<<20 + int64(clients)*8*1024, PeakRSSBytes: 10<<20 + int64(clients)*8*1024,
		Goroutines: 10 + 2*float64(clients), ConnsOpen: float64(clients),
		WindowSeconds: 5, CPUSeconds: cpu, Deliveries: deliveries, BytesWritten: deliveries * 90, Samples: 20,
	}
}

// sampleReport is a small fixed report: two transports, two client counts,
// two scenarios, two repeats; poll crashes once, sse saturates once, ws
// loses a tick in slow.
func sampleReport(t *testing.T) *Report {
	t.Helper()
	cfg := Config{Transports: []string{"sse", "ws", "poll"}, Clients: []int{100, 1000}, Scenarios: []string{Steady, Slow},
		Repeat: 2, Duration: Duration(5 * time.Second), Warmup: Duration(time.Second), Rate: 100, Symbols: 16, Seed: 1, SlowShare: 0.1, ChurnShare: 0.1, PollInterval: Duration(time.Second)}
	env := Env{CPUModel: "Test CPU @ 2.0GHz", Cores: 2, UsableCPUs: []int{0, 1}, Kernel: "6.1.0-test", GoVersion: "go1.26.8",
		GOOS: "linux", GOARCH: "amd64", GOMAXPROCS: 2, OpenFiles: 20000, OpenFilesHard: 20000, GitCommit: "0123456789abcdef",
		Pinning: Pinning{Mode: "taskset", ServerCPUs: []int{0}, LoadgenCPUs: []int{1}, Note: "Server pinned to CPU 0, load generators to CPU 1 (taskset)."},
		Time:    t0}
	r := New(cfg, env, t0)
	for rep := 1; rep <= 2; rep++ {
		for _, sc := range cfg.Scenarios {
			for ti, tr := range cfg.Transports {
				for _, n := range cfg.Clients {
					base := int64(1000*(ti+1)) * int64(rep) // sse < ws < poll; repeat 2 twice as slow
					res := fixture(t, tr, n, base, base*10, 1000)
					run := Run{Scenario: sc, Transport: tr, Clients: n, Repeat: rep, Start: t0, Wall: 8, Loadgens: 1,
						Result: res, Server: server(n*(ti+1), 0.5*float64(ti+1), 10000)}
					if tr == "poll" && n == 1000 && sc == Slow && rep == 2 {
						run.Result, run.Crashed = nil, true
						run.Error = "server exited during the run: exit status 2; stderr: panic: boom"
					}
					if tr == "sse" && n == 1000 && rep == 1 {
						res.Self.Saturated = true
					}
					if tr == "ws" && sc == Slow && n == 100 {
						res.Counts.Missing = 2
						res.Reach = reachFixture(t, 20, base, base*10, true)
					}
					r.Add(run)
				}
			}
		}
	}
	if err := r.Close(t0.Add(3 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	return r
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./bench/report -update to accept):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func render(t *testing.T, rep Reporter) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := rep(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestTablesGolden(t *testing.T) {
	r := sampleReport(t)
	golden(t, "tables.txt", render(t, NewTablesReporter(r, ASCII)))
	golden(t, "tables.md", render(t, NewTablesReporter(r, Markdown)))
	golden(t, "bench.txt", render(t, NewBenchfmtReporter(r)))
	golden(t, "summary.md", render(t, NewSummaryReporter(r, Charts(r, "svg"))))
}

func TestSummaryMedianAndSpread(t *testing.T) {
	r := sampleReport(t)
	c := r.Cell(Steady, "sse", 100)
	if c == nil || len(c.Runs) != 2 {
		t.Fatalf("cell steady/sse/100: %+v", c)
	}
	st := c.Summary.Stat(MetricP99)
	p1, p2 := float64(c.Runs[0].Figures.P99), float64(c.Runs[1].Figures.P99)
	if st.N != 2 || float64(st.Min) != math.Min(p1, p2) || float64(st.Max) != math.Max(p1, p2) || float64(st.Median) != (p1+p2)/2 {
		t.Errorf("p99 stat %+v from %v, %v", st, p1, p2)
	}
	// (RSS at N − idle) / N with 8 KiB per client.
	if got := float64(c.Summary.Stat(MetricRSS).Median); got != 8*1024 {
		t.Errorf("RSS per conn = %v, want 8192", got)
	}
	if got := float64(c.Summary.Stat(MetricGoroutines).Median); got != 2 {
		t.Errorf("goroutines per conn = %v, want 2", got)
	}
	// 0.5 CPU s per 10,000 deliveries = 50 ms per 1,000.
	if got := float64(c.Summary.Stat(MetricCPU).Median); math.Abs(got-50) > 1e-9 {
		t.Errorf("CPU per 1k = %v, want 50", got)
	}

	// Reach: subscription i gets each tick 1 + 0.45 i ms after its ts in
	// repeat 1, twice that in repeat 2; 20 subscriptions, so 99% and 100%
	// both wait for the last one (exact), 50% for the 10th (within 1/64).
	r100, r50 := c.Summary.Stat(MetricReach100), c.Summary.Stat(MetricReach50)
	if r100.N != 2 || math.Abs(float64(r100.Min)-9.55) > 1e-9 || math.Abs(float64(r100.Max)-19.1) > 1e-9 ||
		c.Summary.Stat(MetricReach99) != r100 {
		t.Errorf("reach 100%% %+v, 99%% %+v: want 9.55 and 19.1 ms", r100, c.Summary.Stat(MetricReach99))
	}
	if lo := float64(r50.Min); lo < 5.05 || lo > 5.05*(1+1.0/64) {
		t.Errorf("reach 50%% %+v: want 5.05 ms within 1/64", r50)
	}
	if s := r.Cell(Slow, "ws", 100).Summary; !strings.Contains(strings.Join(s.Notes, "\n"), "reach: 1 of 40 ticks never reached 99% of their subscriptions (0 not even 50%)") {
		t.Errorf("no note for the tick that never reached 99%%: %q", s.Notes)
	}
	// Results without reach (older load generators) have no figure.
	if st := r.Cell(Steady, "poll", 100).Summary.Stat(MetricReach99); st.Median.Valid() || st.N != 0 {
		t.Errorf("reach of a result without reach data: %+v", st)
	}

	crashed := r.Cell(Slow, "poll", 1000).Summary
	if crashed.Crashed != 1 || crashed.OK != 1 || !strings.Contains(Flags(&crashed), "CRASHED") {
		t.Errorf("crashed cell summary %+v", crashed)
	}
	if !strings.Contains(strings.Join(crashed.Notes, "\n"), "panic: boom") {
		t.Errorf("crash note does not carry the server's error: %q", crashed.Notes)
	}
	if s := r.Cell(Steady, "sse", 1000).Summary; s.Saturated != 1 || !strings.Contains(Flags(&s), "SATURATED") {
		t.Errorf("saturation not flagged: %+v", s)
	}
	if s := r.Cell(Slow, "ws", 100).Summary; s.Incorrect != 2 || !strings.Contains(Flags(&s), "INCORRECT") {
		t.Errorf("missing ticks not flagged: %+v", s)
	}
}

func TestNewStat(t *testing.T) {
	for _, tc := range []struct {
		in            []Num
		med, min, max float64
		n             int
	}{
		{[]Num{3, 1, 2}, 2, 1, 3, 3},
		{[]Num{4, 1, NA, 2, 3}, 2.5, 1, 4, 4},
		{[]Num{7}, 7, 7, 7, 1},
	} {
		s := NewStat(tc.in)
		if float64(s.Median) != tc.med || float64(s.Min) != tc.min || float64(s.Max) != tc.max || s.N != tc.n {
			t.Errorf("NewStat(%v) = %+v", tc.in, s)
		}
	}
	if s := NewStat([]Num{NA}); s.Median.Valid() || s.N != 0 {
		t.Errorf("all missing: %+v", s)
	}
}

// TestMergeHistograms checks that merging two load-generator processes
// side by side and then the repeats of a cell gives exactly the histogram
// of every value recorded.
func TestMergeHistograms(t *testing.T) {
	a := fixture(t, "sse", 10, 100, 1000, 500)
	b := fixture(t, "sse", 10, 5000, 9000, 500)
	side, err := result.Merge(a, b)
	if err != nil {
		t.Fatal(err)
	}
	c := fixture(t, "sse", 20, 20000, 30000, 1000)
	runs := []Run{
		{Scenario: Steady, Transport: "sse", Clients: 20, Repeat: 1, Result: side},
		{Scenario: Steady, Transport: "sse", Clients: 20, Repeat: 2, Result: c},
		{Scenario: Steady, Transport: "sse", Clients: 20, Repeat: 3, Error: "failed"},
	}
	m, err := MergeRuns(runs)
	if err != nil {
		t.Fatal(err)
	}
	all := result.NewHistogram()
	for _, set := range [][3]int64{{100, 1000, 500}, {5000, 9000, 500}, {20000, 30000, 1000}} {
		for i := int64(0); i < set[2]; i++ {
			_ = all.RecordValue(set[0] + (set[1]-set[0])*i/(set[2]-1))
		}
	}
	want := result.Summarize(all)
	if m.Runs != 2 || m.Latency != want {
		t.Errorf("merged latency %+v (runs %d), want %+v", m.Latency, m.Runs, want)
	}
	if m.Latency.Count != 2000 || m.Counts.Received != 2000 {
		t.Errorf("merged count %d, received %d, want 2000", m.Latency.Count, m.Counts.Received)
	}
	h, err := result.DecodeHist(m.HistLatency)
	if err != nil || h.TotalCount() != 2000 {
		t.Errorf("encoded merged histogram: %v, %v", h, err)
	}
	if m.FirstTick.Count != 40 {
		t.Errorf("first-tick count %d, want 40", m.FirstTick.Count)
	}
	if m, err := MergeRuns(runs[2:]); m != nil || err != nil {
		t.Errorf("no successful run: %+v, %v", m, err)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := sampleReport(t)
	js := render(t, NewJSONReporter(r))
	if !json.Valid(js) {
		t.Fatal("invalid JSON")
	}
	var probe struct {
		SchemaVersion int `json:"schema_version"`
		Cells         []struct {
			Runs []struct {
				Figures map[string]any `json:"figures"`
			} `json:"runs"`
		} `json:"cells"`
	}
	if err := json.Unmarshal(js, &probe); err != nil {
		t.Fatal(err)
	}
	if probe.SchemaVersion != SchemaVersion {
		t.Errorf("schema_version %d", probe.SchemaVersion)
	}
	// A crashed run's figures are null, not 0.
	found := false
	for _, c := range probe.Cells {
		for _, run := range c.Runs {
			if v, ok := run.Figures["P99"]; ok && v == nil {
				found = true
			}
		}
	}
	if !found {
		t.Error("no null figure for the crashed run")
	}
	back, err := Load(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := render(t, NewTablesReporter(r, ASCII)), render(t, NewTablesReporter(back, ASCII)); !bytes.Equal(a, b) {
		t.Errorf("tables differ after a JSON round trip:\n%s\n%s", a, b)
	}
	bad := bytes.Replace(js, []byte(`"schema_version": 2`), []byte(`"schema_version": 99`), 1)
	if _, err := Load(bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "schema version 99") {
		t.Errorf("other schema version accepted: %v", err)
	}
}

func TestBenchfmtLines(t *testing.T) {
	r := sampleReport(t)
	out := string(render(t, NewBenchfmtReporter(r)))
	line := regexp.MustCompile(`^BenchmarkPushbench/scenario=\w+/transport=\w+/clients=\d+ \t1(\t[-+.0-9e]+ [^\s]+)+$`)
	conf := regexp.MustCompile(`^(goos|goarch|pkg|cpu): \S.*$|^# pushbench `)
	benches := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		switch {
		case line.MatchString(l):
			benches++
		case conf.MatchString(l):
		default:
			t.Errorf("not benchmark format: %q", l)
		}
	}
	// 2 scenarios × 3 transports × 2 client counts × 2 repeats, less the crash.
	if benches != 23 {
		t.Errorf("%d benchmark lines, want 23", benches)
	}
}

func TestCharts(t *testing.T) {
	r := sampleReport(t)
	for _, format := range []string{"svg", "png"} {
		charts := Charts(r, format)
		// 2 scenarios × latency, memory, CPU, and reach for sse and ws
		// (the poll results have no reach data).
		if len(charts) != 10 || charts[3].File != "steady_reach_sse."+format || charts[4].File != "steady_reach_ws."+format {
			t.Fatalf("%d charts: %v", len(charts), charts)
		}
		for _, c := range charts {
			b := render(t, NewChartReporter(r, c))
			switch format {
			case "png":
				if !bytes.HasPrefix(b, []byte("\x89PNG")) {
					t.Errorf("%s is not a PNG", c.File)
				}
			case "svg":
				legend := "poll"
				if c.Row != "" {
					legend = "99%"
				}
				if !bytes.Contains(b[:min(len(b), 200)], []byte("<svg")) || !bytes.Contains(b, []byte(legend)) {
					t.Errorf("%s is not an SVG with a legend", c.File)
				}
			}
		}
	}
}

func TestFindings(t *testing.T) {
	r := sampleReport(t)
	f := strings.Join(Findings(r), "\n")
	for _, want := range []string{
		"steady, 1000 clients: **sse** has the lowest p99 latency",
		"**poll crashed** in slow at 1000 clients (1 of 2 runs)",
		"**ws delivered incorrectly** in slow at 100 clients",
		"With stalled clients, sse's p99 latency at 1000 clients",
		"The load generator saturated in 2 of 12 cells",
	} {
		if !strings.Contains(f, want) {
			t.Errorf("findings lack %q:\n%s", want, f)
		}
	}
}

func TestMetricFormat(t *testing.T) {
	for _, tc := range []struct {
		m    Metric
		v    float64
		want string
	}{
		{MetricP99, 12.3456, "12.35"},
		{MetricP99, 0.004, "0.004"},
		{MetricRSS, 8192, "8.0"},
		{MetricMsgs, 12345.6, "12346"},
		{MetricP99, math.NaN(), "–"},
	} {
		if got := tc.m.Format(tc.v); got != tc.want {
			t.Errorf("%s.Format(%v) = %q, want %q", tc.m.Key, tc.v, got, tc.want)
		}
	}
	if got := FormatStat(MetricP99, Stat{Median: 2, Min: 1, Max: 3, N: 3}, Markdown); got != "2.00 (1.00–3.00)" {
		t.Errorf("FormatStat = %q", got)
	}
	if got := FormatStat(MetricP99, Stat{Median: 2, Min: 2, Max: 2, N: 3}, ASCII); got != "2.00" {
		t.Errorf("FormatStat equal = %q", got)
	}
}

// TestLoadWithoutReach loads a results.json written before reach existed
// (the sample's, with every reach field removed, as in results/example):
// it renders, with no reach figure and no reach chart.
func TestLoadWithoutReach(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(render(t, NewJSONReporter(sampleReport(t))), &doc); err != nil {
		t.Fatal(err)
	}
	removed := 0
	for _, c := range doc["cells"].([]any) {
		for _, run := range c.(map[string]any)["runs"].([]any) {
			run := run.(map[string]any)
			if res, ok := run["result"].(map[string]any); ok {
				if _, ok := res["reach"]; ok {
					delete(res, "reach")
					removed++
				}
			}
			for k := range run["figures"].(map[string]any) {
				if strings.HasPrefix(k, "Reach") {
					delete(run["figures"].(map[string]any), k)
				}
			}
		}
	}
	if removed == 0 {
		t.Fatal("the sample has no reach to remove")
	}
	old, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Load(bytes.NewReader(old))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range r.Cells {
		if st := c.Summary.Stat(MetricReach99); st.Median.Valid() {
			t.Errorf("%s: reach %+v from a file without reach", c.Key(), st)
		}
	}
	for _, c := range Charts(r, "svg") {
		if c.Row != "" {
			t.Errorf("reach chart %s without reach data", c.File)
		}
	}
	if tables := string(render(t, NewTablesReporter(r, ASCII))); !strings.Contains(tables, "reach p99 ms") {
		t.Errorf("no reach column:\n%s", tables)
	}
	render(t, NewSummaryReporter(r, Charts(r, "svg")))
}

// TestPartial checks that a cell where not every client connected, for
// failed connections, is flagged PARTIAL with its reason, and that other
// notes are not taken for it.
func TestPartial(t *testing.T) {
	mk := func(connected int64, failures map[string]int64, warnings ...string) Run {
		res := fixture(t, "sse", 100, 1000, 10000, 1000)
		res.Connected, res.Failures = connected, failures
		run := Run{Scenario: Steady, Transport: "sse", Clients: 100, Repeat: 1, Result: res, Server: server(100, 0.5, 10000), Warnings: warnings}
		run.Figures = Derive(&run)
		return run
	}
	for _, tc := range []struct {
		name     string
		scenario string
		run      Run
		partial  bool
	}{
		{"all connected", Steady, mk(100, nil, "only 1 server samples inside the measuring window"), false},
		{"refused clients", Steady, mk(90, map[string]int64{"http_503": 10}), true},
		{"dropped, reconnecting at the end", Steady, mk(90, nil), false},
		{"churn: clients between connections", Churn, mk(90, map[string]int64{"reset": 3}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Summarize(tc.scenario, []Run{tc.run})
			flagged := strings.Contains(Flags(&s), "PARTIAL")
			if flagged != tc.partial || (s.Partial != "") != tc.partial {
				t.Fatalf("flags %q, partial %q, want partial %v", Flags(&s), s.Partial, tc.partial)
			}
			if tc.partial && (!strings.Contains(s.Partial, "90/100") || !slices.Contains(s.Notes, s.Partial)) {
				t.Errorf("partial %q, notes %q: want the reason, in the notes too", s.Partial, s.Notes)
			}
		})
	}
}
