package matrix

import "github.com/pushbench/pushbench/bench/report"

// Workloads is the workload dimension: what the clients ask of the server.
// feed is the broadcast price feed every client subscribes to.
func Workloads() Dimension {
	return Dimension{Name: report.DimWorkload, Default: report.DefaultDims.Workload, Values: []Value{
		{Name: "feed", About: "the broadcast price feed"},
	}}
}
