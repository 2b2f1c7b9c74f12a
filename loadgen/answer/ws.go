package answer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbench/pushbench/loadgen/client"
)

// writeTimeout bounds one request message's write on a session.
const writeTimeout = 10 * time.Second

// errAnswer is an error message from the server for a request.
var errAnswer = errors.New("error message")

// wsPool hands out WebSocket sessions by the connection mode: mux, one of
// Conns sessions by the answer's index (dialed when first needed, again
// after one broke); keepalive, an idle session or a new one, back to the
// idle set after the answer; fresh, a new session closed after.
type wsPool struct {
	r      *runner
	dialer websocket.Dialer
	url    string
	mux    []*muxSlot

	mu   sync.Mutex
	idle []*session
	all  map[*session]struct{} // every open session, closed at the end
}

// muxSlot holds the session of one mux position.
type muxSlot struct {
	mu sync.Mutex
	s  *session
}

func newWSPool(r *runner) *wsPool {
	p := &wsPool{r: r, all: map[*session]struct{}{}}
	p.dialer = websocket.Dialer{
		NetDialContext: r.dial,
		// wss: r.dial hands over the connection with TLS done (ALPN
		// http/1.1 only), counted on the socket and above TLS.
		NetDialTLSContext: r.dial,
		HandshakeTimeout:  r.cfg.ConnectTimeout,
		ReadBufferSize:    1 << 10,
		WriteBufferSize:   1 << 10,
	}
	p.url = "ws" + strings.TrimPrefix(r.prefix, "http") + "/answer"
	if r.cfg.Conn == ConnMux {
		p.mux = make([]*muxSlot, r.cfg.Conns)
		for i := range p.mux {
			p.mux[i] = &muxSlot{}
		}
	}
	return p
}

// session is one WebSocket connection carrying answers: the answer
// goroutines write requests (one at a time, under wmu), its reader
// goroutine reads every message and hands it to the registered answer.
type session struct {
	c      *websocket.Conn
	wmu    sync.Mutex
	broken chan struct{} // closed when the reader ended
	err    error         // why, set before broken is closed
	reader sync.WaitGroup

	mu sync.Mutex
	// pending holds the answers in flight by request id; nil for one
	// that was cut.
	pending map[string]*pending
	stray   *atomic.Int64 // the run's count of messages for no answer
}

// pending is an answer registered with a session; end is closed when its
// done or error message came.
type pending struct {
	a   *ans
	end chan struct{}
	err error
}

func (p *wsPool) dial(ctx context.Context) (*session, error) {
	c, resp, err := p.dialer.DialContext(ctx, p.url, nil)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, fmt.Errorf("ws: %w", &client.StatusError{Code: resp.StatusCode})
		}
		return nil, fmt.Errorf("ws: %w", err)
	}
	p.r.counters.Requests.Add(1)
	s := &session{c: c, broken: make(chan struct{}), pending: map[string]*pending{}, stray: &p.r.stray}
	c.SetReadLimit(maxEvent)
	p.mu.Lock()
	p.all[s] = struct{}{}
	p.mu.Unlock()
	s.reader.Go(s.read)
	return s, nil
}

// read hands every message to its answer until the connection ends; then
// it wakes every answer still registered.
func (s *session) read() {
	defer close(s.broken)
	var m wireChunk
	for {
		_, b, err := s.c.ReadMessage()
		at := time.Now().UnixNano()
		if err != nil {
			s.err = err
			return
		}
		m = wireChunk{}
		jerr := json.Unmarshal(b, &m)
		s.mu.Lock()
		pa, known := s.pending[m.ID]
		switch {
		case !known:
			// A message for no answer in flight: an unknown id, one after
			// its answer's done or error, or not JSON.
			s.stray.Add(1)
		case pa == nil:
			// An answer the run's end cut: the server may still send it.
		case jerr != nil:
			pa.a.malformed()
		case m.Error != "":
			pa.err = fmt.Errorf("ws: %w: %s", errAnswer, m.Error)
			delete(s.pending, m.ID)
			close(pa.end)
		case m.Done:
			pa.a.done(m.doneCount(), at)
			delete(s.pending, m.ID)
			close(pa.end)
		case !pa.a.handle(&m, at):
			pa.a.malformed()
		}
		s.mu.Unlock()
	}
}

// send registers a under id and sends its request.
func (s *session) send(r *runner, a *ans, id string) (*pending, error) {
	pa := &pending{a: a, end: make(chan struct{})}
	a.id = id
	s.mu.Lock()
	s.pending[id] = pa
	s.mu.Unlock()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := s.c.WriteMessage(websocket.TextMessage, r.body(a, id)); err != nil {
		s.forget(id)
		_ = s.c.Close() // a failed write leaves the connection unusable
		return nil, fmt.Errorf("ws: send request: %w", err)
	}
	return pa, nil
}

// forget unregisters id: the reader no longer touches its answer.
func (s *session) forget(id string) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

// cut unregisters id but keeps it known: what the server still sends for
// it is not stray.
func (s *session) cut(id string) {
	s.mu.Lock()
	s.pending[id] = nil
	s.mu.Unlock()
}

func (s *session) close() {
	_ = s.c.Close()
	s.reader.Wait()
}

func (s *session) alive() bool {
	select {
	case <-s.broken:
		return false
	default:
		return true
	}
}

// answer runs a on a session of the pool until its done, an error
// message, the session's end or ctx's.
func (p *wsPool) answer(ctx context.Context, a *ans) error {
	s, err := p.get(ctx, a)
	if err != nil {
		return err
	}
	id := "r" + strconv.FormatUint(a.n, 10)
	pa, err := s.send(p.r, a, id)
	if err != nil {
		p.put(s, false)
		return err
	}
	select {
	case <-pa.end:
		p.put(s, true)
		return pa.err
	case <-s.broken:
		s.forget(id)
		p.put(s, false)
		return fmt.Errorf("ws: session ended: %w", s.err)
	case <-ctx.Done():
		s.cut(id)
		p.put(s, false)
		return ctx.Err()
	}
}

// get returns the session answer a goes on.
func (p *wsPool) get(ctx context.Context, a *ans) (*session, error) {
	switch p.r.cfg.Conn {
	case ConnMux:
		slot := p.mux[a.n%uint64(len(p.mux))]
		slot.mu.Lock()
		defer slot.mu.Unlock()
		if slot.s == nil || !slot.s.alive() {
			s, err := p.dial(ctx)
			if err != nil {
				return nil, err
			}
			slot.s = s
		}
		return slot.s, nil
	case ConnKeepAlive:
		p.mu.Lock()
		for len(p.idle) > 0 {
			s := p.idle[len(p.idle)-1]
			p.idle = p.idle[:len(p.idle)-1]
			if s.alive() {
				p.mu.Unlock()
				return s, nil
			}
		}
		p.mu.Unlock()
	}
	return p.dial(ctx)
}

// put gives s back after an answer; ok: the answer ended cleanly, so a
// keepalive session may carry the next one.
func (p *wsPool) put(s *session, ok bool) {
	switch p.r.cfg.Conn {
	case ConnMux:
		return // the slot keeps it; a broken one is redialed
	case ConnKeepAlive:
		if ok && s.alive() {
			p.mu.Lock()
			p.idle = append(p.idle, s)
			p.mu.Unlock()
			return
		}
	}
	p.mu.Lock()
	delete(p.all, s)
	p.mu.Unlock()
	s.close()
}

// close ends every session and waits for their readers.
func (p *wsPool) close() {
	p.mu.Lock()
	all := p.all
	p.all = map[*session]struct{}{}
	p.mu.Unlock()
	for s := range all {
		s.close()
	}
}
