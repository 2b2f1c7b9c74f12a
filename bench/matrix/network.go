package matrix

import "github.com/pushbench/pushbench/bench/report"

// Networks is the network dimension: the path between the load generators
// and the server. loopback is the machine's own, with no proxy.
func Networks() Dimension {
	return Dimension{Name: report.DimNetwork, Default: report.DefaultDims.Network, Values: []Value{
		{Name: "loopback", About: "loopback, no shaping (round trips of microseconds)"},
	}}
}
