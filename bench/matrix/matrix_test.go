package matrix

import (
	"strings"
	"testing"

	"github.com/pushbench/pushbench/bench/report"
)

// TestTablesAreValid checks every table at both scales: known values,
// non-empty matrices, and at least one cell.
func TestTablesAreValid(t *testing.T) {
	for _, full := range []bool{false, true} {
		for _, tb := range All(Scale{Full: full, MaxClients: 19000}) {
			if err := tb.Check(); err != nil {
				t.Errorf("full=%v: %v", full, err)
			}
			if len(tb.Cells(func(string, string) bool { return true })) == 0 {
				t.Errorf("full=%v: table %s has no cells", full, tb.Name)
			}
			rt := tb.Report()
			if rt.Conditions == "" || rt.Name != tb.Name {
				t.Errorf("table %s: report %+v", tb.Name, rt)
			}
		}
	}
}

// TestValuesApplyAndResolve checks that a value limited to some transports
// is left out of the others' cells and refused by Resolve, and that a
// table's fixed values are its caption's conditions.
func TestValuesApplyAndResolve(t *testing.T) {
	for _, d := range Dimensions() {
		if _, err := d.Lookup(d.Default); err != nil {
			t.Errorf("%s: default %q unknown: %v", d.Name, d.Default, err)
		}
		if _, err := d.Lookup("no-such-value"); err == nil || !strings.Contains(err.Error(), d.Name) {
			t.Errorf("%s: unknown value accepted or unclear: %v", d.Name, err)
		}
		for _, v := range d.Values {
			for _, tr := range report.Transports {
				dims := report.DefaultDims
				switch d.Name {
				case report.DimProtocol:
					dims.Protocol = v.Name
				case report.DimNetwork:
					dims.Network = v.Name
				case report.DimImpl:
					dims.Impl = v.Name
				case report.DimWorkload:
					dims.Workload = v.Name
				}
				tb := Table{Name: "t", Scenarios: []string{report.Steady}, Transports: []string{tr}, Clients: []int{1},
					Dims: map[string][]string{d.Name: {v.Name}}, Rate: 1, Duration: 1, Repeat: 1}
				cells := tb.Cells(func(string, string) bool { return true })
				_, err := Resolve(dims, tr)
				if v.Applies(tr) != (len(cells) == 1) || v.Applies(tr) != (err == nil) {
					t.Errorf("%s %s for %s: applies %v, %d cells, resolve %v", d.Name, v.Name, tr, v.Applies(tr), len(cells), err)
				}
				if v.Applies(tr) && !strings.Contains(tb.Report().Conditions, d.Name+" "+v.Name+": ") {
					t.Errorf("%s %s: caption %q lacks it", d.Name, v.Name, tb.Report().Conditions)
				}
			}
		}
	}
}

// TestCaptionSaysWhoIsLeftOut: a table run with one value that some of its
// transports cannot take (bench -protocols h2c) says in its caption which
// transports were left out and why, instead of dropping their rows
// silently.
func TestCaptionSaysWhoIsLeftOut(t *testing.T) {
	tb := Table{Name: "t", Scenarios: []string{report.Steady}, Transports: []string{"sse", "ws"}, Clients: []int{1},
		Dims: map[string][]string{report.DimProtocol: {"h2c"}}, Rate: 1, Duration: 1, Repeat: 1}
	if got := len(tb.Cells(func(string, string) bool { return true })); got != 1 {
		t.Errorf("%d cells, want sse's only", got)
	}
	if c := tb.Report().Conditions; !strings.Contains(c, "ws left out: ") {
		t.Errorf("caption %q does not say ws was left out", c)
	}
}
