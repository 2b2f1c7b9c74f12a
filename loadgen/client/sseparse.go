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
	return &Parser{r: r, buf: make([]byte, bufSize), maxLen: maxLen}
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
			i := bytes.IndexByte(b, '\n')
			var j int
			if i >= 0 {
				j = bytes.IndexByte(b[:i], '\r')
			} else {
				j = bytes.IndexByte(b, '\r')
			}
			switch {
			case j >= 0: // CR, maybe CRLF
				l := b[:j]
				p.rd += j + 1
				if j+1 < len(b) {
					if b[j+1] == '\n' {
						p.rd++
					}
				} else {
					p.skipLF = true
				}
				return l, nil
			case i >= 0:
				p.rd += i + 1
				return b[:i], nil
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
		if len(l) == 0 {
			p.committedID = append(p.committedID[:0], p.lastID...)
			if !p.hasData {
				p.typ = p.typ[:0]
				continue
			}
			ev := SSEEvent{Type: p.typ, Data: p.data, ID: p.lastID}
			if n := len(ev.Data); n > 0 && ev.Data[n-1] == '\n' {
				ev.Data = ev.Data[:n-1]
			}
			// Reset for the next event; the slices stay valid until the
			// next call because the buffers are only truncated here.
			p.data, p.hasData, p.typ = p.data[:0], false, p.typ[:0]
			return ev, nil
		}
		if l[0] == ':' {
			continue // comment (heartbeat)
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
				return SSEEvent{}, fmt.Errorf("%w: event data over %d bytes", ErrTooLong, p.maxLen)
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
	}
}
