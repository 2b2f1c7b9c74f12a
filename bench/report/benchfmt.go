package report

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// BenchPrefix names every benchmark line bench writes. The sub-benchmark
// keys (scenario=, transport=, clients=) let benchstat group and compare
// them, e.g. `benchstat -col .config old.txt new.txt` or by transport:
// `benchstat -col /transport bench.txt`.
const BenchPrefix = "BenchmarkPushbench"

// NewBenchfmtReporter writes every successful run in the Go benchmark
// format: configuration lines first (so benchstat can tell machines apart),
// then one line per repeat with the figures as custom units. benchstat needs
// the individual repeats, not their median, to judge significance.
func NewBenchfmtReporter(r *Report) Reporter {
	return func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		env := r.Env
		// Only the keys go test writes are configuration: benchstat splits
		// tables on any key that differs, so a commit or duration key would
		// keep two runs from ever being compared. The rest is context, on
		// lines benchstat ignores.
		for _, kv := range [][2]string{{"goos", env.GOOS}, {"goarch", env.GOARCH}, {"pkg", "github.com/pushbench/pushbench/bench"}, {"cpu", env.CPUModel}} {
			if kv[1] != "" {
				fmt.Fprintf(bw, "%s: %s\n", kv[0], strings.ReplaceAll(kv[1], "\n", " "))
			}
		}
		fmt.Fprintf(bw, "# pushbench %s commit %s; %d cores, kernel %s, %s; pinning %s; open files %d; feed %g ticks/s, %d symbols; %s per run\n",
			r.Started.UTC().Format("2006-01-02T15:04:05Z"), orUnknown(env.GitCommit), env.Cores, orUnknown(env.Kernel), env.GoVersion,
			env.Pinning.Mode, env.OpenFiles, r.Config.Rate, r.Config.Symbols, r.Config.Duration)
		for _, c := range r.Cells {
			for i := range c.Runs {
				run := &c.Runs[i]
				if !run.OK() {
					continue
				}
				fmt.Fprintf(bw, "%s/%s \t1", BenchPrefix, benchName(r.Table(c.Table), c))
				// The table's own columns, the reach the tables leave to
				// the charts (absent in storm), plus the correctness counts
				// that any comparison must show did not change.
				metrics := append(TableColumns(r.Table(c.Table), c.Scenario), MetricReach50, MetricReach100, MetricMissing, MetricDuplicates, MetricGaps)
				for _, m := range metrics {
					v := m.Get(&run.Figures)
					if m.Bench == "" || !v.Valid() {
						continue
					}
					fmt.Fprintf(bw, "\t%s %s", strconv.FormatFloat(float64(v)*m.BenchX, 'g', 6, 64), m.Bench)
				}
				fmt.Fprintln(bw)
			}
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("write benchmark format: %w", err)
		}
		return nil
	}
}

// benchName is a cell's sub-benchmark name: the main table's cells keep the
// keys they had before tables existed (scenario, transport, clients), so
// that old and new bench.txt files compare; other tables add theirs and
// the dimensions they vary.
func benchName(t *Table, c *Cell) string {
	var b strings.Builder
	if t.Name != MainTable {
		fmt.Fprintf(&b, "table=%s/", t.Name)
	}
	fmt.Fprintf(&b, "scenario=%s/transport=%s/", c.Scenario, c.Transport)
	for _, dim := range DimNames {
		if t.Varies(dim) {
			fmt.Fprintf(&b, "%s=%s/", dim, c.Dims.Get(dim))
		}
	}
	fmt.Fprintf(&b, "clients=%d", c.Clients)
	return b.String()
}
