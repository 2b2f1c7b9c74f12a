// Package answersrv serves the answer-streaming workload on /answer
// (PROTOCOL.md, "Answer streaming") over SSE, WebSocket and long polling.
//
// An answer is a pure function of its request and arrival time (package
// answer), so no goroutine produces chunks: whoever delivers an answer
// computes the chunks that are due when it wakes, encodes each one straight
// into its write buffer, writes the batch and sleeps until the next chunk is
// due. Ownership, per flavour:
//   - SSE over HTTP/1.x: once POST /answer (or a resume, GET /answer/{id})
//     is read and admitted, the connection is taken over from net/http
//     (takeOver) and one goroutine of the answer's own, started through
//     the server, owns it: it writes the response (chunked, one write per
//     batch) and waits for each chunk in a read of the connection under a
//     deadline, the first chunk's last stretch on the alarm clock, so that
//     a client that leaves ends the answer at once (the read ends). It
//     ends when the answer is done, the client goes away, a write fails or
//     the server shuts down (a read deadline in the past wakes every such
//     connection, conns). A keep-alive connection then waits, in the same
//     goroutine and without buffers, for the client's next request and
//     goes back to net/http (Config.HandBack), which serves it.
//   - SSE over HTTP/2: the net/http handler goroutine of the stream owns
//     its answer and one timer, and ends when the answer is done, the
//     client resets the stream (net/http cancels the request's context), a
//     write fails or the server shuts down.
//   - WebSocket: a session has a reader goroutine (requests in) and a writer
//     goroutine that owns every answer of the session in a heap ordered by
//     the next chunk due, with one timer; both are started through the
//     server so that Shutdown waits for them, and the writer owns the
//     reader's lifetime.
//   - Long polling: an answer has no goroutine at all; each GET is held in
//     its handler goroutine until a chunk after `after` is due.
//
// Answers made by POST (SSE and polling) are retained in a Store until
// -answer-retain after their last chunk was due, for resume and polls; the
// Store's janitor (Service.Run) expires them and frees the slot of a
// polling answer whose client stopped polling for -answer-idle.
package answersrv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pushbench/pushbench/internal/alarm"
	"github.com/pushbench/pushbench/servers/answer"
	"github.com/pushbench/pushbench/servers/metrics"
)

// Defaults double as the server's flag defaults.
const (
	// DefaultMaxInFlight bounds the answers being delivered at once.
	DefaultMaxInFlight = 10_000
	// DefaultMaxPerConn bounds the answers in flight on one WebSocket
	// session or HTTP/2 connection (an HTTP/1.1 connection carries one
	// request at a time anyway).
	DefaultMaxPerConn = 64
	// DefaultRetain is how long an answer stays resumable after its last
	// chunk was due: long enough for a client to reconnect, short enough
	// that retained answers cost little beside those in flight.
	DefaultRetain = 10 * time.Second
	// DefaultIdle frees the slot of a polling answer nobody asked about
	// for this long.
	DefaultIdle = 30 * time.Second
	// BodyTimeout bounds reading a request body once the head is in.
	BodyTimeout = 5 * time.Second
	// sweepEvery is how often the janitor expires answers and idle polls.
	sweepEvery = 250 * time.Millisecond
)

// Config configures a Service; zero fields take the defaults.
type Config struct {
	// Transport is the flavour served: sse, ws, poll or all. The others
	// answer 404.
	Transport    string
	Limits       answer.Limits
	MaxInFlight  int // answers in flight in the server; < 0: no bound
	MaxPerConn   int // answers in flight per WebSocket session or HTTP/2 connection; < 0: no bound
	Retain       time.Duration
	Idle         time.Duration
	WriteTimeout time.Duration // deadline of every write
	Ping         time.Duration // WebSocket ping period; a peer silent for 1.5 periods is dropped
	AllowOrigin  []string      // WebSocket origins besides same-origin; "*" any
	Metrics      *metrics.Answers
	// Shutdown is canceled when the server stops: streams end, sessions
	// close with 1001, held polls are answered.
	Shutdown context.Context
	// Go starts a WebSocket session's goroutine, or a taken-over SSE
	// answer's, so that the server can wait for it; false means the server
	// is shutting down.
	Go func(func()) bool
	// HandBack is asked, when an SSE answer takes its HTTP/1.1 connection
	// over from net/http, for the way back: once the answer is done and
	// the client began its next request within keepAlive (net/http's idle
	// timeout; 0: no bound), back gives the connection (deadlines cleared)
	// to net/http again, which serves that request (keep-alive). A nil
	// back (or no HandBack: a service constructed alone) means the
	// connection cannot go back: it is closed after the answer, and the
	// response says so (Connection: close).
	HandBack func(c net.Conn) (back func(net.Conn), keepAlive time.Duration)
	Logger   *slog.Logger
}

// Service is the http.Handler of /answer and /answer/{id}.
type Service struct {
	cfg Config
	// clock wakes whoever delivers an answer when its first chunk is due
	// (see chunkWake). RunClock runs it.
	clock    *alarm.Clock
	store    store
	inFlight atomic.Int64
	ws       wsUpgrader
	conns    conns // taken over for SSE answers, woken at shutdown
}

// New validates cfg and returns the service; Run runs its janitor.
func New(cfg Config) (*Service, error) {
	if err := cfg.Limits.Validate(); err != nil {
		return nil, err
	}
	cfg.Limits = cfg.Limits.WithDefaults()
	switch cfg.Transport {
	case "sse", "ws", "poll", "all":
	default:
		return nil, fmt.Errorf("answer: transport must be sse, ws, poll or all, got %q", cfg.Transport)
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxPerConn == 0 {
		cfg.MaxPerConn = DefaultMaxPerConn
	}
	if cfg.Retain <= 0 {
		cfg.Retain = DefaultRetain
	}
	if cfg.Idle <= 0 {
		cfg.Idle = DefaultIdle
	}
	if cfg.Shutdown == nil {
		cfg.Shutdown = context.Background()
	}
	if cfg.Go == nil {
		cfg.Go = func(fn func()) bool { go fn(); return true }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		return nil, errors.New("answer: Config.Metrics is required")
	}
	clock, err := alarm.New()
	if err != nil {
		return nil, fmt.Errorf("answer: %w", err)
	}
	s := &Service{cfg: cfg, clock: clock}
	s.store.init(cfg.Metrics.Retained)
	s.ws.init(cfg.AllowOrigin)
	context.AfterFunc(cfg.Shutdown, s.conns.wake) // for the Service's life: nothing to stop
	return s, nil
}

// RunClock runs the alarm clock the first chunks wait on (see chunkWake)
// until ctx is done; once it returned, their waits end at once. The owner
// starts it beside Run.
func (s *Service) RunClock(ctx context.Context) {
	_ = s.clock.Run(ctx) // ctx's error: the only way it ends
}

// Run expires retained answers and frees the slots of idle polling answers
// until ctx is done or the server shuts down.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.cfg.Shutdown.Done():
			return
		case now := <-t.C:
			s.store.sweep(now.UnixNano(), int64(s.cfg.Idle))
		}
	}
}

// InFlight is the number of answers being delivered now.
func (s *Service) InFlight() int64 { return s.inFlight.Load() }

func (s *Service) serves(flavour string) bool {
	return s.cfg.Transport == flavour || s.cfg.Transport == "all"
}

// connKey holds, in a connection's context, the count of answers in
// flight on that connection (see ConnContext).
type connKey struct{}

// ConnContext marks a new connection's context so that answers in flight
// can be counted per connection: use it in http.Server.ConnContext. Without
// it only the server's bound applies to HTTP requests.
func ConnContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, connKey{}, new(atomic.Int64))
}

// take admits one answer of transport tr against the server's bound and,
// when conn is not nil, the connection's. release ends its delivery with an
// outcome (once; later calls do nothing).
func (s *Service) take(tr string, conn *atomic.Int64) (release func(outcome string), reason string, ok bool) {
	m := s.cfg.Metrics
	if s.cfg.Shutdown.Err() != nil {
		m.Refused.WithLabelValues(tr, metrics.ReasonShutdown).Inc()
		return nil, metrics.ReasonShutdown, false
	}
	if conn != nil {
		if n := conn.Add(1); s.cfg.MaxPerConn > 0 && n > int64(s.cfg.MaxPerConn) {
			conn.Add(-1)
			m.Refused.WithLabelValues(tr, metrics.AnswerConnLimit).Inc()
			return nil, metrics.AnswerConnLimit, false
		}
	}
	if n := s.inFlight.Add(1); s.cfg.MaxInFlight > 0 && n > int64(s.cfg.MaxInFlight) {
		s.inFlight.Add(-1)
		if conn != nil {
			conn.Add(-1)
		}
		m.Refused.WithLabelValues(tr, metrics.AnswerServerLimit).Inc()
		return nil, metrics.AnswerServerLimit, false
	}
	m.Started.WithLabelValues(tr).Inc()
	gauge := m.InFlight.WithLabelValues(tr)
	gauge.Inc()
	var done atomic.Bool
	return func(outcome string) {
		if !done.CompareAndSwap(false, true) {
			return
		}
		s.inFlight.Add(-1)
		if conn != nil {
			conn.Add(-1)
		}
		gauge.Dec()
		m.Finished.WithLabelValues(tr, outcome).Inc()
	}, "", true
}

// ServeHTTP routes /answer (POST: SSE or polling by Accept; GET with an
// Upgrade: a WebSocket session) and /answer/{id} (GET: SSE resume or a
// poll, by Accept).
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/answer" {
		switch r.Method {
		case http.MethodPost:
			s.create(w, r)
		case http.MethodGet:
			if !s.serves("ws") {
				writeError(w, http.StatusNotFound, "this server does not serve WebSocket answers (-transport)")
				return
			}
			s.session(w, r)
		default:
			w.Header().Set("Allow", "GET, POST")
			writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		}
		return
	}
	id, ok := strings.CutPrefix(r.URL.Path, "/answer/")
	if !ok || id == "" || strings.Contains(id, "/") {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	flavour, status, msg := s.flavourOf(r)
	if status != 0 {
		writeError(w, status, msg)
		return
	}
	rec := s.store.get(id, time.Now().UnixNano())
	if rec == nil {
		writeError(w, http.StatusNotFound, "no such answer, or no longer retained")
		return
	}
	if flavour == metrics.SSE {
		s.resume(w, r, rec)
	} else {
		s.poll(w, r, rec)
	}
}

// flavourOf picks the answer flavour (SSE or polling) a request's Accept
// asks for, or the status and message that refuse it: 406 for an Accept
// that allows neither, 404 for a flavour this server's -transport does not
// serve.
func (s *Service) flavourOf(r *http.Request) (flavour string, status int, msg string) {
	flavour, ok := negotiate(r.Header.Values("Accept"))
	if !ok {
		s.cfg.Metrics.BadRequests.WithLabelValues(metrics.SSE).Inc()
		return "", http.StatusNotAcceptable, "Accept must allow text/event-stream (SSE) or application/json (polling)"
	}
	if !s.serves(flavour) {
		return "", http.StatusNotFound, "this server does not serve " + flavour + " answers (-transport)"
	}
	return flavour, 0, ""
}

// create reads a POST /answer: the flavour from Accept, the bounded body,
// then starts an SSE stream or a polling answer.
func (s *Service) create(w http.ResponseWriter, r *http.Request) {
	flavour, status, msg := s.flavourOf(r)
	if status != 0 {
		refuseBody(w, status, msg)
		return
	}
	bad := s.cfg.Metrics.BadRequests.WithLabelValues(flavour)
	if r.ContentLength > answer.MaxBody {
		bad.Inc()
		refuseBody(w, http.StatusRequestEntityTooLarge, "request body larger than "+strconv.Itoa(answer.MaxBody)+" bytes")
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		bad.Inc()
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body larger than "+strconv.Itoa(answer.MaxBody)+" bytes")
			return
		}
		refuseBody(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		return
	}
	arrival := time.Now().UnixNano() // PROTOCOL.md: when the server read the request
	req, err := answer.Parse(body, s.cfg.Limits)
	if err != nil {
		bad.Inc()
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	traceArrival(r.Context(), req.Seed, arrival)
	var conn *atomic.Int64
	if flavour == metrics.SSE { // polling answers count against the server's bound only
		conn, _ = r.Context().Value(connKey{}).(*atomic.Int64)
	}
	release, reason, ok := s.take(flavour, conn)
	if !ok {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "server at capacity: "+reason)
		return
	}
	rec := s.store.add(req, arrival, s.cfg.Retain)
	if flavour == metrics.SSE {
		s.serveSSE(w, r, rec, 0, release)
		return
	}
	s.startPoll(w, rec, release)
}

// readBody reads a POST body of at most answer.MaxBody bytes within
// BodyTimeout. The read deadline is set only when a body remains to be
// read: without one, net/http's background read of the connection has
// already begun, and a deadline would cut it (and cancel the request).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(BodyTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, fmt.Errorf("set read deadline: %w", err)
	}
	// net/http clears the deadline when the body hits EOF and its
	// background read of the connection begins.
	return io.ReadAll(http.MaxBytesReader(w, r.Body, answer.MaxBody))
}

// negotiate picks the flavour from the Accept headers: SSE when they name
// text/event-stream, polling when they name application/json (and not
// text/event-stream), SSE again for */*; none at all means SSE. Media
// ranges with q=0 are excluded. ok is false when none fits (406).
func negotiate(accept []string) (flavour string, ok bool) {
	if len(accept) == 0 {
		return metrics.SSE, true
	}
	var sse, json, any bool
	for _, h := range accept {
		for part := range strings.SplitSeq(h, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			if q, err := strconv.ParseFloat(params["q"], 64); err == nil && q <= 0 {
				continue
			}
			switch mt {
			case "text/event-stream":
				sse = true
			case "application/json":
				json = true
			case "*/*":
				any = true
			}
		}
	}
	switch {
	case sse:
		return metrics.SSE, true
	case json:
		return metrics.Poll, true
	case any:
		return metrics.SSE, true
	}
	return "", false
}

// writeError answers code with {"error":msg}.
func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// refuseBody answers an error without reading the request's body and closes
// the connection: net/http would otherwise read what is left of it (up to
// 256 KiB, with no deadline) to reuse the connection. A read deadline in the
// past makes that read fail at once.
func refuseBody(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0))
	writeError(w, code, msg)
}

// outcomeOf classifies a failed write. A timeout is matched as a
// net.Error too: gorilla replaces the socket's deadline error by its own.
func outcomeOf(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return metrics.AnswerSlow
	case errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed),
		errors.Is(err, context.Canceled), errors.Is(err, http.ErrHandlerTimeout):
		return metrics.AnswerDeparted
	}
	return metrics.AnswerError
}

// idJSON is a WebSocket request's id as a JSON string, for the chunk
// encoder.
func idJSON(id string) []byte {
	b, _ := json.Marshal(id)
	return b
}
