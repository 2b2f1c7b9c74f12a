package client

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// The SSE and poll clients speak HTTP/1.1 themselves instead of going
// through net/http: net/http's transport keeps two goroutines and two 4 KiB
// buffers per connection and allocates a header map per response, which
// would dominate the cost of an idle client and of a poll answer. They need
// only a small part of HTTP/1.1: send a GET, read a status line and a few
// headers, and read a body delimited by chunks, a length or the close.

const (
	maxHeaderBytes = 64 << 10 // total response header size
	maxLineBytes   = 8 << 10  // one header or chunk-size line
)

// httpReader is what the SSE and poll clients read their connection
// through: a buffered reader lent by the Config's pool, and the response
// read from it. A Loop needs neither, so handing off returns the reader.
type httpReader struct {
	br   *bufio.Reader
	resp response
}

// attach reads c from now on, borrowing a reader from cfg the first time.
func (h *httpReader) attach(cfg *Config, c *Conn) {
	if h.br == nil {
		h.br = cfg.reader(c)
	} else {
		h.br.Reset(c)
	}
	h.resp.br = h.br
}

// release gives the reader back to cfg's pool and returns a copy of what
// it had buffered and not yet read (the start of what the Loop reads).
func (h *httpReader) release(cfg *Config) []byte {
	var pre []byte
	if n := h.br.Buffered(); n > 0 {
		b, _ := h.br.Peek(n)
		pre = append(pre, b...)
	}
	h.br.Reset(nil)
	cfg.brPool.Put(h.br)
	h.br, h.resp.br = nil, nil
	return pre
}

// response reads one HTTP/1.1 response from br: call readHeader, then read
// the body with Read until io.EOF. Reset it before the next response on the
// same connection. It allocates nothing once warmed up.
type response struct {
	br  *bufio.Reader
	src []byte // without br: a head already in memory (parseHead)

	status      int
	contentType []byte // copied into ct
	ct          [64]byte
	chunked     bool
	length      int64 // Content-Length, -1 if absent
	closeConn   bool  // the connection cannot carry another request

	remaining int64 // bytes left in the current chunk or the length
	needCRLF  bool  // a chunk's data ended: its CRLF is still to be read
	eof       bool
	line      []byte // scratch for lines longer than br's buffer
}

// readLine returns the next line without its CRLF or LF. The slice is valid
// until the next read.
func (r *response) readLine() ([]byte, error) {
	if r.br == nil {
		return r.srcLine()
	}
	l, err := r.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		r.line = append(r.line[:0], l...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(r.line) > maxLineBytes {
				return nil, fmt.Errorf("%w: line longer than %d bytes", ErrProtocol, maxLineBytes)
			}
			l, err = r.br.ReadSlice('\n')
			r.line = append(r.line, l...)
		}
		l = r.line
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(l) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	l = l[:len(l)-1]
	if len(l) > 0 && l[len(l)-1] == '\r' {
		l = l[:len(l)-1]
	}
	return l, nil
}

// readHeader reads the status line and the headers, skipping 1xx interim
// responses.
func (r *response) readHeader() error {
	*r = response{br: r.br, src: r.src, line: r.line[:0], length: -1}
	total := 0
	for {
		l, err := r.readLine()
		if err != nil {
			return fmt.Errorf("read status line: %w", err)
		}
		// HTTP/1.x SP 3DIGIT [SP reason]
		if len(l) < 12 || !bytes.HasPrefix(l, []byte("HTTP/1.")) || l[8] != ' ' ||
			!isDigit(l[9]) || !isDigit(l[10]) || !isDigit(l[11]) || (len(l) > 12 && l[12] != ' ') {
			return fmt.Errorf("%w: bad status line %q", ErrProtocol, trim(l))
		}
		r.status = int(l[9]-'0')*100 + int(l[10]-'0')*10 + int(l[11]-'0')
		r.closeConn = l[7] == '0' // HTTP/1.0 closes unless it says keep-alive
		for {
			l, err := r.readLine()
			if err != nil {
				return fmt.Errorf("read header: %w", err)
			}
			if total += len(l); total > maxHeaderBytes {
				return fmt.Errorf("%w: headers longer than %d bytes", ErrProtocol, maxHeaderBytes)
			}
			if len(l) == 0 {
				break
			}
			name, value, ok := bytes.Cut(l, []byte(":"))
			if !ok {
				return fmt.Errorf("%w: bad header line %q", ErrProtocol, trim(l))
			}
			value = bytes.TrimSpace(value)
			switch {
			case bytes.EqualFold(name, []byte("Content-Length")):
				n, ok := parseUint(value)
				if !ok || n > 1<<40 {
					return fmt.Errorf("%w: bad Content-Length %q", ErrProtocol, trim(value))
				}
				r.length = int64(n)
			case bytes.EqualFold(name, []byte("Transfer-Encoding")):
				r.chunked = bytes.EqualFold(value, []byte("chunked"))
				if !r.chunked && !bytes.EqualFold(value, []byte("identity")) {
					return fmt.Errorf("%w: unsupported Transfer-Encoding %q", ErrProtocol, trim(value))
				}
			case bytes.EqualFold(name, []byte("Connection")):
				if bytes.EqualFold(value, []byte("close")) {
					r.closeConn = true
				} else if bytes.EqualFold(value, []byte("keep-alive")) {
					r.closeConn = false
				}
			case bytes.EqualFold(name, []byte("Content-Type")):
				r.contentType = r.ct[:copy(r.ct[:], value)]
			}
		}
		if r.status >= 200 || r.status == 101 {
			break
		}
	}
	if r.chunked {
		r.length = -1
	} else if r.length < 0 {
		r.closeConn = true // delimited by the close
	}
	r.remaining = r.length
	if r.length == 0 {
		r.eof = true
	}
	return nil
}

// srcLine is readLine on r.src.
func (r *response) srcLine() ([]byte, error) {
	i := bytes.IndexByte(r.src, '\n')
	if i < 0 {
		if len(r.src) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, io.EOF
	}
	l := r.src[:i]
	r.src = r.src[i+1:]
	if len(l) > maxLineBytes {
		return nil, fmt.Errorf("%w: line longer than %d bytes", ErrProtocol, maxLineBytes)
	}
	if len(l) > 0 && l[len(l)-1] == '\r' {
		l = l[:len(l)-1]
	}
	return l, nil
}

// parseHead parses a complete response head (finalHeadEnd found its end)
// held in memory, as readHeader does from a reader. The body is then the
// caller's to read.
func (r *response) parseHead(head []byte) error {
	r.br, r.src = nil, head
	err := r.readHeader()
	r.src = nil
	return err
}

// finalHeadEnd returns the length of the response heads at the start of b
// up to and including the blank line that ends the final one (interim 1xx
// responses other than 101 come before it), or -1 if b does not hold it
// yet.
func finalHeadEnd(b []byte) int {
	start := 0
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		end := -1
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			end = i + 2
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			end = i + 3
		}
		if end < 0 {
			continue
		}
		if h := b[start:end]; len(h) >= 12 && h[9] == '1' && !bytes.HasPrefix(h[9:], []byte("101")) {
			start, i = end, end-1 // an interim response: the final one follows
			continue
		}
		return end
	}
	return -1
}

// hasContentType reports whether the media type (before any ';') is mt.
func (r *response) hasContentType(mt string) bool {
	ct, _, _ := bytes.Cut(r.contentType, []byte(";"))
	return bytes.EqualFold(bytes.TrimSpace(ct), []byte(mt))
}

// Read reads the body. For a stream it returns what one read of the socket
// brought (never waiting for more), so events are handled as they arrive.
func (r *response) Read(p []byte) (int, error) {
	if r.eof {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !r.chunked {
		if r.length >= 0 && int64(len(p)) > r.remaining {
			p = p[:r.remaining]
		}
		n, err := r.br.Read(p)
		if r.length >= 0 {
			r.remaining -= int64(n)
			if r.remaining == 0 {
				r.eof = true
			} else if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
		}
		return n, err
	}
	if r.remaining <= 0 {
		if err := r.nextChunk(); err != nil {
			return 0, err
		}
		if r.eof {
			return 0, io.EOF
		}
	}
	if int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	n, err := r.br.Read(p)
	r.remaining -= int64(n)
	if r.remaining == 0 {
		r.needCRLF = true
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// nextChunk reads the CRLF that ends the previous chunk and the next chunk's
// size line; the last chunk (size 0) reads the trailers and sets eof.
func (r *response) nextChunk() error {
	if r.needCRLF {
		l, err := r.readLine()
		if err != nil {
			return fmt.Errorf("read chunk end: %w", err)
		}
		if len(l) != 0 {
			return fmt.Errorf("%w: chunk data longer than its size", ErrProtocol)
		}
		r.needCRLF = false
	}
	l, err := r.readLine()
	if err != nil {
		return fmt.Errorf("read chunk size: %w", err)
	}
	if i := bytes.IndexByte(l, ';'); i >= 0 {
		l = l[:i] // chunk extensions
	}
	l = bytes.TrimRight(l, " \t")
	if len(l) == 0 || len(l) > 10 {
		return fmt.Errorf("%w: bad chunk size %q", ErrProtocol, trim(l))
	}
	var size int64
	for _, c := range l {
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			return fmt.Errorf("%w: bad chunk size %q", ErrProtocol, trim(l))
		}
		size = size<<4 | int64(v)
	}
	if size == 0 {
		for { // trailers, up to the blank line
			l, err := r.readLine()
			if err != nil {
				return fmt.Errorf("read trailer: %w", err)
			}
			if len(l) == 0 {
				break
			}
		}
		r.eof = true
		return nil
	}
	r.remaining = size
	return nil
}

// discard reads the rest of the body, at most limit bytes, and returns its
// start (up to 200 bytes) for an error message.
func (r *response) discard(limit int64) (string, error) {
	var head [200]byte
	n := 0
	var total int64
	var buf [512]byte
	for total < limit {
		k, err := r.Read(buf[:])
		if n < len(head) {
			n += copy(head[n:], buf[:k])
		}
		total += int64(k)
		if errors.Is(err, io.EOF) {
			return string(bytes.TrimSpace(head[:n])), nil
		}
		if err != nil {
			return string(bytes.TrimSpace(head[:n])), err
		}
	}
	return string(bytes.TrimSpace(head[:n])), fmt.Errorf("%w: body longer than %d bytes", ErrProtocol, limit)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseUint parses an unsigned decimal without sign or spaces.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// trim shortens b for an error message.
func trim(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}
