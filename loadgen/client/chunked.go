package client

import "fmt"

// chunkDecoder decodes the HTTP/1.1 chunked transfer coding as a stream, in
// place: the event loop hands it whatever one read brought, and it moves the
// chunks' data down over their framing, so the body comes out contiguous
// without a copy into a buffer of the client's. It keeps only a few
// integers between reads, never bytes. It accepts exactly what response's
// nextChunk accepts (FuzzChunkDecoder compares them): a size line of 1-10 hex
// digits, optional spaces or tabs, an optional ;extension, and LF or CRLF;
// data followed by LF or CRLF; trailers up to a blank line.
type chunkDecoder struct {
	state   uint8
	digits  uint8
	lineLen int   // bytes of the current size or trailer line
	size    int64 // size being parsed, then data left in the chunk
}

const (
	chSize       = iota // hex digits of the size line
	chSizeSpace         // spaces or tabs after the digits
	chSizeCR            // a CR after the digits: only LF may follow
	chExt               // a chunk extension, up to LF
	chData              // chunk data, size bytes left
	chDataEnd           // after the data: LF or CRLF
	chDataCR            // after the data and a CR: LF
	chTrailStart        // start of a trailer line: LF or CRLF ends the body
	chTrailCR           // a trailer line that began with CR
	chTrailLine         // inside a trailer line, up to LF
	chDone
)

// decode decodes b in place. The body bytes it found are b[:n] afterwards;
// consumed is how much of b it used (all of it unless the body ended inside
// b: what follows belongs to the next response). done says the last chunk
// and the trailers were read.
func (d *chunkDecoder) decode(b []byte) (n, consumed int, done bool, err error) {
	i := 0
	for i < len(b) {
		if d.state == chData {
			k := int(min(d.size, int64(len(b)-i)))
			n += copy(b[n:], b[i:i+k])
			i += k
			if d.size -= int64(k); d.size == 0 {
				d.state = chDataEnd
			}
			continue
		}
		c := b[i]
		i++
		switch d.state {
		case chSize, chSizeSpace, chSizeCR, chExt, chTrailCR, chTrailLine:
			if d.lineLen++; d.lineLen > maxLineBytes {
				return n, i, false, fmt.Errorf("%w: line longer than %d bytes", ErrProtocol, maxLineBytes)
			}
		}
		switch d.state {
		case chSize, chSizeSpace:
			if v, ok := hexVal(c); ok && d.state == chSize && d.digits < 10 {
				d.size = d.size<<4 | int64(v)
				d.digits++
				continue
			}
			// After the digits: blanks (then no more digits), an
			// extension, or the line's end.
			switch c {
			case ' ', '\t':
				d.state = chSizeSpace
			case ';':
				d.state = chExt
			case '\r':
				d.state = chSizeCR
			case '\n':
				if err := d.sizeLine(); err != nil {
					return n, i, false, err
				}
			default:
				return n, i, false, fmt.Errorf("%w: bad chunk size", ErrProtocol)
			}
		case chSizeCR:
			if c != '\n' {
				return n, i, false, fmt.Errorf("%w: bad chunk size", ErrProtocol)
			}
			if err := d.sizeLine(); err != nil {
				return n, i, false, err
			}
		case chExt:
			if c == '\n' {
				if err := d.sizeLine(); err != nil {
					return n, i, false, err
				}
			}
		case chDataEnd:
			switch c {
			case '\n':
				d.state = chSize
			case '\r':
				d.state = chDataCR
			default:
				return n, i, false, fmt.Errorf("%w: chunk data longer than its size", ErrProtocol)
			}
		case chDataCR:
			if c != '\n' {
				return n, i, false, fmt.Errorf("%w: chunk data longer than its size", ErrProtocol)
			}
			d.state = chSize
		case chTrailStart:
			switch c {
			case '\n':
				d.state = chDone
				return n, i, true, nil
			case '\r':
				d.state, d.lineLen = chTrailCR, 1
			default:
				d.state, d.lineLen = chTrailLine, 1
			}
		case chTrailCR:
			switch c {
			case '\n':
				d.state = chDone
				return n, i, true, nil
			default:
				d.state = chTrailLine
			}
		case chTrailLine:
			if c == '\n' {
				d.state = chTrailStart
			}
		case chDone:
			return n, i - 1, true, nil
		}
	}
	return n, i, d.state == chDone, nil
}

// sizeLine ends a size line: data follows, or the trailers after size 0.
func (d *chunkDecoder) sizeLine() error {
	if d.digits == 0 {
		return fmt.Errorf("%w: bad chunk size", ErrProtocol)
	}
	d.digits, d.lineLen = 0, 0
	if d.size == 0 {
		d.state = chTrailStart
		return nil
	}
	d.state = chData
	return nil
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
