package matrix

import (
	"time"

	"github.com/pushbench/pushbench/bench/report"
)

// http2Transports are the bench transports HTTP/2 applies to: WebSocket
// stays an HTTP/1.1 upgrade.
var http2Transports = []string{"sse", "poll", "shortpoll"}

// noWebSocketOverH2 is the caption line for the transports HTTP/2 leaves out.
const noWebSocketOverH2 = "WebSocket stays an HTTP/1.1 upgrade (gorilla/websocket has no RFC 8441 WebSocket over HTTP/2; over TLS it is the tls row)"

// Protocols is the protocol dimension: how the bytes travel between client
// and server (plaintext HTTP/1.1, TLS, HTTP/2). The TLS values use the
// certificate bin/server makes at start; the load generators skip its
// verification (-insecure), which costs them nothing on the server's side.
func Protocols() Dimension {
	return Dimension{Name: report.DimProtocol, Default: report.DefaultDims.Protocol, Values: []Value{
		{Name: "h1", About: "HTTP/1.1 over plaintext TCP"},
		{Name: "tls", About: "HTTP/1.1 over TLS 1.3 (Go crypto/tls, self-signed ECDSA P-256, session tickets on); WebSocket is wss",
			Server: []string{"-tls"}, Loadgen: []string{"-insecure"}, Scheme: "https"},
		{Name: "h2", About: "HTTP/2 over TLS 1.3 (net/http, ALPN h2, 250 streams per connection); feed clients are streams over clients/100 connections",
			Server: []string{"-tls"}, Loadgen: []string{"-insecure", "-proto", "h2"}, Scheme: "https",
			Transports: http2Transports, Unsupported: noWebSocketOverH2},
		{Name: "h2c", About: "cleartext HTTP/2 with prior knowledge (net/http Protocols; browsers never use it); feed clients are streams over clients/100 connections",
			Server: []string{"-h2c"}, Loadgen: []string{"-proto", "h2"},
			Transports: http2Transports, Unsupported: noWebSocketOverH2},
	}}
}

// ProtocolsTable is "what TLS and HTTP/2 cost": every transport over
// plaintext HTTP/1.1, TLS and HTTP/2 at 1,000 clients, steady and in a
// connection storm.
func ProtocolsTable(sc Scale) Table {
	t := Table{
		Name: "protocols", Title: "What TLS and HTTP/2 cost",
		About: "Each transport over plaintext HTTP/1.1, over TLS and over HTTP/2 (TLS): server memory per connection, " +
			"CPU per 1,000 deliveries, wire bytes per tick (ciphertext with TLS), and in the storm the connect and first-tick p99 " +
			"(handshakes included). One repeat per cell in make bench, to stay in its time budget.",
		Default:    true,
		Scenarios:  []string{report.Steady, report.Storm},
		Transports: []string{"sse", "ws", "poll"},
		Clients:    []int{1000},
		Dims:       map[string][]string{report.DimProtocol: {"h1", "tls", "h2"}},
		Rate:       10, Duration: time.Second, Warmup: 500 * time.Millisecond, Repeat: 1,
		Columns: []string{report.MetricRSS.Key, report.MetricCPU.Key, report.MetricConnect.Key, report.MetricFT99.Key,
			report.MetricBytes.Key, report.MetricTLSBytes.Key, report.MetricP99.Key},
	}
	if sc.Full {
		t.Transports = []string{"sse", "ws", "poll", "shortpoll"}
		t.Clients = []int{1000, 5000}
		t.Dims[report.DimProtocol] = []string{"h1", "tls", "h2", "h2c"}
		t.Duration, t.Warmup, t.Repeat = 5*time.Second, 2*time.Second, 3
	}
	return t
}
