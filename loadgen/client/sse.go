package client

import (
	"context"
	"fmt"
	"io"
	"time"
)

// connBuffer is the size of the buffer between the socket and the HTTP body
// decoder. It holds response headers and chunk-size lines; the body's bytes
// mostly pass through it in the same read, so it can stay small.
const connBuffer = 1024

// SSE is a Server-Sent Events client: GET /sse, then a stream of events
// parsed by Parser. It resumes with the Last-Event-ID header, holding the
// last event ID the stream set (EventSource semantics).
type SSE struct {
	base
	httpReader
	p     *Parser
	live  *Conn // the connection being read (base.conn is the one Drop cuts)
	req   []byte
	ev    Event
	ready bool

	// Served by a Loop: the chunk decoder, or the body bytes left.
	dc   chunkDecoder
	left int64
}

var _ Client = (*SSE)(nil)

// Connect opens the stream.
func (s *SSE) Connect(ctx context.Context) error {
	s.ready = false
	c, err := s.dial(ctx)
	if err != nil {
		return err
	}
	stop := cutOnCancel(ctx, c)
	defer stop()
	if err := s.handshake(c); err != nil {
		_ = c.Close()
		return err
	}
	s.live, s.ready = c, true
	return nil
}

func (s *SSE) handshake(c *Conn) error {
	cfg := s.cfg
	if err := c.SetDeadline(time.Now().Add(cfg.ConnectTimeout)); err != nil {
		return err
	}
	s.req = append(s.req[:0], "GET "...)
	s.req = append(s.req, cfg.path...)
	s.req = append(s.req, " HTTP/1.1\r\nHost: "...)
	s.req = append(s.req, cfg.hostHdr...)
	s.req = append(s.req, "\r\nUser-Agent: pushbench-loadgen\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"...)
	if s.p != nil && len(s.p.LastEventID()) > 0 {
		s.req = append(s.req, "Last-Event-ID: "...)
		s.req = append(s.req, s.p.LastEventID()...)
		s.req = append(s.req, "\r\n"...)
	}
	s.req = append(s.req, "\r\n"...)
	if _, err := c.Write(s.req); err != nil {
		return fmt.Errorf("sse: send request: %w", err)
	}
	s.counters.Requests.Add(1)
	s.attach(s.cfg, c)
	if err := s.resp.readHeader(); err != nil {
		return fmt.Errorf("sse: %w", err)
	}
	if s.resp.status != 200 {
		body, _ := s.resp.discard(4 << 10)
		return fmt.Errorf("sse: %w", &StatusError{Code: s.resp.status, Body: body})
	}
	if !s.resp.hasContentType("text/event-stream") {
		return fmt.Errorf("sse: %w: Content-Type %q, want text/event-stream", ErrProtocol, s.resp.contentType)
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return err
	}
	if err := c.SetIdle(s.cfg.IdleTimeout); err != nil {
		return err
	}
	if s.p == nil {
		s.p = NewParser(&s.resp, cfg.ReadBuffer, cfg.MaxEvent)
	} else {
		s.p.Reset(&s.resp)
	}
	return nil
}

// Retry returns the reconnection time the server asked for (retry:), or 0.
func (s *SSE) Retry() time.Duration {
	if s.p == nil {
		return 0
	}
	return s.p.Retry()
}

// Next returns the next tick or gap; events of other types are skipped.
func (s *SSE) Next() (*Event, error) {
	if !s.ready {
		return nil, fmt.Errorf("sse: not connected")
	}
	for {
		e, err := s.p.Next()
		if err != nil {
			s.ready = false
			return nil, fmt.Errorf("sse: %w", err)
		}
		if ev := s.event(e, s.live.LastRead()); ev != nil {
			return ev, nil
		}
	}
}

// event turns a tick or gap event into s.ev; nil for other types.
func (s *SSE) event(e SSEEvent, recvAt int64) *Event { return sseEvent(&s.ev, e, recvAt) }

// sseEvent turns a tick or gap event into ev; nil for other types.
func sseEvent(ev *Event, e SSEEvent, recvAt int64) *Event {
	ev.RecvAt = recvAt
	switch string(e.Type) {
	case "", "message":
		ev.Kind = KindTick
		if err := ParseTick(e.Data, &ev.Tick); err != nil {
			ev.Kind, ev.Err = KindMalformed, err
		}
	case "gap":
		ev.Kind = KindGap
		if err := ParseGap(e.Data, &ev.Gap); err != nil {
			ev.Kind, ev.Err = KindMalformed, err
		}
	default:
		return nil
	}
	return ev
}

// handoff gives the connection and what the handshake read past the head
// to a Loop, and returns the read buffer to the pool.
func (s *SSE) handoff() (*Conn, []byte, error) {
	if !s.ready {
		return nil, nil, fmt.Errorf("sse: not connected")
	}
	s.ready = false
	pre := s.release(s.cfg)
	s.dc, s.left = chunkDecoder{}, s.resp.remaining
	c := s.live
	s.live = nil // the loop owns the socket now
	return c, pre, nil
}

func (s *SSE) loopStart(lc *loopConn) error {
	lc.idle, lc.rolling = int64(s.cfg.IdleTimeout), true
	if s.resp.eof {
		return fmt.Errorf("sse: %w", io.EOF)
	}
	return nil
}

// loopData decodes the body framing of the fresh bytes in place and feeds
// the events to the parser; it keeps an incomplete line (decoded).
func (s *SSE) loopData(lc *loopConn, b []byte, old int, recvAt int64) ([]byte, error) {
	payload, ended := b, false
	var framing error // events before a framing error still count
	switch {
	case s.resp.chunked:
		n, _, done, err := s.dc.decode(b[old:])
		if err != nil {
			framing = fmt.Errorf("sse: read chunk: %w", err)
		}
		payload, ended = b[:old+n], done
	case s.resp.length >= 0:
		k := min(int64(len(b)-old), s.left)
		s.left -= k
		payload, ended = b[:old+int(k)], s.left == 0
	}
	used, err := s.p.Feed(payload, func(e SSEEvent) {
		if ev := s.event(e, recvAt); ev != nil {
			lc.sink(ev)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("sse: %w", err)
	}
	if framing != nil {
		return nil, framing
	}
	if ended {
		return nil, fmt.Errorf("sse: %w", io.EOF)
	}
	return payload[used:], nil
}

func (s *SSE) loopEOF(*loopConn) error {
	if s.resp.chunked || s.resp.length >= 0 {
		return fmt.Errorf("sse: %w", io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("sse: %w", io.EOF)
}

func (s *SSE) loopClose(*loopConn) {}
