package client

import (
	"errors"
	"fmt"
	"math"

	"github.com/pushbench/pushbench/servers/feed"
)

// The wire JSON is small and fixed (PROTOCOL.md): a tick
// {"seq":42,"sym":"AAPL","price":101.23,"ts":1732400000123456789}, a gap
// {"from":F,"to":T}, a poll answer {"cursor":C,"ticks":[...],"gap":{...}}.
// encoding/json would allocate a string per symbol and go through
// reflection per field, which costs more than the transport does; this
// scanner decodes in place and allocates nothing. It is strict: everything
// it accepts is valid JSON that encoding/json reads the same way (the fuzz
// targets check this), unknown keys are skipped, keys are matched exactly.

// ErrMalformed marks a message that is not a valid tick, gap or poll answer.
var ErrMalformed = errors.New("malformed message")

// maxDepth bounds the nesting of skipped values.
const maxDepth = 32

// Tick is one decoded tick. Sym points into the decoded message and is only
// valid until the client reads again.
type Tick struct {
	Seq   uint64
	Sym   []byte
	Price int64 // cents
	TS    int64 // scheduled publish time, Unix ns
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) fail(what string) error {
	return fmt.Errorf("%w: %s at byte %d", ErrMalformed, what, s.i)
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// consume skips whitespace and then c, if it is there.
func (s *scanner) consume(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// key reads `"name":`; escaped keys are refused (no key of ours needs one,
// and matching them raw would disagree with encoding/json).
func (s *scanner) key() ([]byte, error) {
	k, err := s.plainString()
	if err != nil {
		return nil, err
	}
	if !s.consume(':') {
		return nil, s.fail("missing colon")
	}
	return k, nil
}

// plainString reads a string of printable ASCII without escapes.
func (s *scanner) plainString() ([]byte, error) {
	if !s.consume('"') {
		return nil, s.fail("expected string")
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], nil
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, s.fail("unsupported character in string")
		}
		s.i++
	}
	return nil, s.fail("unterminated string")
}

// uint reads an unsigned JSON integer (no sign, fraction or exponent).
func (s *scanner) uint() (uint64, error) {
	s.ws()
	start := s.i
	var v uint64
	for s.i < len(s.b) && isDigit(s.b[s.i]) {
		d := uint64(s.b[s.i] - '0')
		if v > (1<<64-1-d)/10 {
			return 0, s.fail("integer overflows")
		}
		v = v*10 + d
		s.i++
	}
	n := s.i - start
	if n == 0 || (n > 1 && s.b[start] == '0') {
		return 0, s.fail("expected unsigned integer")
	}
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return 0, s.fail("expected integer")
	}
	return v, nil
}

// int reads a JSON integer that fits int64.
func (s *scanner) int() (int64, error) {
	s.ws()
	neg := s.i < len(s.b) && s.b[s.i] == '-'
	if neg {
		s.i++
	}
	if s.i < len(s.b) && !isDigit(s.b[s.i]) {
		return 0, s.fail("expected integer")
	}
	v, err := s.uint()
	if err != nil {
		return 0, err
	}
	if neg {
		if v > 1<<63 {
			return 0, s.fail("integer overflows")
		}
		return -int64(v), nil
	}
	if v > 1<<63-1 {
		return 0, s.fail("integer overflows")
	}
	return int64(v), nil
}

// cents reads a non-negative price with at most two decimals, as cents.
func (s *scanner) cents() (int64, error) {
	s.ws()
	start := s.i
	var whole int64
	for s.i < len(s.b) && isDigit(s.b[s.i]) {
		if whole > (1<<63-1)/1000 {
			return 0, s.fail("price overflows")
		}
		whole = whole*10 + int64(s.b[s.i]-'0')
		s.i++
	}
	if n := s.i - start; n == 0 || (n > 1 && s.b[start] == '0') {
		return 0, s.fail("expected price")
	}
	c := whole * 100
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		digits := 0
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			if digits == 2 {
				return 0, s.fail("price has more than two decimals")
			}
			d := int64(s.b[s.i] - '0')
			if digits == 0 {
				d *= 10
			}
			c += d
			digits++
			s.i++
		}
		if digits == 0 {
			return 0, s.fail("bad price")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return 0, s.fail("price with exponent")
	}
	return c, nil
}

// skip skips any JSON value, validating it.
func (s *scanner) skip(depth int) error {
	if depth > maxDepth {
		return s.fail("nested too deep")
	}
	s.ws()
	if s.i >= len(s.b) {
		return s.fail("expected value")
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.list('{', '}', "expected object", func() error {
			if err := s.skipString(); err != nil {
				return err
			}
			if !s.consume(':') {
				return s.fail("missing colon")
			}
			return s.skip(depth + 1)
		})
	case c == '[':
		return s.list('[', ']', "expected array", func() error { return s.skip(depth + 1) })
	case c == '"':
		return s.skipString()
	case c == '-' || isDigit(c):
		return s.skipNumber()
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
				s.i += len(lit)
				return nil
			}
		}
		return s.fail("expected value")
	}
}

func (s *scanner) skipString() error {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return s.fail("expected string")
	}
	s.i++
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return nil
		case c < 0x20:
			return s.fail("control character in string")
		case c == '\\':
			s.i++
			if s.i >= len(s.b) {
				return s.fail("unterminated escape")
			}
			switch s.b[s.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(s.b)-s.i < 5 {
					return s.fail("short \\u escape")
				}
				for _, h := range s.b[s.i+1 : s.i+5] {
					if !isDigit(h) && !('a' <= h && h <= 'f') && !('A' <= h && h <= 'F') {
						return s.fail("bad \\u escape")
					}
				}
				s.i += 4
			default:
				return s.fail("bad escape")
			}
		}
		s.i++
	}
	return s.fail("unterminated string")
}

func (s *scanner) skipNumber() error {
	if s.b[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		n := 0
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
			n++
		}
		return n
	}
	start := s.i
	n := digits()
	if n == 0 || (n > 1 && s.b[start] == '0') {
		return s.fail("bad number")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return s.fail("bad number")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return s.fail("bad number")
		}
	}
	return nil
}

// list reads open, then elements separated by commas, then close; elem
// reads one element. notOpen is the error when open is not there.
func (s *scanner) list(open, close byte, notOpen string, elem func() error) error {
	if !s.consume(open) {
		return s.fail(notOpen)
	}
	if s.consume(close) {
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		if s.consume(close) {
			return nil
		}
		if !s.consume(',') {
			return s.fail("expected , or " + string(close))
		}
	}
}

// object calls field for each key of an object; field reads the value.
func (s *scanner) object(field func(k []byte) error) error {
	return s.list('{', '}', "expected object", func() error {
		k, err := s.key()
		if err != nil {
			return err
		}
		return field(k)
	})
}

// end checks that only whitespace follows the value.
func (s *scanner) end() error {
	s.ws()
	if s.i != len(s.b) {
		return s.fail("trailing data")
	}
	return nil
}

const (
	hasSeq = 1 << iota
	hasSym
	hasPrice
	hasTS
	hasAll = hasSeq | hasSym | hasPrice | hasTS
)

// record reads an object whose keys field knows: field reads the value of
// a key it knows and returns that key's bit, or 0 for a key it does not
// know, whose value is then skipped. Unless every bit of all was seen, the
// object fails with lacks.
func (s *scanner) record(all int, lacks string, field func(k []byte) (bit int, err error)) error {
	seen := 0
	err := s.object(func(k []byte) error {
		bit, err := field(k)
		if bit == 0 && err == nil {
			return s.skip(1)
		}
		seen |= bit
		return err
	})
	if err != nil {
		return err
	}
	if seen&all != all {
		return s.fail(lacks)
	}
	return nil
}

// tick reads a tick object; every field is required. A tick laid out the
// way the server writes it takes fastTick; anything else, the general
// scanner.
func (s *scanner) tick(t *Tick) error {
	if n := fastTick(s.b[s.i:], t); n > 0 {
		s.i += n
		return nil
	}
	return s.anyTick(t)
}

// The fixed parts of a tick as feed.AppendJSON writes it.
const (
	fastSeq   = `{"seq":`
	fastSym   = `,"sym":"`
	fastPrice = `","price":`
	fastTS    = `,"ts":`
)

// fastTick decodes a tick laid out exactly as the server writes it,
// {"seq":S,"sym":"N","price":W.CC,"ts":T} with no blanks, from the start of
// b, and returns how many bytes it used; 0 (nothing decoded) for anything
// else, which the general scanner then reads. Every message parses a tick,
// and at 2,000 ticks/s the general scanner's key dispatch and per-byte
// whitespace checks were a quarter of the load generator's CPU. It accepts
// only what anyTick reads the same way (FuzzFastTick): integers without a
// leading zero (seq any uint64, ts from 0 to MaxInt64), a symbol of
// printable ASCII without quote or backslash, a price of up to 15 whole
// digits and exactly two decimals. FuzzFastTickServer checks that every
// tick the server writes takes it.
func fastTick(b []byte, t *Tick) int {
	if len(b) < len(fastSeq) || string(b[:len(fastSeq)]) != fastSeq {
		return 0
	}
	seq, i, ok := fastUint(b, len(fastSeq), 20)
	if !ok || !fastLit(b, i, fastSym) {
		return 0
	}
	i += len(fastSym)
	symAt := i
	for ; i < len(b) && b[i] != '"'; i++ {
		if c := b[i]; c < 0x20 || c >= 0x7f || c == '\\' {
			return 0
		}
	}
	sym := b[symAt:i]
	if !fastLit(b, i, fastPrice) {
		return 0
	}
	whole, i, ok := fastUint(b, i+len(fastPrice), 15)
	if !ok || len(b)-i < 3 || b[i] != '.' || !isDigit(b[i+1]) || !isDigit(b[i+2]) {
		return 0
	}
	price := whole*100 + uint64(b[i+1]-'0')*10 + uint64(b[i+2]-'0')
	if !fastLit(b, i+3, fastTS) {
		return 0
	}
	ts, i, ok := fastUint(b, i+3+len(fastTS), 19)
	if !ok || ts > math.MaxInt64 || i >= len(b) || b[i] != '}' {
		return 0
	}
	*t = Tick{Seq: seq, Sym: sym, Price: int64(price), TS: int64(ts)}
	return i + 1
}

// fastLit reports whether lit is at b[i:].
func fastLit(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

// fastUint reads 1 to most (at most 20) digits at b[i:] that fit a
// uint64, without a leading zero (a lone 0 is fine), and returns the value
// and the index after them. Up to 19 digits cannot overflow; only a 20th
// is checked.
func fastUint(b []byte, i, most int) (v uint64, end int, ok bool) {
	end = i
	for lim := min(len(b), i+min(most, 19)); end < lim; end++ {
		d := b[end] - '0'
		if d > 9 {
			break
		}
		v = v*10 + uint64(d)
	}
	if end < len(b) && b[end]-'0' <= 9 { // more digits than the loop took
		d := uint64(b[end] - '0')
		if end-i != 19 || most < 20 || v > (math.MaxUint64-d)/10 {
			return 0, end, false
		}
		v = v*10 + d
		if end++; end < len(b) && b[end]-'0' <= 9 {
			return 0, end, false
		}
	}
	if n := end - i; n == 0 || (n > 1 && b[i] == '0') {
		return 0, end, false
	}
	return v, end, true
}

// anyTick reads a tick object in any valid layout. It is record written
// out, without the call per key through field, which cost about 3% of the
// parse time when every tick came this way.
func (s *scanner) anyTick(t *Tick) error {
	seen := 0
	err := s.object(func(k []byte) (err error) {
		switch string(k) {
		case "seq":
			t.Seq, err = s.uint()
			seen |= hasSeq
		case "sym":
			t.Sym, err = s.plainString()
			seen |= hasSym
		case "price":
			t.Price, err = s.cents()
			seen |= hasPrice
		case "ts":
			t.TS, err = s.int()
			seen |= hasTS
		default:
			return s.skip(1)
		}
		return err
	})
	if err == nil && seen != hasAll {
		err = s.fail("tick lacks seq, sym, price or ts")
	}
	return err
}

// gap reads {"from":F,"to":T}; both fields are required.
func (s *scanner) gap(g *feed.Gap) error {
	return s.record(3, "gap lacks from or to", func(k []byte) (bit int, err error) {
		switch string(k) {
		case "from":
			g.From, err = s.uint()
			return 1, err
		case "to":
			g.To, err = s.uint()
			return 2, err
		}
		return 0, nil
	})
}

// ParseTick decodes one tick message.
func ParseTick(b []byte, t *Tick) error {
	s := scanner{b: b}
	if err := s.tick(t); err != nil {
		return err
	}
	return s.end()
}

// ParseGap decodes {"from":F,"to":T} (the data of an SSE gap event).
func ParseGap(b []byte, g *feed.Gap) error {
	s := scanner{b: b}
	if err := s.gap(g); err != nil {
		return err
	}
	return s.end()
}

// ParseMessage decodes a WebSocket text message: a tick, or
// {"gap":{"from":F,"to":T}}. isGap says which one was filled.
func ParseMessage(b []byte, t *Tick, g *feed.Gap) (isGap bool, err error) {
	if n := fastTick(b, t); n == len(b) {
		return false, nil // the server's tick: its first key is not gap
	}
	// Cheap dispatch on the first key; both forms are then parsed strictly.
	s := scanner{b: b}
	if s.consume('{') {
		if k, err := s.key(); err == nil && string(k) == "gap" {
			s = scanner{b: b}
			err := s.record(1, "no gap", func(k []byte) (int, error) {
				if string(k) == "gap" {
					return 1, s.gap(g)
				}
				return 0, nil
			})
			if err == nil {
				err = s.end()
			}
			return true, err
		}
	}
	return false, ParseTick(b, t)
}

// PollAnswer is a decoded poll response. Ticks' Sym fields point into the
// decoded body.
type PollAnswer struct {
	Cursor uint64
	Ticks  []Tick
	Gap    feed.Gap
	HasGap bool
}

// DecodePoll decodes a poll response body into a, reusing a.Ticks' storage.
// cursor and ticks are required; gap is optional.
func DecodePoll(b []byte, a *PollAnswer) error {
	*a = PollAnswer{Ticks: a.Ticks[:0]}
	s := scanner{b: b}
	err := s.record(3, "poll answer lacks cursor or ticks", func(k []byte) (bit int, err error) {
		switch string(k) {
		case "cursor":
			a.Cursor, err = s.uint()
			return 1, err
		case "ticks":
			a.Ticks = a.Ticks[:0]
			return 2, s.list('[', ']', "ticks is not an array", func() error {
				a.Ticks = append(a.Ticks, Tick{})
				return s.tick(&a.Ticks[len(a.Ticks)-1])
			})
		case "gap":
			a.HasGap = true
			return 4, s.gap(&a.Gap)
		}
		return 0, nil
	})
	if err != nil {
		return err
	}
	return s.end()
}
