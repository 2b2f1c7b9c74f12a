package matrix

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pushbench/pushbench/bench/report"
	"github.com/pushbench/pushbench/servers/impls"
)

// Impls is the implementation dimension: which server code serves the
// transport (bin/server -impl). Its values come from the server's registry
// (servers/impls), so that bench, -h and README describe the same thing:
// pushbench is this project's own servers; the others are libraries (or
// net/http's textbook pattern) built the way their documentation teaches.
// An implementation name shared by two transports (nethttp) is one value
// that applies to both.
func Impls() Dimension {
	var values []Value
	byName := map[string]int{}
	for _, im := range impls.List() {
		transports := []string{im.Transport}
		if im.Name == impls.Default && im.Transport == "poll" {
			transports = append(transports, "shortpoll") // our /poll answers timeout=0 at once
		}
		if i, ok := byName[im.Name]; ok {
			v := &values[i]
			v.Transports = append(v.Transports, transports...)
			v.About += " " + about(im)
			continue
		}
		byName[im.Name] = len(values)
		values = append(values, Value{Name: im.Name, About: about(im), Transports: transports})
	}
	for i := range values {
		v := &values[i]
		if v.Name == impls.Default {
			v.Transports = nil // every transport
			continue
		}
		v.Server = []string{"-impl", v.Name}
		var not []string
		for _, tr := range report.Transports {
			if !slices.Contains(v.Transports, tr) {
				not = append(not, tr)
			}
		}
		v.Unsupported = fmt.Sprintf("%s implements %s only (not %s)", v.Name, strings.Join(v.Transports, ", "), strings.Join(not, ", "))
	}
	return Dimension{Name: report.DimImpl, Default: report.DefaultDims.Impl, Values: values}
}

// about is an implementation's caption text: what it is, its library and
// version, the protocol features it supports and how its deliveries are
// counted.
func about(im impls.Impl) string {
	lib := im.Library
	if lib == "" {
		lib = "net/http"
	}
	return fmt.Sprintf("(%s) %s %s, %s; supports %s; server-side deliveries %s.",
		im.Transport, lib, im.Version(), im.Pattern, im.SupportsString(), im.Deliveries)
}

// ImplsTable compares the implementations of each transport under the
// issue's load: 2000 clients at 100 ticks/s, steady and with 10% of the
// clients stalled (where the libraries differ most).
func ImplsTable(sc Scale) Table {
	d := Impls()
	t := Table{
		Name: "impls", Title: "Implementations",
		About: "Which library: each transport served by this project's server and by the popular Go implementations " +
			"(one line each), under the same load generator. Delivered % is of the ticks owed; supports and how " +
			"deliveries are counted are in the conditions. One repeat in the default run (each run at 2000 clients takes about 14 s).",
		Default:    true,
		Scenarios:  []string{report.Steady, report.Slow},
		Transports: []string{"sse", "ws", "poll"},
		Clients:    []int{2000},
		Dims:       map[string][]string{report.DimImpl: d.Names()},
		Rate:       100, Duration: time.Second, Warmup: 500 * time.Millisecond, Repeat: 1,
		Columns: []string{report.MetricDelivered.Key, report.MetricP50.Key, report.MetricP99.Key, report.MetricRSS.Key,
			report.MetricCPU.Key, report.MetricGoroutines.Key, report.MetricGrowth.Key, report.MetricStalledDropped.Key},
	}
	if sc.Full {
		t.Scenarios = append(t.Scenarios, report.Churn)
		t.Clients = []int{500, 2000, 5000}
		t.Duration, t.Warmup, t.Repeat = 10*time.Second, 2*time.Second, 3
	}
	return t
}
