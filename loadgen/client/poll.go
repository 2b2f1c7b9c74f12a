package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// Poll is a long-polling client: a loop of GET /poll?cursor=C on one
// keep-alive connection. The first Connect asks once with timeout=0 to learn
// the newest seq (the subscription starts after it, reported as KindStart);
// every later request holds up to PollTimeout. The cursor the server returns
// is the resume point across reconnects.
type Poll struct {
	base
	httpReader
	pollState
	live *Conn // nil after the server closed it
	req  []byte
	body []byte

	// Served by a Loop: inside an answer's body, and its chunk decoder.
	inBody bool
	dc     chunkDecoder
}

var _ Client = (*Poll)(nil)

// Connect opens a connection; the first one also fixes the starting cursor.
func (p *Poll) Connect(ctx context.Context) error {
	p.live = nil
	c, err := p.dial(ctx)
	if err != nil {
		return err
	}
	p.live = c
	p.attach(p.cfg, c)
	if p.hasCursor {
		return nil
	}
	stop := cutOnCancel(ctx, c)
	defer stop()
	if err := p.poll(0); err != nil {
		_ = c.Close()
		p.live = nil
		return err
	}
	p.begin()
	return nil
}

// pollState is where a long-polling client is in the feed, over HTTP/1.1
// (Poll) or HTTP/2 (H2Poll): the last answer, its events still to hand
// out, and the cursor to resume from.
type pollState struct {
	ans       PollAnswer
	next      int // next tick of ans to hand out
	gap       bool
	start     bool   // a KindStart is due
	startSeq  uint64 // the seq the subscription starts after
	cursor    uint64
	hasCursor bool
	ev        Event
}

// accept takes the answer decoded into p.ans, which arrived at recvAt.
func (p *pollState) accept(recvAt int64) {
	p.ev.RecvAt = recvAt
	p.next, p.gap = 0, p.ans.HasGap
	p.cursor, p.hasCursor = p.ans.Cursor, true
}

// begin fixes where the subscription starts after the first answer.
func (p *pollState) begin() {
	// "From now" is the newest seq when the server read the request; a tick
	// published a moment later may already be in this first answer, with the
	// cursor after it. The subscription starts before the first tick it got.
	p.start, p.startSeq = true, p.cursor
	if len(p.ans.Ticks) > 0 {
		p.startSeq = min(p.startSeq, p.ans.Ticks[0].Seq-1)
	}
	if p.ans.HasGap {
		p.startSeq = min(p.startSeq, p.ans.Gap.From-1)
	}
}

// poll sends one request (timeout 0 or the configured one) and decodes
// its answer into p.ans.
func (p *Poll) poll(timeout time.Duration) error {
	cfg, c := p.cfg, p.live
	now := time.Now()
	if err := p.request(timeout); err != nil {
		return err
	}
	// The server may hold the request for the whole timeout.
	if err := c.SetReadDeadline(now.Add(timeout + cfg.ConnectTimeout)); err != nil {
		return err
	}
	if err := p.resp.readHeader(); err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	if p.resp.status != 200 {
		body, _ := p.resp.discard(4 << 10)
		return fmt.Errorf("poll: %w", &StatusError{Code: p.resp.status, Body: body})
	}
	if err := p.readBody(max(cfg.MaxEvent, cfg.PollMax*512)); err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	if p.resp.closeConn {
		_ = c.Close()
		p.live = nil
	}
	if err := DecodePoll(p.body, &p.ans); err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	p.accept(c.LastRead())
	return nil
}

// request sends one GET /poll with the current cursor on p.live.
func (p *Poll) request(timeout time.Duration) error {
	cfg, c := p.cfg, p.live
	p.buildRequest(timeout)
	if err := c.SetWriteDeadline(time.Now().Add(cfg.ConnectTimeout)); err != nil {
		return err
	}
	if _, err := c.Write(p.req); err != nil {
		return fmt.Errorf("poll: send request: %w", err)
	}
	p.counters.Requests.Add(1)
	return nil
}

// buildRequest puts GET /poll with the current cursor into p.req.
func (p *Poll) buildRequest(timeout time.Duration) {
	cfg := p.cfg
	p.req = append(p.req[:0], "GET "...)
	p.req = append(p.req, cfg.path...)
	if p.hasCursor {
		p.req = append(p.req, "&cursor="...)
		p.req = strconv.AppendUint(p.req, p.cursor, 10)
	}
	p.req = append(p.req, "&timeout="...)
	if timeout == 0 {
		p.req = append(p.req, "0s"...)
	} else {
		p.req = append(p.req, cfg.pollWait...) // timeout == cfg.PollTimeout
	}
	p.req = append(p.req, " HTTP/1.1\r\nHost: "...)
	p.req = append(p.req, cfg.hostHdr...)
	p.req = append(p.req, "\r\nUser-Agent: pushbench-loadgen\r\nAccept: application/json\r\n\r\n"...)
}

// stall sends the next long poll and leaves its answer unread (see Stall).
func (p *Poll) stall() error {
	if p.live == nil {
		return fmt.Errorf("poll: %w", net.ErrClosed)
	}
	return p.request(p.cfg.PollTimeout)
}

// readBody reads the whole body into p.body (reusing its storage).
func (p *Poll) readBody(limit int) error {
	if p.body == nil {
		p.body = make([]byte, 0, 1024)
	}
	var err error
	p.body, err = readAllInto(p.body[:0], &p.resp, limit)
	return err
}

// readAllInto reads r to its end into buf (growing it as io.ReadAll would,
// but keeping its storage for the next answer), refusing more than limit
// bytes.
func readAllInto(buf []byte, r io.Reader, limit int) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= limit {
				return buf, fmt.Errorf("%w: body longer than %d bytes", ErrProtocol, limit)
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// Next returns the next event, polling as needed.
func (p *Poll) Next() (*Event, error) {
	for {
		if ev := p.pending(); ev != nil {
			return ev, nil
		}
		if p.live == nil {
			if err := p.redial(); err != nil {
				return nil, err
			}
		}
		p.ans.Ticks = p.ans.Ticks[:0]
		if err := p.poll(p.cfg.PollTimeout); err != nil {
			if p.live != nil {
				_ = p.live.Close()
				p.live = nil
			}
			return nil, err
		}
	}
}

// redial opens another connection after the server closed the last one
// after its answer (HTTP/1.0 or Connection: close), as a browser would.
func (p *Poll) redial() error {
	c, err := p.dial(context.Background())
	if err != nil {
		return err
	}
	p.live = c
	p.attach(p.cfg, c)
	return nil
}

// pending returns the next event of the last answer, or nil.
func (p *pollState) pending() *Event {
	ev := &p.ev
	switch {
	case p.start:
		p.start = false
		ev.Kind, ev.Seq = KindStart, p.startSeq
		return ev
	case p.gap:
		p.gap = false
		ev.Kind, ev.Gap = KindGap, p.ans.Gap
		return ev
	case p.next < len(p.ans.Ticks):
		ev.Kind, ev.Tick = KindTick, p.ans.Ticks[p.next]
		p.next++
		return ev
	}
	return nil
}

// handoff gives the connection to a Loop, dialing first if the server
// closed the last one, and returns the read buffer to the pool. The events
// of the first answer are handed out by loopStart.
func (p *Poll) handoff() (*Conn, []byte, error) {
	if p.live == nil {
		if err := p.redial(); err != nil {
			return nil, nil, err
		}
	}
	pre := p.release(p.cfg)
	p.inBody = false
	c := p.live
	p.live = nil // the loop owns it now; Connect dials again
	return c, pre, nil
}

// loopStart hands out what the first answer brought and sends the next
// long poll.
func (p *Poll) loopStart(lc *loopConn) error {
	lc.idle = int64(p.cfg.PollTimeout + p.cfg.ConnectTimeout)
	for ev := p.pending(); ev != nil; ev = p.pending() {
		lc.sink(ev)
	}
	// The loop decodes answers in its own buffer: the body buffer of the
	// first answer (its ticks pointed into it) is no longer needed.
	p.body = nil
	return p.loopRequest(lc)
}

// loopRequest sends the next long poll from the loop; the connection's
// deadline runs from now, as Poll.poll's read deadline does.
func (p *Poll) loopRequest(lc *loopConn) error {
	p.buildRequest(p.cfg.PollTimeout)
	p.counters.Requests.Add(1)
	lc.since = time.Now().UnixNano()
	return lc.write(p.req)
}

// pollBodyLimit bounds one answer's body.
func (p *Poll) pollBodyLimit() int { return max(p.cfg.MaxEvent, p.cfg.PollMax*512) }

// loopData parses answers incrementally: the head once it is complete (kept
// raw until then), then the body, decoded in place when chunked and kept
// until complete, then the next request.
func (p *Poll) loopData(lc *loopConn, b []byte, old int, recvAt int64) ([]byte, error) {
	limit := p.pollBodyLimit()
	for {
		if !p.inBody {
			h := finalHeadEnd(b)
			if h < 0 {
				if len(b) > maxHeaderBytes {
					return nil, fmt.Errorf("poll: %w: headers longer than %d bytes", ErrProtocol, maxHeaderBytes)
				}
				return b, nil
			}
			if err := p.resp.parseHead(b[:h]); err != nil {
				return nil, fmt.Errorf("poll: %w", err)
			}
			if p.resp.length > int64(limit) {
				return nil, fmt.Errorf("poll: %w: body longer than %d bytes", ErrProtocol, limit)
			}
			p.inBody, p.dc = true, chunkDecoder{}
			b, old = b[h:], 0
		}
		var body, rest []byte
		complete := false
		switch {
		case p.resp.chunked:
			n, used, done, err := p.dc.decode(b[old:])
			if err != nil {
				return nil, fmt.Errorf("poll: read chunk: %w", err)
			}
			body, rest, complete = b[:old+n], b[old+used:], done
		case int64(len(b)) >= p.resp.length && p.resp.length >= 0:
			body, rest, complete = b[:p.resp.length], b[p.resp.length:], true
		default: // a length not complete yet, or until the close
			body = b
		}
		if len(body) > limit {
			return nil, fmt.Errorf("poll: %w: body longer than %d bytes", ErrProtocol, limit)
		}
		if !complete {
			return body, nil
		}
		p.inBody = false
		if err := p.answer(lc, body, recvAt); err != nil {
			return nil, err
		}
		if len(rest) == 0 {
			return nil, nil
		}
		b, old = rest, 0
	}
}

// answer handles one complete answer: its events, then the next request
// (or a reconnect when the server closes the connection).
func (p *Poll) answer(lc *loopConn, body []byte, recvAt int64) error {
	if p.resp.status != 200 {
		head := body[:min(len(body), 200)]
		return fmt.Errorf("poll: %w", &StatusError{Code: p.resp.status, Body: string(bytes.TrimSpace(head))})
	}
	if err := DecodePoll(body, &p.ans); err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	p.accept(recvAt)
	for ev := p.pending(); ev != nil; ev = p.pending() {
		lc.sink(ev)
	}
	if p.resp.closeConn {
		return errReconnect
	}
	return p.loopRequest(lc)
}

// loopEOF: a body delimited by the close is complete now; otherwise the
// connection ended early, as Poll.poll would report it.
func (p *Poll) loopEOF(lc *loopConn) error {
	switch {
	case p.inBody && !p.resp.chunked && p.resp.length < 0:
		p.inBody = false
		if err := p.answer(lc, lc.tail, time.Now().UnixNano()); err != nil && !errors.Is(err, errReconnect) {
			return err
		}
		return errReconnect
	case p.inBody:
		return fmt.Errorf("poll: %w", io.ErrUnexpectedEOF)
	case len(lc.tail) > 0:
		return fmt.Errorf("poll: read header: %w", io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("poll: read status line: %w", io.EOF)
}

func (p *Poll) loopClose(*loopConn) {}
