// Package metrics holds the server's Prometheus instruments on a registry of
// its own (never the global default one), so that several servers can live
// in one test binary and bench can scrape exactly what one process did.
package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Transport names used as label values.
const (
	SSE  = "sse"
	WS   = "ws"
	Poll = "poll"
)

// Reasons for a refused connection.
const (
	ReasonMaxConns = "max_conns"     // -max-conns reached (or the open-files budget)
	ReasonShutdown = "shutting_down" // the server is draining
	// ReasonConnLimit: accepted past the connection bound, into the reserve
	// that only serves /healthz and /metrics; answered 503 and closed.
	ReasonConnLimit = "conn_limit"
	// ReasonReserveFull: accepted past the connection bound and its reserve
	// too; closed at once, unanswered.
	ReasonReserveFull = "reserve_full"
)

// Metrics are the server's instruments.
type Metrics struct {
	Registry     *prometheus.Registry
	ConnsOpen    *prometheus.GaugeVec
	Refused      *prometheus.CounterVec
	Deliveries   *prometheus.CounterVec
	BytesWritten *prometheus.CounterVec
	Gaps         *prometheus.CounterVec
	WriteErrors  *prometheus.CounterVec
	PollRequests prometheus.Counter
	// Accepted counts the TCP connections accepted and not yet closed, on
	// every path, taken-over streams and the reserve included.
	Accepted prometheus.Gauge
	// AcceptErrors counts accept calls that failed for want of a file
	// descriptor: net/http retries them, so they count retries, not clients.
	AcceptErrors prometheus.Counter
	transports   map[string]*Transport
}

// New builds the instruments and registers them, with the Go and process
// collectors, on a new registry.
func New() *Metrics {
	const ns = "pushbench"
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		ConnsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "connections_open",
			Help: "Streaming connections (and held polls) open now, by transport."}, []string{"transport"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "connections_refused_total",
			Help: "Connections refused at a limit, by transport and reason."}, []string{"transport", "reason"}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "deliveries_total",
			Help: "Ticks written to clients, by transport."}, []string{"transport"}),
		BytesWritten: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "bytes_written_total",
			Help: "Body bytes written to clients (ticks, gaps, heartbeats), by transport."}, []string{"transport"}),
		Gaps: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "gaps_total",
			Help: "Gap signals sent to clients that fell behind the history, by transport."}, []string{"transport"}),
		WriteErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "write_errors_total",
			Help: "Writes or flushes that failed (peer gone or write deadline passed), by transport."}, []string{"transport"}),
		PollRequests: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "poll_requests_total",
			Help: "Poll requests answered (long and short)."}),
		Accepted: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "connections_accepted",
			Help: "TCP connections accepted and open now, whatever they ask (streams, polls, scrapes, idle keep-alives)."}),
		AcceptErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "accept_errors_total",
			Help: "Accept calls that failed for want of a file descriptor (each retry counts once; the client waits in the backlog)."}),
	}
	m.transports = map[string]*Transport{}
	for _, name := range []string{SSE, WS, Poll} {
		m.transports[name] = &Transport{
			Open:        m.ConnsOpen.WithLabelValues(name),
			Deliveries:  m.Deliveries.WithLabelValues(name),
			Bytes:       m.BytesWritten.WithLabelValues(name),
			Gaps:        m.Gaps.WithLabelValues(name),
			WriteErrors: m.WriteErrors.WithLabelValues(name),
			refused:     m.Refused,
			name:        name,
		}
	}
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.ConnsOpen, m.Refused, m.Deliveries, m.BytesWritten, m.Gaps, m.WriteErrors, m.PollRequests, m.Accepted, m.AcceptErrors)
	return m
}

// Transport is the set of instruments of one transport, with labels resolved
// once so that the hot path only adds.
type Transport struct {
	Open        prometheus.Gauge
	Deliveries  prometheus.Counter
	Bytes       prometheus.Counter
	Gaps        prometheus.Counter
	WriteErrors prometheus.Counter
	refused     *prometheus.CounterVec
	name        string
	delivered   atomic.Int64
}

// For returns the instruments of one transport (SSE, WS or Poll).
func (m *Metrics) For(transport string) *Transport { return m.transports[transport] }

// Delivered adds n ticks written to clients.
func (t *Transport) Delivered(n int) {
	t.Deliveries.Add(float64(n))
	t.delivered.Add(int64(n))
}

// DeliveredTotal is the Deliveries counter, readable without allocating
// (for benchmarks that wait on it).
func (t *Transport) DeliveredTotal() int64 { return t.delivered.Load() }

// Refuse counts one refused connection.
func (t *Transport) Refuse(reason string) { t.refused.WithLabelValues(t.name, reason).Inc() }
