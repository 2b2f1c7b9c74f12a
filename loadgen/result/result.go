// Package result is the data a load-generator run produces: the schema that
// bin/loadgen writes with -out and that bin/bench reads, merges across
// load-generator processes and repeats, and reports from. Results are data
// first and reported afterwards, as in vegeta.
package result

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"reflect"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// SchemaVersion changes whenever a field changes meaning or disappears.
const SchemaVersion = 1

// Histogram bounds: values are recorded in microseconds, from 1 µs to 10 min,
// with 3 significant figures. Every histogram in a Result uses them, so any
// two can be merged.
const (
	HistLowest  = 1
	HistHighest = int64(10 * time.Minute / time.Microsecond)
	HistSigFigs = 3
)

// NewHistogram returns an empty histogram with the shared bounds.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(HistLowest, HistHighest, HistSigFigs)
}

// Percentiles summarises a histogram in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

// Summarize reads the percentiles of a microsecond histogram.
func Summarize(h *hdrhistogram.Histogram) Percentiles {
	ms := func(v int64) float64 { return float64(v) / 1000 }
	return Percentiles{
		Count: h.TotalCount(),
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
		Mean:  h.Mean() / 1000,
	}
}

// Counts are the delivery-correctness figures, counted per client and summed.
type Counts struct {
	Expected     int64 `json:"expected"`      // ticks of the subscribed symbols published while connected or resumable
	Received     int64 `json:"received"`      // ticks received (including duplicates)
	Duplicates   int64 `json:"duplicates"`    // a seq received twice
	OutOfOrder   int64 `json:"out_of_order"`  // a seq lower than one already received (not a duplicate)
	Missing      int64 `json:"missing"`       // silent loss: expected, never received, not covered by a gap
	Gaps         int64 `json:"gaps"`          // gap signals received
	GapTicks     int64 `json:"gap_ticks"`     // ticks those gaps covered
	WrongSymbol  int64 `json:"wrong_symbol"`  // a tick outside the subscription's filter
	WrongContent int64 `json:"wrong_content"` // a tick whose (sym, price) differs from the deterministic feed
	Reconnects   int64 `json:"reconnects"`
	// Stalled counts subscriptions that had not received everything up to
	// the end of the run when it stopped (the stream stopped delivering);
	// their unreceived ticks are in Missing too.
	Stalled int64 `json:"stalled"`
	// Malformed counts messages that could not be parsed as a tick or a gap.
	Malformed int64 `json:"malformed"`
}

// Add adds o to c: counts of clients, processes or repeats add up.
func (c *Counts) Add(o Counts) { addFields(c, o) }

// Faults lists what went wrong with delivery, one "N what" each, empty when
// every expected tick arrived once, in order, with the right content. Gaps
// are not faults: the server said what it skipped.
func (c Counts) Faults() []string {
	var f []string
	for _, w := range []struct {
		n    int64
		what string
	}{{c.Missing, "missing"}, {c.Duplicates, "duplicates"}, {c.OutOfOrder, "out of order"},
		{c.WrongSymbol, "wrong symbol"}, {c.WrongContent, "wrong content"},
		{c.Stalled, "stalled subscriptions"}, {c.Malformed, "malformed messages"}} {
		if w.n > 0 {
			f = append(f, fmt.Sprintf("%d %s", w.n, w.what))
		}
	}
	return f
}

// AddFailures adds failure counts by cause to dst, which may be nil, and
// returns it.
func AddFailures(dst, src map[string]int64) map[string]int64 {
	for k, v := range src {
		if dst == nil {
			dst = map[string]int64{}
		}
		dst[k] += v
	}
	return dst
}

// Bytes on the wire, counted on the connection (headers and framing
// included); over TLS on the socket below it: the ciphertext, handshakes
// and record framing included, which is what crosses the network.
type Bytes struct {
	Sent     int64   `json:"sent"`     // client to server
	Received int64   `json:"received"` // server to client
	PerTick  float64 `json:"per_tick"` // Received / Counts.Received
	// Over TLS: what TLS carried above it (HTTP, SSE, frames), and TLS's
	// own bytes per tick received, (Received - PlainReceived) /
	// Counts.Received: record headers, AEAD tags, handshakes.
	PlainSent          int64   `json:"plain_sent,omitempty"`
	PlainReceived      int64   `json:"plain_received,omitempty"`
	TLSOverheadPerTick float64 `json:"tls_overhead_per_tick,omitempty"`
}

// Self is what the load generator itself cost, so that a saturated load
// generator is reported rather than mistaken for a slow server.
type Self struct {
	CPUSeconds  float64 `json:"cpu_seconds"`
	CPUCores    float64 `json:"cpu_cores"` // CPU seconds / wall seconds
	MaxRSSBytes int64   `json:"max_rss_bytes"`
	// RSSBytes is the resident set at the end of the measured period,
	// with every client connected (streams): divided by the clients it is
	// the memory one client costs, connection-phase garbage excluded.
	RSSBytes   int64 `json:"rss_bytes,omitempty"`
	GOMAXPROCS int   `json:"gomaxprocs"`
	Saturated  bool  `json:"saturated"`
	// LagP99Ms is the 99th percentile of how late a 5 ms timer fired in the
	// load generator: scheduling delay that every latency figure includes.
	LagP99Ms float64 `json:"lag_p99_ms"`
	Warning  string  `json:"warning,omitempty"`
}

// Slow is what became of the clients that stalled on purpose (loadgen
// -slow): each connected like the others, then read nothing more, so that
// the socket buffers towards it filled up and the server had to cope (drop
// it after its write timeout, or give it a gap). They are left out of every
// other figure of the Result (latency, messages, counts, bytes): what they
// miss is by design, not the server's fault.
type Slow struct {
	// Stalled counts the slow clients that connected and stalled (the
	// others never connected: their attempts are in Result.Failures).
	Stalled int64 `json:"stalled"`
	// At the end of the run (after the drain) each stalled connection is
	// read again, for up to half a second, without parsing. Dropped: it had
	// ended, the server had closed (EOF) or reset it. Open: it had not, the
	// server still held it. Dropped + Open < Stalled when reading failed
	// otherwise.
	Dropped int64 `json:"dropped"`
	Open    int64 `json:"open"`
	// BacklogBytes were read by that final read: what the server and both
	// kernels still held for the stalled clients (and, for an open
	// connection, what the server sent during that second).
	BacklogBytes int64 `json:"backlog_bytes"`
	// Bytes on the wire of the stalled clients (handshakes and requests,
	// and the final read), kept out of Result.Bytes.
	BytesSent     int64 `json:"bytes_sent"`
	BytesReceived int64 `json:"bytes_received"`
}

// Add adds o to s: stalled clients of several processes add up.
func (s *Slow) Add(o Slow) { addFields(s, o) }

// addFields adds each field of src to dst's. Counts and Slow hold only
// int64 tallies; summing them by field index means a field added later is
// summed too, with nothing to forget.
func addFields[T Counts | Slow | AnswerCounts | ChunkCounts | AnswerWindow](dst *T, src T) {
	d, s := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src)
	for i := range d.NumField() {
		f := d.Field(i)
		f.SetInt(f.Int() + s.Field(i).Int())
	}
}

// Dists are a run's three distributions, each as a summary in ms and as
// the full histogram (µs) in HdrHistogram's compressed V2 encoding, so that
// results merge exactly. Latency: arrival minus the tick's scheduled ts.
// Connect: dial to handshake done. FirstTick: dial to first tick.
type Dists struct {
	Latency       Percentiles `json:"latency"`
	Connect       Percentiles `json:"connect"`
	FirstTick     Percentiles `json:"first_tick"`
	HistLatency   string      `json:"hist_latency"`
	HistConnect   string      `json:"hist_connect"`
	HistFirstTick string      `json:"hist_first_tick"`
}

// Hists are the histograms behind Dists, in memory, with the shared
// bounds: where results are merged (shards, processes, repeats).
type Hists struct {
	Latency, Connect, FirstTick *hdrhistogram.Histogram
}

// NewHists returns empty histograms.
func NewHists() Hists {
	return Hists{Latency: NewHistogram(), Connect: NewHistogram(), FirstTick: NewHistogram()}
}

// Merge adds o's values to h and returns how many fell outside the bounds
// (none when o uses the shared bounds too).
func (h Hists) Merge(o Hists) (dropped int64) {
	return h.Latency.Merge(o.Latency) + h.Connect.Merge(o.Connect) + h.FirstTick.Merge(o.FirstTick)
}

// AddDists decodes d's histograms and merges them into h.
func (h Hists) AddDists(d *Dists) error {
	var o Hists
	var err error
	if o.Latency, err = DecodeHist(d.HistLatency); err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	if o.Connect, err = DecodeHist(d.HistConnect); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if o.FirstTick, err = DecodeHist(d.HistFirstTick); err != nil {
		return fmt.Errorf("first tick: %w", err)
	}
	if dropped := h.Merge(o); dropped != 0 {
		return fmt.Errorf("%d histogram values out of range", dropped)
	}
	return nil
}

// Dists summarises and encodes h.
func (h Hists) Dists() (Dists, error) {
	d := Dists{Latency: Summarize(h.Latency), Connect: Summarize(h.Connect), FirstTick: Summarize(h.FirstTick)}
	var err error
	if d.HistLatency, err = EncodeHist(h.Latency); err != nil {
		return Dists{}, err
	}
	if d.HistConnect, err = EncodeHist(h.Connect); err != nil {
		return Dists{}, err
	}
	if d.HistFirstTick, err = EncodeHist(h.FirstTick); err != nil {
		return Dists{}, err
	}
	return d, nil
}

// Result is one load-generator process's run, or a merge of several.
type Result struct {
	SchemaVersion int    `json:"schema_version"`
	Transport     string `json:"transport"` // sse, ws, poll, shortpoll, or storm-sse, storm-ws, storm-poll
	// Workload is "answer" for an answer run (Answer holds its figures);
	// empty for the feed.
	Workload string    `json:"workload,omitempty"`
	URL      string    `json:"url"`
	Clients  int       `json:"clients"`
	Symbols  []string  `json:"symbols,omitempty"` // the subscription filter; empty means all
	Start    time.Time `json:"start"`
	// Reader is what read the streams' connections: "epoll" (an event
	// loop) or "goroutine" (one per client; always over TLS and HTTP/2);
	// "mixed" in a merge of both.
	Reader string `json:"reader,omitempty"`
	// Protocol the clients spoke: "h1" (HTTP/1.1), "tls" (HTTP/1.1 over
	// TLS; WebSocket: wss), "h2" (HTTP/2 over TLS) or "h2c" (cleartext
	// HTTP/2); absent in older results (h1).
	Protocol string `json:"protocol,omitempty"`
	// Duration is the measured wall time (s). Streams: from the end of the
	// warm-up (without one: the ramp over and every client connected) to
	// the end, drain excluded; shortpoll: the attack after the warm-up;
	// storm: the whole run.
	Duration float64 `json:"duration_s"`
	// Warmup is the unrecorded time (s) before Duration (loadgen -warmup):
	// ticks that arrived in it (or earlier, in the ramp) are not in the
	// latency histogram nor in Messages, though the checker saw them.
	Warmup float64 `json:"warmup_s,omitempty"`
	// SlowClients of the Clients stalled on purpose (loadgen -slow); Slow
	// says what became of them. Every other figure is the other clients'.
	SlowClients int  `json:"slow_clients,omitempty"`
	Slow        Slow `json:"slow,omitzero"`

	// Connected: streams, clients connected at the end of the window
	// (stalled ones included: Slow says whether the server still held
	// them); shortpoll, pollers that got an answer; storm, connections
	// that reached their first tick.
	Connected int64            `json:"connected"`
	Failures  map[string]int64 `json:"failures,omitempty"` // failed connections by cause: refused, reset, timeout, emfile, http_503, ...
	Requests  int64            `json:"requests,omitempty"` // HTTP requests made (polling)
	// FailureSamples holds one error message per failure cause.
	FailureSamples map[string]string `json:"failure_samples,omitempty"`
	// Warnings are what the reader of the figures must know (a saturated
	// load generator, a feed the checker could not match, ...).
	Warnings []string `json:"warnings,omitempty"`
	// FeedRate is the feed's rate in ticks/s as learned from the ticks' ts.
	FeedRate float64 `json:"feed_rate,omitempty"`

	Messages   int64   `json:"messages"`                // ticks received during Duration (Counts.Received counts the whole run; storm: the same)
	MsgsPerSec float64 `json:"msgs_per_sec"`            // Messages / Duration
	PerClient  float64 `json:"msgs_per_sec_per_client"` // MsgsPerSec / (Clients - SlowClients)

	Counts Counts `json:"counts"`
	Bytes  Bytes  `json:"bytes"`
	Self   Self   `json:"self"`

	// Dists: latency, connect and first-tick times (flat in the JSON:
	// latency, hist_latency, ...).
	Dists
	// Reach is the per-tick reach (sse, ws, poll, shortpoll); absent in
	// older results and the storm modes.
	Reach *Reach `json:"reach,omitempty"`
	// Answer is the answer workload's (loadgen -workload answer); absent
	// for the feed.
	Answer *Answer `json:"answer,omitempty"`
}

// SetRates derives the rates from the totals: MsgsPerSec and PerClient
// from Messages over Duration (per client: over the clients that did not
// stall on purpose), Bytes.PerTick from the bytes and ticks received.
func (r *Result) SetRates() {
	if r.Duration > 0 {
		r.MsgsPerSec = float64(r.Messages) / r.Duration
		if n := r.Clients - r.SlowClients; n > 0 {
			r.PerClient = r.MsgsPerSec / float64(n)
		}
	}
	if r.Counts.Received > 0 {
		r.Bytes.PerTick = float64(r.Bytes.Received) / float64(r.Counts.Received)
		if r.Bytes.PlainReceived > 0 {
			r.Bytes.TLSOverheadPerTick = float64(r.Bytes.Received-r.Bytes.PlainReceived) / float64(r.Counts.Received)
		}
	}
}

// Write writes r as indented JSON to path.
func (r *Result) Write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

// Read decodes a Result and checks its schema version.
func Read(rd io.Reader) (*Result, error) {
	var r Result
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode result: %w", err)
	}
	if r.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("result schema version %d, want %d", r.SchemaVersion, SchemaVersion)
	}
	return &r, nil
}

// ReadFile reads a Result from path.
func ReadFile(path string) (*Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// EncodeHist encodes a histogram for a Result.
func EncodeHist(h *hdrhistogram.Histogram) (string, error) {
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return "", fmt.Errorf("encode histogram: %w", err)
	}
	return string(b), nil
}

// DecodeHist decodes a histogram written by EncodeHist; "" is an empty one.
func DecodeHist(s string) (*hdrhistogram.Histogram, error) {
	if s == "" {
		return NewHistogram(), nil
	}
	h, err := hdrhistogram.Decode([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("decode histogram: %w", err)
	}
	return h, nil
}

// Merge combines results of load-generator processes that ran side by side
// against the same server: counts, bytes and failures add up, histograms
// merge exactly, and throughput adds up over the longest duration.
func Merge(rs ...*Result) (*Result, error) {
	if len(rs) == 0 {
		return nil, fmt.Errorf("merge: no results")
	}
	out := &Result{SchemaVersion: SchemaVersion, Transport: rs[0].Transport, Workload: rs[0].Workload, URL: rs[0].URL, Symbols: rs[0].Symbols, Start: rs[0].Start,
		Reader: rs[0].Reader, Protocol: rs[0].Protocol}
	hs := NewHists()
	for _, r := range rs {
		if r.Transport != out.Transport {
			return nil, fmt.Errorf("merge: transport %q with %q", r.Transport, out.Transport)
		}
		if r.Workload != out.Workload {
			return nil, fmt.Errorf("merge: workload %q with %q", r.Workload, out.Workload)
		}
		if r.Protocol != out.Protocol {
			return nil, fmt.Errorf("merge: protocol %q with %q", r.Protocol, out.Protocol)
		}
		if r.Reader != out.Reader {
			out.Reader = "mixed"
		}
		out.Clients += r.Clients
		out.Connected += r.Connected
		out.Requests += r.Requests
		out.Messages += r.Messages
		if r.Duration > out.Duration {
			out.Duration = r.Duration
		}
		out.Warmup = max(out.Warmup, r.Warmup)
		out.SlowClients += r.SlowClients
		out.Slow.Add(r.Slow)
		if r.Start.Before(out.Start) {
			out.Start = r.Start
		}
		for k, v := range r.FailureSamples {
			if out.FailureSamples == nil {
				out.FailureSamples = map[string]string{}
			}
			if _, ok := out.FailureSamples[k]; !ok {
				out.FailureSamples[k] = v
			}
		}
		out.Warnings = append(out.Warnings, r.Warnings...)
		out.FeedRate = max(out.FeedRate, r.FeedRate)
		out.Failures = AddFailures(out.Failures, r.Failures)
		out.Counts.Add(r.Counts)
		out.Bytes.Sent += r.Bytes.Sent
		out.Bytes.Received += r.Bytes.Received
		out.Bytes.PlainSent += r.Bytes.PlainSent
		out.Bytes.PlainReceived += r.Bytes.PlainReceived
		out.Self.CPUSeconds += r.Self.CPUSeconds
		out.Self.CPUCores += r.Self.CPUCores
		out.Self.MaxRSSBytes += r.Self.MaxRSSBytes
		out.Self.RSSBytes += r.Self.RSSBytes
		out.Self.GOMAXPROCS += r.Self.GOMAXPROCS
		out.Self.LagP99Ms = max(out.Self.LagP99Ms, r.Self.LagP99Ms)
		if r.Self.Saturated {
			out.Self.Saturated = true
			out.Self.Warning = r.Self.Warning
		}
		if err := hs.AddDists(&r.Dists); err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
	}
	out.SetRates()
	var err error
	if out.Dists, err = hs.Dists(); err != nil {
		return nil, err
	}
	if out.Reach, err = mergeReach(rs); err != nil {
		return nil, err
	}
	if out.Answer, err = mergeAnswer(rs, out.Duration, out.Bytes.Received); err != nil {
		return nil, err
	}
	return out, nil
}
