package client

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
)

// DefaultMaxEvent bounds one SSE line and one event's data. A tick event is
// about 100 bytes; the bound keeps a misbehaving server from growing a
// client's buffers without limit.
const DefaultMaxEvent = 64 << 10

// ErrTooLong is returned when a line or an event's data exceeds the bound.
var ErrTooLong = errors.New("sse: line or event longer than the limit")

// SSEEvent is one dispatched Server-Sent Event. Its slices belong to the
// parser and are valid until the next call to Next.
type SSEEvent struct {
	Type []byte // empty for the default type ("message")
	Data []byte // data lines joined by LF, without the final LF
	ID   []byte // the last event ID buffer at dispatch
}

// Parser reads Server-Sent Events from a byte stream following the WHATWG
// HTML "event stream interpretation" rules: lines end in CRLF, LF or CR; a
// line starting with ':' is a comment; a field name ends at the first colon
// and one space after the colon is dropped; "data" lines are joined by LF;
// "id" sets the last event ID unless its value contains NUL (and persists
// across events and reconnects); "retry" with only ASCII digits sets the
// reconnection time; a blank line dispatches the event, unless no data was
// given; an event cut off by the end of the stream is dropped; a leading
// UTF-8 BOM is skipped.
//
// It reads into one buffer it owns and copies field values into reusable
// buffers, so it allocates nothing per event once warmed up. A Parser is
// not safe for concurrent use.
type Parser struct {
	r       io.Reader
	buf     []byte
	rd, wr  int  // unread bytes are buf[rd:wr]
	skipLF  bool // the last line ended in CR: an LF that follows belongs to it
	bomDone bool
	maxLen  int
	bufSize int   // buf's first size, allocated at the first read (Feed needs none)
	err     error // sticky read error

	data    []byte
	hasData bool // a data field was seen (data may be empty)
	typ     []byte
	lastID  []byte // the last event ID buffer: set by an id field
	// committedID is the last event ID string of the event source: the
	// buffer as it stood at the last blank line. Reconnects send this one,
	// so a connection cut between an event's id line and its blank line
	// resumes before that event instead of skipping it.
	committedID []byte
	retry       time.Duration
}

// NewParser returns a parser that reads from r with a buffer of bufSize bytes
// (grown up to maxLen for long lines).
func NewParser(r io.Reader, bufSize, maxLen int) *Parser {
	if bufSize < 64 {
		bufSize = 64
	}
	if maxLen < bufSize {
		maxLen = bufSize
	}
	return &Parser{r: r, bufSize: bufSize, maxLen: maxLen}
}

// Reset starts a new stream from r, keeping the last event ID and retry
// (they survive reconnects) and the buffers. An id seen after the last
// blank line of the old stream is forgotten, as an EventSource forgets it.
func (p *Parser) Reset(r io.Reader) {
	p.r, p.rd, p.wr, p.skipLF, p.bomDone, p.err = r, 0, 0, false, false, nil
	p.lastID = append(p.lastID[:0], p.committedID...)
	p.data, p.hasData, p.typ = p.data[:0], false, p.typ[:0]
}

// LastEventID returns the last event ID as of the last dispatch (blank
// line), the value to resume from (valid until the next Next).
func (p *Parser) LastEventID() []byte { return p.committedID }

// SetLastEventID sets the last event ID, as a resumed EventSource would have.
func (p *Parser) SetLastEventID(id []byte) {
	p.lastID = append(p.lastID[:0], id...)
	p.committedID = append(p.committedID[:0], id...)
}

// Retry returns the reconnection time the stream set, or 0.
func (p *Parser) Retry() time.Duration { return p.retry }

// line returns the next line without its terminator. The slice is valid
// until the next call.
func (p *Parser) line() ([]byte, error) {
	for {
		b := p.buf[p.rd:p.wr]
		if p.skipLF && len(b) > 0 {
			p.skipLF = false
			if b[0] == '\n' {
				p.rd++
				b = b[1:]
			}
		}
		if !p.bomDone && len(b) > 0 {
			if len(b) < 3 && bytes.HasPrefix([]byte("\xef\xbb\xbf"), b) && p.err == nil {
				// Could be the start of a BOM: read more first.
			} else {
				p.bomDone = true
				if bytes.HasPrefix(b, []byte("\xef\xbb\xbf")) {
					p.rd += 3
					b = b[3:]
				}
			}
		}
		if p.bomDone {
			if l, n, cr := splitLine(b); n >= 0 {
				p.rd += n
				p.skipLF = cr
				return l, nil
			}
		}
		if p.err != nil {
			return nil, p.err
		}
		if err := p.fill(); err != nil {
			p.err = err
		}
	}
}

// fill reads more bytes, compacting or growing the buffer first.
func (p *Parser) fill() error {
	if p.buf == nil {
		p.buf = make([]byte, p.bufSize)
	}
	if p.rd > 0 {
		n := copy(p.buf, p.buf[p.rd:p.wr])
		p.rd, p.wr = 0, n
	}
	if p.wr == len(p.buf) {
		if len(p.buf) >= p.maxLen {
			return ErrTooLong
		}
		nb := make([]byte, min(2*len(p.buf), p.maxLen))
		copy(nb, p.buf[:p.wr])
		p.buf = nb
	}
	for range 100 { // io.Reader allows (0, nil); do not spin forever
		n, err := p.r.Read(p.buf[p.wr:])
		p.wr += n
		if n > 0 || err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// Next returns the next dispatched event. At the end of the stream it
// returns io.EOF (a cut-off event is dropped), or the read error.
func (p *Parser) Next() (SSEEvent, error) {
	for {
		l, err := p.line()
		if err != nil {
			return SSEEvent{}, err
		}
		if ev, ok, err := p.field(l); err != nil || ok {
			return ev, err
		}
	}
}

// Feed parses the complete lines at the start of b, which the caller read
// itself (the event loop), calling emit for each dispatched event (the
// event is valid until emit returns). It returns how many bytes it used:
// b[used:] is an incomplete line, to be given again, followed by more
// bytes, on the next call. It fails with ErrTooLong when that incomplete
// line reaches the limit, as Next does. Feed and Next read the same
// streams the same way whatever the split (TestFeedSplits); do not mix
// them on one stream.
func (p *Parser) Feed(b []byte, emit func(SSEEvent)) (used int, err error) {
	i := 0
	for {
		rest := b[i:]
		if p.skipLF && len(rest) > 0 {
			p.skipLF = false
			if rest[0] == '\n' {
				i++
				rest = rest[1:]
			}
		}
		if !p.bomDone {
			if len(rest) < 3 && bytes.HasPrefix([]byte("\xef\xbb\xbf"), rest) {
				return i, nil // maybe the start of a BOM: wait for more
			}
			p.bomDone = true
			if bytes.HasPrefix(rest, []byte("\xef\xbb\xbf")) {
				i += 3
				rest = rest[3:]
			}
		}
		if n := p.fastEvent(rest, emit); n > 0 {
			i += n
			continue
		}
		l, n, cr := splitLine(rest)
		if n < 0 {
			if len(rest) >= p.maxLen {
				return i, ErrTooLong
			}
			return i, nil
		}
		if len(l)+1 > p.maxLen {
			return i, ErrTooLong // Next's buffer could not have held it
		}
		i += n
		p.skipLF = cr
		ev, ok, err := p.field(l)
		if err != nil {
			return i, err
		}
		if ok {
			emit(ev)
		}
	}
}

// fastEvent dispatches the event at the start of b if it is laid out as
// the server writes a tick, "id: N\ndata: D\n\n" (N digits, D without CR),
// and returns the bytes it used; 0 for anything else, which Feed then reads
// line by line. Between events (no field of the next one seen yet) that is
// exactly what field does with those three lines, without the scan per
// line for CR and colon and without copying D: the event's Data points
// into b. FuzzParserFeed compares Feed with Next.
func (p *Parser) fastEvent(b []byte, emit func(SSEEvent)) int {
	const idField, dataField = "id: ", "data: "
	if p.hasData || len(p.typ) > 0 || p.skipLF || !p.bomDone || len(b) < len(idField) || string(b[:len(idField)]) != idField {
		return 0
	}
	i := len(idField)
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	if i == len(idField) || i >= len(b) || b[i] != '\n' || i+1 > p.maxLen {
		return 0
	}
	id := b[len(idField):i]
	i++
	if len(b)-i < len(dataField) || string(b[i:i+len(dataField)]) != dataField {
		return 0
	}
	line := i
	i += len(dataField)
	end := bytes.IndexByte(b[i:], '\n')
	if end < 0 {
		return 0
	}
	data := b[i : i+end]
	i += end
	if i+1 >= len(b) || b[i+1] != '\n' || i-line+1 > p.maxLen || bytes.IndexByte(data, '\r') >= 0 {
		return 0
	}
	p.lastID = append(p.lastID[:0], id...)
	p.committedID = append(p.committedID[:0], id...)
	emit(SSEEvent{Type: p.typ, Data: data, ID: p.lastID})
	return i + 2
}

// splitLine finds the first line of b, ended by CRLF, LF or CR. It returns
// the line without its end, the bytes it took (-1: no complete line), and
// whether it ended in a CR at the end of b (an LF that follows belongs to
// it).
func splitLine(b []byte) (line []byte, n int, crAtEnd bool) {
	i := bytes.IndexByte(b, '\n')
	var j int
	if i >= 0 {
		j = bytes.IndexByte(b[:i], '\r')
	} else {
		j = bytes.IndexByte(b, '\r')
	}
	switch {
	case j >= 0: // CR, maybe CRLF
		if j+1 < len(b) {
			if b[j+1] == '\n' {
				return b[:j], j + 2, false
			}
			return b[:j], j + 1, false
		}
		return b[:j], j + 1, true
	case i >= 0:
		return b[:i], i + 1, false
	}
	return nil, -1, false
}

// field interprets one line; ok says it dispatched ev.
func (p *Parser) field(l []byte) (ev SSEEvent, ok bool, err error) {
	if len(l) == 0 {
		p.committedID = append(p.committedID[:0], p.lastID...)
		if !p.hasData {
			p.typ = p.typ[:0]
			return SSEEvent{}, false, nil
		}
		ev := SSEEvent{Type: p.typ, Data: p.data, ID: p.lastID}
		if n := len(ev.Data); n > 0 && ev.Data[n-1] == '\n' {
			ev.Data = ev.Data[:n-1]
		}
		// Reset for the next event; the slices stay valid until the
		// next call because the buffers are only truncated here.
		p.data, p.hasData, p.typ = p.data[:0], false, p.typ[:0]
		return ev, true, nil
	}
	if l[0] == ':' {
		return SSEEvent{}, false, nil // comment (heartbeat)
	}
	name, value := l, []byte(nil)
	if i := bytes.IndexByte(l, ':'); i >= 0 {
		name, value = l[:i], l[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) {
	case "data":
		if len(p.data)+len(value)+1 > p.maxLen {
			return SSEEvent{}, false, fmt.Errorf("%w: event data over %d bytes", ErrTooLong, p.maxLen)
		}
		p.data = append(append(p.data, value...), '\n')
		p.hasData = true
	case "event":
		p.typ = append(p.typ[:0], value...)
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			p.lastID = append(p.lastID[:0], value...)
		}
	case "retry":
		if ms, ok := parseUint(value); ok && ms < 1<<40 {
			p.retry = time.Duration(ms) * time.Millisecond
		}
	}
	return SSEEvent{}, false, nil
}
