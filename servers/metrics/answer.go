package metrics

// Instruments of the answer-streaming workload (/answer), kept apart from
// the feed's: each request is a stream of its own, so what counts is
// answers started and how they ended, chunks and bytes written, and the
// answers in flight and retained.

import "github.com/prometheus/client_golang/prometheus"

// How an answer's delivery ended, the outcome label of answers_finished_total.
const (
	AnswerDone     = "done"     // every chunk and the done message written
	AnswerDeparted = "departed" // the client went away (connection or session closed)
	AnswerSlow     = "slow"     // a write blocked past -write-timeout: the client was dropped
	AnswerError    = "error"    // another write error
	AnswerIdle     = "idle"     // a polling client stopped polling for -answer-idle
	AnswerShutdown = "shutdown" // the server stopped
)

// Reasons an answer was refused, the reason label of answers_refused_total.
const (
	AnswerServerLimit = "server_limit" // -answer-max-inflight answers in flight
	AnswerConnLimit   = "conn_limit"   // -answer-max-per-conn on this connection or session
)

// Answers are the answer workload's instruments, labelled by transport.
type Answers struct {
	Started     *prometheus.CounterVec
	Finished    *prometheus.CounterVec
	InFlight    *prometheus.GaugeVec
	Refused     *prometheus.CounterVec
	BadRequests *prometheus.CounterVec
	Chunks      *prometheus.CounterVec
	Bytes       *prometheus.CounterVec
	Resumes     prometheus.Counter
	Retained    prometheus.Gauge
	Sessions    prometheus.Gauge
}

func newAnswers(reg *prometheus.Registry) *Answers {
	const ns = "pushbench"
	a := &Answers{
		Started: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "answers_started_total",
			Help: "Answers started (a resume counts again), by transport."}, []string{"transport"}),
		Finished: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "answers_finished_total",
			Help: "Answer deliveries ended, by transport and outcome: done, departed (the client went away), " +
				"slow (dropped at the write deadline), error, idle (a poller stopped polling), shutdown."},
			[]string{"transport", "outcome"}),
		InFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "answers_in_flight",
			Help: "Answers being delivered now (holding a slot), by transport."}, []string{"transport"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "answers_refused_total",
			Help: "Answer requests refused at a limit (503, or a WebSocket error message), by transport and reason: " +
				"server_limit, conn_limit, shutting_down."}, []string{"transport", "reason"}),
		BadRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "answer_bad_requests_total",
			Help: "Answer requests refused as malformed or out of bounds (400, 406, 413, or a WebSocket error message), by transport."},
			[]string{"transport"}),
		Chunks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "answer_chunks_total",
			Help: "Answer chunks written to clients, by transport."}, []string{"transport"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "answer_bytes_written_total",
			Help: "Answer body bytes written (chunks, done and error messages, with their SSE or WebSocket framing), by transport."},
			[]string{"transport"}),
		Resumes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "answer_resumes_total",
			Help: "SSE answers resumed with GET /answer/{id}."}),
		Retained: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "answers_retained",
			Help: "SSE and polling answers retained for resume and polls."}),
		Sessions: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "answer_sessions_open",
			Help: "WebSocket answer sessions open now."}),
	}
	for _, tr := range []string{SSE, WS, Poll} {
		// Every pair present at 0 from the start, as for the feed.
		a.Started.WithLabelValues(tr)
		a.InFlight.WithLabelValues(tr)
		a.BadRequests.WithLabelValues(tr)
		a.Chunks.WithLabelValues(tr)
		a.Bytes.WithLabelValues(tr)
		for _, o := range []string{AnswerDone, AnswerDeparted, AnswerSlow, AnswerError, AnswerIdle, AnswerShutdown} {
			a.Finished.WithLabelValues(tr, o)
		}
		for _, r := range []string{AnswerServerLimit, AnswerConnLimit, ReasonShutdown} {
			a.Refused.WithLabelValues(tr, r)
		}
	}
	reg.MustRegister(a.Started, a.Finished, a.InFlight, a.Refused, a.BadRequests, a.Chunks, a.Bytes,
		a.Resumes, a.Retained, a.Sessions)
	return a
}
