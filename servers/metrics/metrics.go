// Package metrics holds the server's Prometheus instruments on a registry of
// its own (never the global default one), so that several servers can live
// in one test binary and bench can scrape exactly what one process did.
//
// Connections, deliveries and bytes are labelled by transport and by the
// protocol the request came over (protocol.H1, protocol.H2), so that one
// server can tell what each costs; refusals too ("any" where no request was
// read). Gaps, drops and write errors are by transport only: the policy is
// the same on every protocol. Consumers that want a transport's total sum
// over the protocol label (bench/sample sums every series of a family).
package metrics

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pushbench/pushbench/servers/protocol"
)

// AnyProtocol labels a refusal made before any request was read (at
// accept, or an HTTP/2 stream refused by net/http).
const AnyProtocol = "any"

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
	// ReasonH2Streams: an HTTP/2 stream opened past the connection's
	// concurrent stream limit, reset by net/http (RFC 9113 §5.1.2).
	ReasonH2Streams = "h2_max_streams"
)

// Causes of a drop: a client the server cut off or skipped ahead because
// it was too slow, or closed because it misbehaved.
const (
	// CauseWriteTimeout: a write blocked past -write-timeout; the client
	// is disconnected.
	CauseWriteTimeout = "write_timeout"
	// CauseGap: the client fell further behind than the history and was
	// sent a gap (SSE, WebSocket: after the stream's first read; a gap at
	// the resume point a client reconnected with is not counted, that
	// tick was evicted before the client came back. Poll: every gap, since
	// a poll's cursor is where the client's previous answer ended).
	CauseGap = "gap"
	// CauseFlood: a WebSocket client sent more messages than the server
	// allows (it expects none) and was closed with 1008.
	CauseFlood = "flood"
)

// Kinds of failed write, the cause label of write_errors_total.
const (
	WriteTimeout  = "timeout"  // the write deadline passed: a slow client (also a drop)
	WriteDeparted = "departed" // the client had gone: reset, broken pipe, connection closed
	WriteOther    = "other"
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
	Drops        *prometheus.CounterVec
	PollRequests prometheus.Counter
	// Accepted counts the TCP connections accepted and not yet closed, on
	// every path, taken-over streams and the reserve included.
	Accepted prometheus.Gauge
	// AcceptErrors counts accept calls that failed for want of a file
	// descriptor: net/http retries them, so they count retries, not clients.
	AcceptErrors prometheus.Counter
	transports   map[string]*Transport

	// Answers are the answer workload's instruments (answer.go).
	Answers *Answers
}

// New builds the instruments and registers them, with the Go and process
// collectors, on a new registry.
func New() *Metrics {
	const ns = "pushbench"
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		ConnsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "connections_open",
			Help: "Streams (and held polls) open now, by transport and protocol (h1, h2)."}, []string{"transport", "protocol"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "connections_refused_total",
			Help: "Connections or HTTP/2 streams refused at a limit, by transport, reason and protocol (any: before a request was read)."},
			[]string{"transport", "reason", "protocol"}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "deliveries_total",
			Help: "Ticks written to clients, by transport and protocol."}, []string{"transport", "protocol"}),
		BytesWritten: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "bytes_written_total",
			Help: "Body bytes written to clients (ticks, gaps, heartbeats), by transport and protocol; TLS and HTTP/2 framing not included."},
			[]string{"transport", "protocol"}),
		Gaps: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "gaps_total",
			Help: "Gap signals sent to clients that fell behind the history, by transport."}, []string{"transport"}),
		WriteErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "write_errors_total",
			Help: "Writes that failed, by transport and cause: timeout (the write deadline passed, a slow client), " +
				"departed (the client had already gone: reset, broken pipe, closed), other."}, []string{"transport", "cause"}),
		Drops: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "drops_total",
			Help: "Clients dropped or skipped ahead because they were too slow or misbehaved, by transport and cause: " +
				"write_timeout (disconnected), gap (fell behind the history, sent a gap; not a gap at a reconnecting " +
				"client's resume point), flood (WebSocket client sent too many messages, closed with 1008)."},
			[]string{"transport", "cause"}),
		PollRequests: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "poll_requests_total",
			Help: "Poll requests answered (long and short)."}),
		Accepted: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "connections_accepted",
			Help: "TCP connections accepted and open now, whatever they ask (streams, polls, scrapes, idle keep-alives)."}),
		AcceptErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "accept_errors_total",
			Help: "Accept calls that failed for want of a file descriptor (each retry counts once; the client waits in the backlog)."}),
	}
	m.transports = map[string]*Transport{}
	for _, name := range []string{SSE, WS, Poll} {
		// Every label pair exists from the start, at 0, so that a scrape
		// before the first drop sees the family and rates start at 0.
		byProtocol := map[string]*Transport{}
		delivered := new(atomic.Int64)
		for _, p := range []string{protocol.H1, protocol.H2} {
			byProtocol[p] = &Transport{
				Open:         m.ConnsOpen.WithLabelValues(name, p),
				Deliveries:   m.Deliveries.WithLabelValues(name, p),
				Bytes:        m.BytesWritten.WithLabelValues(name, p),
				Gaps:         m.Gaps.WithLabelValues(name),
				writeTimeout: m.WriteErrors.WithLabelValues(name, WriteTimeout),
				departed:     m.WriteErrors.WithLabelValues(name, WriteDeparted),
				otherError:   m.WriteErrors.WithLabelValues(name, WriteOther),
				SlowWrite:    m.Drops.WithLabelValues(name, CauseWriteTimeout),
				Behind:       m.Drops.WithLabelValues(name, CauseGap),
				Flood:        m.Drops.WithLabelValues(name, CauseFlood),
				refused:      m.Refused,
				name:         name,
				protocol:     p,
				byProtocol:   byProtocol,
				delivered:    delivered,
			}
		}
		m.transports[name] = byProtocol[protocol.H1]
	}
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.ConnsOpen, m.Refused, m.Deliveries, m.BytesWritten, m.Gaps, m.WriteErrors, m.Drops, m.PollRequests,
		m.Accepted, m.AcceptErrors)
	m.Answers = newAnswers(m.Registry)
	return m
}

// Transport is the set of instruments of one transport, with labels resolved
// once so that the hot path only adds.
type Transport struct {
	Open       prometheus.Gauge
	Deliveries prometheus.Counter
	Bytes      prometheus.Counter
	Gaps       prometheus.Counter // every gap signal sent
	// Drops by cause. Behind counts the gaps of clients that fell behind
	// (see CauseGap); SlowWrite is counted by WriteFailed.
	SlowWrite prometheus.Counter
	Behind    prometheus.Counter
	Flood     prometheus.Counter

	writeTimeout, departed, otherError prometheus.Counter
	refused                            *prometheus.CounterVec
	name, protocol                     string
	byProtocol                         map[string]*Transport // this transport's, over each protocol
	delivered                          *atomic.Int64         // over every protocol
}

// For returns the instruments of one transport (SSE, WS or Poll) over
// HTTP/1.1; Over gives those of another protocol.
func (m *Metrics) For(transport string) *Transport { return m.transports[transport] }

// Over returns the instruments of t's transport over protocol p
// (protocol.H1 or protocol.H2, see protocol.Of).
func (t *Transport) Over(p string) *Transport {
	if o, ok := t.byProtocol[p]; ok {
		return o
	}
	panic("metrics: unknown protocol " + p)
}

// Delivered adds n ticks written to clients.
func (t *Transport) Delivered(n int) {
	t.Deliveries.Add(float64(n))
	t.delivered.Add(int64(n))
}

// DeliveredTotal is the Deliveries of the transport over every protocol,
// readable without allocating (for benchmarks that wait on it).
func (t *Transport) DeliveredTotal() int64 { return t.delivered.Load() }

// Refuse counts one refused connection.
func (t *Transport) Refuse(reason string) {
	t.refused.WithLabelValues(t.name, reason, t.protocol).Inc()
}

// WriteFailed counts a failed write by its cause; a write that timed out
// is also a drop (write_timeout): the client was too slow.
func (t *Transport) WriteFailed(err error) {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.writeTimeout.Inc()
		t.SlowWrite.Inc()
	case errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		t.departed.Inc()
	default:
		t.otherError.Inc()
	}
}
