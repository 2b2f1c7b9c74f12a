// Package ws serves the feed over WebSocket with gorilla/websocket.
//
// After the upgrade the HTTP handler returns, so net/http's goroutine and
// buffers are released, and each connection is served by two goroutines of
// its own: a reader, mandatory because ping, pong and close frames are only
// processed inside reads (it also enforces the read limit, the message rate
// and the pong deadline), and a writer, which runs the shared stream loop.
//
// Ticks bypass gorilla's message writer: each tick's complete WebSocket frame
// is built once by the feed (feed.Frame.WS, what PreparedMessage would cache)
// and a batch of them goes to the socket in one writev, as SSE writes a batch
// in one flush. The socket has one owner all the same: gorilla is handed the
// hijacked connection wrapped in a sock, through which every write of the
// connection goes (ticks, gap messages, pings, pong and close replies), one
// at a time, each under a write deadline the sock sets itself, with the
// first error sticky (see sock).
package ws

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbench/pushbench/servers/endpoint"
	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/stream"
)

// Defaults double as flag defaults.
const (
	DefaultPing         = 30 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	// ReadLimit is the largest message a client may send; the server
	// expects none, so anything larger is answered with close 1009.
	ReadLimit = 512
	// closeWait bounds how long a closing server waits for the peer's
	// close reply before it drops the TCP connection.
	closeWait = time.Second
	// The server expects no messages, only pongs to its pings and perhaps
	// a ping now and then: a client may send MessageBurst messages (data,
	// ping or pong frames) at once and MessageRate a second after that;
	// past it the client is closed with 1008 (policy violation) and
	// counted in drops_total{cause="flood"}. Without a limit two clients
	// flooding small frames kept the server's reader goroutines busy on
	// 175% CPU.
	MessageBurst = 10
	MessageRate  = 5
)

// errFlood ends the reader of a client that sends too many messages.
var errFlood = errors.New("ws: client sent too many messages")

// bucket is a token bucket of MessageBurst tokens refilled at MessageRate a
// second; only the reader goroutine uses it.
type bucket struct {
	tokens float64
	last   time.Time
}

// take reports whether one more message is allowed now.
func (b *bucket) take(now time.Time) bool {
	b.tokens = min(MessageBurst, b.tokens+now.Sub(b.last).Seconds()*MessageRate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Handler serves GET /ws.
type Handler struct {
	endpoint.Base
	Ping time.Duration
	// AllowOrigin lists allowed Origin values; "*" allows any. Empty:
	// gorilla's same-origin check.
	AllowOrigin []string

	once     sync.Once
	upgrader websocket.Upgrader
	scratch  sync.Pool // *stream.Scratch for stream.Writev
}

func (h *Handler) init() {
	h.upgrader = websocket.Upgrader{
		ReadBufferSize:    256,
		WriteBufferSize:   1024,
		WriteBufferPool:   &sync.Pool{}, // borrowed only while a gap message is written
		HandshakeTimeout:  10 * time.Second,
		EnableCompression: false,
	}
	h.upgrader.CheckOrigin = CheckOrigin(h.AllowOrigin)
}

// CheckOrigin returns an Upgrader.CheckOrigin that allows the origins in
// allow ("*": any) besides gorilla's same-origin check; with allow empty it
// returns nil, which is gorilla's check.
func CheckOrigin(allow []string) func(*http.Request) bool {
	if len(allow) == 0 {
		return nil
	}
	allowed := map[string]bool{}
	for _, o := range allow {
		allowed[o] = true
	}
	return func(r *http.Request) bool {
		origin := r.Header.Get("Origin")
		return allowed["*"] || allowed[origin] || sameOrigin(origin, r.Host)
	}
}

// sameOrigin is gorilla's default check: no Origin header (not a browser)
// or an Origin whose host is the request's Host.
func sameOrigin(origin, host string) bool {
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, host)
}

// ServeHTTP validates the request, upgrades it and hands the connection to
// its reader and writer goroutines.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.once.Do(h.init)
	if r.ProtoMajor != 1 {
		// gorilla does not do WebSocket over HTTP/2 (RFC 8441), and net/http
		// does not announce it (SETTINGS_ENABLE_CONNECT_PROTOCOL), so a
		// browser upgrades over HTTP/1.1; this request cannot upgrade at all.
		http.Error(w, "WebSocket needs HTTP/1.1: this server does not do WebSocket over HTTP/2 (RFC 8441)", http.StatusBadRequest)
		return
	}
	req, err := h.Parse(r, "", "since")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "this endpoint needs a WebSocket upgrade", http.StatusBadRequest)
		return
	}
	release, ok := h.Take(w, r, endpoint.HTTPError)
	if !ok {
		return
	}
	hj := &hijacker{ResponseWriter: w, timeout: h.WriteTimeout}
	c, err := h.upgrader.Upgrade(hj, r, nil)
	if err != nil { // Upgrade has written the HTTP error
		release()
		return
	}
	conn := &conn{h: h, c: c, sock: hj.sock, readerDone: make(chan struct{})}
	cfg := stream.Config{Ring: h.Feed.Ring(), Cursor: req.Cursor, Filter: req.Filter,
		KeepAlive: h.Ping, Always: true, Metrics: h.Metrics, Batches: h.Batches}
	// The writer owns the reader's lifetime.
	h.Start(release, func() { c.Close() }, func(ctx context.Context, cancel context.CancelFunc) {
		go func() {
			defer cancel()
			conn.read()
		}()
		conn.write(ctx, cfg)
		<-conn.readerDone // write closed the connection: the reader returns
	})
}

// conn is one WebSocket client.
type conn struct {
	h          *Handler
	c          *websocket.Conn
	sock       *sock // the socket under c: every write goes through it
	readerDone chan struct{}
	gapBuf     []byte
}

var _ stream.Writer = (*conn)(nil)

func (cn *conn) pongWait() time.Duration { return cn.h.Ping + cn.h.Ping/2 }

// read discards client messages, answers pings and extends the read
// deadline on every pong; it returns when the peer goes away, misses a
// pong, sends an oversized frame (gorilla replies 1009), floods (1008) or
// closes. Every message counts against the client's bucket.
func (cn *conn) read() {
	defer close(cn.readerDone)
	c := cn.c
	c.SetReadLimit(ReadLimit)
	b := bucket{tokens: MessageBurst, last: time.Now()}
	ping := c.PingHandler() // gorilla's: replies with a pong
	c.SetPingHandler(func(data string) error {
		if !b.take(time.Now()) {
			return errFlood
		}
		return ping(data)
	})
	c.SetPongHandler(func(string) error {
		if !b.take(time.Now()) {
			return errFlood
		}
		if cn.h.Ping > 0 {
			return c.SetReadDeadline(time.Now().Add(cn.pongWait()))
		}
		return nil
	})
	if cn.h.Ping > 0 {
		_ = c.SetReadDeadline(time.Now().Add(cn.pongWait()))
	}
	var err error
	for {
		if _, _, err = c.NextReader(); err != nil {
			break
		}
		if !b.take(time.Now()) {
			err = errFlood
			break
		}
	}
	switch {
	case errors.Is(err, errFlood):
		cn.h.Metrics.Flood.Inc()
		msg := websocket.FormatCloseMessage(websocket.ClosePolicyViolation, "too many messages")
		if c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeWait)) != nil {
			return
		}
	case errors.Is(err, websocket.ErrReadLimit): // gorilla has sent 1009
	default:
		return
	}
	// A close frame went out: read on, raw and discarding (gorilla's reader
	// has failed for good), until the peer closes or closeWait passes, so
	// that the socket is not closed with unread input, which would reset
	// the connection and could lose the close frame on the way.
	_ = cn.sock.SetReadDeadline(time.Now().Add(closeWait))
	var buf [512]byte
	for {
		if _, err := cn.sock.Read(buf[:]); err != nil {
			return
		}
	}
}

// write runs the stream loop, then closes the connection: with 1001 when
// the server is shutting down.
func (cn *conn) write(ctx context.Context, cfg stream.Config) {
	defer cn.c.Close()
	err := stream.Run(ctx, cfg, cn)
	// The closing frame waits less than a tick batch would: a stalled peer
	// must not hold the server's shutdown.
	if cn.h.WriteTimeout <= 0 || cn.h.WriteTimeout > closeWait {
		cn.sock.setTimeout(closeWait)
	}
	// ctx is derived from the shutdown signal, so a writer that ended
	// because of it sees it here.
	if cn.h.Shutdown.Err() != nil {
		msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down")
		if cn.c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeWait)) == nil {
			cfg.Metrics.Bytes.Add(float64(2 + len(msg)))
			select { // let the peer's close reply arrive, so it sees a clean close
			case <-cn.readerDone:
			case <-time.After(closeWait):
			}
		}
		return
	}
	if err == nil && ctx.Err() == nil { // the feed ended (the ring closed)
		msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "feed ended")
		_ = cn.c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeWait))
	}
}

// WriteFrames writes the batch's pre-built frames with one writev through
// the sock, which sets the write deadline.
func (cn *conn) WriteFrames(frames []*feed.Frame) (int, error) {
	return cn.sock.writeFrames(&cn.h.scratch, frames)
}

func wsFrame(f *feed.Frame) []byte { return f.WS }

// WriteGap writes the gap message through gorilla (and so through the
// sock, which sets the write deadline).
func (cn *conn) WriteGap(g feed.Gap) (int, error) {
	b := feed.AppendGapJSON(append(cn.gapBuf[:0], `{"gap":`...), g)
	b = append(b, '}')
	cn.gapBuf = b
	if err := cn.c.WriteMessage(websocket.TextMessage, b); err != nil {
		return 0, err
	}
	return len(feed.AppendWSHeader(nil, len(b))) + len(b), nil
}

// KeepAlive writes a ping. The deadline given to gorilla only bounds its
// wait for its own lock; the sock sets the socket's write deadline.
func (cn *conn) KeepAlive() (int, error) {
	err := cn.c.WriteControl(websocket.PingMessage, nil, time.Now().Add(max(cn.h.WriteTimeout, time.Second)))
	return 2, err
}
