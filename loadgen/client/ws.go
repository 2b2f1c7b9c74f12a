package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// WS is a WebSocket client on gorilla/websocket: GET /ws upgraded, then one
// text message per tick or gap. It resumes with since=<last seq>.
type WS struct {
	base
	d     websocket.Dialer
	ws    *websocket.Conn // guarded by base.mu for Close; otherwise owner-only
	live  *Conn
	buf   []byte
	since uint64
	url   []byte
	ev    Event
}

var _ Client = (*WS)(nil)

// Connect dials and upgrades.
func (w *WS) Connect(ctx context.Context) error {
	cfg := w.cfg
	if w.d.NetDialContext == nil {
		w.d = websocket.Dialer{
			NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				c, err := w.dial(ctx)
				if err != nil {
					return nil, err
				}
				w.live = c
				return c, nil
			},
			HandshakeTimeout: cfg.ConnectTimeout,
			ReadBufferSize:   cfg.ReadBuffer,
			WriteBufferSize:  256,
			WriteBufferPool:  cfg.wsPool,
		}
	}
	w.url = append(w.url[:0], cfg.wsURL...)
	if w.since > 0 {
		if len(cfg.Symbols) > 0 {
			w.url = append(w.url, '&')
		} else {
			w.url = append(w.url, '?')
		}
		w.url = append(w.url, "since="...)
		w.url = strconv.AppendUint(w.url, w.since, 10)
	}
	w.live = nil
	c, resp, err := w.d.DialContext(ctx, string(w.url), nil)
	if err != nil {
		if resp != nil && errors.Is(err, websocket.ErrBadHandshake) {
			var body [200]byte
			n, _ := io.ReadFull(resp.Body, body[:])
			return fmt.Errorf("ws: %w", &StatusError{Code: resp.StatusCode, Body: string(body[:n])})
		}
		return fmt.Errorf("ws: %w", err)
	}
	c.SetReadLimit(int64(cfg.MaxEvent))
	if err := w.live.SetIdle(cfg.IdleTimeout); err != nil {
		_ = c.Close()
		return fmt.Errorf("ws: %w", err)
	}
	w.mu.Lock()
	w.ws = c
	w.mu.Unlock()
	return nil
}

// Next returns the next tick or gap. Control frames (ping, close) are handled
// inside gorilla's reads.
func (w *WS) Next() (*Event, error) {
	if w.ws == nil {
		return nil, fmt.Errorf("ws: not connected")
	}
	for {
		mt, r, err := w.ws.NextReader()
		if err != nil {
			return nil, fmt.Errorf("ws: %w", err)
		}
		if w.buf == nil {
			w.buf = make([]byte, 0, 256)
		}
		w.buf = w.buf[:0]
		for {
			if len(w.buf) == cap(w.buf) {
				w.buf = append(w.buf, 0)[:len(w.buf)]
			}
			n, err := r.Read(w.buf[len(w.buf):cap(w.buf)])
			w.buf = w.buf[:len(w.buf)+n]
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("ws: %w", err)
			}
		}
		ev := &w.ev
		ev.RecvAt = w.live.LastRead()
		if mt != websocket.TextMessage {
			ev.Kind, ev.Err = KindMalformed, fmt.Errorf("%w: binary message", ErrMalformed)
			return ev, nil
		}
		isGap, err := ParseMessage(w.buf, &ev.Tick, &ev.Gap)
		switch {
		case err != nil:
			ev.Kind, ev.Err = KindMalformed, err
		case isGap:
			ev.Kind = KindGap
			if ev.Gap.To > 0 {
				w.since = max(w.since, ev.Gap.To-1)
			}
		default:
			ev.Kind = KindTick
			w.since = max(w.since, ev.Tick.Seq)
		}
		return ev, nil
	}
}

// Close sends a close frame (best effort) and closes the connection for good.
func (w *WS) Close() error {
	w.mu.Lock()
	ws := w.ws
	w.mu.Unlock()
	if ws != nil {
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		_ = ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(100*time.Millisecond))
	}
	return w.base.Close()
}
