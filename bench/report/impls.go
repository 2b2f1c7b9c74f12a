package report

import (
	"fmt"
	"slices"
	"strings"
)

// ImplsTable names the table of the implementations (bench/matrix).
const ImplsTable = "impls"

// keptUp is the delivered share at or above which an implementation kept
// up: every owed tick but a rounding's worth.
const keptUp = 99.5

// memoryGrowth is the RSS growth during a run above which the findings
// call a server's memory unbounded (a backlog per client, a log never
// trimmed): far above what the Go runtime's own churn moves.
const memoryGrowth = 64 << 20

// implsCharts draws, for each section of the impls table and each of its
// transports, the delivered share and the tail latency against clients,
// a line per implementation.
func implsCharts(r *Report, format string) []Chart {
	var out []Chart
	for _, sec := range r.Sections() {
		if sec.Table.Name != ImplsTable {
			continue
		}
		var transports []string
		for _, c := range sec.Cells {
			if !slices.Contains(transports, c.Transport) {
				transports = append(transports, c.Transport)
			}
		}
		for _, tr := range transports {
			for _, k := range []struct {
				m    Metric
				slug string
			}{{MetricDelivered, "delivered"}, {LatencyMetric(sec.Scenario), "latency"}} {
				out = append(out, Chart{Section: sec.Slug(), Metric: k.m, Transport: tr,
					File:  fmt.Sprintf("%s_%s_%s.%s", sec.Slug(), tr, k.slug, format),
					Title: fmt.Sprintf("%s, %s: %s vs clients, one line per implementation", sec.Title(), tr, k.m.Name)})
			}
		}
	}
	return out
}

// implsFindings names, per transport and client count of a section, the
// implementations that kept up and those that did not, with the reason
// where the data shows one: streams that failed or were dropped, streams
// left open behind (a stalled broadcast, or a server short of CPU: the
// saturation flags tell which), memory that grew.
func implsFindings(r *Report, sec Section) []string {
	type key struct {
		transport string
		clients   int
	}
	var keys []key
	cells := map[key][]*Cell{}
	for _, c := range sec.Cells {
		k := key{c.Transport, c.Clients}
		if _, ok := cells[k]; !ok {
			keys = append(keys, k)
		}
		cells[k] = append(cells[k], c)
	}
	var out []string
	for _, k := range keys {
		var kept, behind []string
		for _, c := range cells[k] {
			impl := c.Dims.Impl
			d := c.Summary.Stat(MetricDelivered).Median
			if !d.Valid() {
				continue
			}
			stalled := ""
			if sd := c.Summary.Stat(MetricStalledDropped).Median; sd.Valid() {
				stalled = fmt.Sprintf(", %s%% of the stalled clients dropped", MetricStalledDropped.Format(float64(sd)))
			}
			if float64(d) >= keptUp {
				kept = append(kept, fmt.Sprintf("%s (p99 %s ms%s)", impl, MetricP99.Format(float64(c.Summary.Stat(MetricP99).Median)), stalled))
				continue
			}
			behind = append(behind, fmt.Sprintf("%s delivered %s%%%s%s", impl, MetricDelivered.Format(float64(d)), why(c), stalled))
		}
		if len(kept) == 0 && len(behind) == 0 {
			continue
		}
		s := fmt.Sprintf("In %s, %s at %d clients: ", sec.Title(), k.transport, k.clients)
		if len(kept) > 0 {
			s += "kept up (≥ " + fmt.Sprint(keptUp) + "% delivered): " + strings.Join(kept, ", ") + ". "
		} else {
			s += "no implementation kept up. "
		}
		if len(behind) > 0 {
			s += "Fell behind: " + strings.Join(behind, "; ") + "."
		}
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

// why gives the reason a cell fell behind, from what its runs show.
func why(c *Cell) string {
	var reasons []string
	var failed, missing, stalled int64
	for _, run := range c.Runs {
		if !run.OK() {
			continue
		}
		for _, n := range run.Result.Failures {
			failed += n
		}
		missing += run.Result.Counts.Missing
		stalled += run.Result.Counts.Stalled
	}
	if failed > 0 {
		reasons = append(reasons, fmt.Sprintf("%d streams failed or were dropped", failed))
	}
	if stalled > 0 && failed == 0 {
		reasons = append(reasons, fmt.Sprintf("%d streams stayed open but had not caught up by the end", stalled))
	} else if missing > 0 && failed == 0 {
		reasons = append(reasons, fmt.Sprintf("%d ticks never arrived on open streams", missing))
	}
	if g := c.Summary.Stat(MetricGrowth).Median; g.Valid() && g > memoryGrowth {
		reasons = append(reasons, fmt.Sprintf("server memory grew %s MiB during the run", MetricGrowth.Format(float64(g))))
	}
	if len(reasons) == 0 {
		return ""
	}
	return " (" + strings.Join(reasons, ", ") + ")"
}
