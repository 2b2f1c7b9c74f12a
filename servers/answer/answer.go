// Package answer is the deterministic answer of the answer-streaming
// workload (PROTOCOL.md, "Answer streaming"): what a request asks for, the
// text of every chunk, when each chunk is due, and its wire JSON.
//
// An answer is a pure function of its Request and its arrival time: chunk k
// (0-based) of seed S has the text Text(S, k) on every transport and in
// every run, and is scheduled at arrival + Think + k/Rate. Nothing here
// holds state or starts goroutines, so the server computes a chunk when it
// falls due instead of keeping a producer per answer, and a client (the
// load generator) checks content with the very same functions.
package answer

import (
	"strconv"
	"time"
)

// words are the vocabulary of the synthetic answer: plain ASCII, no quote
// or backslash, so a chunk's text needs no JSON escaping. Lengths run from
// one letter to fourteen, like the tokens of a real model.
var words = [...]string{
	"the", "a", "of", "to", "and", "in", "is", "it", "that", "for",
	"price", "market", "stream", "server", "client", "event", "socket", "token", "answer", "latency",
	"moves", "falls", "rises", "opens", "closes", "waits", "streams", "measures", "sends", "reads",
	"quickly", "slowly", "again", "today", "first", "last", "every", "each", "only", "never",
	"benchmark", "throughput", "connection", "deterministic", "percentile", "multiplexed", "scheduled", "transport", "handshake", "heartbeat",
	"I", "we", "you", "they", "this", "those", "which", "where", "when", "because",
	"HTTP", "SSE", "TCP", "JSON",
}

// punctuation that may end a chunk; most chunks end in none.
var punctuation = [...]string{",", ".", ";", ":", "!", "?"}

// mix is SplitMix64's finaliser: a fixed, well-mixed hash of (seed, k), so
// that any chunk's text is computed without generating those before it.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// AppendText appends the text of chunk k of seed: one word, sometimes two,
// each after a space, sometimes followed by punctuation (2 to 30 bytes).
func AppendText(dst []byte, seed uint64, k int) []byte {
	h := mix(seed ^ mix(uint64(k)))
	dst = append(dst, ' ')
	dst = append(dst, words[h%uint64(len(words))]...)
	h /= uint64(len(words))
	if h%8 == 0 { // one chunk in eight carries two words
		dst = append(dst, ' ')
		dst = append(dst, words[(h/8)%uint64(len(words))]...)
	}
	h /= 8 * uint64(len(words))
	if h%6 == 0 { // one in six ends with punctuation
		dst = append(dst, punctuation[(h/6)%uint64(len(punctuation))]...)
	}
	return dst
}

// Text returns the text of chunk k (0-based) of seed, identical on every
// transport and in every run.
func Text(seed uint64, k int) string { return string(AppendText(nil, seed, k)) }

// Due returns when chunk k of r is scheduled, in Unix nanoseconds, for an
// answer whose request arrived at arrival (Unix nanoseconds).
func (r Request) Due(arrival int64, k int) int64 {
	return arrival + int64(r.Think) + int64(float64(k)*float64(time.Second)/r.Rate)
}

// DueBy returns how many chunks of r are due at now: the chunks 0..n-1.
func (r Request) DueBy(arrival, now int64) int {
	first := arrival + int64(r.Think)
	if now < first {
		return 0
	}
	n := int(float64(now-first)*r.Rate/float64(time.Second)) + 1
	// Float rounding may put the boundary one chunk off: settle it on Due,
	// the one definition of the schedule.
	for n > 0 && r.Due(arrival, n-1) > now {
		n--
	}
	for n < r.Tokens && r.Due(arrival, n) <= now {
		n++
	}
	return min(n, r.Tokens)
}

// AppendChunkJSON appends chunk k's wire JSON,
// {"id":"a1b2","i":3,"text":" price","ts":1732400000123456789}; idJSON is
// the answer id already encoded as a JSON string (quotes included).
func AppendChunkJSON(dst, idJSON []byte, seed uint64, k int, ts int64) []byte {
	dst = append(dst, `{"id":`...)
	dst = append(dst, idJSON...)
	dst = append(dst, `,"i":`...)
	dst = strconv.AppendInt(dst, int64(k), 10)
	dst = append(dst, `,"text":"`...)
	dst = AppendText(dst, seed, k)
	dst = append(dst, `","ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	return append(dst, '}')
}

// AppendDoneJSON appends the end of an answer as SSE's done event and the
// WebSocket done message carry it: {"id":"a1b2","chunks":64}, or with
// ws set {"id":"r1","done":true,"chunks":64}.
func AppendDoneJSON(dst, idJSON []byte, chunks int, ws bool) []byte {
	dst = append(dst, `{"id":`...)
	dst = append(dst, idJSON...)
	if ws {
		dst = append(dst, `,"done":true`...)
	}
	dst = append(dst, `,"chunks":`...)
	dst = strconv.AppendInt(dst, int64(chunks), 10)
	return append(dst, '}')
}
