// Package loadgen opens many clients of one transport against a server that
// speaks PROTOCOL.md and measures what they got: latency from each tick's
// scheduled time, throughput, delivery correctness per subscription, bytes
// on the wire, and its own cost, so that a saturated load generator is
// reported rather than mistaken for a slow server.
//
// Run drives one of three load shapes:
//   - streams (sse, ws, poll): Clients long-lived subscriptions opened over
//     Ramp, optionally churned (dropped and resumed), for Duration;
//   - shortpoll: Clients pollers asking every Interval with timeout=0, an
//     open-model request rate paced by vegeta;
//   - storm (storm-sse, storm-ws, storm-poll): new connections at Rate per
//     second, paced by vegeta, each measured for time to connect and time
//     to first tick.
//
// Ownership: Run owns every goroutine it starts (the spawner, churner,
// progress reporter and lag probe; per client a goroutine while it connects
// or waits to reconnect, and with -reader goroutine for the whole run; with
// the event loop a few workers read every connected client) and returns
// only after all of them ended, and after every connection it handed to a
// reader ended. Measurements go into a few shards (one histogram set and
// counters each, guarded by a mutex) that clients pick by index, and are
// merged once at the end, as wrk2 merges its per-thread histograms.
package loadgen

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/pushbench/pushbench/loadgen/answer"
	"github.com/pushbench/pushbench/loadgen/client"
	"github.com/pushbench/pushbench/servers/feed"
)

// Workloads (values of Config.Workload): the price feed, or answers
// (per-request streams, package answer).
const (
	WorkloadFeed   = "feed"
	WorkloadAnswer = "answer"
)

// Modes (values of Config.Transport).
var Modes = []string{"sse", "ws", "poll", "shortpoll", "storm-sse", "storm-ws", "storm-poll"}

// Defaults double as flag defaults.
const (
	DefaultClients       = 100
	DefaultDuration      = 10 * time.Second
	DefaultDrain         = 3 * time.Second
	DefaultInterval      = time.Second
	DefaultRate          = 100.0
	DefaultHandshakes    = 256 // connection opens in flight at once
	DefaultProgressEvery = 5 * time.Second
	// H2StreamsPerConn is how many streams share one HTTP/2 connection by
	// default (-h2-conns 0): about what a browser puts on one.
	H2StreamsPerConn = 100
	// SlowReceiveBuffer and SlowMSS are the SO_RCVBUF and the advertised
	// MSS of a stalled client's socket (see client.Dialer.WithSmallBuffers).
	SlowReceiveBuffer = 4 << 10
	SlowMSS           = 1460
)

// Config describes one run. The zero value of every optional field takes
// its default.
type Config struct {
	// Workload is WorkloadFeed ("" too) or WorkloadAnswer. An answer run
	// takes Transport (sse, ws or poll), URL, Clients (answers in flight
	// on average), Ramp + Warmup, Duration, Seed, ConnectTimeout,
	// PollTimeout and SourceIPs from here and the rest from Answer
	// (Answer.Rate and Answer.Drain: 0 for their defaults); Validate
	// fills Answer in.
	Workload  string
	Answer    answer.Config
	Transport string // one of Modes
	// URL is the server: its base URL, http://host:port[/prefix], or the
	// transport's endpoint (http://host:port/sse, ws://host:port/ws);
	// https:// and wss:// for TLS. Validate turns it into the base URL.
	URL *url.URL
	// Insecure skips the verification of the server's certificate; CAFile
	// names a PEM file of the certificates to trust instead of the
	// system's (https only).
	Insecure bool
	CAFile   string
	// Proto is "h1" ("" too) or "h2" (sse, poll, shortpoll and their
	// storms): the clients are then streams over H2Conns connections
	// (0: one per H2StreamsPerConn clients, rounded up); over http it is
	// h2c with prior knowledge.
	Proto   string
	H2Conns int

	Clients  int // subscriptions (streams, shortpoll) or concurrent connections (storm)
	Duration time.Duration
	Ramp     time.Duration // streams: connection opens spread over this, before Duration starts
	// Drain is how long the run waits at the end for every subscription to
	// receive the ticks scheduled before the end, before counting what is
	// still missing. A stalled stream holds the run for the whole Drain.
	Drain   time.Duration
	Symbols []string // subscription filter; empty: all symbols
	// Warmup (streams, shortpoll) is unrecorded time between the ramp and
	// Duration: ticks that arrive before it ends (the ramp's too) are
	// checked but left out of the latency histogram and of Messages.
	Warmup time.Duration
	// Churn is the share of clients dropped per second and reconnected at
	// once with resume (0.05: 5% of the clients per second).
	Churn float64
	// Slow (streams) is the share of clients that stall: they connect, then
	// read nothing more until the end (their receive buffer is made small
	// and they advertise an Ethernet MSS, SlowReceiveBuffer and SlowMSS, so
	// that the server's writes block soon). They are left out of every
	// figure but Result.Slow.
	Slow      float64
	SourceIPs []net.IP // empty: chosen automatically when needed
	// Seed and FeedSymbols describe the server's feed, so that the checker
	// knows which (sym, price) each seq carries. FeedSymbols 0: the feed is
	// unknown; content is then not checked, and Symbols must be empty.
	Seed        uint64
	FeedSymbols int
	Interval    time.Duration // shortpoll: each client polls this often
	Rate        float64       // storm: new connections per second; answer: answers per second
	Hold        time.Duration // storm: how long a connection stays after its first tick

	ConnectTimeout time.Duration
	IdleTimeout    time.Duration
	PollTimeout    time.Duration
	ReadBuffer     int
	Handshakes     int // connection opens in flight at once

	// Progress receives the live progress; nil: none. Live redraws one
	// line (a terminal); otherwise a plain line every ProgressEvery.
	Progress      io.Writer
	Live          bool
	ProgressEvery time.Duration
	// NoPreflight skips the single trial connection that turns "server down"
	// or "wrong transport" into one clear error before the run starts.
	NoPreflight bool

	// Reader says what reads the streams' connections: ReaderLoop (an
	// event loop, where the system has epoll), ReaderGoroutine (a goroutine
	// per client), or "" (the loop where available). Other modes ignore it.
	Reader string

	// reader replaces the streams' reader in tests.
	reader driver
	// tls is the clients' TLS configuration (https), set by Validate.
	tls *tls.Config
}

// isTLS reports whether the run speaks TLS (after Validate).
func (c *Config) isTLS() bool { return c.URL.Scheme == "https" }

// Protocol is the run's protocol as results and bench name it: "h1",
// "tls" (HTTP/1.1 over TLS), "h2" (HTTP/2 over TLS) or "h2c" (cleartext
// HTTP/2).
func (c *Config) Protocol() string {
	switch {
	case c.Proto == client.ProtoH2 && c.isTLS():
		return "h2"
	case c.Proto == client.ProtoH2:
		return "h2c"
	case c.isTLS():
		return "tls"
	}
	return "h1"
}

// tlsConfig builds the clients' TLS configuration from Insecure and
// CAFile; nil for a plaintext URL.
func (c *Config) tlsConfig() (*tls.Config, error) {
	if !c.isTLS() {
		if c.Insecure || c.CAFile != "" {
			return nil, fmt.Errorf("-insecure and -ca apply to https:// and wss:// URLs, not %s", c.URL)
		}
		return nil, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.Insecure}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("-ca: %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-ca %s: no PEM certificate in it", c.CAFile)
		}
	}
	return t, nil
}

func (c *Config) stream() bool {
	return c.Transport == "sse" || c.Transport == "ws" || c.Transport == "poll"
}

func (c *Config) storm() bool { return strings.HasPrefix(c.Transport, "storm-") }

// clientTransport is the client.Config transport for this mode.
func (c *Config) clientTransport() string {
	switch {
	case c.Transport == "shortpoll":
		return "poll"
	case c.storm():
		return strings.TrimPrefix(c.Transport, "storm-")
	}
	return c.Transport
}

// slowClients returns how many clients stall: Slow × Clients rounded, at
// least one when Slow > 0.
func (c *Config) slowClients() int {
	if c.Slow <= 0 {
		return 0
	}
	return min(c.Clients, max(1, int(math.Round(c.Slow*float64(c.Clients)))))
}

// isSlow reports whether client i (0-based) is one of the slowClients
// stalled ones. They are spread evenly over the clients (every k-th for a
// share of 1/k), so over the ramp, the shards and the source addresses too.
func (c *Config) isSlow(i int) bool {
	n, k := c.Clients, c.slowClients()
	return (i+1)*k/n > i*k/n
}

// Validate checks c and fills in defaults. Its errors are one line each,
// fit for a usage error.
func (c *Config) Validate() error {
	switch c.Workload {
	case "", WorkloadFeed:
		c.Workload = WorkloadFeed
	case WorkloadAnswer:
		return c.validateAnswer()
	default:
		return fmt.Errorf("-workload must be %s or %s, got %q", WorkloadFeed, WorkloadAnswer, c.Workload)
	}
	if !slices.Contains(Modes, c.Transport) {
		return fmt.Errorf("-transport must be one of %s, got %q", strings.Join(Modes, ", "), c.Transport)
	}
	base, err := baseURL(c.URL, c.Transport, c.clientTransport())
	if err != nil {
		return err
	}
	c.URL = base
	if c.tls, err = c.tlsConfig(); err != nil {
		return err
	}
	switch c.Proto {
	case "", client.ProtoH1:
		c.Proto = client.ProtoH1
		if c.H2Conns != 0 {
			return errors.New("-h2-conns applies to -proto h2")
		}
	case client.ProtoH2:
		if c.clientTransport() == "ws" {
			return fmt.Errorf("-proto h2 applies to sse, poll, shortpoll, storm-sse and storm-poll, not %s: "+
				"WebSocket stays an HTTP/1.1 upgrade (no RFC 8441)", c.Transport)
		}
	default:
		return fmt.Errorf("-proto must be h1 or h2, got %q", c.Proto)
	}
	if c.Clients < 1 {
		return fmt.Errorf("-clients must be at least 1, got %d", c.Clients)
	}
	if c.Duration <= 0 {
		return fmt.Errorf("-duration must be positive, got %s", c.Duration)
	}
	if c.Ramp < 0 || c.Drain < 0 || c.Hold < 0 || c.ConnectTimeout < 0 || c.IdleTimeout < 0 || c.PollTimeout < 0 {
		return errors.New("durations must not be negative")
	}
	if c.Drain == 0 {
		c.Drain = DefaultDrain
	}
	if c.Churn < 0 || c.Churn > 10 {
		return fmt.Errorf("-churn must be a share of clients per second between 0 and 10, got %g", c.Churn)
	}
	if c.Churn > 0 && !c.stream() {
		return fmt.Errorf("-churn applies to sse, ws and poll, not %s", c.Transport)
	}
	if !(c.Slow >= 0 && c.Slow <= 1) { // NaN too
		return fmt.Errorf("-slow must be a share of the clients between 0 and 1, got %g", c.Slow)
	}
	if c.Slow > 0 && !c.stream() {
		return fmt.Errorf("-slow applies to sse, ws and poll, not %s", c.Transport)
	}
	if c.Reader != "" && c.Reader != ReaderLoop && c.Reader != ReaderGoroutine {
		return fmt.Errorf("-reader must be %s or %s, got %q", ReaderLoop, ReaderGoroutine, c.Reader)
	}
	if c.Warmup < 0 {
		return fmt.Errorf("-warmup must not be negative, got %s", c.Warmup)
	}
	if c.Warmup > 0 && c.storm() {
		return fmt.Errorf("-warmup applies to sse, ws, poll and shortpoll, not %s (a storm measures connecting itself)", c.Transport)
	}
	if c.FeedSymbols < 0 || c.FeedSymbols > feed.MaxSymbols {
		return fmt.Errorf("-feed-symbols must be 0..%d, got %d", feed.MaxSymbols, c.FeedSymbols)
	}
	if len(c.Symbols) > 0 && c.FeedSymbols == 0 {
		return errors.New("-symbols needs the server's feed: set -seed and -feed-symbols")
	}
	if c.FeedSymbols > 0 {
		names := feed.SymbolNames(c.FeedSymbols)
		for _, s := range c.Symbols {
			if !slices.Contains(names, s) {
				return fmt.Errorf("-symbols: %q is not one of the %d symbols of the feed (-feed-symbols %d)", s, c.FeedSymbols, c.FeedSymbols)
			}
		}
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Interval < time.Millisecond {
		return fmt.Errorf("-interval must be at least 1ms, got %s", c.Interval)
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Rate < 0 || c.Rate > 1e6 {
		return fmt.Errorf("-rate must be between 0 and 1e6 connections per second, got %g", c.Rate)
	}
	if c.Handshakes <= 0 {
		c.Handshakes = DefaultHandshakes
	}
	if c.H2Conns < 0 {
		return fmt.Errorf("-h2-conns must not be negative, got %d", c.H2Conns)
	}
	if c.Proto == client.ProtoH2 && c.H2Conns == 0 {
		c.H2Conns = (c.Clients + H2StreamsPerConn - 1) / H2StreamsPerConn
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = DefaultProgressEvery
	}
	for _, ip := range c.SourceIPs {
		if ip.To4() == nil && ip.To16() == nil {
			return errors.New("-source-ips: bad address")
		}
	}
	return nil
}

// validateAnswer checks an answer run's configuration: the feed's
// options that mean nothing for answers are refused rather than ignored.
func (c *Config) validateAnswer() error {
	if !slices.Contains(answer.Transports, c.Transport) {
		return fmt.Errorf("-workload answer runs over %s, not %q", strings.Join(answer.Transports, ", "), c.Transport)
	}
	switch {
	// -symbols, -seed's feed role and -feed-symbols describe the feed's
	// subscriptions, which answers do not have: bench passes them to
	// every run, so they are ignored here rather than refused.
	case c.Churn != 0, c.Slow != 0, c.Hold != 0:
		return errors.New("-churn, -slow and -hold are the feed's; -workload answer takes none of them")
	case c.Ramp < 0 || c.Warmup < 0:
		return errors.New("-ramp and -warmup must not be negative")
	case c.Clients < 1:
		return fmt.Errorf("-clients (answers in flight) must be at least 1, got %d", c.Clients)
	}
	if c.URL != nil {
		u := *c.URL // the answer endpoint pasted as is: http://HOST:PORT/answer
		u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/answer")
		u.RawPath = ""
		c.URL = &u
	}
	base, err := baseURL(c.URL, c.Transport, c.Transport)
	if err != nil {
		return err
	}
	c.URL = base
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = DefaultProgressEvery
	}
	if c.tls, err = c.tlsConfig(); err != nil {
		return err
	}
	a := &c.Answer
	if err := c.answerProto(); err != nil {
		return err
	}
	// The ramp and the warm-up are both unmeasured time before -duration,
	// as for the feed: answers arriving in them fill the pipeline.
	a.Transport, a.Base, a.Duration, a.Seed, a.TLS = c.Transport, base, c.Duration, c.Seed, c.tls
	a.InFlight, a.Warmup = c.Clients, c.Ramp+c.Warmup
	a.ConnectTimeout, a.PollTimeout = c.ConnectTimeout, c.PollTimeout
	if err := a.Validate(); err != nil {
		return err
	}
	if a.Conn == answer.ConnH2 {
		c.H2Conns = a.Conns // with its default, as the feed's -h2-conns
	}
	return nil
}

// answerProto reconciles -proto and -conn for answers: -proto h2 is
// -conn h2 (answers as HTTP/2 streams), and -conn h2 is protocol h2 (or
// h2c) in the result; the connections are -h2-conns, as for the feed's
// HTTP/2 clients, and -conns stays WebSocket's sessions.
func (c *Config) answerProto() error {
	a := &c.Answer
	switch c.Proto {
	case "", client.ProtoH1:
		if a.Conn == answer.ConnH2 {
			c.Proto = client.ProtoH2
		} else {
			c.Proto = client.ProtoH1
		}
	case client.ProtoH2:
		if c.Transport == "ws" {
			return errors.New("-proto h2 applies to sse and poll answers, not ws: WebSocket stays an HTTP/1.1 upgrade (no RFC 8441)")
		}
		if a.Conn == "" {
			a.Conn = answer.ConnH2
		}
		if a.Conn != answer.ConnH2 {
			return fmt.Errorf("-proto h2 sends answers as HTTP/2 streams (-conn h2), not -conn %s", a.Conn)
		}
	default:
		return fmt.Errorf("-proto must be h1 or h2, got %q", c.Proto)
	}
	if c.H2Conns < 0 {
		return fmt.Errorf("-h2-conns must not be negative, got %d", c.H2Conns)
	}
	if a.Conn != answer.ConnH2 {
		if c.H2Conns != 0 {
			return errors.New("-h2-conns applies to -conn h2 (or -proto h2)")
		}
		return nil
	}
	// Validate runs again on a validated Config, whose H2Conns then
	// holds the count chosen.
	if a.Conns != 0 && a.Conns != c.H2Conns {
		return errors.New("-conns counts -conn mux's WebSocket sessions; -conn h2 takes -h2-conns")
	}
	a.Conns = c.H2Conns
	return nil
}

// baseURL turns what a user may paste as -url into the server's base URL,
// http://host:port[/prefix]: the base URL itself, or the endpoint of the
// transport (http://host:port/sse, ws://host:port/ws, .../poll), with ws://
// for WebSocket. An endpoint of another transport is refused with a line
// that says which, rather than turned into a 404 on a doubled path.
// mode is the -transport given, transport the client transport it uses.
func baseURL(u *url.URL, mode, transport string) (*url.URL, error) {
	if u == nil {
		return nil, errors.New("-url is required")
	}
	b := *u
	b.Scheme = strings.ToLower(b.Scheme)
	switch b.Scheme {
	case "http", "https":
	case "ws", "wss":
		if transport != "ws" {
			return nil, fmt.Errorf("-url %s is a WebSocket URL, but -transport is %s: give %s://%s", u, mode,
				strings.Replace(b.Scheme, "ws", "http", 1), b.Host)
		}
		// The upgrade starts as an HTTP request (over TLS for wss).
		b.Scheme = strings.Replace(b.Scheme, "ws", "http", 1)
	default:
		return nil, fmt.Errorf("-url must be an http:// or https:// (or, for ws, ws:// or wss://) URL like http://127.0.0.1:8080, got %q", u.String())
	}
	if b.Host == "" || b.Hostname() == "" || b.Opaque != "" {
		return nil, fmt.Errorf("-url must be a URL with a host like http://127.0.0.1:8080, got %q", u.String())
	}
	if b.RawQuery != "" || b.ForceQuery || b.Fragment != "" || b.User != nil {
		return nil, fmt.Errorf("-url must be a base URL without query, fragment or user, got %q", u.String())
	}
	path := strings.TrimSuffix(b.Path, "/")
	for _, tr := range client.Transports {
		ep := client.Endpoint(tr)
		if !strings.HasSuffix(path, ep) {
			continue
		}
		if tr != transport {
			return nil, fmt.Errorf("-url %s names the %s endpoint (%s), but -transport is %s: give the base URL or its %s endpoint",
				u, tr, ep, mode, client.Endpoint(transport))
		}
		path = strings.TrimSuffix(path, ep)
		break
	}
	b.Path, b.RawPath = path, ""
	return &b, nil
}

// clientConfig builds the shared client configuration; with h2 it holds
// the run's pool of connections, which the caller closes.
func (c *Config) clientConfig() (*client.Config, error) {
	cc := &client.Config{
		Transport:      c.clientTransport(),
		Base:           c.URL,
		TLS:            c.tls,
		Proto:          c.Proto,
		Symbols:        c.Symbols,
		ConnectTimeout: c.ConnectTimeout,
		IdleTimeout:    c.IdleTimeout,
		PollTimeout:    c.PollTimeout,
		ReadBuffer:     c.ReadBuffer,
	}
	if c.Proto == client.ProtoH2 {
		cc.H2 = client.NewH2Pool(c.H2Conns)
	}
	if err := cc.Prepare(); err != nil {
		return nil, err
	}
	return cc, nil
}
