// Package report holds what a bench run measured and renders it.
//
// It follows vegeta's split between accumulating and rendering: a Report
// files one Run per (scenario, transport, clients, repeat) into its Cell
// with Add, Close orders the cells, merges each one's histograms and
// computes each figure as the median of the repeats with its min–max, and
// a Reporter (a func(io.Writer) error closing
// over the Report) renders it as ASCII or Markdown tables, JSON, Go benchmark
// format for benchstat, charts, or the whole summary.md. Rendering never
// measures and measuring never renders, so every output can be regenerated
// from results.json alone (Load).
//
// Concurrency: a Report is not safe for concurrent use; the runner adds runs
// from one goroutine. Reporters only read a closed Report.
package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/pushbench/pushbench/loadgen/result"
)

// SchemaVersion of results.json. It changes whenever a field changes meaning
// or disappears, so that an old file is refused instead of misread.
const SchemaVersion = 1

// Scenario names. Each is one table in summary.md.
const (
	Steady = "steady" // every client keeps up
	Slow   = "slow"   // a share of the clients stall
	Churn  = "churn"  // clients disconnect and resume
	Storm  = "storm"  // connection rate: time to first tick
)

// Scenarios lists every scenario in report order.
var Scenarios = []string{Steady, Slow, Churn, Storm}

// Transports lists every transport in report order. shortpoll is plain
// polling (timeout=0 on a fixed interval) against the same poll server, shown
// beside long polling.
var Transports = []string{"sse", "ws", "poll", "shortpoll"}

// Config is the matrix that was run, as the user asked for it.
type Config struct {
	Transports []string `json:"transports"`
	Clients    []int    `json:"clients"`
	Scenarios  []string `json:"scenarios"`
	Repeat     int      `json:"repeat"`
	Duration   Duration `json:"duration"`
	Warmup     Duration `json:"warmup"`
	Rate       float64  `json:"rate"`    // feed ticks/s
	Symbols    int      `json:"symbols"` // feed symbols
	Seed       uint64   `json:"seed"`
	// Scenario knobs, recorded because they shape the numbers.
	SlowShare    float64  `json:"slow_share,omitempty"`    // share of clients that stall in "slow"
	ChurnShare   float64  `json:"churn_share,omitempty"`   // share of clients dropped and resumed per second in "churn"
	PollInterval Duration `json:"poll_interval,omitempty"` // shortpoll: each client polls this often
	StormRate    float64  `json:"storm_feed_rate,omitempty"`
	Subscribe    string   `json:"subscribe,omitempty"` // each client's symbols; empty: all
	// Skipped lists what was asked for and not run, with why ("slow:
	// bin/loadgen has no -slow flag").
	Skipped []string `json:"skipped,omitempty"`
	// Caveats are sentences about how this run measured, printed with it.
	Caveats []string `json:"caveats,omitempty"`
	Args    []string `json:"args,omitempty"` // the command line
}

// Duration is a time.Duration that reads and writes as "2s" in JSON.
type Duration time.Duration

// MarshalText writes the duration in Go syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses Go duration syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// Env describes the machine, so that a number is never read without the
// conditions it was measured under.
type Env struct {
	CPUModel      string    `json:"cpu_model"`
	Cores         int       `json:"cores"`       // CPUs online
	UsableCPUs    []int     `json:"usable_cpus"` // CPUs in bench's affinity mask
	Kernel        string    `json:"kernel"`
	GoVersion     string    `json:"go_version"`
	GOOS          string    `json:"goos"`
	GOARCH        string    `json:"goarch"`
	GOMAXPROCS    int       `json:"gomaxprocs"` // bench's own
	OpenFiles     uint64    `json:"open_files_limit"`
	OpenFilesHard uint64    `json:"open_files_hard_limit"`
	SomaxConn     int       `json:"somaxconn,omitempty"`
	PortRange     string    `json:"ephemeral_ports,omitempty"`
	MemTotalBytes int64     `json:"mem_total_bytes,omitempty"`
	LoadAvg       []float64 `json:"load_avg,omitempty"` // 1, 5, 15 minutes, when bench started: other work on the machine
	GitCommit     string    `json:"git_commit,omitempty"`
	GitDirty      bool      `json:"git_dirty,omitempty"`
	Pinning       Pinning   `json:"pinning"`
	Time          time.Time `json:"time"`
}

// Pinning records where the server and the load generators ran.
type Pinning struct {
	Mode        string `json:"mode"` // taskset, sched_setaffinity, off
	ServerCPUs  []int  `json:"server_cpus,omitempty"`
	LoadgenCPUs []int  `json:"loadgen_cpus,omitempty"`
	Note        string `json:"note"` // one human sentence, printed next to every result
	// GOMAXPROCS of the server and of each load generator: their CPU count
	// when pinned, else every CPU.
	ServerGOMAXPROCS  int `json:"server_gomaxprocs,omitempty"`
	LoadgenGOMAXPROCS int `json:"loadgen_gomaxprocs,omitempty"`
}

// Server is what bench measured on the server process from outside, over
// the load generator's measuring window.
type Server struct {
	IdleRSSBytes   int64   `json:"idle_rss_bytes"`  // after /healthz, before any client
	IdleGoroutines float64 `json:"idle_goroutines"` // idem
	RSSBytes       int64   `json:"rss_bytes"`       // at the end of the window, N clients connected
	PeakRSSBytes   int64   `json:"peak_rss_bytes"`  // highest sample in the window
	RSSGrowthBytes int64   `json:"rss_growth_bytes"`
	Goroutines     float64 `json:"goroutines"`       // at the end of the window
	ConnsOpen      float64 `json:"connections_open"` // at the end of the window
	Refused        float64 `json:"connections_refused"`
	WindowSeconds  float64 `json:"window_s"`    // time between the two samples that bound the window
	CPUSeconds     float64 `json:"cpu_seconds"` // user+system in the window
	Deliveries     float64 `json:"deliveries"`  // ticks written in the window (counter delta)
	BytesWritten   float64 `json:"bytes_written"`
	Gaps           float64 `json:"gaps"`
	PollRequests   float64 `json:"poll_requests,omitempty"`
	Samples        int     `json:"samples"`
	Series         []Point `json:"series,omitempty"`
}

// Point is one sample of the server during a run, seconds from the run start.
type Point struct {
	T          float64 `json:"t"`
	RSSBytes   int64   `json:"rss"`
	CPUSeconds float64 `json:"cpu"`
	Goroutines float64 `json:"goroutines"`
	Deliveries float64 `json:"deliveries"`
	Conns      float64 `json:"conns"`
}

// Run is one repeat of one cell.
type Run struct {
	Scenario  string         `json:"scenario"`
	Transport string         `json:"transport"`
	Clients   int            `json:"clients"`
	Repeat    int            `json:"repeat"` // 1-based
	Start     time.Time      `json:"start"`
	Wall      float64        `json:"wall_s"` // whole run: start server to everything stopped
	Loadgens  int            `json:"loadgens"`
	Result    *result.Result `json:"result,omitempty"` // the load generators' results, merged
	Server    Server         `json:"server"`
	// Crashed: the server exited on its own during the run. Error says how
	// (exit status and the tail of its stderr). A run with an Error has no
	// figures, and its cell says so instead of hiding it.
	Crashed bool   `json:"crashed,omitempty"`
	Error   string `json:"error,omitempty"`
	// Warnings: the run has figures, but something deserves a look (a
	// load generator's non-zero exit, a missing metric, too few samples).
	Warnings []string `json:"warnings,omitempty"`
	// Figures derived from Result and Server (see Figures).
	Figures Figures `json:"figures"`
}

// OK reports whether the run produced figures.
func (r *Run) OK() bool { return r.Error == "" && r.Result != nil }

// Cell is every repeat of one (scenario, transport, clients).
type Cell struct {
	Scenario  string `json:"scenario"`
	Transport string `json:"transport"`
	Clients   int    `json:"clients"`
	Runs      []Run  `json:"runs"`
	// Merged is every successful repeat's histograms merged (exact HDR merge)
	// with their percentiles; counts are summed over the repeats.
	Merged  *Merged `json:"merged,omitempty"`
	Summary Summary `json:"summary"`
}

// Key names a cell.
func (c *Cell) Key() string { return fmt.Sprintf("%s/%s/%d", c.Scenario, c.Transport, c.Clients) }

// Merged holds the histograms of all the repeats of a cell merged exactly.
type Merged struct {
	Runs int `json:"runs"`
	result.Dists
	Counts   result.Counts    `json:"counts"` // summed over the repeats
	Failures map[string]int64 `json:"failures,omitempty"`
}

// Results is the whole file results.json.
type Results struct {
	SchemaVersion int       `json:"schema_version"`
	Started       time.Time `json:"started"`
	Finished      time.Time `json:"finished"`
	Interrupted   bool      `json:"interrupted,omitempty"`
	Config        Config    `json:"config"`
	Env           Env       `json:"env"`
	Cells         []*Cell   `json:"cells"`
}

// Report accumulates runs. Its zero value is not usable: use New.
type Report struct {
	Results
	closed bool
}

// New starts a report for cfg on env.
func New(cfg Config, env Env, started time.Time) *Report {
	return &Report{Results: Results{SchemaVersion: SchemaVersion, Started: started.UTC(), Config: cfg, Env: env}}
}

// Add records one run and derives its figures. Load derives them again from
// the stored results, so that a results.json renders with the current
// rules.
func (r *Report) Add(run Run) {
	run.Figures = Derive(&run)
	r.closed = false
	for _, c := range r.Cells {
		if c.Scenario == run.Scenario && c.Transport == run.Transport && c.Clients == run.Clients {
			c.Runs = append(c.Runs, run)
			return
		}
	}
	r.Cells = append(r.Cells, &Cell{Scenario: run.Scenario, Transport: run.Transport, Clients: run.Clients, Runs: []Run{run}})
}

// Close orders the cells as the matrix was given, merges histograms and
// computes every summary. Closing twice is harmless.
func (r *Report) Close(finished time.Time) error {
	if !finished.IsZero() {
		r.Finished = finished.UTC()
	}
	slices.SortStableFunc(r.Cells, func(a, b *Cell) int {
		if d := order(r.Config.Scenarios, Scenarios, a.Scenario) - order(r.Config.Scenarios, Scenarios, b.Scenario); d != 0 {
			return d
		}
		if d := order(r.Config.Transports, Transports, a.Transport) - order(r.Config.Transports, Transports, b.Transport); d != 0 {
			return d
		}
		return a.Clients - b.Clients
	})
	var errs []error
	for _, c := range r.Cells {
		slices.SortStableFunc(c.Runs, func(a, b Run) int { return a.Repeat - b.Repeat })
		m, err := MergeRuns(c.Runs)
		if err != nil {
			errs = append(errs, fmt.Errorf("cell %s: %w", c.Key(), err))
		}
		c.Merged = m
		c.Summary = Summarize(c.Scenario, c.Runs)
	}
	r.closed = true
	return errors.Join(errs...)
}

// order is the position of v in the configured list, else in the default
// list after it, else last.
func order(configured, all []string, v string) int {
	if i := slices.Index(configured, v); i >= 0 {
		return i
	}
	if i := slices.Index(all, v); i >= 0 {
		return len(configured) + i
	}
	return len(configured) + len(all)
}

// Cell returns the cell for (scenario, transport, clients), or nil.
func (r *Report) Cell(scenario, transport string, clients int) *Cell {
	for _, c := range r.Cells {
		if c.Scenario == scenario && c.Transport == transport && c.Clients == clients {
			return c
		}
	}
	return nil
}

// ScenariosPresent lists the scenarios that have cells, in report order.
func (r *Report) ScenariosPresent() []string {
	var out []string
	for _, c := range r.Cells {
		if !slices.Contains(out, c.Scenario) {
			out = append(out, c.Scenario)
		}
	}
	return out
}

// Failed counts runs that produced no figures.
func (r *Report) Failed() int {
	n := 0
	for _, c := range r.Cells {
		for i := range c.Runs {
			if !c.Runs[i].OK() {
				n++
			}
		}
	}
	return n
}

// Load reads results.json written by NewJSONReporter, refusing another
// schema version, and returns a closed Report ready for the reporters.
func Load(rd io.Reader) (*Report, error) {
	var res Results
	if err := json.NewDecoder(rd).Decode(&res); err != nil {
		return nil, fmt.Errorf("decode results: %w", err)
	}
	if res.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("results schema version %d, want %d", res.SchemaVersion, SchemaVersion)
	}
	r := &Report{Results: res}
	for _, c := range r.Cells {
		for i := range c.Runs {
			c.Runs[i].Figures = Derive(&c.Runs[i])
		}
	}
	if err := r.Close(time.Time{}); err != nil {
		return nil, err
	}
	return r, nil
}

// LoadFile is Load on a file.
func LoadFile(path string) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open results: %w", err)
	}
	defer f.Close()
	r, err := Load(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}
