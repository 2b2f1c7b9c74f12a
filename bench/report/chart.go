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

// Chart is one figure of one scenario against the number of clients, a line
// per transport; or, when Transport is set, several figures of that
// transport, a line per metric of Lines (the reach charts).
type Chart struct {
	Scenario  string
	Metric    Metric
	Transport string
	Lines     []Metric
	Labels    []string // legend of each of Lines
	File      string   // file name inside the run's directory, e.g. steady_p99.svg
	Title     string
}

// reachLines are the lines of a reach chart, labelled by share.
var (
	reachLines  = []Metric{MetricReach50, MetricReach99, MetricReach100}
	reachLabels = []string{"50% of subscriptions", "99%", "100%"}
)

// chartKinds are the figures charted for every scenario: tail latency,
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

// Charts lists the charts worth drawing for r: every scenario that has at
// least two client counts with a value, in report order. format is "svg" or
// "png".
func Charts(r *Report, format string) []Chart {
	var out []Chart
	for _, sc := range r.ScenariosPresent() {
		for _, k := range chartKinds(sc) {
			points := 0
			for _, c := range r.Cells {
				if c.Scenario == sc && c.Summary.Stat(k.m).Median.Valid() {
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
			out = append(out, Chart{
				Scenario: sc, Metric: k.m, File: fmt.Sprintf("%s_%s.%s", sc, k.slug, format),
				Title: fmt.Sprintf("%s: %s (%s) vs clients", sc, k.m.Name, unit),
			})
		}
		// Reach, one chart per transport: how long a tick takes to reach
		// half, 99% and all of its subscriptions.
		for _, tr := range orderedTransports(r) {
			has := false
			for _, c := range r.Cells {
				has = has || c.Scenario == sc && c.Transport == tr && c.Summary.Stat(MetricReach100).Median.Valid()
			}
			if has {
				out = append(out, Chart{
					Scenario: sc, Metric: MetricReach99, Transport: tr, Lines: reachLines, Labels: reachLabels,
					File:  fmt.Sprintf("%s_reach_%s.%s", sc, tr, format),
					Title: fmt.Sprintf("%s, %s: median time for a tick to reach 50/99/100%% of its subscriptions (ms)", sc, tr),
				})
			}
		}
	}
	return out
}

// line is one line of a chart: a metric of one transport's cells.
type line struct {
	label     string
	transport string
	metric    Metric
	style     int // colour, dashes and marker
}

// lines lists what c draws: every transport's c.Metric, each in its own
// style across all charts (its position in Transports), or c.Lines of
// c.Transport in the order given.
func (c Chart) lines(r *Report) []line {
	var out []line
	if c.Transport != "" {
		for i, m := range c.Lines {
			label := m.Header
			if i < len(c.Labels) {
				label = c.Labels[i]
			}
			out = append(out, line{label: label, transport: c.Transport, metric: m, style: i})
		}
		return out
	}
	for ti, tr := range orderedTransports(r) {
		style := slices.Index(Transports, tr)
		if style < 0 {
			style = len(Transports) + ti
		}
		out = append(out, line{label: tr, transport: tr, metric: c.Metric, style: style})
	}
	return out
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
		p := plot.New()
		p.Title.Text = c.Title
		p.X.Label.Text = "clients"
		p.Y.Label.Text = c.Metric.Header
		if c.Transport != "" {
			p.Y.Label.Text = c.Metric.Unit
		}
		p.Legend.Top, p.Legend.Left = true, true
		var all []float64
		ymin, ymax := 0.0, 0.0
		minPos := math.Inf(1) // smallest lower end of an error bar
		for _, l := range c.lines(r) {
			var s series
			m := l.metric
			for _, cell := range r.Cells {
				if cell.Scenario != c.Scenario || cell.Transport != l.transport {
					continue
				}
				st := cell.Summary.Stat(m)
				if !st.Median.Valid() {
					continue
				}
				med := m.Display(float64(st.Median))
				s.add(float64(cell.Clients), med, m.Display(float64(st.Min)), m.Display(float64(st.Max)))
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
		if lo > 0 && hi/lo >= 10 {
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
