package runner

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pushbench/pushbench/bench/matrix"
	"github.com/pushbench/pushbench/bench/report"
	"github.com/pushbench/pushbench/loadgen"
)

// Spec is one run: a cell of one table and which repeat.
type Spec struct {
	Table     string // matrix.Table.Name
	Scenario  string
	Transport string // sse, ws, poll, shortpoll
	Dims      report.Dims
	Clients   int
	Repeat    int // 1-based
}

func (s Spec) String() string {
	return fmt.Sprintf("%s%s %s%s %d clients (repeat %d)", s.tablePrefix(" "), s.Scenario, s.Transport, s.dimsText(" "), s.Clients, s.Repeat)
}

// Slug names the run's files.
func (s Spec) Slug() string {
	return fmt.Sprintf("%s%s_%s%s_%d_r%d", s.tablePrefix("_"), s.Scenario, s.Transport, s.dimsText("_"), s.Clients, s.Repeat)
}

func (s Spec) tablePrefix(sep string) string {
	if s.Table == "" || s.Table == report.MainTable {
		return ""
	}
	return s.Table + sep
}

// dimsText lists the dimension values that are not the defaults.
func (s Spec) dimsText(sep string) string {
	var b strings.Builder
	for _, d := range report.DimNames {
		if v := s.Dims.Get(d); v != "" && v != report.DefaultDims.Get(d) {
			b.WriteString(sep)
			b.WriteString(strings.NewReplacer("/", "-", ",", "-", "=", "-", " ", "-").Replace(v))
		}
	}
	return b.String()
}

// ServerTransport is what bin/server serves for a bench transport: short
// polling is a client behaviour against the long-polling endpoint (timeout=0),
// so both poll rows measure the same server and feed.
func ServerTransport(transport string) string {
	if transport == "shortpoll" {
		return "poll"
	}
	return transport
}

// Applies reports whether a transport takes part in a scenario. Short
// polling runs in steady only: stalls, churn and storms are about held
// connections, and a short poller holds none between its requests (every
// poll is already a new request, which steady measures).
func Applies(scenario, transport string) bool {
	return transport != "shortpoll" || scenario == report.Steady
}

// Ramp is how long the load generators take to connect n clients: about
// 5,000 per second on loopback, well inside somaxconn (4096) and the SYN
// backlog (2048) per batch, at least 200 ms so small runs still spread.
// The storm scenario has no ramp: its connection rate is the point.
func Ramp(scenario string, n int) time.Duration {
	if scenario == report.Storm {
		return 0
	}
	return max(200*time.Millisecond, time.Duration(n)*200*time.Microsecond)
}

// Drain bounds how long a load generator waits at the end for ticks
// scheduled before the end; it returns as soon as every subscription has
// them, so only a run that is behind pays for it. It must outlast the
// latency of a saturated run (seconds at p99.9), or ticks still in flight
// would be counted as lost.
const Drain = 3 * time.Second

// SlowDrain is the drain of the slow scenario (see loadgenArgs).
const SlowDrain = time.Second

// StormMinRate is the lowest feed rate of the storm scenario. Time to first
// tick includes waiting for the next tick to be published; at 1,000 ticks/s
// that wait is at most 1 ms, so the figure measures connection set-up.
const StormMinRate = 1000.0

// feedRate is the server's -rate for a run.
func (c *Config) feedRate(s Spec) float64 {
	rate := c.table(s).Rate
	if s.Scenario == report.Storm {
		return max(rate, StormMinRate)
	}
	return rate
}

// pollInterval is the shortpoll interval in force: bench's, else the
// load generator's default.
func (c *Config) pollInterval() time.Duration {
	if c.PollInterval > 0 {
		return c.PollInterval
	}
	return loadgen.DefaultInterval
}

// ShortpollIntervals is how many poll intervals a shortpoll run measures
// at least: with fewer, each poller asks once or twice, and the first poll
// only fixes its cursor.
const ShortpollIntervals = 3

// warmup is the unmeasured time after the ramp: none in a storm, which
// measures connecting itself; at least one interval for short polling, so
// that the cursor-fixing first poll falls inside it.
func (c *Config) warmup(s Spec) time.Duration {
	t := c.table(s)
	switch {
	case s.Scenario == report.Storm:
		return 0
	case s.Transport == "shortpoll":
		return max(t.Warmup, c.pollInterval())
	}
	return t.Warmup
}

// duration is the measured time of a run.
func (c *Config) duration(s Spec) time.Duration {
	d := c.table(s).Duration
	if s.Transport == "shortpoll" {
		return max(d, ShortpollIntervals*c.pollInterval())
	}
	return d
}

// serverArgs are bin/server's flags for a run: the run's own, then what
// its dimension values add, then the extra flags bench was given.
func (c *Config) serverArgs(s Spec, addr string, setup matrix.Setup) []string {
	args := []string{
		"-transport", ServerTransport(s.Transport),
		"-addr", addr,
		"-seed", strconv.FormatUint(c.Seed, 10),
		"-symbols", strconv.Itoa(c.Symbols),
		"-rate", strconv.FormatFloat(c.feedRate(s), 'g', -1, 64),
		"-log", "warn",
	}
	args = append(args, setup.Server...)
	return append(args, c.ServerArgs...)
}

// loadgenArgs are bin/loadgen's flags for one of the run's load-generator
// processes, holding n of its clients.
func (c *Config) loadgenArgs(s Spec, url string, n int, out string, setup matrix.Setup) []string {
	mode := s.Transport
	if s.Scenario == report.Storm {
		mode = "storm-" + s.Transport
	}
	dur, warm := c.duration(s), c.warmup(s)
	args := []string{
		"-transport", mode,
		"-url", url,
		"-clients", strconv.Itoa(n),
		"-duration", dur.String(),
		"-out", out,
		"-seed", strconv.FormatUint(c.Seed, 10),
		"-feed-symbols", strconv.Itoa(c.Symbols),
	}
	if warm > 0 {
		args = append(args, "-warmup", warm.String())
	}
	if s.Scenario != report.Storm {
		args = append(args, "-ramp", Ramp(s.Scenario, s.Clients).String())
	}
	drain := Drain
	if s.Scenario == report.Slow {
		// Stalled clients are behind by design and would hold every slow
		// run for the whole drain; the others catch up within a second.
		drain = SlowDrain
	}
	if s.Transport == "shortpoll" {
		// A short poller sees a tick only at its next poll: the drain must
		// outlast one interval or in-flight ticks count as missing.
		drain += c.pollInterval()
	}
	args = append(args, "-drain", drain.String())
	if c.ClientSymbols != "" {
		args = append(args, "-symbols", c.ClientSymbols)
	}
	if s.Transport == "shortpoll" && c.PollInterval > 0 {
		args = append(args, "-interval", c.PollInterval.String())
	}
	switch s.Scenario {
	case report.Slow:
		args = append(args, "-slow", strconv.FormatFloat(c.SlowShare, 'g', -1, 64))
	case report.Churn:
		args = append(args, "-churn", strconv.FormatFloat(c.ChurnShare, 'g', -1, 64))
	case report.Storm:
		// s.Clients new connections per second, at most s.Clients open
		// (each process its share of both).
		rate := float64(n)
		args = append(args, "-rate", strconv.FormatFloat(rate, 'g', -1, 64))
	}
	args = append(args, "-quiet")
	args = append(args, setup.Loadgen...)
	return append(args, c.LoadgenArgs...)
}
