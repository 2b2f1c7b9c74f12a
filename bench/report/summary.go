package report

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// NewSummaryReporter writes summary.md: the conditions of the run, the
// generated findings, how to read the tables, then per scenario its table,
// notes and charts (files already written next to summary.md).
func NewSummaryReporter(r *Report, charts []Chart) Reporter {
	return func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		p := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }
		p("# pushbench results\n\n")
		p("%s\n\n", mdEscape(Conditions(r)))
		p("## What these numbers say\n\n")
		for _, f := range Findings(r) {
			p("- %s\n", f)
		}
		p("\n## How to read the tables\n\n%s\n", howToRead)
		lastTable := ""
		for _, sec := range r.Sections() {
			if t := sec.Table; t.Name != lastTable {
				lastTable = t.Name
				p("\n# %s\n", t.Title)
				if t.About != "" {
					p("\n%s\n", t.About)
				}
			}
			p("\n## %s\n\n%s\n\n%s\n\n", sec.Title(), ScenarioBlurb(sec.Scenario, r.Config), mdEscape(Caption(sec.Table)))
			if err := bw.Flush(); err != nil {
				return fmt.Errorf("write summary: %w", err)
			}
			if err := NewTableReporter(r, sec, Markdown)(w); err != nil {
				return err
			}
			first := true
			for _, c := range charts {
				if c.Section != sec.Slug() {
					continue
				}
				if first {
					p("\n")
					first = false
				}
				p("![%s](%s)\n", c.Title, c.File)
			}
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("write summary: %w", err)
		}
		return nil
	}
}

const howToRead = `- Every figure is the **median of the repeats**, with (min–max) when they differ. Differences inside that spread are noise.
- **Latency** is arrival time minus the tick's *scheduled* publish time (same clock), so a server or client that falls behind shows up as latency; p50/p99/p99.9 come from HDR histograms.
- **reach p99 ms**: for each tick, the time from its scheduled publish time until 99% of the subscriptions owed it (subscribed by then, to its symbol; stalled clients not counted) had received it: how long a price takes to reach (nearly) everyone. The column is the median of that over the run's ticks, from the end of the warm-up to the end of the run. The reach charts add 50% and 100% (every owed subscription). 100% is exact; 50% and 99% are at most 1.6% high, never low, merged exactly across load-generator processes. A tick that never reached 99% (lost, gapped or stalled for more than 1% of its subscriptions) is not in the median but counted in a note.
- **msgs/s**: ticks received per second by all clients together; the feed rate and each client's subscription fix what it should be.
- **miss/dup/gap**: totals over all repeats of ticks silently lost, ticks received twice, and explicit gap signals (a client fell behind the server's history). Any loss or duplicate flags the cell INCORRECT.
- **B/tick**: bytes received on the wire per tick, HTTP headers and framing included (polling pays its headers per response).
- **RSS KiB/conn** = (server RSS with N clients − idle RSS) / N; **gor/conn** likewise for goroutines; **CPU ms/1k** = server CPU time per 1,000 ticks delivered. Sampled from /proc and /metrics over the measuring window. At small N these include fixed costs (buffer pools, GC headroom) spread over few connections, so they overstate; read them at the largest N.
- **–**: no value: the run failed, or the figure does not apply, or it is below what can be measured (server CPU under 50 ms in the window, /proc counts in 10 ms ticks).
- **flags**: SATURATED = a load generator ran out of CPU, so its latency includes its own queueing and the server may look slower than it is; INCORRECT = lost, duplicated, out-of-order or wrong ticks; CRASHED = the server process died during the run; FAILED = no result (see the note); PARTIAL = not every client connected.
- shortpoll is plain polling on a fixed interval (timeout=0) against the same poll server, shown beside long polling (poll).`

// Conditions is one paragraph: when, where and what was run, and how the
// CPUs were shared. Every result must be read with it.
func Conditions(r *Report) string {
	e, c := r.Env, r.Config
	var b strings.Builder
	if r.Interrupted {
		b.WriteString("INTERRUPTED: the matrix is incomplete. ")
	}
	fmt.Fprintf(&b, "Run %s UTC", r.Started.UTC().Format("2006-01-02 15:04:05"))
	if !r.Finished.IsZero() {
		fmt.Fprintf(&b, ", took %s", r.Finished.Sub(r.Started).Round(time.Second))
	}
	if e.GitCommit != "" {
		fmt.Fprintf(&b, ", commit %s", short(e.GitCommit))
		if e.GitDirty {
			b.WriteString(" (uncommitted changes)")
		}
	}
	fmt.Fprintf(&b, ". Machine: %s, %d cores, Linux %s, %s, open-files limit %d. %s ",
		orUnknown(e.CPUModel), e.Cores, orUnknown(e.Kernel), e.GoVersion, e.OpenFiles, e.Pinning.Note)
	var names []string
	for _, t := range c.Tables {
		names = append(names, t.Name)
	}
	if len(names) == 0 {
		names = []string{MainTable}
	}
	fmt.Fprintf(&b, "Tables: %s (each says its own matrix and conditions); feed over %d symbols (seed %d)",
		strings.Join(names, ", "), c.Symbols, c.Seed)
	if c.Subscribe != "" {
		fmt.Fprintf(&b, "; each client subscribes to %s", c.Subscribe)
	} else {
		b.WriteString("; each client subscribes to every symbol")
	}
	if c.PollInterval > 0 && slices.Contains(c.Transports, "shortpoll") {
		fmt.Fprintf(&b, "; shortpoll asks every %s", c.PollInterval)
	}
	b.WriteString(".")
	for _, s := range c.Skipped {
		fmt.Fprintf(&b, " Skipped: %s.", s)
	}
	for _, s := range c.Caveats {
		fmt.Fprintf(&b, " %s", s)
	}
	return b.String()
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

// Findings are the generated "what these numbers say": per section and
// key figure, which row wins at the largest client count where at least
// two rows have a value, and by how much; then crashes, incorrect cells
// and, when both ran, what stalled clients did to the others. Wins inside
// the repeats' spread are called out as such. Each table's own checks
// (FindingsOf) come after its comparisons.
func Findings(r *Report) []string {
	var out []string
	for _, sec := range r.Sections() {
		metrics := []Metric{LatencyMetric(sec.Scenario), MetricReach99, MetricRSS, MetricCPU, MetricBytes}
		if sec.Scenario == Storm {
			metrics = []Metric{MetricFT99, MetricCPUConns}
		}
		if len(sec.Table.Columns) > 0 {
			metrics = slices.DeleteFunc(TableColumns(sec.Table, sec.Scenario), func(m Metric) bool { return !m.summary })
		}
		for _, m := range metrics {
			for _, g := range sec.byTransport() {
				if f := compare(g, m); f != "" {
					out = append(out, f)
				}
			}
		}
	}
	out = append(out, slowVsSteady(r)...)
	for _, sec := range r.Sections() {
		if f := TableFindings[sec.Table.Name]; f != nil {
			out = append(out, f(r, sec)...)
		}
	}
	for _, c := range r.Cells {
		s := &c.Summary
		where := fmt.Sprintf("in %s at %d clients", c.Scenario, c.Clients)
		if c.Table != MainTable {
			where = fmt.Sprintf("in %s, %s at %d", r.Table(c.Table).Title, c.Scenario, c.Clients)
		}
		label := RowLabel(r.Table(c.Table), c)
		if s.Crashed > 0 {
			out = append(out, fmt.Sprintf("**%s crashed** %s (%d of %d runs).", label, where, s.Crashed, s.Runs))
		}
		if s.Incorrect > 0 {
			out = append(out, fmt.Sprintf("**%s delivered incorrectly** %s (%d of %d runs).", label, where, s.Incorrect, s.OK))
		}
	}
	sat, side := 0, 0
	for _, c := range r.Cells {
		if c.Summary.Saturated > 0 {
			sat++
		}
		if c.Summary.SideSaturated > 0 {
			side++
		}
	}
	if sat > 0 {
		out = append(out, fmt.Sprintf("The load generator saturated in %d of %d cells (flagged SATURATED): there the latency partly measures the client, not the transport.", sat, len(r.Cells)))
	}
	if side > 0 {
		out = append(out, fmt.Sprintf("The network proxy saturated in %d of %d cells (flagged PROXY SATURATED): there the latency partly measures the proxy, not the network profile.", side, len(r.Cells)))
	}
	if len(out) == 0 {
		out = append(out, "No cell has figures for two transports side by side, so nothing can be compared.")
	}
	return out
}

// byTransport splits a section of a table that varies a dimension into one
// group per transport, so that the comparisons say what the dimension does
// to each transport (TLS's cost to SSE, each SSE library against the
// others); a section of the main table stays whole, its rows being the
// transports themselves.
func (sec Section) byTransport() []Section {
	if len(sec.Table.Vary) == 0 {
		return []Section{sec}
	}
	var out []Section
	for _, c := range sec.Cells {
		i := slices.IndexFunc(out, func(g Section) bool { return g.Transport == c.Transport })
		if i < 0 {
			out = append(out, Section{Table: sec.Table, Scenario: sec.Scenario, Transport: c.Transport})
			i = len(out) - 1
		}
		out[i].Cells = append(out[i].Cells, c)
	}
	return out
}

// label names a cell in the findings of its section: its row label, less
// the transport when the section is one transport's group.
func (sec Section) label(c *Cell) string {
	l := RowLabel(sec.Table, c)
	if sec.Transport != "" {
		l = strings.TrimPrefix(l, c.Transport+" ")
	}
	return l
}

// TableFindings holds each table's own generated sentences, by table name:
// checks of the shape the data should have (a network's round trip in long
// polling's latency, a library that kept up or not), stated when it holds
// and when it does not. A table without an entry gets only the generic
// comparisons.
var TableFindings = map[string]func(r *Report, sec Section) []string{
	NetworksTable:     networkFindings,
	NetworkStormTable: networkFindings,
	"answer":          answerFindings,
	ImplsTable:        implsFindings,
}

type entry struct {
	label string
	stat  Stat
	flags string
}

// compare writes one finding for metric m in a section.
func compare(sec Section, m Metric) string {
	byClients := map[int][]entry{}
	var counts []int
	for _, c := range sec.Cells {
		st := c.Summary.Stat(m)
		if !st.Median.Valid() {
			continue
		}
		if _, ok := byClients[c.Clients]; !ok {
			counts = append(counts, c.Clients)
		}
		byClients[c.Clients] = append(byClients[c.Clients], entry{sec.label(c), st, Flags(&c.Summary)})
	}
	slices.Sort(counts)
	prefix := sec.Scenario
	if sec.Table.Name != MainTable {
		prefix = sec.Table.Title + ", " + sec.Scenario
	}
	if sec.Transport != "" {
		prefix += ", " + sec.Transport
	}
	for i := len(counts) - 1; i >= 0; i-- {
		es := byClients[counts[i]]
		if len(es) < 2 {
			continue
		}
		slices.SortStableFunc(es, func(a, b entry) int {
			x, y := float64(a.stat.Median), float64(b.stat.Median)
			if !m.Lower {
				x, y = -x, -y
			}
			switch {
			case x < y:
				return -1
			case x > y:
				return 1
			}
			return 0
		})
		best := es[0]
		word := "lowest"
		if !m.Lower {
			word = "highest"
		}
		// Rows whose displayed values equal the best one tie with it.
		top := 1
		for top < len(es) && value(m, es[top].stat.Median) == value(m, best.stat.Median) {
			top++
		}
		var b strings.Builder
		switch {
		case top == len(es):
			all := "all rows"
			if sec.Table.Name == MainTable {
				all = "all transports"
			}
			fmt.Fprintf(&b, "%s, %d clients: %s are level on %s (%s)", prefix, counts[i], all, m.Name, value(m, best.stat.Median))
		default:
			names := make([]string, top)
			for j := range names {
				names[j] = "**" + es[j].label + "**"
			}
			verb := "has"
			if top > 1 {
				verb = "share"
			}
			fmt.Fprintf(&b, "%s, %d clients: %s %s the %s %s, %s", prefix, counts[i], strings.Join(names, " and "), verb, word, m.Name, value(m, best.stat.Median))
			var others []string
			for _, e := range es[top:] {
				others = append(others, fmt.Sprintf("%s %s%s", e.label, value(m, e.stat.Median), ratio(m, best.stat.Median, e.stat.Median)))
			}
			fmt.Fprintf(&b, "; %s", strings.Join(others, ", "))
			if overlap(best.stat, es[top].stat) {
				fmt.Fprintf(&b, " (the spread of the repeats overlaps %s's: not a clear win)", es[top].label)
			}
		}
		if lat := LatencyMetric(sec.Scenario); m.Key != lat.Key && top < len(es) {
			b.WriteString(tradeOff(sec, counts[i], best.label, lat))
		}
		if best.flags != "" {
			fmt.Fprintf(&b, "; %s's cell is flagged %s", best.label, best.flags)
		}
		b.WriteString(".")
		return b.String()
	}
	return ""
}

// tradeOff says when a row that wins on a cost figure pays for it in
// latency (short polling batches ticks and holds no connection, so it is
// cheap and slow): its latency against the best other row at the same
// client count.
func tradeOff(sec Section, clients int, label string, lat Metric) string {
	mine, best := NA, NA
	for _, c := range sec.Cells {
		if c.Clients != clients {
			continue
		}
		v := c.Summary.Stat(lat).Median
		if sec.label(c) == label {
			mine = v
		} else if v.Valid() && (!best.Valid() || v < best) {
			best = v
		}
	}
	if !mine.Valid() || !best.Valid() || best <= 0 || mine < 2*best {
		return ""
	}
	return fmt.Sprintf(", but pays in latency: its %s is %s, %s× the best other row's", lat.Name, value(lat, mine), times(float64(mine/best)))
}

func value(m Metric, v Num) string {
	s := m.Format(float64(v))
	if m.Unit != "" {
		s += " " + m.Unit
	}
	return s
}

// ratio says how many times worse other is than best, when that is meaningful.
func ratio(m Metric, best, other Num) string {
	b, o := float64(best), float64(other)
	if m.Lower && b > 0 && o > 0 {
		return fmt.Sprintf(" (%s×)", times(o/b))
	}
	if !m.Lower && o > 0 && b > 0 {
		return fmt.Sprintf(" (%s× less)", times(b/o))
	}
	return ""
}

func times(x float64) string {
	if x >= 10 {
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.1f", x)
}

// overlap reports whether two cells' min–max ranges overlap: then the
// repeats cannot tell them apart.
func overlap(a, b Stat) bool {
	if a.N < 2 || b.N < 2 {
		return false
	}
	return math.Max(float64(a.Min), float64(b.Min)) <= math.Min(float64(a.Max), float64(b.Max))
}

// slowVsSteady compares each row's latency and memory growth with stalled
// clients against the same row of the same table in steady, at the largest
// client count both have.
func slowVsSteady(r *Report) []string {
	var out []string
	type key struct {
		table, label string
	}
	best := map[key]*Cell{}
	var order []key
	for _, c := range r.Cells {
		if c.Scenario != Slow || !c.Summary.Stat(MetricP99).Median.Valid() {
			continue
		}
		s := r.CellOf(c.Table, c.Dims, Steady, c.Transport, c.Clients)
		if s == nil || !s.Summary.Stat(MetricP99).Median.Valid() {
			continue
		}
		k := key{c.Table, RowLabel(r.Table(c.Table), c)}
		if b, ok := best[k]; !ok {
			order = append(order, k)
		} else if c.Clients <= b.Clients {
			continue
		}
		best[k] = c
	}
	for _, k := range order {
		c := best[k]
		steady := r.CellOf(c.Table, c.Dims, Steady, c.Transport, c.Clients)
		a, b := steady.Summary.Stat(MetricP99).Median, c.Summary.Stat(MetricP99).Median
		where := ""
		if c.Table != MainTable {
			where = " (" + r.Table(c.Table).Title + ")"
		}
		line := fmt.Sprintf("With stalled clients, %s's p99 latency at %d clients%s went from %s (steady) to %s (slow)",
			k.label, c.Clients, where, value(MetricP99, a), value(MetricP99, b))
		if g := c.Summary.Stat(MetricGrowth).Median; g.Valid() {
			line += fmt.Sprintf(" and server RSS grew %s during the window", value(MetricGrowth, g))
		}
		out = append(out, line+".")
	}
	return out
}
