package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
)

// Reporter renders a closed Report, as in vegeta.
type Reporter func(io.Writer) error

// Style is how a table is drawn.
type Style int

// Table styles.
const (
	ASCII    Style = iota // +---+ boxes for a terminal or a log
	Markdown              // GitHub Markdown for summary.md
)

// spread separates min and max: plain ASCII on a terminal, an en dash in
// Markdown where it renders well.
func (s Style) spread() string {
	if s == Markdown {
		return "–"
	}
	return "-"
}

// NewJSONReporter writes the whole report as indented JSON (results.json).
func NewJSONReporter(r *Report) Reporter {
	return func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(&r.Results); err != nil {
			return fmt.Errorf("encode results: %w", err)
		}
		return nil
	}
}

// NewTablesReporter writes one table per section (bench table and
// scenario), each under a title line (a "## " heading in Markdown) and its
// caption, followed by the notes of its flagged rows.
func NewTablesReporter(r *Report, style Style) Reporter {
	return func(w io.Writer) error {
		for i, sec := range r.Sections() {
			if i > 0 {
				if _, err := fmt.Fprintln(w); err != nil {
					return err
				}
			}
			title := fmt.Sprintf("%s: %s\n%s", sec.Title(), ScenarioBlurb(sec.Scenario, r.Config), Caption(sec.Table))
			if style == Markdown {
				title = fmt.Sprintf("## %s\n\n%s\n\n%s", sec.Title(), ScenarioBlurb(sec.Scenario, r.Config), mdEscape(Caption(sec.Table)))
			}
			if _, err := fmt.Fprintf(w, "%s\n\n", title); err != nil {
				return err
			}
			if err := NewTableReporter(r, sec, style)(w); err != nil {
				return err
			}
		}
		return nil
	}
}

// Caption says the conditions of every row of a table: what it holds
// fixed (protocol, network, implementation and version, rates, durations)
// and what each value of the dimensions it varies means.
func Caption(t *Table) string {
	var b strings.Builder
	b.WriteString("Conditions: ")
	if t.Conditions != "" {
		b.WriteString(strings.TrimSuffix(t.Conditions, "."))
		b.WriteString("; ")
	}
	fmt.Fprintf(&b, "feed %g ticks/s; %s measured after %s warm-up; %d repeat(s).", t.Rate, t.Duration, t.Warmup, t.Repeat)
	for _, dim := range t.Vary {
		for _, v := range t.DimValues[dim] {
			if d := t.Values[v]; d != "" {
				fmt.Fprintf(&b, " %s %s: %s.", dim, v, strings.TrimSuffix(d, "."))
			}
		}
	}
	return b.String()
}

// TableColumns lists the metric columns of a section: the table's own when
// it names them, else the scenario's defaults. Unknown keys are skipped.
func TableColumns(t *Table, scenario string) []Metric {
	if len(t.Columns) == 0 {
		return Columns(scenario)
	}
	var out []Metric
	for _, k := range t.Columns {
		if m, ok := MetricByKey(k); ok {
			if scenario == Storm && m.Key == MetricCPU.Key {
				// A storm delivers little: its server CPU is the
				// connections' cost, as in the main table's storm.
				m = MetricCPUConns
			}
			out = append(out, m)
		}
	}
	return out
}

// MetricByKey finds a metric of AllMetrics by its key.
func MetricByKey(key string) (Metric, bool) {
	for _, m := range AllMetrics {
		if m.Key == key {
			return m, true
		}
	}
	return Metric{}, false
}

// RowLabel names a cell inside its section: the transport and the values
// of the dimensions the table varies ("sse tls").
func RowLabel(t *Table, c *Cell) string {
	parts := []string{c.Transport}
	for _, dim := range DimNames {
		if t.Varies(dim) {
			parts = append(parts, c.Dims.Get(dim))
		}
	}
	return strings.Join(parts, " ")
}

// ScenarioBlurb says in one sentence what a scenario does and what to look for.
func ScenarioBlurb(sc string, cfg Config) string {
	switch sc {
	case Steady:
		return "every client keeps up; latency is arrival minus the tick's scheduled time."
	case Slow:
		share := cfg.SlowShare
		if share == 0 {
			share = 0.1
		}
		return fmt.Sprintf("%.0f%% of the clients stall; do the others keep their latency, and does server memory stay flat (RSS growth)?", share*100)
	case Churn:
		return fmt.Sprintf("%.0f%% of the clients per second drop their connection and resume where they left off; nothing may be lost or duplicated.", cfg.ChurnShare*100)
	case Storm:
		rate := ""
		if cfg.StormRate > 0 {
			rate = fmt.Sprintf(" (the feed runs at %g ticks/s here, so waiting for the next tick adds at most %s)", cfg.StormRate, time.Duration(float64(time.Second)/cfg.StormRate))
		}
		return "N new connections per second for the whole run, at most N open at once; time from dial to handshake (connect) and to the first tick" + rate + "."
	}
	return ""
}

// String writes the duration in Go syntax.
func (d Duration) String() string { b, _ := d.MarshalText(); return string(b) }

// NewTableReporter writes the table of one section: rows transport ×
// the dimensions the table varies × clients, each figure the median of the
// repeats with its min–max, the delivery-correctness totals over all
// repeats, and a flag for every cell whose numbers must not be taken at
// face value. The flags are explained in the notes under the table.
func NewTableReporter(r *Report, sec Section, style Style) Reporter {
	return func(w io.Writer) error {
		t := sec.Table
		cols := TableColumns(t, sec.Scenario)
		clients := t.ClientsHeader
		if clients == "" {
			clients = "clients"
		}
		header := []string{"transport"}
		align := []tw.Align{tw.AlignLeft}
		for _, dim := range DimNames {
			if t.Varies(dim) {
				header = append(header, dim)
				align = append(align, tw.AlignLeft)
			}
		}
		header = append(header, clients)
		align = append(align, tw.AlignRight)
		for _, m := range cols {
			header = append(header, m.Header)
			align = append(align, tw.AlignRight)
		}
		header = append(header, "miss/dup/gap", "flags")
		align = append(align, tw.AlignRight, tw.AlignLeft)

		var rend tw.Renderer = renderer.NewBlueprint(tw.Rendition{Symbols: tw.NewSymbols(tw.StyleASCII)})
		if style == Markdown {
			rend = renderer.NewMarkdown()
		}
		tbl := tablewriter.NewTable(w,
			tablewriter.WithRenderer(rend),
			tablewriter.WithHeaderAutoFormat(tw.Off),
			tablewriter.WithRowAutoWrap(tw.WrapNone),
			tablewriter.WithHeaderAutoWrap(tw.WrapNone),
			tablewriter.WithHeaderAlignmentConfig(tw.CellAlignment{PerColumn: align}),
			tablewriter.WithRowAlignmentConfig(tw.CellAlignment{PerColumn: align}),
		)
		tbl.Header(header)
		var notes []string
		for _, c := range sec.Cells {
			row := []string{c.Transport}
			for _, dim := range DimNames {
				if t.Varies(dim) {
					row = append(row, c.Dims.Get(dim))
				}
			}
			row = append(row, fmt.Sprint(c.Clients))
			for _, m := range cols {
				row = append(row, FormatStat(m, c.Summary.Stat(m), style))
			}
			row = append(row, correctness(c), Flags(&c.Summary))
			if err := tbl.Append(row); err != nil {
				return fmt.Errorf("table %s: %w", sec.Slug(), err)
			}
			for _, n := range c.Summary.Notes {
				notes = append(notes, fmt.Sprintf("%s %d %s: %s", RowLabel(t, c), c.Clients, clients, n))
			}
		}
		if err := tbl.Render(); err != nil {
			return fmt.Errorf("table %s: %w", sec.Slug(), err)
		}
		if len(notes) > 0 {
			if _, err := fmt.Fprintln(w); err != nil {
				return err
			}
			for _, n := range notes {
				if style == Markdown {
					n = "- " + mdEscape(n)
				} else {
					n = "  * " + n
				}
				if _, err := fmt.Fprintln(w, n); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// FormatStat writes "median (min–max)", or just the median when the repeats
// agree or there was one, or "–" when no repeat had the figure.
func FormatStat(m Metric, s Stat, style Style) string {
	if !s.Median.Valid() {
		return "–"
	}
	med := m.Format(float64(s.Median))
	if s.N < 2 {
		return med
	}
	lo, hi := m.Format(float64(s.Min)), m.Format(float64(s.Max))
	if lo == hi {
		return med
	}
	return fmt.Sprintf("%s (%s%s%s)", med, lo, style.spread(), hi)
}

// correctness writes missing/duplicates/gaps summed over every repeat: any
// loss or duplicate in any repeat is a failure, so a median would hide it.
// Out-of-order and wrong ticks are not in the column; they flag the cell
// INCORRECT and the note says how many.
func correctness(c *Cell) string {
	if c.Merged == nil {
		return "–"
	}
	k := c.Merged.Counts
	return fmt.Sprintf("%d/%d/%d", k.Missing, k.Duplicates, k.Gaps)
}

// Flags writes the short marks of a cell, most serious first.
func Flags(s *Summary) string {
	var f []string
	if s.Crashed > 0 {
		f = append(f, "CRASHED")
	}
	if n := s.Failed - s.Crashed; n > 0 {
		f = append(f, fmt.Sprintf("FAILED %d/%d", n, s.Runs))
	}
	if s.Incorrect > 0 {
		f = append(f, "INCORRECT")
	}
	if s.Saturated > 0 {
		f = append(f, "SATURATED")
	}
	if s.SideSaturated > 0 {
		f = append(f, "PROXY SATURATED")
	}
	if s.Partial != "" {
		f = append(f, "PARTIAL")
	}
	return strings.Join(f, " ")
}

// mdEscape keeps a note from breaking Markdown (tables, emphasis).
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "*", `\*`, "_", `\_`, "<", "&lt;").Replace(s)
}
