// Package answer is the load generator's answer workload (PROTOCOL.md,
// "Answer streaming"): requests arrive open-loop, as a seeded Poisson
// process, each asks the server for an answer of its own (a stream of
// chunks at the model's pace, like a chat assistant's reply) over SSE,
// WebSocket or long polling, and is measured as users feel it: time to
// the first chunk (TTFT), the gaps between chunks (ITL), the time to the
// end, and each chunk's lateness from its scheduled ts. Every request is
// timed from when it was meant to be sent, so a slow server shows as TTFT,
// never as a lower offered rate (no coordinated omission), and every
// answer is checked: each chunk once, in order, the done message, and the
// text the seed determines.
//
// Ownership: Run owns every goroutine it starts (the pacer, one per answer
// in flight for SSE and polling, one reader per WebSocket session) and
// returns only after all of them ended; with -conn h2 the read loops of
// the pool's connections (x/net's) end when Run closes the pool.
package answer

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	gen "github.com/pushbench/pushbench/servers/answer"
)

// Transports the workload runs over.
var Transports = []string{"sse", "ws", "poll"}

// Connection modes (Config.Conn).
const (
	// ConnKeepAlive reuses connections, one answer at a time on each
	// (HTTP/1.1 keep-alive; for ws a session per answer in flight, reused).
	ConnKeepAlive = "keepalive"
	// ConnFresh opens a new connection per answer (a WebSocket session
	// per answer) and closes it after.
	ConnFresh = "fresh"
	// ConnMux (ws) multiplexes the answers over Conns sessions, several
	// in flight on each: WebSocket's natural shape.
	ConnMux = "mux"
	// ConnH2 (sse, poll) sends every request as an HTTP/2 stream over
	// Conns connections, as a browser's fetch does: h2 by ALPN over
	// https, h2c with prior knowledge over http.
	ConnH2 = "h2"
)

// ConnModes are the values of Config.Conn.
var ConnModes = []string{ConnKeepAlive, ConnFresh, ConnMux, ConnH2}

// Defaults double as the load generator's flag defaults. An answer's
// shape is by default the server's default request.
const (
	DefaultInFlight  = 100
	DefaultTokens    = gen.DefaultTokens
	DefaultTokenRate = gen.DefaultRate // chunks per second within an answer
	DefaultThink     = gen.DefaultThink
	// MuxPerConn is the answers in flight per ws mux session, or HTTP/2
	// connection, that the default Conns plans for: half the server's
	// default limit per session or connection (64), so that the answers'
	// uneven spread stays under it.
	MuxPerConn = 32
	// MaxTokens bounds what the checker tracks per answer; servers bound
	// it lower with their flags.
	MaxTokens = 1 << 16
	// DefaultPollTimeout is the timeout parameter of a long poll.
	DefaultPollTimeout = 25 * time.Second
)

// Config describes one answer run. Validate fills in the defaults.
type Config struct {
	Transport string   // sse, ws or poll
	Base      *url.URL // the server's base URL, http[s]://host:port[/prefix]
	// TLS is the clients' TLS configuration for an https Base (roots,
	// InsecureSkipVerify; nil: the system's roots); the server name and
	// the ALPN protocols of Conn are added to it.
	TLS *tls.Config
	// InFlight is the answers in flight the run aims at on average. It
	// sets the defaults of Rate (InFlight over one answer's length, by
	// Little's law) and Concurrency (2·InFlight + 10, room for the
	// Poisson arrivals' bursts).
	InFlight int
	// Rate is the offered load in answers per second: the mean of the
	// Poisson arrivals, seeded with Seed.
	Rate float64
	// Concurrency caps the answers in flight. An arrival that finds the
	// cap full is not sent and counted (NotSentCap), never delayed.
	Concurrency int
	// Tokens, TokenRate and Think are each request's: chunks per answer,
	// chunks per second, and the wait before the first.
	Tokens    int
	TokenRate float64
	Think     time.Duration
	// Seed seeds the arrivals; answer n (0-based) asks for seed Seed+n,
	// so every answer's text differs and is known.
	Seed uint64
	// Arrivals come for Warmup, then Duration. The answers that arrive in
	// the warm-up are checked (the counts cover them) but left out of the
	// histograms and the rates, which cover the answers and chunks of
	// Duration: by then as many answers are in flight as the load keeps.
	// Drain is how long the run then waits for the answers in flight
	// before cutting them (0: one answer's length, and 2 s).
	Warmup   time.Duration
	Duration time.Duration
	Drain    time.Duration
	// Conn is the connection mode (ConnModes); "" takes keepalive for
	// sse and poll and mux for ws. Conns is the number of ws mux sessions
	// or of HTTP/2 connections (0: one per MuxPerConn of Concurrency).
	Conn  string
	Conns int

	ConnectTimeout time.Duration
	PollTimeout    time.Duration
}

// Validate checks c and fills in defaults. Its errors are one line each,
// fit for a usage error.
func (c *Config) Validate() error {
	if !slices.Contains(Transports, c.Transport) {
		return fmt.Errorf("-workload answer runs over %s, not %q", strings.Join(Transports, ", "), c.Transport)
	}
	if c.Base == nil || (c.Base.Scheme != "http" && c.Base.Scheme != "https") || c.Base.Host == "" {
		return errors.New("answer: the base URL must be http://host:port or https://host:port")
	}
	if c.Tokens == 0 {
		c.Tokens = DefaultTokens
	}
	if c.Tokens < 1 || c.Tokens > MaxTokens {
		return fmt.Errorf("-tokens must be 1..%d, got %d", MaxTokens, c.Tokens)
	}
	if c.TokenRate == 0 {
		c.TokenRate = DefaultTokenRate
	}
	if !(c.TokenRate > 0 && c.TokenRate <= 1e6) {
		return fmt.Errorf("-token-rate must be between 0 and 1e6 chunks per second, got %g", c.TokenRate)
	}
	if c.Think < 0 {
		return fmt.Errorf("-think must not be negative, got %s", c.Think)
	}
	if c.InFlight == 0 {
		c.InFlight = DefaultInFlight
	}
	if c.InFlight < 1 || c.InFlight > 1e6 {
		return fmt.Errorf("-clients (answers in flight) must be 1..1000000, got %d", c.InFlight)
	}
	if c.Rate == 0 {
		// Little's law: in flight = rate × time in flight. The schedule's
		// length stands for the time in flight, which is a little longer.
		c.Rate = float64(c.InFlight) / max(c.Length(), time.Millisecond).Seconds()
	}
	if !(c.Rate > 0 && c.Rate <= 1e6) {
		return fmt.Errorf("-rate must be between 0 and 1e6 answers per second, got %g", c.Rate)
	}
	if c.Concurrency == 0 {
		c.Concurrency = 2*c.InFlight + 10
	}
	if c.Concurrency < 1 || c.Concurrency > 1e6 {
		return fmt.Errorf("-concurrency must be 1..1000000 answers in flight, got %d", c.Concurrency)
	}
	if c.Duration <= 0 {
		return fmt.Errorf("-duration must be positive, got %s", c.Duration)
	}
	if c.Warmup < 0 {
		return fmt.Errorf("-warmup must not be negative, got %s", c.Warmup)
	}
	if c.Drain < 0 {
		return fmt.Errorf("-drain must not be negative, got %s", c.Drain)
	}
	if c.Drain == 0 {
		c.Drain = c.Length() + 2*time.Second
	}
	if c.Conn == "" {
		c.Conn = ConnKeepAlive
		if c.Transport == "ws" {
			c.Conn = ConnMux
		}
	}
	switch {
	case !slices.Contains(ConnModes, c.Conn):
		return fmt.Errorf("-conn must be one of %s, got %q", strings.Join(ConnModes, ", "), c.Conn)
	case c.Conn == ConnMux && c.Transport != "ws":
		return fmt.Errorf("-conn mux multiplexes WebSocket sessions; %s takes keepalive, fresh or h2", c.Transport)
	case c.Conn == ConnH2 && c.Transport == "ws":
		return errors.New("-conn h2 (HTTP/2) carries sse and poll answers; WebSocket stays an HTTP/1.1 upgrade (no RFC 8441): take mux, keepalive or fresh")
	}
	if c.Conns == 0 {
		c.Conns = (c.Concurrency + MuxPerConn - 1) / MuxPerConn
	}
	if c.Conns < 1 || c.Conns > c.Concurrency {
		return fmt.Errorf("-conns must be 1..-concurrency (%d), got %d", c.Concurrency, c.Conns)
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.PollTimeout <= 0 {
		c.PollTimeout = DefaultPollTimeout
	}
	return nil
}

// Length is how long one answer takes on schedule: think, then a chunk
// every 1/TokenRate after the first.
func (c *Config) Length() time.Duration {
	return gen.Request{Tokens: c.Tokens, Rate: c.TokenRate, Think: c.Think}.Duration()
}
