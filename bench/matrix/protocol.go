package matrix

import "github.com/pushbench/pushbench/bench/report"

// Protocols is the protocol dimension: how the bytes travel between client
// and server (plaintext HTTP/1.1, TLS, HTTP/2).
func Protocols() Dimension {
	return Dimension{Name: report.DimProtocol, Default: report.DefaultDims.Protocol, Values: []Value{
		{Name: "h1", About: "HTTP/1.1 over plaintext TCP"},
	}}
}
