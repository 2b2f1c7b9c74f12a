package runner

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushbench/pushbench/bench/matrix"
	"github.com/pushbench/pushbench/bench/proc"
	"github.com/pushbench/pushbench/bench/report"
	"github.com/pushbench/pushbench/loadgen"
)

func TestMain(m *testing.M) {
	fakeMain() // returns unless BENCH_FAKE is set
	os.Exit(m.Run())
}

// fakeConfig runs the test binary as both programs.
func fakeConfig(t *testing.T, server, loadgen string) Config {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pin, err := proc.PlanPinning("auto")
	if err != nil {
		t.Fatal(err)
	}
	g := &proc.Group{}
	t.Cleanup(func() {
		if n := g.Running(); n != 0 {
			t.Errorf("%d processes left running", n)
		}
		_ = g.StopAll(time.Second)
	})
	race := "GORACE=atexit_sleep_ms=0" // a race-enabled helper otherwise lingers 1s at exit
	return Config{
		ServerBin: exe, LoadgenBin: exe,
		Transports: []string{"sse", "shortpoll"}, Clients: []int{10, 100}, Scenarios: []string{report.Steady},
		Repeat: 1, Duration: 300 * time.Millisecond, Rate: 100, Symbols: 16, Seed: 1,
		SlowShare: 0.1, ChurnShare: 0.1, PollInterval: 100 * time.Millisecond,
		OpenFiles: 20000, Pinning: pin, SampleInterval: 30 * time.Millisecond, IdleSettle: 10 * time.Millisecond,
		StopGrace: 2 * time.Second, StartTimeout: 10 * time.Second,
		WorkDir: t.TempDir(), LogDir: t.TempDir(),
		ServerEnv: []string{"BENCH_FAKE=" + server, race}, LoadgenEnv: []string{"BENCH_FAKE=" + loadgen, race},
		Group: g,
	}
}

func TestRunMatrix(t *testing.T) {
	cfg := fakeConfig(t, "server", "loadgen")
	cfg.Repeat = 2
	cfg.MaxPerLoadgen = 40 // 100 clients: three load-generator processes, merged
	var mu sync.Mutex
	var events []Event
	cfg.Progress = func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plan := r.Plan()
	if len(plan) != 8 || plan[0].Repeat != 1 || plan[4].Repeat != 2 || plan[1].Clients != 100 || plan[2].Transport != "shortpoll" {
		t.Fatalf("plan %v", plan)
	}
	rep := report.New(report.Config{Transports: cfg.Transports, Clients: cfg.Clients, Scenarios: cfg.Scenarios, Repeat: 2}, report.Env{}, time.Now())
	if err := r.Run(context.Background(), rep); err != nil {
		t.Fatal(err)
	}
	if err := rep.Close(time.Now()); err != nil {
		t.Fatal(err)
	}
	if len(events) != 16 || !events[15].Done || events[15].Index != 7 {
		t.Errorf("%d progress events", len(events))
	}
	if len(rep.Cells) != 4 {
		t.Fatalf("%d cells", len(rep.Cells))
	}
	for _, c := range rep.Cells {
		for _, run := range c.Runs {
			if !run.OK() {
				t.Fatalf("%s: %s", c.Key(), run.Error)
			}
			want := 1
			if c.Clients == 100 {
				want = 3
			}
			if run.Loadgens != want || run.Result.Clients != c.Clients {
				t.Errorf("%s: %d load generators holding %d clients", c.Key(), run.Loadgens, run.Result.Clients)
			}
			s := run.Server
			if s.Samples < 2 || s.IdleRSSBytes <= 0 || s.RSSBytes <= 0 || s.Deliveries <= 0 || s.WindowSeconds <= 0 {
				t.Errorf("%s: server figures %+v", c.Key(), s)
			}
			// The fake server burns too little CPU for CPU per delivery
			// (see report.MinCPUSeconds); the plumbing is what counts here.
			if s.CPUSeconds < 0 || !run.Figures.GoroutinesPerConn.Valid() || !run.Figures.RSSPerConn.Valid() {
				t.Errorf("%s: figures %+v", c.Key(), run.Figures)
			}
		}
		if c.Summary.OK != 2 || c.Merged == nil || c.Merged.Latency.Count != int64(2000*c.Runs[0].Loadgens) {
			t.Errorf("%s: summary %+v merged %+v", c.Key(), c.Summary, c.Merged)
		}
	}
}

// TestServerCrashIsReported: a server that dies while the clients run is
// a crashed run with its exit status and stderr, not a missing cell.
func TestServerCrashIsReported(t *testing.T) {
	cfg := fakeConfig(t, "server-crash", "loadgen")
	cfg.Duration = time.Minute // the crash must cut the run short
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	run := r.RunOne(context.Background(), Spec{Scenario: report.Steady, Transport: "sse", Clients: 10, Repeat: 1})
	if !run.Crashed || run.OK() {
		t.Fatalf("run not marked crashed: %+v", run)
	}
	for _, want := range []string{"server crashed during the run", "exit status 3", "panic: fake crash"} {
		if !strings.Contains(run.Error, want) {
			t.Errorf("error %q lacks %q", run.Error, want)
		}
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("crash noticed only after %s", d)
	}
	logs, _ := os.ReadDir(cfg.LogDir)
	if len(logs) != 1 {
		t.Errorf("crash log not kept: %v", logs)
	}
	s := report.Summarize(report.Steady, []report.Run{run})
	if s.Crashed != 1 || !strings.Contains(report.Flags(&s), "CRASHED") {
		t.Errorf("summary %+v", s)
	}
}

func TestLoadgenFailureIsReported(t *testing.T) {
	r, err := New(fakeConfig(t, "server", "loadgen-fail"))
	if err != nil {
		t.Fatal(err)
	}
	run := r.RunOne(context.Background(), Spec{Scenario: report.Steady, Transport: "ws", Clients: 10, Repeat: 1})
	if run.OK() || run.Crashed || !strings.Contains(run.Error, "exit status 2") || !strings.Contains(run.Error, "no such flag") {
		t.Fatalf("run %+v", run)
	}
}

func TestInterrupt(t *testing.T) {
	cfg := fakeConfig(t, "server", "loadgen")
	cfg.Duration = time.Minute
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Progress = nil
	done := make(chan error, 1)
	rep := report.New(report.Config{}, report.Env{}, time.Now())
	go func() { done <- r.Run(ctx, rep) }()
	// Cancel once a load generator is running.
	deadline := time.Now().Add(10 * time.Second)
	for cfg.Group.Running() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if len(rep.Cells) != 0 {
		t.Errorf("an interrupted run was reported: %+v", rep.Cells)
	}
}

func TestNewRefuses(t *testing.T) {
	base := fakeConfig(t, "server", "loadgen")
	for name, mut := range map[string]func(*Config){
		"non-loopback host": func(c *Config) { c.Host = "10.0.0.1" },
		"too many clients":  func(c *Config) { c.Clients = []int{30000} },
		"no group":          func(c *Config) { c.Group = nil },
		"no repeat":         func(c *Config) { c.Repeat = 0 },
	} {
		c := base
		mut(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestLoadgens(t *testing.T) {
	for _, tc := range []struct {
		n       int
		limit   uint64
		per, lg int
	}{{5000, 20000, 0, 1}, {19000, 20000, 0, 2}, {5000, 1024 + 1000, 0, 5}, {100, 20000, 40, 3}} {
		if got := Loadgens(tc.n, tc.limit, tc.per); got != tc.lg {
			t.Errorf("Loadgens(%d, %d, %d) = %d, want %d", tc.n, tc.limit, tc.per, got, tc.lg)
		}
	}
}

func TestArgs(t *testing.T) {
	cfg := Config{Duration: 2 * time.Second, Warmup: time.Second, Rate: 100, Symbols: 16, Seed: 7, SlowShare: 0.25, ChurnShare: 0.1}
	srv := strings.Join(cfg.serverArgs(Spec{Transport: "shortpoll"}, "127.0.0.1:9", matrix.Setup{}), " ")
	if !strings.Contains(srv, "-transport poll") || !strings.Contains(srv, "-seed 7") || !strings.Contains(srv, "-addr 127.0.0.1:9") {
		t.Errorf("server args %q", srv)
	}
	lg := strings.Join(cfg.loadgenArgs(Spec{Scenario: report.Slow, Transport: "ws", Clients: 5000}, "http://x", 2500, "o.json", matrix.Setup{}), " ")
	for _, want := range []string{"-transport ws", "-clients 2500", "-duration 2s", "-warmup 1s", "-ramp 1s", "-slow 0.25", "-out o.json", "-seed 7", "-feed-symbols 16", "-drain 1s"} {
		if !strings.Contains(lg, want) {
			t.Errorf("loadgen args %q lack %q", lg, want)
		}
	}
	// Short polling measures at least three intervals after a warm-up of
	// one, and drains for an interval more.
	lg = strings.Join(cfg.loadgenArgs(Spec{Scenario: report.Steady, Transport: "shortpoll", Clients: 10}, "http://x", 10, "o.json", matrix.Setup{}), " ")
	for _, want := range []string{"-transport shortpoll", "-duration 3s", "-warmup 1s", "-drain 4s"} {
		if !strings.Contains(lg, want) {
			t.Errorf("shortpoll args %q lack %q", lg, want)
		}
	}
	storm := strings.Join(cfg.serverArgs(Spec{Scenario: report.Storm, Transport: "sse"}, "127.0.0.1:9", matrix.Setup{}), " ")
	if !strings.Contains(storm, "-rate 1000") {
		t.Errorf("storm feed rate: %q", storm)
	}
	if got := Ramp(report.Storm, 5000); got != 0 {
		t.Errorf("storm ramp %v", got)
	}
}

// TestLoadgenAcceptsArgs hands the arguments bench builds for every
// scenario and transport to loadgen's own command line, against a port
// where nothing listens: the flags must parse and validate (the run then
// stops at its trial connection, exit 1), never a usage error (exit 2).
func TestLoadgenAcceptsArgs(t *testing.T) {
	cfg := Config{Duration: time.Second, Warmup: time.Second, Rate: 100, Symbols: 16, Seed: 7, SlowShare: 0.1, ChurnShare: 0.1,
		PollInterval: 500 * time.Millisecond, ClientSymbols: "AAPL"}
	out := filepath.Join(t.TempDir(), "r.json")
	for _, sc := range report.Scenarios {
		for _, tr := range report.Transports {
			if !Applies(sc, tr) {
				continue
			}
			// Every dimension value's flags too, one value at a time.
			setups := []matrix.Setup{{}}
			for _, d := range matrix.Dimensions() {
				for _, v := range d.Values {
					if v.Applies(tr) && len(v.Loadgen) > 0 {
						setups = append(setups, matrix.Setup{Loadgen: v.Loadgen, Scheme: v.Scheme})
					}
				}
			}
			for _, setup := range setups {
				url := "http://127.0.0.1:1"
				if setup.Scheme != "" {
					url = setup.Scheme + "://127.0.0.1:1"
				}
				args := cfg.loadgenArgs(Spec{Scenario: sc, Transport: tr, Clients: 10}, url, 10, out, setup)
				var stderr strings.Builder
				code := loadgen.Main(context.Background(), args, io.Discard, &stderr, false)
				if code != loadgen.ExitError || !strings.Contains(stderr.String(), "connection refused") {
					t.Errorf("%s %s: loadgen %q exited %d: %s", sc, tr, args, code, stderr.String())
				}
			}
		}
	}
}

// TestDefaultTablesBudget holds make bench to its promise: every default
// table together is planned to end within 10 minutes (the estimate counts
// start, ramp, warm-up, measurement and stop of every run).
func TestDefaultTablesBudget(t *testing.T) {
	sc := matrix.Scale{MaxClients: ServerCapacity(20000)}
	var tables []matrix.Table
	for _, tb := range matrix.All(sc) {
		if tb.Default {
			tables = append(tables, tb)
		}
	}
	cfg := fakeConfig(t, "server", "loadgen")
	cfg.Tables = tables
	cfg.IdleSettle = DefaultIdleSettle
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var total time.Duration
	for _, s := range r.Plan() {
		total += r.Estimate(s)
	}
	if total > 10*time.Minute {
		t.Errorf("the default tables are planned to take %s, over make bench's 10 minutes", total)
	}
	t.Logf("default tables: %d runs, about %s", len(r.Plan()), total.Round(time.Second))
}
