package client

import (
	"bufio"
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
	br        *bufio.Reader
	resp      response
	live      *Conn // nil after the server closed it
	req       []byte
	body      []byte
	ans       PollAnswer
	next      int // next tick of ans to hand out
	gap       bool
	start     bool   // a KindStart is due
	startSeq  uint64 // the seq the subscription starts after
	cursor    uint64
	hasCursor bool
	ev        Event
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
	if p.br == nil {
		p.br = bufio.NewReaderSize(c, connBuffer)
	} else {
		p.br.Reset(c)
	}
	p.resp.br = p.br
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
	return nil
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
	p.ev.RecvAt = c.LastRead()
	p.next, p.gap = 0, p.ans.HasGap
	p.cursor, p.hasCursor = p.ans.Cursor, true
	return nil
}

// request sends one GET /poll with the current cursor on p.live.
func (p *Poll) request(timeout time.Duration) error {
	cfg, c := p.cfg, p.live
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
	if err := c.SetWriteDeadline(time.Now().Add(cfg.ConnectTimeout)); err != nil {
		return err
	}
	if _, err := c.Write(p.req); err != nil {
		return fmt.Errorf("poll: send request: %w", err)
	}
	p.counters.Requests.Add(1)
	return nil
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
	p.body = p.body[:0]
	if p.body == nil {
		p.body = make([]byte, 0, 1024)
	}
	for {
		if len(p.body) == cap(p.body) {
			if len(p.body) >= limit {
				return fmt.Errorf("%w: body longer than %d bytes", ErrProtocol, limit)
			}
			p.body = append(p.body, 0)[:len(p.body)]
		}
		n, err := p.resp.Read(p.body[len(p.body):cap(p.body)])
		p.body = p.body[:len(p.body)+n]
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Next returns the next event, polling as needed.
func (p *Poll) Next() (*Event, error) {
	ev := &p.ev
	for {
		switch {
		case p.start:
			p.start = false
			ev.Kind, ev.Seq = KindStart, p.startSeq
			return ev, nil
		case p.gap:
			p.gap = false
			ev.Kind, ev.Gap = KindGap, p.ans.Gap
			return ev, nil
		case p.next < len(p.ans.Ticks):
			ev.Kind, ev.Tick = KindTick, p.ans.Ticks[p.next]
			p.next++
			return ev, nil
		}
		if p.live == nil {
			// The server closed the connection after its answer (HTTP/1.0
			// or Connection: close): open another, as a browser would.
			c, err := p.dial(context.Background())
			if err != nil {
				return nil, err
			}
			p.live = c
			p.br.Reset(c)
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
