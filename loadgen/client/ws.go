package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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

	// Served by a Loop: a message split over frames, its opcode, and
	// the frame being written.
	msg   []byte
	msgOp byte
	inMsg bool
	frame []byte
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
				c.headOnly = cfg.Handoff
				w.live = c
				return c, nil
			},
			HandshakeTimeout: cfg.ConnectTimeout,
			ReadBufferSize:   cfg.ReadBuffer,
			WriteBufferSize:  256,
			WriteBufferPool:  cfg.wsPool,
		}
		// wss: dial shakes hands itself, so that the Conn above TLS
		// counts the plaintext and the socket below it the ciphertext.
		w.d.NetDialTLSContext = w.d.NetDialContext
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
		return w.message(mt, w.buf, w.live.LastRead()), nil
	}
}

// message turns one message into w.ev and moves the resume point.
func (w *WS) message(mt int, data []byte, recvAt int64) *Event {
	ev := &w.ev
	ev.RecvAt = recvAt
	if mt != websocket.TextMessage {
		ev.Kind, ev.Err = KindMalformed, fmt.Errorf("%w: binary message", ErrMalformed)
		return ev
	}
	isGap, err := ParseMessage(data, &ev.Tick, &ev.Gap)
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
	return ev
}

// Close sends a close frame (best effort) and closes the connection for good.
func (w *WS) Close() error {
	w.mu.Lock()
	ws := w.ws
	if w.lc != nil {
		ws = nil // the Loop sends it
	}
	w.mu.Unlock()
	if ws != nil {
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		_ = ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(100*time.Millisecond))
	}
	return w.base.Close()
}

// handoff gives the connection to a Loop and lets go of gorilla's Conn.
// Config.Handoff made the handshake read nothing past the head, so nothing
// is buffered.
func (w *WS) handoff() (*Conn, []byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ws == nil || w.live == nil {
		return nil, nil, fmt.Errorf("ws: not connected")
	}
	if !w.cfg.Handoff {
		return nil, nil, errors.New("ws: Config.Handoff is off: the handshake may have buffered frames")
	}
	c := w.live
	w.ws, w.live = nil, nil // the loop owns the socket now
	w.msg, w.inMsg = nil, false
	return c, nil, nil
}

func (w *WS) loopStart(lc *loopConn) error {
	lc.idle, lc.rolling = int64(w.cfg.IdleTimeout), true
	return nil
}

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opCont  = 0x0
	opText  = 0x1
	opBin   = 0x2
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// loopData parses the complete frames in b (RFC 6455): data frames become
// events (fragments are gathered in w.msg), pings are answered with pongs,
// a close frame is answered and ends the connection with a
// *websocket.CloseError, as gorilla does. An incomplete frame is kept.
func (w *WS) loopData(lc *loopConn, b []byte, _ int, recvAt int64) ([]byte, error) {
	limit := int64(w.cfg.MaxEvent)
	for len(b) >= 2 {
		fin, op := b[0]&0x80 != 0, b[0]&0x0f
		if b[0]&0x70 != 0 {
			return nil, fmt.Errorf("ws: %w: reserved bits set", ErrProtocol)
		}
		if b[1]&0x80 != 0 {
			return nil, fmt.Errorf("ws: %w: masked server frame", ErrProtocol)
		}
		hdr, size := 2, int64(b[1]&0x7f)
		switch size {
		case 126:
			if len(b) < 4 {
				return b, nil
			}
			hdr, size = 4, int64(binary.BigEndian.Uint16(b[2:]))
		case 127:
			if len(b) < 10 {
				return b, nil
			}
			u := binary.BigEndian.Uint64(b[2:])
			if u>>63 != 0 {
				return nil, fmt.Errorf("ws: %w: frame length", ErrProtocol)
			}
			hdr, size = 10, int64(u)
		}
		control := op >= opClose
		switch {
		case control && (size > 125 || !fin):
			return nil, fmt.Errorf("ws: %w: bad control frame", ErrProtocol)
		case !control && int64(len(w.msg))+size > limit:
			return nil, fmt.Errorf("ws: %w", websocket.ErrReadLimit)
		}
		if int64(len(b)-hdr) < size {
			return b, nil
		}
		payload := b[hdr : hdr+int(size)]
		b = b[hdr+int(size):]
		switch op {
		case opText, opBin:
			if w.inMsg {
				return nil, fmt.Errorf("ws: %w: data frame inside a fragmented message", ErrProtocol)
			}
			if fin {
				lc.sink(w.message(int(op), payload, recvAt))
				continue
			}
			w.msg, w.msgOp, w.inMsg = append(w.msg[:0], payload...), op, true
		case opCont:
			if !w.inMsg {
				return nil, fmt.Errorf("ws: %w: continuation without a message", ErrProtocol)
			}
			w.msg = append(w.msg, payload...)
			if fin {
				w.inMsg = false
				lc.sink(w.message(int(w.msgOp), w.msg, recvAt))
				w.msg = nil
			}
		case opPing:
			if err := w.writeFrame(lc, opPong, payload); err != nil {
				return nil, err
			}
		case opPong:
		case opClose:
			code, text := websocket.CloseNoStatusReceived, ""
			if len(payload) >= 2 {
				code, text = int(binary.BigEndian.Uint16(payload)), string(payload[2:])
			} else if len(payload) == 1 {
				return nil, fmt.Errorf("ws: %w: close frame of 1 byte", ErrProtocol)
			}
			var reply []byte
			if code != websocket.CloseNoStatusReceived {
				reply = websocket.FormatCloseMessage(code, "")
			}
			_ = w.writeFrame(lc, opClose, reply) // best effort, as gorilla
			return nil, fmt.Errorf("ws: %w", &websocket.CloseError{Code: code, Text: text})
		default:
			return nil, fmt.Errorf("ws: %w: opcode %d", ErrProtocol, op)
		}
	}
	return b, nil
}

// writeFrame writes one masked client frame of at most 125 bytes.
func (w *WS) writeFrame(lc *loopConn, op byte, payload []byte) error {
	var key [4]byte
	binary.NativeEndian.PutUint32(key[:], rand.Uint32())
	f := append(w.frame[:0], 0x80|op, 0x80|byte(len(payload)))
	f = append(f, key[:]...)
	for i, c := range payload {
		f = append(f, c^key[i&3])
	}
	w.frame = f[:0]
	return lc.write(f)
}

// loopEOF reports the peer's close without a close frame as gorilla does
// (1006, abnormal closure), so both readers count it alike.
func (w *WS) loopEOF(*loopConn) error {
	return fmt.Errorf("ws: %w", &websocket.CloseError{Code: websocket.CloseAbnormalClosure, Text: io.ErrUnexpectedEOF.Error()})
}

// loopClose says goodbye with a close frame, as Close does.
func (w *WS) loopClose(lc *loopConn) {
	_ = w.writeFrame(lc, opClose, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
}
