package result

import (
	"fmt"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Answer is what an answer run (loadgen -workload answer) measured: per
// request streams, each timed from when it was meant to be sent. The rest
// of the Result holds what every run has (bytes on the wire, failures by
// cause, the load generator's own cost); its latency and reach stay empty,
// and its Counts mirror the chunk checks, chunk for tick (Missing = Lost,
// Duplicates, OutOfOrder = Reordered, WrongContent = Wrong, Malformed =
// Malformed + Stray, Stalled = unfinished answers), so that whatever reads
// the feed's counts sees the answers' faults.
type Answer struct {
	// The run's shape: connection mode (keepalive, fresh, mux, h2), ws
	// mux sessions or HTTP/2 connections, the cap on answers in flight, the offered rate (answers/s)
	// and each request's tokens, token rate (chunks/s) and think time.
	Conn        string  `json:"conn"`
	Conns       int     `json:"conns,omitempty"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate"`
	Tokens      int     `json:"tokens"`
	TokenRate   float64 `json:"token_rate"`
	ThinkMs     float64 `json:"think_ms"`

	// WarmupMs is the time arrivals came before the measured window
	// (the ramp and the warm-up): those answers are in Answers and Chunks
	// (checked like the others), not in the histograms nor the rates.
	WarmupMs float64      `json:"warmup_ms,omitempty"`
	Answers  AnswerCounts `json:"answers"`
	Chunks   ChunkCounts  `json:"chunks"`
	Window   AnswerWindow `json:"window"`
	// ConnectionsOpened counts the TCP connections the answers opened.
	ConnectionsOpened int64 `json:"connections_opened"`
	// InFlightAtEnd is the answers in flight when the measured window
	// ended: what the server held then (its memory per answer).
	InFlightAtEnd int64 `json:"in_flight_at_end"`

	// Rates over the measured window, Result.Duration, from Window:
	// arrivals (the Poisson draw of Rate), answers completed, chunks
	// offered (arrivals × tokens) and received; and bytes received per
	// chunk received (over the whole run).
	ArrivalsPerSec      float64 `json:"arrivals_per_sec"`
	AnswersPerSec       float64 `json:"answers_per_sec"`
	OfferedChunksPerSec float64 `json:"offered_chunks_per_sec"`
	ChunksPerSec        float64 `json:"chunks_per_sec"`
	BytesPerChunk       float64 `json:"bytes_per_chunk"`

	AnswerDists
}

// AnswerCounts follow each arrival. Arrivals = NotSentCap + Sent; Sent =
// Failed + Unfinished + Completed.
type AnswerCounts struct {
	Arrivals int64 `json:"arrivals"`
	// NotSentCap: arrivals that found -concurrency answers in flight and
	// were not sent.
	NotSentCap int64 `json:"not_sent_cap"`
	Sent       int64 `json:"sent"`
	// Failed before any chunk came: the connection, the request or its
	// answer (503, 400, error message); Result.Failures has the causes.
	Failed int64 `json:"failed"`
	// Unfinished: started, but no done by the end of the drain, or the
	// stream broke (its cause in Result.Failures as dropped_<cause>).
	Unfinished int64 `json:"unfinished"`
	Completed  int64 `json:"completed"` // the done message came
}

// AnswerWindow is what happened in the measured window: answers that
// arrived in it (and of those, completed) and chunks that arrived in it,
// whichever answer's.
type AnswerWindow struct {
	Arrivals  int64 `json:"arrivals"`
	Completed int64 `json:"completed"`
	Chunks    int64 `json:"chunks"`
}

// ChunkCounts are the delivery checks, per chunk.
type ChunkCounts struct {
	// Expected: tokens per answer that started streaming.
	Expected int64 `json:"expected"`
	Received int64 `json:"received"` // duplicates included
	// Lost: chunks never received of answers whose done came.
	Lost       int64 `json:"lost"`
	Duplicated int64 `json:"duplicated"`
	// Reordered: a chunk that came after one with a higher index.
	Reordered int64 `json:"reordered"`
	// Wrong: an index out of range, another answer's id, a text other
	// than the seed's, or a done whose count is not the tokens asked for.
	Wrong int64 `json:"wrong"`
	// Malformed: a message that is not a chunk, done or error.
	Malformed int64 `json:"malformed"`
	// Stray: WebSocket messages for no answer in flight (an unknown id,
	// or after its answer's done or error).
	Stray int64 `json:"stray"`
}

// Add adds o to c: answers of several processes add up.
func (c *AnswerCounts) Add(o AnswerCounts) { addFields(c, o) }

// Add adds o to c.
func (c *ChunkCounts) Add(o ChunkCounts) { addFields(c, o) }

// Add adds o to w.
func (w *AnswerWindow) Add(o AnswerWindow) { addFields(w, o) }

// Faults lists what went wrong with delivery, one "N what" each; empty
// when every answer that started ended with every chunk once, in order,
// with the seed's text.
func (a *Answer) Faults() []string {
	var f []string
	for _, w := range []struct {
		n    int64
		what string
	}{{a.Chunks.Lost, "chunks lost"}, {a.Chunks.Duplicated, "chunks duplicated"},
		{a.Chunks.Reordered, "chunks reordered"}, {a.Chunks.Wrong, "wrong chunks"},
		{a.Chunks.Malformed, "malformed messages"}, {a.Chunks.Stray, "stray messages"},
		{a.Answers.Unfinished, "unfinished answers"}} {
		if w.n > 0 {
			f = append(f, fmt.Sprintf("%d %s", w.n, w.what))
		}
	}
	return f
}

// AnswerDists are the answer run's distributions, summarised in ms and
// encoded (µs, HdrHistogram V2) so that results merge exactly. TTFT and
// E2E: from the request's intended send time to its first chunk and to
// its done; ITL: between consecutive chunks of an answer (the first
// excluded); ChunkLatency: each chunk's arrival minus its scheduled ts.
// ToServer is the first part of TTFT: from the intended send time to the
// server's arrival stamp (its first chunk's ts minus think), the time the
// request took to be sent, carried and read; TTFT minus think minus
// ToServer is the first chunk's way back. It needs the server's clock to
// be the load generator's (one machine), as ChunkLatency does; a
// result written before it existed has none (Count 0).
type AnswerDists struct {
	TTFT             Percentiles `json:"ttft"`
	ToServer         Percentiles `json:"to_server"`
	ITL              Percentiles `json:"itl"`
	E2E              Percentiles `json:"e2e"`
	ChunkLatency     Percentiles `json:"chunk_latency"`
	HistTTFT         string      `json:"hist_ttft"`
	HistToServer     string      `json:"hist_to_server,omitempty"`
	HistITL          string      `json:"hist_itl"`
	HistE2E          string      `json:"hist_e2e"`
	HistChunkLatency string      `json:"hist_chunk_latency"`
}

// AnswerHists are the histograms behind AnswerDists, with the shared
// bounds.
type AnswerHists struct {
	TTFT, ToServer, ITL, E2E, ChunkLatency *hdrhistogram.Histogram
}

// NewAnswerHists returns empty histograms.
func NewAnswerHists() AnswerHists {
	return AnswerHists{TTFT: NewHistogram(), ToServer: NewHistogram(), ITL: NewHistogram(), E2E: NewHistogram(), ChunkLatency: NewHistogram()}
}

func (h AnswerHists) list() []*hdrhistogram.Histogram {
	return []*hdrhistogram.Histogram{h.TTFT, h.ToServer, h.ITL, h.E2E, h.ChunkLatency}
}

// Merge adds o's values to h and returns how many fell outside the
// bounds.
func (h AnswerHists) Merge(o AnswerHists) (dropped int64) {
	ol := o.list()
	for i, x := range h.list() {
		dropped += x.Merge(ol[i])
	}
	return dropped
}

func (d *AnswerDists) fields() (sums []*Percentiles, hists []*string) {
	return []*Percentiles{&d.TTFT, &d.ToServer, &d.ITL, &d.E2E, &d.ChunkLatency},
		[]*string{&d.HistTTFT, &d.HistToServer, &d.HistITL, &d.HistE2E, &d.HistChunkLatency}
}

// Dists summarises and encodes h.
func (h AnswerHists) Dists() (AnswerDists, error) {
	var d AnswerDists
	sums, hists := d.fields()
	for i, x := range h.list() {
		*sums[i] = Summarize(x)
		var err error
		if *hists[i], err = EncodeHist(x); err != nil {
			return AnswerDists{}, err
		}
	}
	return d, nil
}

// AddDists decodes d's histograms and merges them into h.
func (h AnswerHists) AddDists(d *AnswerDists) error {
	_, hists := d.fields()
	o := make([]*hdrhistogram.Histogram, len(hists))
	for i, s := range hists {
		var err error
		if o[i], err = DecodeHist(*s); err != nil {
			return fmt.Errorf("answer histogram %d: %w", i, err)
		}
	}
	if dropped := h.Merge(AnswerHists{TTFT: o[0], ToServer: o[1], ITL: o[2], E2E: o[3], ChunkLatency: o[4]}); dropped != 0 {
		return fmt.Errorf("%d answer histogram values out of range", dropped)
	}
	return nil
}

// SetRates derives the rates from the totals over duration (s).
func (a *Answer) SetRates(duration float64, bytesReceived int64) {
	if duration > 0 {
		w := a.Window
		a.ArrivalsPerSec = float64(w.Arrivals) / duration
		a.AnswersPerSec = float64(w.Completed) / duration
		a.OfferedChunksPerSec = float64(w.Arrivals) * float64(a.Tokens) / duration
		a.ChunksPerSec = float64(w.Chunks) / duration
	}
	a.BytesPerChunk = 0
	if a.Chunks.Received > 0 {
		a.BytesPerChunk = float64(bytesReceived) / float64(a.Chunks.Received)
	}
}

// mergeAnswer merges the Answer parts of results of processes that ran
// side by side: nil when none has one. The shape is the first's; offered
// rates, caps and sessions add up.
func mergeAnswer(rs []*Result, duration float64, bytesReceived int64) (*Answer, error) {
	var out *Answer
	h := NewAnswerHists()
	for _, r := range rs {
		a := r.Answer
		if a == nil {
			continue // Merge checked that the workloads agree
		}
		if out == nil {
			out = &Answer{Conn: a.Conn, Tokens: a.Tokens, TokenRate: a.TokenRate, ThinkMs: a.ThinkMs, WarmupMs: a.WarmupMs}
		} else if out.Tokens != a.Tokens || out.TokenRate != a.TokenRate || out.ThinkMs != a.ThinkMs || out.Conn != a.Conn {
			return nil, fmt.Errorf("merge: answer runs of different shapes")
		}
		out.Conns += a.Conns
		out.Concurrency += a.Concurrency
		out.Rate += a.Rate
		out.Answers.Add(a.Answers)
		out.Chunks.Add(a.Chunks)
		out.Window.Add(a.Window)
		out.WarmupMs = max(out.WarmupMs, a.WarmupMs)
		out.ConnectionsOpened += a.ConnectionsOpened
		out.InFlightAtEnd += a.InFlightAtEnd
		if err := h.AddDists(&a.AnswerDists); err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
	}
	if out == nil {
		return nil, nil
	}
	var err error
	if out.AnswerDists, err = h.Dists(); err != nil {
		return nil, err
	}
	out.SetRates(duration, bytesReceived)
	return out, nil
}
