package report

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Chart is one figure of one section against the number of clients (or,
// with XDim, against a dimension's numeric value such as a network's
// round-trip time), a line per row label; or, when Row is set, several
// figures of that row, a line per metric of Lines (the reach charts).
type Chart struct {
	Section string // Section.Slug
	Metric  Metric
	Row     string // a row label (RowLabel): the reach charts
	Lines   []Metric
	Labels  []string // legend of each of Lines
	// XDim, if set, puts that dimension's values on the x axis at
	// Table.DimX, and the lines are the rows without it.
	XDim string
	// Transport, if set, draws only that transport's rows (the impls
	// table: a chart per transport, a line per implementation).
	Transport string
	File      string // file name inside the run's directory, e.g. steady_p99.svg
	Title     string
}

// reachLines are the lines of a reach chart, labelled by share.
var (
	reachLines  = []Metric{MetricReach50, MetricReach99, MetricReach100}
	reachLabels = []string{"50% of subscriptions", "99%", "100%"}
)

// chartKinds are the figures charted for every section: tail latency,
// memory per connection, CPU per delivery.
func chartKinds(scenario string) []struct {
	m    Metric
	slug string
} {
	if scenario == Storm {
		// Storm connections come and go: memory per connection means
		// little; CPU per connection is the cost of the storm.
		return []struct {
			m    Metric
			slug string
		}{{MetricFT99, "latency"}, {MetricCPUConns, "cpu"}}
	}
	return []struct {
		m    Metric
		slug string
	}{{LatencyMetric(scenario), "latency"}, {MetricRSS, "memory"}, {MetricCPU, "cpu"}}
}

// Charts lists the charts worth drawing for r: for every section, each
// kind that has a value, and a reach chart per row label; tables that
// chart against a dimension (Table.XDim) get those charts instead of the
// per-clients ones. format is "svg" or "png".
func Charts(r *Report, format string) []Chart {
	var out []Chart
	for _, sec := range r.Sections() {
		t := sec.Table
		for _, k := range chartKinds(sec.Scenario) {
			points := 0
			for _, c := range sec.Cells {
				if c.Summary.Stat(k.m).Median.Valid() {
					points++
				}
			}
			if points == 0 {
				continue
			}
			unit := k.m.Unit
			if unit == "" {
				unit = "count"
			}
			against, xdim := "clients", ""
			if t.chartsAgainstDim() {
				against, xdim = t.XLabel, t.XDim
			}
			out = append(out, Chart{
				Section: sec.Slug(), Metric: k.m, XDim: xdim, File: fmt.Sprintf("%s_%s.%s", sec.Slug(), k.slug, format),
				Title: fmt.Sprintf("%s: %s (%s) vs %s", sec.Title(), k.m.Name, unit, against),
			})
		}
		// Reach, one chart per row: how long a tick takes to reach half,
		// 99% and all of its subscriptions.
		if t.chartsAgainstDim() {
			continue
		}
		for _, label := range rowLabels(sec, "") {
			has := false
			for _, c := range sec.Cells {
				has = has || RowLabel(t, c) == label && c.Summary.Stat(MetricReach100).Median.Valid()
			}
			if has {
				out = append(out, Chart{
					Section: sec.Slug(), Metric: MetricReach99, Row: label, Lines: reachLines, Labels: reachLabels,
					File:  fmt.Sprintf("%s_reach_%s.%s", sec.Slug(), strings.ReplaceAll(label, " ", "_"), format),
					Title: fmt.Sprintf("%s, %s: median time for a tick to reach 50/99/100%% of its subscriptions (ms)", sec.Title(), label),
				})
			}
		}
	}
	return append(out, implsCharts(r, format)...)
}

// chartsAgainstDim reports whether the table's charts put its XDim on the
// x axis: only when that dimension varies (a run of one network profile has
// one point per line there, and is charted against the clients instead).
func (t *Table) chartsAgainstDim() bool {
	return t.XDim != "" && t.Varies(t.XDim) && len(t.DimX) > 0
}

// rowLabels lists a section's row labels in order, leaving out dimension
// without (the x axis of a chart against it) and the clients.
func rowLabels(sec Section, without string) []string {
	var out []string
	for _, c := range sec.Cells {
		if l := lineLabel(sec.Table, c, without); !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

// lineLabel is RowLabel without dimension without.
func lineLabel(t *Table, c *Cell, without string) string {
	parts := []string{c.Transport}
	for _, dim := range DimNames {
		if t.Varies(dim) && dim != without {
			parts = append(parts, c.Dims.Get(dim))
		}
	}
	return strings.Join(parts, " ")
}

// line is one line of a chart: a metric of the cells of one line label.
type line struct {
	label  string // legend
	key    string // lineLabel of its cells
	metric Metric
	style  int // colour, dashes and marker
}

// lines lists what c draws: every row's c.Metric, a transport of the main
// table keeping its style across all charts (its position in Transports),
// or c.Lines of c.Row in the order given.
func (c Chart) lines(sec Section) []line {
	var out []line
	if c.Row != "" {
		for i, m := range c.Lines {
			label := m.Header
			if i < len(c.Labels) {
				label = c.Labels[i]
			}
			out = append(out, line{label: label, key: c.Row, metric: m, style: i})
		}
		return out
	}
	for i, l := range rowLabels(sec, c.XDim) {
		if c.Transport != "" && !strings.HasPrefix(l, c.Transport+" ") {
			continue
		}
		style := i
		if sec.Table.Name == MainTable {
			if ti := slices.Index(Transports, l); ti >= 0 {
				style = ti
			} else {
				style = len(Transports) + i
			}
		}
		out = append(out, line{label: l, key: l, metric: c.Metric, style: style})
	}
	return out
}

// section finds the section a chart belongs to.
func (c Chart) section(r *Report) (Section, bool) {
	for _, sec := range r.Sections() {
		if sec.Slug() == c.Section {
			return sec, true
		}
	}
	return Section{}, false
}

// series is one transport's line: medians with min–max error bars. It is
// the XYer and YErrorer that gonum's plotters read.
type series struct {
	xys  plotter.XYs
	errs plotter.YErrors
}

func (s *series) Len() int                        { return len(s.xys) }
func (s *series) XY(i int) (float64, float64)     { return s.xys[i].X, s.xys[i].Y }
func (s *series) YError(i int) (float64, float64) { return s.errs[i].Low, s.errs[i].High }

func (s *series) add(x, med, lo, hi float64) {
	s.xys = append(s.xys, plotter.XY{X: x, Y: med})
	s.errs = append(s.errs, struct{ Low, High float64 }{med - lo, hi - med})
}

// NewChartReporter draws c as SVG or PNG (from the file's extension). Each
// transport keeps its colour and marker across all charts (its position in
// Transports), so the charts read together.
func NewChartReporter(r *Report, c Chart) Reporter {
	return func(w io.Writer) error {
		sec, ok := c.section(r)
		if !ok {
			return fmt.Errorf("chart %s: no section %s", c.File, c.Section)
		}
		p := plot.New()
		p.Title.Text = c.Title
		p.X.Label.Text = "clients"
		if c.XDim != "" {
			p.X.Label.Text = sec.Table.XLabel
		}
		p.Y.Label.Text = c.Metric.Header
		if c.Row != "" {
			p.Y.Label.Text = c.Metric.Unit
		}
		p.Legend.Top, p.Legend.Left = true, true
		var all []float64
		ymin, ymax := 0.0, 0.0
		minPos := math.Inf(1) // smallest lower end of an error bar
		for _, l := range c.lines(sec) {
			var s series
			m := l.metric
			for _, cell := range sec.Cells {
				if lineLabel(sec.Table, cell, c.XDim) != l.key {
					continue
				}
				st := cell.Summary.Stat(m)
				if !st.Median.Valid() {
					continue
				}
				x := float64(cell.Clients)
				if c.XDim != "" {
					xv, ok := sec.Table.DimX[cell.Dims.Get(c.XDim)]
					if !ok {
						continue
					}
					x = xv
				}
				med := m.Display(float64(st.Median))
				s.add(x, med, m.Display(float64(st.Min)), m.Display(float64(st.Max)))
				ymin = math.Min(ymin, m.Display(float64(st.Min)))
				minPos = math.Min(minPos, m.Display(float64(st.Min)))
				ymax = math.Max(ymax, m.Display(float64(st.Max)))
			}
			if s.Len() == 0 {
				continue
			}
			for _, xy := range s.xys {
				all = append(all, xy.X)
			}
			style := l.style
			line, pts, err := plotter.NewLinePoints(&s)
			if err != nil {
				return fmt.Errorf("chart %s: %w", c.File, err)
			}
			line.Color = plotutil.Color(style)
			line.Dashes = plotutil.Dashes(style)
			pts.Color = plotutil.Color(style)
			pts.Shape = plotutil.Shape(style)
			bars, err := plotter.NewYErrorBars(&s)
			if err != nil {
				return fmt.Errorf("chart %s: %w", c.File, err)
			}
			bars.Color = plotutil.Color(style)
			p.Add(line, pts, bars)
			p.Legend.Add(l.label, line, pts)
		}
		if len(all) == 0 {
			return fmt.Errorf("chart %s: no data", c.File)
		}
		slices.Sort(all)
		all = slices.Compact(all)
		lo, hi := all[0], all[len(all)-1]
		if lo > 0 && hi/lo >= 10 && c.XDim == "" {
			// Client counts usually grow by factors of ten: a log axis keeps
			// 100 and 1000 from being squashed against the left edge.
			p.X.Scale = plot.LogScale{}
			p.X.Min, p.X.Max = lo/1.3, hi*1.3
		} else {
			pad := math.Max((hi-lo)*0.08, 1)
			p.X.Min, p.X.Max = math.Max(lo-pad, 0), hi+pad
		}
		p.X.Tick.Marker = clientTicks(all)
		// Margins keep the error bars inside the frame, and the headroom at
		// the top keeps the legend off the lines.
		p.Y.Min = ymin
		if ymax > ymin {
			p.Y.Max = ymax + (ymax-ymin)*0.35
		}
		if minPos > 0 && ymax/minPos >= 50 {
			// Short polling's second-long latency next to milliseconds:
			// on a linear axis every other line would lie flat at zero.
			p.Y.Scale = plot.LogScale{}
			p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
			p.Y.Min, p.Y.Max = minPos/1.5, ymax*4
			p.Y.Label.Text += " (log scale)"
		}
		p.Add(plotter.NewGrid())
		wt, err := p.WriterTo(7*vg.Inch, 3.5*vg.Inch, c.File[strings.LastIndexByte(c.File, '.')+1:])
		if err != nil {
			return fmt.Errorf("chart %s: %w", c.File, err)
		}
		if _, err := wt.WriteTo(w); err != nil {
			return fmt.Errorf("chart %s: %w", c.File, err)
		}
		return nil
	}
}

// clientTicks labels exactly the client counts that were measured.
type clientTicks []float64

// Ticks implements plot.Ticker.
func (t clientTicks) Ticks(lo, hi float64) []plot.Tick {
	out := make([]plot.Tick, 0, len(t))
	for _, v := range t {
		if v >= lo && v <= hi {
			out = append(out, plot.Tick{Value: v, Label: fmt.Sprint(v)})
		}
	}
	return out
}

// orderedTransports lists the transports that have cells, configured order first.
func orderedTransports(r *Report) []string {
	var out []string
	for _, c := range r.Cells {
		if !slices.Contains(out, c.Transport) {
			out = append(out, c.Transport)
		}
	}
	return out
}

var _ plot.Ticker = clientTicks(nil)
