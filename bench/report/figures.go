package report

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/pushbench/pushbench/loadgen/reach"
	"github.com/pushbench/pushbench/loadgen/result"
	"github.com/pushbench/pushbench/network"
)

// Num is a figure that may be missing. Missing is NaN in memory and null in
// JSON, because encoding/json refuses NaN and 0 would read as a measurement.
type Num float64

// NA is a missing figure.
var NA = Num(math.NaN())

// Valid reports whether n holds a measurement.
func (n Num) Valid() bool { return !math.IsNaN(float64(n)) && !math.IsInf(float64(n), 0) }

// MarshalJSON writes null for a missing figure.
func (n Num) MarshalJSON() ([]byte, error) {
	if !n.Valid() {
		return []byte("null"), nil
	}
	return json.Marshal(float64(n))
}

// UnmarshalJSON reads null as a missing figure.
func (n *Num) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = NA
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("figure: %w", err)
	}
	*n = Num(f)
	return nil
}

// Figures are the numbers one run contributes to the tables. Latencies are
// in milliseconds, memory in bytes.
type Figures struct {
	P50, P99, P999      Num // delivery latency: arrival minus the tick's scheduled ts
	FT50, FT99, FT999   Num // time from dial to first tick (storm)
	ConnectP99          Num
	MsgsPerSec          Num // ticks received per second, all clients
	Missing, Duplicates Num
	OutOfOrder, Wrong   Num
	Gaps, Reconnects    Num
	Failures            Num // failed connection attempts, every cause
	BytesPerTick        Num // wire bytes received per tick, as the client saw them
	ServerBytesPerTick  Num // bytes the server wrote per delivery, from /metrics
	// TLSBytesPerTick is TLS's own share of BytesPerTick (records,
	// handshakes): ciphertext minus plaintext received, per tick; missing
	// without TLS.
	TLSBytesPerTick   Num
	RSSPerConn        Num // (RSS at N clients − idle RSS) / N
	RSSGrowth         Num // RSS at the end of the window minus at its start
	CPUPer1k          Num // server CPU milliseconds per 1,000 deliveries
	CPUPer1kConns     Num // server CPU milliseconds per 1,000 connections (storm)
	GoroutinesPerConn Num // (goroutines at N − idle goroutines) / N
	// Reach: for each tick, the time from its scheduled ts until 50%, 99%
	// and 100% of the subscriptions owed it had it; the figure is the
	// median over the run's ticks that got there (ms). ReachNever* count
	// the ticks that never did, ReachTicks the ticks owed to anyone.
	Reach50, Reach99, Reach100                            Num
	ReachTicks, ReachNever50, ReachNever99, ReachNever100 Num
	// The side process (network proxy), when the run had one: its CPU
	// per 1,000 ticks the clients received, and its share of one core.
	SideCPUPer1k, SideCPUShare Num
	Saturated, Incorrect       bool
	SideSaturated              bool   `json:",omitempty"`
	Why                        string `json:",omitempty"` // what made the run incorrect

	// Network: the latency minus the network profile's one-way delay
	// (half its RTT), what the transport adds on top of the distance; the
	// same as P50 and P99 on loopback.
	P50OverOneWay, P99OverOneWay Num

	// The answer workload's (answer.go), missing for the feed.
	AnswerFigures

	// Implementations (the impls table): the share of the ticks owed
	// that arrived (once), in percent; and whether CPUPer1k counts the
	// deliveries the clients received because the server's implementation
	// cannot count its own (pushbench_deliveries_total stayed 0).
	// StalledDropped is the share of the stalled clients (slow scenario)
	// the server had dropped by the end of the run, in percent.
	Delivered, StalledDropped Num
	CPUPer1kFromClients       bool `json:",omitempty"`
}

// MinCPUSeconds is the least server CPU time a window must show for CPU
// per delivery to be reported: five of /proc's 10 ms ticks, so that the
// rounding of each reading is under 20%.
const MinCPUSeconds = 0.05

// Derive computes a run's figures from what the load generators reported
// and what bench sampled on the server. A failed run has none.
func Derive(run *Run) Figures {
	f := Figures{}
	for _, p := range f.nums() {
		*p = NA
	}
	if !run.OK() {
		return f
	}
	res, srv := run.Result, run.Server
	f.P50, f.P99, f.P999 = Num(res.Latency.P50), Num(res.Latency.P99), Num(res.Latency.P999)
	if res.Latency.Count == 0 {
		f.P50, f.P99, f.P999 = NA, NA, NA
	}
	f.FT50, f.FT99, f.FT999 = Num(res.FirstTick.P50), Num(res.FirstTick.P99), Num(res.FirstTick.P999)
	if res.FirstTick.Count == 0 {
		f.FT50, f.FT99, f.FT999 = NA, NA, NA
	}
	if res.Connect.Count > 0 {
		f.ConnectP99 = Num(res.Connect.P99)
	}
	f.MsgsPerSec = Num(res.MsgsPerSec)
	c := res.Counts
	f.Missing, f.Duplicates = Num(c.Missing), Num(c.Duplicates)
	f.OutOfOrder, f.Wrong = Num(c.OutOfOrder), Num(c.WrongSymbol+c.WrongContent)
	f.Gaps, f.Reconnects = Num(c.Gaps), Num(c.Reconnects)
	var failures int64
	for _, v := range res.Failures {
		failures += v
	}
	f.Failures = Num(failures)
	if res.Bytes.PerTick > 0 {
		f.BytesPerTick = Num(res.Bytes.PerTick)
		if res.Bytes.PlainReceived > 0 {
			f.TLSBytesPerTick = Num(res.Bytes.TLSOverheadPerTick)
		}
	}
	if srv.Deliveries > 0 {
		f.ServerBytesPerTick = Num(srv.BytesWritten / srv.Deliveries)
	}
	// Per connection: divide by the clients that were connected, not the
	// ones asked for, so that refused clients do not flatter the figure.
	n := float64(run.Clients)
	if res.Connected > 0 && res.Connected < int64(run.Clients) {
		n = float64(res.Connected)
	}
	if srv.RSSBytes > 0 && srv.IdleRSSBytes > 0 && n > 0 {
		f.RSSPerConn = Num(float64(srv.RSSBytes-srv.IdleRSSBytes) / n)
	}
	if srv.Samples >= 2 {
		f.RSSGrowth = Num(srv.RSSGrowthBytes)
	}
	if srv.Goroutines > 0 && n > 0 {
		f.GoroutinesPerConn = Num((srv.Goroutines - srv.IdleGoroutines) / n)
	}
	// /proc counts CPU in 10 ms ticks: below MinCPUSeconds the figure
	// would be mostly rounding, so it is left out rather than shown as 0.
	if srv.Deliveries > 0 && srv.CPUSeconds >= MinCPUSeconds && srv.WindowSeconds > 0 {
		f.CPUPer1k = Num(srv.CPUSeconds * 1000 / srv.Deliveries * 1000)
	}
	if conns := res.Connect.Count; run.Scenario == Storm && conns > 0 && srv.CPUSeconds >= MinCPUSeconds {
		f.CPUPer1kConns = Num(srv.CPUSeconds * 1000 / float64(conns) * 1000)
	}
	if rc := res.Reach; rc != nil && rc.Ticks > 0 {
		f.ReachTicks = Num(rc.Ticks)
		f.ReachNever50, f.ReachNever99, f.ReachNever100 = Num(rc.R50.Never), Num(rc.R99.Never), Num(rc.R100.Never)
		for _, x := range []struct {
			dst *Num
			d   reach.Dist
		}{{&f.Reach50, rc.R50}, {&f.Reach99, rc.R99}, {&f.Reach100, rc.R100}} {
			if x.d.Reached > 0 {
				*x.dst = Num(x.d.P50)
			}
		}
	}
	f.Saturated = res.Self.Saturated
	if sd := run.Side; sd != nil && sd.WindowSeconds > 0 {
		f.SideSaturated = sd.Saturated
		if sd.CPUSeconds >= MinCPUSeconds {
			f.SideCPUShare = Num(sd.CPUSeconds / sd.WindowSeconds)
			if res.MsgsPerSec > 0 {
				// The clients' delivery rate over the measured time, applied
				// to the window the proxy was sampled over.
				f.SideCPUPer1k = Num(sd.CPUSeconds * 1000 / (res.MsgsPerSec * sd.WindowSeconds) * 1000)
			}
		}
	}
	if prof, err := network.Parse(run.Dims.Network); err == nil && res.Latency.Count > 0 {
		ow := float64(prof.OneWay()) / float64(time.Millisecond)
		f.P50OverOneWay, f.P99OverOneWay = f.P50-Num(ow), f.P99-Num(ow)
	}

	// Implementations: delivered share, and CPU per delivery from the
	// clients' count where the server's library hides its writes.
	if c.Expected > 0 {
		f.Delivered = Num(100 * float64(c.Received-c.Duplicates) / float64(c.Expected))
	}
	if sl := res.Slow; sl.Stalled > 0 {
		f.StalledDropped = Num(100 * float64(sl.Dropped) / float64(sl.Stalled))
	}
	if srv.Deliveries == 0 && res.MsgsPerSec > 0 && srv.CPUSeconds >= MinCPUSeconds && srv.WindowSeconds > 0 {
		f.CPUPer1k = Num(srv.CPUSeconds * 1000 / (res.MsgsPerSec * srv.WindowSeconds) * 1000)
		f.CPUPer1kFromClients = true
	}

	why := c.Faults()
	if a := res.Answer; a != nil {
		// Its Counts mirror these; the answer's own words say it better.
		f.deriveAnswer(run)
		why = a.Faults()
	}
	f.Incorrect = len(why) > 0
	f.Why = strings.Join(why, ", ")
	return f
}

// nums lists pointers to every numeric figure, so that Derive can mark them
// all missing before filling in what it can.
func (f *Figures) nums() []*Num {
	return []*Num{&f.P50, &f.P99, &f.P999, &f.FT50, &f.FT99, &f.FT999, &f.ConnectP99, &f.MsgsPerSec,
		&f.Missing, &f.Duplicates, &f.OutOfOrder, &f.Wrong, &f.Gaps, &f.Reconnects, &f.Failures,
		&f.BytesPerTick, &f.ServerBytesPerTick, &f.TLSBytesPerTick, &f.RSSPerConn, &f.RSSGrowth, &f.CPUPer1k, &f.CPUPer1kConns, &f.GoroutinesPerConn,
		&f.Reach50, &f.Reach99, &f.Reach100, &f.ReachTicks, &f.ReachNever50, &f.ReachNever99, &f.ReachNever100,
		&f.SideCPUPer1k, &f.SideCPUShare, &f.P50OverOneWay, &f.P99OverOneWay, &f.Delivered, &f.StalledDropped,
		&f.TTFT50, &f.TTFT99, &f.ToServer99, &f.ITL99, &f.E2E99, &f.BytesPerChunk, &f.CPUPer1kChunks, &f.RSSPerAnswer}
}

// Metric describes one figure for the tables, the charts, the benchmark
// format and the generated prose, so that all four agree on names and units.
type Metric struct {
	Key     string  // key in Summary.Stats
	Header  string  // table column
	Name    string  // in prose: "p99 latency"
	Unit    string  // in prose, after the displayed value
	Div     float64 // displayed value = figure / Div
	Prec    int     // decimals displayed
	Bench   string  // unit in Go benchmark format; "" to leave it out
	BenchX  float64 // benchmark value = figure * BenchX
	Lower   bool    // lower is better
	Get     func(*Figures) Num
	summary bool // used in the narrative
}

// duration completes a metric whose figure is a duration, held in
// milliseconds: shown in ms, written to the benchmark format in ns (as Go
// benchmarks do), lower being better.
func (m Metric) duration() Metric {
	m.Unit, m.BenchX, m.Lower = "ms", 1e6, true
	return m
}

// Display converts a figure to the displayed unit.
func (m Metric) Display(v float64) float64 {
	if m.Div == 0 {
		return v
	}
	return v / m.Div
}

// Format writes v in the displayed unit with the metric's precision, with a
// thousands grouping for large values so that columns stay readable.
func (m Metric) Format(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	d := m.Display(v)
	prec := m.Prec
	// Keep two significant digits for small values instead of printing 0.00.
	for prec < 4 && d != 0 && math.Abs(d) < math.Pow(10, float64(-prec)) {
		prec++
	}
	return fmt.Sprintf("%.*f", prec, d)
}

// The metrics, in column order.
var (
	MetricP50 = Metric{Key: "p50_ms", Header: "p50 ms", Name: "median latency", Prec: 2,
		Bench: "p50-ns", Get: func(f *Figures) Num { return f.P50 }}.duration()
	MetricP99 = Metric{Key: "p99_ms", Header: "p99 ms", Name: "p99 latency", Prec: 2,
		Bench: "p99-ns", Get: func(f *Figures) Num { return f.P99 }, summary: true}.duration()
	MetricP999 = Metric{Key: "p999_ms", Header: "p99.9 ms", Name: "p99.9 latency", Prec: 2,
		Bench: "p99.9-ns", Get: func(f *Figures) Num { return f.P999 }}.duration()
	MetricFT50 = Metric{Key: "first_tick_p50_ms", Header: "1st tick p50 ms", Name: "median time to first tick", Prec: 1,
		Bench: "first-tick-p50-ns", Get: func(f *Figures) Num { return f.FT50 }}.duration()
	MetricFT99 = Metric{Key: "first_tick_p99_ms", Header: "1st tick p99 ms", Name: "p99 time to first tick", Prec: 1,
		Bench: "first-tick-p99-ns", Get: func(f *Figures) Num { return f.FT99 }, summary: true}.duration()
	MetricFT999 = Metric{Key: "first_tick_p999_ms", Header: "1st tick p99.9 ms", Name: "p99.9 time to first tick", Prec: 1,
		Bench: "first-tick-p99.9-ns", Get: func(f *Figures) Num { return f.FT999 }}.duration()
	MetricConnect = Metric{Key: "connect_p99_ms", Header: "connect p99 ms", Name: "p99 connect time", Prec: 1,
		Bench: "connect-p99-ns", Get: func(f *Figures) Num { return f.ConnectP99 }}.duration()
	MetricMsgs = Metric{Key: "msgs_per_sec", Header: "msgs/s", Name: "delivered messages per second", Unit: "msgs/s", Prec: 0,
		Bench: "msgs/s", BenchX: 1, Lower: false, Get: func(f *Figures) Num { return f.MsgsPerSec }}
	MetricBytes = Metric{Key: "bytes_per_tick", Header: "B/tick", Name: "wire bytes per delivered tick", Unit: "B", Prec: 0,
		Bench: "B/tick", BenchX: 1, Lower: true, Get: func(f *Figures) Num { return f.BytesPerTick }, summary: true}
	MetricTLSBytes = Metric{Key: "tls_bytes_per_tick", Header: "TLS B/tick", Name: "TLS bytes per delivered tick (records and handshakes)", Unit: "B", Prec: 0,
		Bench: "tls-B/tick", BenchX: 1, Lower: true, Get: func(f *Figures) Num { return f.TLSBytesPerTick }}
	MetricRSS = Metric{Key: "rss_per_conn_bytes", Header: "RSS KiB/conn", Name: "server memory per connection", Unit: "KiB", Div: 1024, Prec: 1,
		Bench: "rss-B/conn", BenchX: 1, Lower: true, Get: func(f *Figures) Num { return f.RSSPerConn }, summary: true}
	MetricCPU = Metric{Key: "cpu_ms_per_1k", Header: "CPU ms/1k", Name: "server CPU per 1,000 deliveries", Unit: "ms", Prec: 2,
		Bench: "cpu-ns/delivery", BenchX: 1000, Lower: true, Get: func(f *Figures) Num { return f.CPUPer1k }, summary: true}
	MetricCPUConns = Metric{Key: "cpu_ms_per_1k_conns", Header: "CPU ms/1k conns", Name: "server CPU per 1,000 connections", Unit: "ms", Prec: 1,
		Bench: "cpu-ns/conn", BenchX: 1000, Lower: true, Get: func(f *Figures) Num { return f.CPUPer1kConns }, summary: true}
	MetricGoroutines = Metric{Key: "goroutines_per_conn", Header: "gor/conn", Name: "server goroutines per connection", Unit: "", Prec: 2,
		Bench: "goroutines/conn", BenchX: 1, Lower: true, Get: func(f *Figures) Num { return f.GoroutinesPerConn }}
	MetricGrowth = Metric{Key: "rss_growth_bytes", Header: "RSS growth MiB", Name: "server memory growth during the run", Unit: "MiB", Div: 1 << 20, Prec: 1,
		Bench: "rss-growth-B", BenchX: 1, Lower: true, Get: func(f *Figures) Num { return f.RSSGrowth }}
	MetricReconnects = Metric{Key: "reconnects", Header: "reconnects", Name: "reconnects", Unit: "", Prec: 0,
		Bench: "reconnects", BenchX: 1, Lower: false, Get: func(f *Figures) Num { return f.Reconnects }}
	MetricFailures = Metric{Key: "conn_failures", Header: "conn fail", Name: "failed connections", Unit: "", Prec: 0,
		Bench: "conn-failures", BenchX: 1, Lower: true, Get: func(f *Figures) Num { return f.Failures }}
	MetricReach50 = Metric{Key: "reach50_ms", Header: "reach p50 ms", Name: "median time to reach 50% of the subscriptions", Prec: 2,
		Bench: "reach50-ns", Get: func(f *Figures) Num { return f.Reach50 }}.duration()
	MetricReach99 = Metric{Key: "reach99_ms", Header: "reach p99 ms", Name: "median time to reach 99% of the subscriptions", Prec: 2,
		Bench: "reach99-ns", Get: func(f *Figures) Num { return f.Reach99 }}.duration()
	MetricReach100 = Metric{Key: "reach100_ms", Header: "reach p100 ms", Name: "median time to reach every subscription", Prec: 2,
		Bench: "reach100-ns", Get: func(f *Figures) Num { return f.Reach100 }}.duration()
	MetricSideCPU = Metric{Key: "proxy_cpu_ms_per_1k", Header: "proxy CPU ms/1k", Name: "proxy CPU per 1,000 delivered ticks", Unit: "ms", Prec: 2,
		Bench: "proxy-cpu-ns/tick", BenchX: 1000, Lower: true, Get: func(f *Figures) Num { return f.SideCPUPer1k }}
	MetricSideShare = Metric{Key: "proxy_cpu_share", Header: "proxy core %", Name: "proxy's share of its core", Unit: "%", Div: 0.01, Prec: 0,
		Bench: "proxy-core-share", BenchX: 1, Lower: true, Get: func(f *Figures) Num { return f.SideCPUShare }}
	// Network figures (the networks table).
	MetricP50OverOneWay = Metric{Key: "p50_over_one_way_ms", Header: "p50 − one-way ms", Name: "median latency minus the one-way delay", Prec: 2,
		Bench: "p50-over-one-way-ns", Get: func(f *Figures) Num { return f.P50OverOneWay }}.duration()
	MetricP99OverOneWay = Metric{Key: "p99_over_one_way_ms", Header: "p99 − one-way ms", Name: "p99 latency minus the one-way delay", Prec: 2,
		Bench: "p99-over-one-way-ns", Get: func(f *Figures) Num { return f.P99OverOneWay }}.duration()

	MetricMissing    = Metric{Key: "missing", Bench: "missing", BenchX: 1, Lower: true, Get: func(f *Figures) Num { return f.Missing }}
	MetricDuplicates = Metric{Key: "duplicates", Bench: "duplicates", BenchX: 1, Lower: true, Get: func(f *Figures) Num { return f.Duplicates }}
	MetricGaps       = Metric{Key: "gaps", Bench: "gaps", BenchX: 1, Lower: true, Get: func(f *Figures) Num { return f.Gaps }}
	MetricServerB    = Metric{Key: "server_bytes_per_tick", Bench: "server-B/tick", BenchX: 1, Lower: true, Get: func(f *Figures) Num { return f.ServerBytesPerTick }}
)

// MetricDelivered is the impls table's share of owed ticks delivered.
var MetricDelivered = Metric{Key: "delivered_pct", Header: "delivered %", Name: "share of owed ticks delivered", Unit: "%",
	Prec: 1, Bench: "delivered-%", BenchX: 1, Get: func(f *Figures) Num { return f.Delivered }}

// MetricStalledDropped is the share of stalled clients the server dropped.
var MetricStalledDropped = Metric{Key: "stalled_dropped_pct", Header: "stalled dropped %", Name: "share of stalled clients dropped by the server",
	Unit: "%", Prec: 0, Get: func(f *Figures) Num { return f.StalledDropped }}

// AllMetrics lists every metric that is summarised.
var AllMetrics = []Metric{MetricP50, MetricP99, MetricP999, MetricReach50, MetricReach99, MetricReach100, MetricFT50, MetricFT99, MetricFT999, MetricConnect,
	MetricMsgs, MetricBytes, MetricTLSBytes, MetricServerB, MetricRSS, MetricCPU, MetricCPUConns, MetricGoroutines, MetricGrowth, MetricReconnects,
	MetricFailures, MetricMissing, MetricDuplicates, MetricGaps, MetricSideCPU, MetricSideShare,
	MetricP50OverOneWay, MetricP99OverOneWay, MetricDelivered, MetricStalledDropped,
	MetricTTFT50, MetricTTFT99, MetricToServer99, MetricITL99, MetricE2E99, MetricBytesChunk, MetricCPUChunks, MetricRSSAnswer}

// Columns lists the metric columns of a scenario's table. The delivery
// correctness column (missing/dup/gap) and the notes are added by the table.
func Columns(scenario string) []Metric {
	switch scenario {
	case Storm:
		return []Metric{MetricConnect, MetricFT50, MetricFT99, MetricFT999, MetricFailures, MetricCPUConns}
	case Slow:
		return []Metric{MetricP50, MetricP99, MetricP999, MetricReach99, MetricMsgs, MetricBytes, MetricRSS, MetricGrowth, MetricCPU, MetricGoroutines}
	case Churn:
		return []Metric{MetricP50, MetricP99, MetricP999, MetricReach99, MetricMsgs, MetricReconnects, MetricBytes, MetricRSS, MetricCPU, MetricGoroutines}
	default:
		return []Metric{MetricP50, MetricP99, MetricP999, MetricReach99, MetricMsgs, MetricBytes, MetricRSS, MetricCPU, MetricGoroutines}
	}
}

// LatencyMetric is the tail-latency figure a scenario is judged by.
func LatencyMetric(scenario string) Metric {
	if scenario == Storm {
		return MetricFT99
	}
	return MetricP99
}

// Stat is a figure over the repeats of a cell: the median, and the min and
// max so that the spread is visible next to it.
type Stat struct {
	Median Num `json:"median"`
	Min    Num `json:"min"`
	Max    Num `json:"max"`
	N      int `json:"n"` // repeats that had this figure
}

// NewStat summarises values, skipping missing ones.
func NewStat(values []Num) Stat {
	var v []float64
	for _, x := range values {
		if x.Valid() {
			v = append(v, float64(x))
		}
	}
	if len(v) == 0 {
		return Stat{Median: NA, Min: NA, Max: NA}
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Stat{Median: Num(med), Min: Num(v[0]), Max: Num(v[len(v)-1]), N: len(v)}
}

// Summary is a cell's figures over its repeats and what is wrong with it.
type Summary struct {
	Runs      int             `json:"runs"`
	OK        int             `json:"ok"`
	Stats     map[string]Stat `json:"stats"`
	Saturated int             `json:"saturated,omitempty"` // repeats where the load generator saturated
	// SideSaturated counts repeats where the side process (proxy) saturated.
	SideSaturated int      `json:"side_saturated,omitempty"`
	Incorrect     int      `json:"incorrect,omitempty"` // repeats with missing/duplicate/out-of-order/wrong ticks
	Crashed       int      `json:"crashed,omitempty"`   // repeats where the server crashed
	Failed        int      `json:"failed,omitempty"`    // repeats with no result, crashes included
	Notes         []string `json:"notes,omitempty"`     // one line each, for the notes column and the prose
	// Partial says why not every client connected in some repeat (its
	// note); empty when they all did.
	Partial string `json:"partial,omitempty"`
}

// Stat returns the summary of m, missing if absent.
func (s *Summary) Stat(m Metric) Stat {
	if st, ok := s.Stats[m.Key]; ok {
		return st
	}
	return Stat{Median: NA, Min: NA, Max: NA}
}

// Summarize computes a cell's summary from its runs.
func Summarize(scenario string, runs []Run) Summary {
	s := Summary{Runs: len(runs), Stats: map[string]Stat{}}
	var ok []*Run
	for i := range runs {
		r := &runs[i]
		switch {
		case r.Crashed:
			s.Crashed++
			s.Failed++
		case !r.OK():
			s.Failed++
		default:
			ok = append(ok, r)
			if r.Figures.Saturated {
				s.Saturated++
			}
			if r.Figures.SideSaturated {
				s.SideSaturated++
			}
			if r.Figures.Incorrect {
				s.Incorrect++
			}
		}
	}
	s.OK = len(ok)
	for _, m := range AllMetrics {
		vals := make([]Num, 0, len(ok))
		for _, r := range ok {
			vals = append(vals, m.Get(&r.Figures))
		}
		s.Stats[m.Key] = NewStat(vals)
	}
	if s.Crashed > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("SERVER CRASHED in %d/%d runs: %s", s.Crashed, s.Runs, firstError(runs, true)))
	}
	if n := s.Failed - s.Crashed; n > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("FAILED %d/%d runs: %s", n, s.Runs, firstError(runs, false)))
	}
	if s.Incorrect > 0 {
		why := ""
		for _, r := range ok {
			if r.Figures.Incorrect {
				why = r.Figures.Why
				break
			}
		}
		s.Notes = append(s.Notes, fmt.Sprintf("INCORRECT in %d/%d runs (%s)", s.Incorrect, s.OK, why))
	}
	if s.Saturated > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("LOADGEN SATURATED in %d/%d runs", s.Saturated, s.OK))
	}
	if s.SideSaturated > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("PROXY SATURATED in %d/%d runs (over %.0f%% of its core)", s.SideSaturated, s.OK, SideSaturation*100))
	}
	for _, r := range ok {
		if len(r.Warnings) > 0 {
			s.Notes = append(s.Notes, "warning: "+r.Warnings[0])
			break
		}
	}
	for _, r := range ok {
		// Churning clients are between connections at any moment, and a
		// storm's connections come and go: "connected at the end" only
		// means something for steady and slow.
		// Only failed connections make a cell PARTIAL: a client that the
		// server dropped (a slow consumer) and that is reconnecting at the
		// end is counted by the correctness figures instead.
		if r.Result.Connected < int64(r.Clients) && r.Figures.Failures > 0 && scenario != Churn && scenario != Storm {
			s.Partial = fmt.Sprintf("only %d/%d clients connected (%s)", r.Result.Connected, r.Clients, failureText(r.Result.Failures))
			s.Notes = append(s.Notes, s.Partial)
			break
		}
	}
	if n := reachNote(ok); n != "" {
		s.Notes = append(s.Notes, n)
	}
	if g := s.Stat(MetricGaps); scenario != Slow && g.Max.Valid() && g.Max > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("gaps signalled (max %.0f)", float64(g.Max)))
	}
	return s
}

// reachNote says how many ticks never reached 99% of their subscriptions,
// in the repeat with the most: the reach columns are medians over the ticks
// that did, so those ticks must be told apart, not left out silently.
func reachNote(runs []*Run) string {
	var worst *Run
	for _, r := range runs {
		if n := r.Figures.ReachNever99; n.Valid() && n > 0 && (worst == nil || n > worst.Figures.ReachNever99) {
			worst = r
		}
	}
	if worst == nil {
		return ""
	}
	f := worst.Figures
	return fmt.Sprintf("reach: %.0f of %.0f ticks never reached 99%% of their subscriptions (%.0f not even 50%%) in repeat %d",
		float64(f.ReachNever99), float64(f.ReachTicks), float64(f.ReachNever50), worst.Repeat)
}

func firstError(runs []Run, crashed bool) string {
	for _, r := range runs {
		if r.Error != "" && r.Crashed == crashed {
			return r.Error
		}
	}
	return ""
}

// failureText writes failure causes in a stable order.
func failureText(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "no failure reported"
	}
	return strings.Join(parts, ", ")
}

// MergeRuns merges the histograms of a cell's successful repeats exactly
// (HDR merge, same bounds everywhere) and sums their counts. It returns nil
// when no repeat succeeded.
func MergeRuns(runs []Run) (*Merged, error) {
	hs := result.NewHists()
	m := &Merged{}
	for i := range runs {
		r := &runs[i]
		if !r.OK() {
			continue
		}
		m.Runs++
		if err := hs.AddDists(&r.Result.Dists); err != nil {
			return nil, fmt.Errorf("repeat %d: %w", r.Repeat, err)
		}
		m.Counts.Add(r.Result.Counts)
		m.Failures = result.AddFailures(m.Failures, r.Result.Failures)
	}
	if m.Runs == 0 {
		return nil, nil
	}
	var err error
	if m.Dists, err = hs.Dists(); err != nil {
		return nil, err
	}
	return m, nil
}
