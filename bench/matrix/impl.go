package matrix

import "github.com/pushbench/pushbench/bench/report"

// Impls is the implementation dimension: which server code serves the
// transport. pushbench is this project's own servers.
func Impls() Dimension {
	return Dimension{Name: report.DimImpl, Default: report.DefaultDims.Impl, Values: []Value{
		{Name: "pushbench", About: "this project's servers (SSE and long polling on net/http, WebSocket on gorilla/websocket v1.5.3)"},
	}}
}
