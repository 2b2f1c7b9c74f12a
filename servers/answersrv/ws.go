package answersrv

import (
	"container/heap"
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbench/pushbench/servers/answer"
	"github.com/pushbench/pushbench/servers/metrics"
	"github.com/pushbench/pushbench/servers/ws"
)

// closeWait bounds the wait for a closing handshake and a closing write.
const closeWait = time.Second

// wsUpgrader is the answer sessions' gorilla Upgrader: requests are read
// through a small buffer, and the write buffer is borrowed per message so
// that a waiting session holds none.
type wsUpgrader struct{ websocket.Upgrader }

func (u *wsUpgrader) init(allow []string) {
	u.Upgrader = websocket.Upgrader{
		ReadBufferSize:  512,
		WriteBufferSize: 1024,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     ws.CheckOrigin(allow),
	}
}

// wsAnswer is one answer of a session, owned by the session's writer.
type wsAnswer struct {
	idJSON  []byte
	req     answer.Request
	arrival int64
	next    int   // the next chunk to write
	due     int64 // when chunk next is due
	release func(outcome string)
	index   int // in the heap
}

// answerHeap orders a session's answers by the next chunk due.
type answerHeap []*wsAnswer

func (h answerHeap) Len() int           { return len(h) }
func (h answerHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h answerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *answerHeap) Push(x any)        { a := x.(*wsAnswer); a.index = len(*h); *h = append(*h, a) }
func (h *answerHeap) Pop() any {
	old := *h
	a := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return a
}

// wsEvent goes from a session's reader to its writer: an answer to start,
// or an error message to send.
type wsEvent struct {
	a   *wsAnswer
	err []byte
}

// session serves GET /answer with an Upgrade: a WebSocket session on which
// the client sends request messages and receives the chunks of several
// answers at once.
func (s *Service) session(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		writeError(w, http.StatusBadRequest, "GET /answer needs a WebSocket upgrade (SSE and polling answers start with POST)")
		return
	}
	c, err := s.ws.Upgrade(w, r, nil)
	if err != nil { // Upgrade has written the HTTP error
		return
	}
	c.SetReadLimit(answer.MaxBody)
	ss := &wsSession{s: s, c: c, in: make(chan wsEvent, 16), readerDone: make(chan struct{})}
	m := s.cfg.Metrics
	m.Sessions.Inc()
	started := s.cfg.Go(func() {
		defer m.Sessions.Dec()
		ctx, cancel := context.WithCancel(s.cfg.Shutdown)
		defer cancel()
		go func() {
			defer cancel()
			ss.read(ctx)
		}()
		ss.write(ctx)
		c.Close()
		<-ss.readerDone
	})
	if !started {
		m.Sessions.Dec()
		c.Close()
	}
}

// wsSession is one answer session: a reader and a writer goroutine.
type wsSession struct {
	s          *Service
	c          *websocket.Conn
	inFlight   atomic.Int64 // answers of this session in flight
	in         chan wsEvent // reader -> writer
	readerDone chan struct{}
}

func (ss *wsSession) pongWait() time.Duration { return ss.s.cfg.Ping + ss.s.cfg.Ping/2 }

// read parses request messages and hands answers and error replies to the
// writer; it returns when the peer closes or goes silent past the pong
// deadline, a frame is over the read limit, or ctx ends.
func (ss *wsSession) read(ctx context.Context) {
	defer close(ss.readerDone)
	s, c := ss.s, ss.c
	m := s.cfg.Metrics
	if s.cfg.Ping > 0 {
		_ = c.SetReadDeadline(time.Now().Add(ss.pongWait()))
		c.SetPongHandler(func(string) error { return c.SetReadDeadline(time.Now().Add(ss.pongWait())) })
	}
	for {
		typ, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		if s.cfg.Ping > 0 { // a client that sends requests is alive too
			_ = c.SetReadDeadline(time.Now().Add(ss.pongWait()))
		}
		var ev wsEvent
		req, r, err := answer.ParseMessage(msg, s.cfg.Limits)
		switch {
		case typ != websocket.TextMessage:
			m.BadRequests.WithLabelValues(metrics.WS).Inc()
			ev.err = errorMessage("", "requests are text messages")
		case err != nil:
			m.BadRequests.WithLabelValues(metrics.WS).Inc()
			ev.err = errorMessage(req, err.Error())
		default:
			release, reason, ok := s.take(metrics.WS, &ss.inFlight)
			if !ok {
				ev.err = errorMessage(req, "server at capacity: "+reason)
				break
			}
			arrival := time.Now().UnixNano()
			traceArrival(ctx, r.Seed, arrival)
			ev.a = &wsAnswer{idJSON: idJSON(req), req: r, arrival: arrival, due: r.Due(arrival, 0), release: release}
		}
		select {
		case ss.in <- ev:
		case <-ctx.Done():
			if ev.a != nil {
				ev.a.release(metrics.AnswerDeparted)
			}
			return
		}
	}
}

// errorMessage is {"id":req,"error":msg}.
func errorMessage(req, msg string) []byte {
	b := append([]byte(`{"id":`), idJSON(req)...)
	b = append(b, `,"error":`...)
	b = append(b, idJSON(msg)...)
	return append(b, '}')
}

// write owns the session's answers and its writes: it sends every chunk
// when due, done and error messages, and pings; it returns when the
// reader ends (the client left), a write fails, or the server shuts down,
// and ends every answer still in flight with the matching outcome.
func (ss *wsSession) write(ctx context.Context) {
	s, c := ss.s, ss.c
	m := s.cfg.Metrics
	chunks, bytes := m.Chunks.WithLabelValues(metrics.WS), m.Bytes.WithLabelValues(metrics.WS)
	var active answerHeap
	outcome := metrics.AnswerDeparted
	defer func() {
		for _, a := range active {
			a.release(outcome)
		}
		if outcome == metrics.AnswerShutdown {
			msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down")
			if c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeWait)) == nil {
				select { // let the peer's close reply arrive, so that it sees a clean close
				case <-ss.readerDone:
				case <-time.After(closeWait):
				}
			}
		}
	}()
	send := func(b []byte) error {
		if s.cfg.WriteTimeout > 0 {
			_ = c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		}
		if err := c.WriteMessage(websocket.TextMessage, b); err != nil {
			return err
		}
		bytes.Add(float64(len(b) + wsHeaderLen(len(b))))
		return nil
	}
	var ping <-chan time.Time
	if s.cfg.Ping > 0 {
		t := time.NewTicker(s.cfg.Ping)
		defer t.Stop()
		ping = t.C
	}
	wake := s.newChunkWake()
	defer wake.stop()
	var b []byte
	for {
		now := time.Now().UnixNano()
		for len(active) > 0 && active[0].due <= now {
			a := active[0]
			end := a.req.DueBy(a.arrival, now)
			for ; a.next < end; a.next++ {
				b = answer.AppendChunkJSON(b[:0], a.idJSON, a.req.Seed, a.next, a.req.Due(a.arrival, a.next))
				if err := send(b); err != nil {
					outcome = outcomeOf(err)
					return
				}
				chunks.Inc()
			}
			if a.next == a.req.Tokens {
				if err := send(answer.AppendDoneJSON(b[:0], a.idJSON, a.req.Tokens, true)); err != nil {
					outcome = outcomeOf(err)
					return
				}
				heap.Pop(&active)
				a.release(metrics.AnswerDone)
				continue
			}
			a.due = a.req.Due(a.arrival, a.next)
			heap.Fix(&active, 0)
		}
		if len(b) > 4<<10 {
			b = nil // do not keep a large message's buffer
		}
		if len(active) > 0 {
			wake.set(active[0].next == 0, active[0].due)
		} else {
			wake.stop()
		}
		select {
		case ev := <-ss.in:
			if ev.a != nil {
				heap.Push(&active, ev.a)
			} else if err := send(ev.err); err != nil {
				outcome = outcomeOf(err)
				return
			}
		case <-wake.A:
		case <-wake.T:
		case <-ping:
			if err := c.WriteControl(websocket.PingMessage, nil, time.Now().Add(max(s.cfg.WriteTimeout, time.Second))); err != nil {
				outcome = outcomeOf(err)
				return
			}
		case <-ctx.Done():
			if s.cfg.Shutdown.Err() != nil {
				outcome = metrics.AnswerShutdown
			}
			return
		}
	}
}

// wsHeaderLen is the length of an unmasked frame header for n payload
// bytes, to count bytes on the wire.
func wsHeaderLen(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xffff:
		return 4
	}
	return 10
}
