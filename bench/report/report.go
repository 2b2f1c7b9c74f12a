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
const SchemaVersion = 2

// Scenario names. Each is one table in summary.md per bench table.
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
	// Tables are the bench tables that were run, in order: each is a
	// matrix of its own, with its conditions (rendered in its caption).
	Tables []Table `json:"tables,omitempty"`
}

// The dimensions of a run besides scenario, transport and clients. Their
// names are the keys of Dims.Get and Table.Vary.
const (
	DimProtocol = "protocol"
	DimNetwork  = "network"
	DimImpl     = "impl"
	DimWorkload = "workload"
)

// DimNames lists the dimensions in the order rows and labels show them.
var DimNames = []string{DimWorkload, DimImpl, DimProtocol, DimNetwork}

// DefaultDims is the idealised setting every figure came from before
// dimensions existed: plaintext HTTP/1.1 on loopback, this project's
// servers, the price feed. A results file without dims means these.
var DefaultDims = Dims{Protocol: "h1", Network: "loopback", Impl: "pushbench", Workload: "feed"}

// Dims are a run's conditions besides scenario, transport and clients: one
// value of each dimension of the comparison. What each value means for the
// processes (flags, a proxy) is bench/matrix's business; the report only
// names them.
type Dims struct {
	Protocol string `json:"protocol"`
	Network  string `json:"network"`
	Impl     string `json:"impl"`
	Workload string `json:"workload"`
}

// Get returns the value of the dimension named dim ("" for an unknown name).
func (d Dims) Get(dim string) string {
	switch dim {
	case DimProtocol:
		return d.Protocol
	case DimNetwork:
		return d.Network
	case DimImpl:
		return d.Impl
	case DimWorkload:
		return d.Workload
	}
	return ""
}

// withDefaults fills the unset dimensions with DefaultDims.
func (d Dims) withDefaults() Dims {
	def := DefaultDims
	for _, x := range []struct{ v, dv *string }{{&d.Protocol, &def.Protocol}, {&d.Network, &def.Network}, {&d.Impl, &def.Impl}, {&d.Workload, &def.Workload}} {
		if *x.v == "" {
			*x.v = *x.dv
		}
	}
	return d
}

// MainTable names the table of the transports × clients × scenarios
// comparison that every results file had before tables existed.
const MainTable = "transports"

// Table is one bench table as it was run: its own matrix (scenarios,
// transports, client counts, the values of the dimensions it varies) and
// the conditions it holds fixed, so that its caption can say them.
type Table struct {
	Name  string `json:"name"`  // short, in file names: "transports", "protocols"
	Title string `json:"title"` // heading
	About string `json:"about,omitempty"`
	// Conditions is one sentence of what holds for every row: protocol,
	// network, implementation and its version, feed rate, durations.
	Conditions string   `json:"conditions"`
	Vary       []string `json:"vary,omitempty"` // dimensions shown as columns (DimNames)
	// Values describes every dimension value in the table: "tls" -> "TLS
	// 1.3, self-signed ECDSA P-256, HTTP/1.1", printed under the table.
	Values map[string]string `json:"values,omitempty"`
	// DimValues lists, for each dimension in Vary, its values in row order.
	DimValues  map[string][]string `json:"dim_values,omitempty"`
	Scenarios  []string            `json:"scenarios"`
	Transports []string            `json:"transports"`
	Clients    []int               `json:"clients"`
	// ClientsHeader is the clients column's name ("clients"; "in flight"
	// for answer streaming, where the count is answers in flight).
	ClientsHeader string `json:"clients_header,omitempty"`
	// Columns lists the metric keys of the table's columns; empty: the
	// scenario's defaults (Columns).
	Columns []string `json:"columns,omitempty"`
	// XDim, if set, charts the table against that dimension instead of
	// the clients: DimX is each value's position (a network's RTT in ms)
	// and XLabel the axis title.
	XDim     string             `json:"x_dim,omitempty"`
	DimX     map[string]float64 `json:"dim_x,omitempty"`
	XLabel   string             `json:"x_label,omitempty"`
	Rate     float64            `json:"rate"`
	Duration Duration           `json:"duration"`
	Warmup   Duration           `json:"warmup"`
	Repeat   int                `json:"repeat"`
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
	Table     string         `json:"table"`
	Dims      Dims           `json:"dims"`
	Scenario  string         `json:"scenario"`
	Transport string         `json:"transport"`
	Clients   int            `json:"clients"`
	Repeat    int            `json:"repeat"` // 1-based
	Start     time.Time      `json:"start"`
	Wall      float64        `json:"wall_s"` // whole run: start server to everything stopped
	Loadgens  int            `json:"loadgens"`
	Result    *result.Result `json:"result,omitempty"` // the load generators' results, merged
	Server    Server         `json:"server"`
	// Side is a side process of the run (the network-shaping proxy),
	// sampled from outside like the server; nil when there was none.
	Side *Side `json:"side,omitempty"`
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

// Side is what bench measured of a run's side process (a proxy between the
// load generators and the server) over the same window as the server.
type Side struct {
	Name          string  `json:"name"` // what it is: "netshape wan"
	RSSBytes      int64   `json:"rss_bytes"`
	IdleRSSBytes  int64   `json:"idle_rss_bytes"`
	CPUSeconds    float64 `json:"cpu_seconds"`
	WindowSeconds float64 `json:"window_s"`
	// Saturated: its CPU share of the window reached SideSaturation of
	// one core; the latency is then partly the proxy's.
	Saturated bool `json:"saturated,omitempty"`
}

// SideSaturation is the share of one core above which a side process is
// flagged as saturated: a proxy busy most of the time queues what passes
// through it.
const SideSaturation = 0.9

// OK reports whether the run produced figures.
func (r *Run) OK() bool { return r.Error == "" && r.Result != nil }

// Cell is every repeat of one (scenario, transport, clients).
type Cell struct {
	Table     string `json:"table"`
	Dims      Dims   `json:"dims"`
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
func (c *Cell) Key() string {
	d := c.Dims
	return fmt.Sprintf("%s/%s/%s/%s/%s/%s/%s/%d", c.Table, c.Scenario, c.Transport, d.Workload, d.Impl, d.Protocol, d.Network, c.Clients)
}

// same reports whether a run belongs in c.
func (c *Cell) same(run *Run) bool {
	return c.Table == run.Table && c.Dims == run.Dims && c.Scenario == run.Scenario && c.Transport == run.Transport && c.Clients == run.Clients
}

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
	if run.Table == "" {
		run.Table = MainTable
	}
	run.Dims = run.Dims.withDefaults()
	run.Figures = Derive(&run)
	r.closed = false
	for _, c := range r.Cells {
		if c.same(&run) {
			c.Runs = append(c.Runs, run)
			return
		}
	}
	r.Cells = append(r.Cells, &Cell{Table: run.Table, Dims: run.Dims, Scenario: run.Scenario, Transport: run.Transport, Clients: run.Clients, Runs: []Run{run}})
}

// Close orders the cells as the matrix was given, merges histograms and
// computes every summary. Closing twice is harmless.
func (r *Report) Close(finished time.Time) error {
	if !finished.IsZero() {
		r.Finished = finished.UTC()
	}
	for _, c := range r.Cells {
		r.Table(c.Table) // every cell has a table before pointers to them are kept
	}
	slices.SortStableFunc(r.Cells, func(a, b *Cell) int {
		if d := r.tableIndex(a.Table) - r.tableIndex(b.Table); d != 0 {
			return d
		}
		t := r.Table(a.Table)
		if d := order(t.Scenarios, Scenarios, a.Scenario) - order(t.Scenarios, Scenarios, b.Scenario); d != 0 {
			return d
		}
		if d := order(t.Transports, Transports, a.Transport) - order(t.Transports, Transports, b.Transport); d != 0 {
			return d
		}
		for _, dim := range DimNames {
			if d := order(t.valuesOf(dim), nil, a.Dims.Get(dim)) - order(t.valuesOf(dim), nil, b.Dims.Get(dim)); d != 0 {
				return d
			}
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

// Cell returns the main table's cell for (scenario, transport, clients)
// with the default dimensions, or nil.
func (r *Report) Cell(scenario, transport string, clients int) *Cell {
	return r.CellOf(MainTable, DefaultDims, scenario, transport, clients)
}

// CellOf returns the cell of table for (dims, scenario, transport,
// clients), or nil.
func (r *Report) CellOf(table string, dims Dims, scenario, transport string, clients int) *Cell {
	run := Run{Table: table, Dims: dims.withDefaults(), Scenario: scenario, Transport: transport, Clients: clients}
	for _, c := range r.Cells {
		if c.same(&run) {
			return c
		}
	}
	return nil
}

// Section is one table of summary.md: the cells of one bench table in one
// scenario.
type Section struct {
	Table    *Table
	Scenario string
	Cells    []*Cell
	// Transport, when set, says the section holds only that transport's
	// cells (the findings' groups, byTransport).
	Transport string
}

// Slug names the section's files: "steady" for the main table (as before
// tables existed), else "<table>_<scenario>".
func (s Section) Slug() string {
	if s.Table.Name == MainTable {
		return s.Scenario
	}
	return s.Table.Name + "_" + s.Scenario
}

// Title is the section's heading.
func (s Section) Title() string {
	if s.Table.Name == MainTable {
		return s.Scenario
	}
	return s.Table.Title + ": " + s.Scenario
}

// Sections lists the sections that have cells, in report order (Close
// sorts the cells).
func (r *Report) Sections() []Section {
	var out []Section
	for _, c := range r.Cells {
		if n := len(out); n > 0 && out[n-1].Table.Name == c.Table && out[n-1].Scenario == c.Scenario {
			out[n-1].Cells = append(out[n-1].Cells, c)
			continue
		}
		out = append(out, Section{Table: r.Table(c.Table), Scenario: c.Scenario, Cells: []*Cell{c}})
	}
	return out
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

// Table returns the table named name. A results file from before tables
// existed, or a run of a table it does not describe, gets one made from
// the report's Config, so that every cell has a table to be shown in.
func (r *Report) Table(name string) *Table {
	for i := range r.Config.Tables {
		if r.Config.Tables[i].Name == name {
			return &r.Config.Tables[i]
		}
	}
	c := r.Config
	r.Config.Tables = append(r.Config.Tables, Table{Name: name, Title: name, Scenarios: c.Scenarios, Transports: c.Transports,
		Clients: c.Clients, Rate: c.Rate, Duration: c.Duration, Warmup: c.Warmup, Repeat: c.Repeat})
	return &r.Config.Tables[len(r.Config.Tables)-1]
}

func (r *Report) tableIndex(name string) int {
	return slices.IndexFunc(r.Config.Tables, func(t Table) bool { return t.Name == name })
}

// valuesOf lists the values of a dimension in the table's row order.
func (t *Table) valuesOf(dim string) []string { return t.DimValues[dim] }

// Varies reports whether the table shows dimension dim as a column.
func (t *Table) Varies(dim string) bool { return slices.Contains(t.Vary, dim) }

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
