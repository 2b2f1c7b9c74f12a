package matrix

import (
	"testing"

	"github.com/pushbench/pushbench/bench/report"
)

// A value limited to some scenarios is planned only in them: the answer
// workload has no slow, churn or storm cells, and no shortpoll ones.
func TestValueScenarios(t *testing.T) {
	tb := Table{Name: "t", Scenarios: []string{report.Steady, report.Slow, report.Storm}, Transports: []string{"sse", "shortpoll"},
		Clients: []int{10}, Dims: map[string][]string{report.DimWorkload: {"feed", "answer"}}, Rate: 1, Duration: 1, Repeat: 1}
	got := map[string]int{}
	for _, c := range tb.Cells(func(string, string) bool { return true }) {
		got[c.Scenario+" "+c.Transport+" "+c.Dims.Workload]++
	}
	want := map[string]int{"steady sse feed": 1, "steady sse answer": 1, "slow sse feed": 1, "storm sse feed": 1,
		"steady shortpoll feed": 1, "slow shortpoll feed": 1, "storm shortpoll feed": 1}
	if len(got) != len(want) {
		t.Errorf("cells %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("cells %v, want %v", got, want)
			break
		}
	}
	a, _ := Workloads().Lookup("answer")
	if a.InScenario(report.Slow) || !a.InScenario(report.Steady) {
		t.Errorf("answer in slow %v, in steady %v", a.InScenario(report.Slow), a.InScenario(report.Steady))
	}
}
