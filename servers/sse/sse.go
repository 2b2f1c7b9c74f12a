// Package sse serves the feed as Server-Sent Events on net/http.
//
// The handler parses the resume point and admits the client, then takes the
// HTTP/1.1 connection over (hijacks it, as gorilla does for WebSocket) so
// that net/http's goroutine and buffers are released, writes the response
// head and the retry hint, and runs the shared stream loop in a goroutine of
// its own, the connection's only writer: each batch of pre-built event bytes
// goes out in one writev with a write deadline. A second goroutine reads, to
// notice at once when the client leaves. The server speaks HTTP/1.1 only;
// a connection that cannot be taken over (HTTP/2) gets 505.
package sse

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/metrics"
	"github.com/pushbench/pushbench/servers/query"
	"github.com/pushbench/pushbench/servers/stream"
)

// Defaults double as flag defaults.
const (
	DefaultRetry        = 2 * time.Second
	DefaultHeartbeat    = 15 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// Handler serves GET /sse.
type Handler struct {
	Feed         *feed.Feed
	SymbolIndex  map[string]int
	Retry        time.Duration
	Heartbeat    time.Duration
	WriteTimeout time.Duration
	Metrics      *metrics.Transport
	// Admit is asked before a stream starts; it returns a release func, or
	// false with the reason the client is refused (the handler answers 503).
	Admit func() (release func(), reason string, ok bool)
	// Stop is closed when the server shuts down: streams end at once.
	Stop <-chan struct{}
	// Ctx bounds every stream (the server's lifetime).
	Ctx     context.Context
	Batches *sync.Pool
	// Go starts a stream's goroutine so that the server can wait for it on
	// shutdown; false means the server is shutting down.
	Go func(func()) bool

	iovecs sync.Pool // *net.Buffers for stream.Writev
}

func badRequest(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), http.StatusBadRequest)
}

// ServeHTTP validates the request, then streams until the client leaves, a
// write fails or the server stops.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ring := h.Feed.Ring()
	q, err := query.Values(r.URL.RawQuery)
	if err != nil {
		badRequest(w, err)
		return
	}
	var filter feed.Filter
	if v, ok := q["symbols"]; ok {
		f, err := query.Symbols(v[0], h.Feed.Symbols(), h.SymbolIndex)
		if err != nil {
			badRequest(w, err)
			return
		}
		filter = f
	}
	cursor := ring.Newest() // no resume point: live from now
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		v, err := query.Seq("Last-Event-ID", id)
		if err != nil {
			badRequest(w, err)
			return
		}
		cursor = v
	} else if v, ok := q["lastEventId"]; ok {
		s, err := query.Seq("lastEventId", v[0])
		if err != nil {
			badRequest(w, err)
			return
		}
		cursor = s
	}
	release, reason, ok := h.Admit()
	if !ok {
		h.Metrics.Refuse(reason)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "server at capacity: "+reason, http.StatusServiceUnavailable)
		return
	}
	if r.Method == http.MethodHead {
		release()
		hdr := w.Header()
		hdr.Set("Content-Type", "text/event-stream")
		hdr.Set("Cache-Control", "no-cache")
		hdr.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		return
	}
	retry := "retry: " + strconv.FormatInt(h.Retry.Milliseconds(), 10) + "\n\n"
	cfg := stream.Config{Ring: ring, Cursor: cursor, Filter: filter,
		KeepAlive: h.Heartbeat, Metrics: h.Metrics, Batches: h.Batches}
	if !h.serveHijacked(w, retry, cfg, release) {
		release()
		http.Error(w, "event streams are served over HTTP/1.1 only", http.StatusHTTPVersionNotSupported)
	}
}

// responseHead is the whole HTTP/1.1 response head of a hijacked stream. The
// body is delimited by the connection's close (RFC 9112 §6.3), which every
// EventSource accepts, so no chunk framing is needed either.
const responseHead = "HTTP/1.1 200 OK\r\n" +
	"Content-Type: text/event-stream\r\n" +
	"Cache-Control: no-cache\r\n" +
	"X-Accel-Buffering: no\r\n" +
	"Connection: close\r\n\r\n"

// serveHijacked takes the connection over from net/http, as gorilla does
// for WebSocket, so that net/http's per-connection goroutine, its 4 KiB read
// and write buffers and its chunk buffer are released: an idle stream then
// costs a writer and a reader goroutine and the socket. It reports false
// when the connection cannot be hijacked (HTTP/2).
func (h *Handler) serveHijacked(w http.ResponseWriter, retry string, cfg stream.Config, release func()) bool {
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	_ = brw // its buffers are dropped; a GET stream has no body to read
	h.Metrics.Open.Inc()
	hw := &hijacked{nc: nc, timeout: h.WriteTimeout, iovecs: &h.iovecs}
	ctx, cancel := context.WithCancel(h.Ctx)
	readerDone := make(chan struct{})
	started := h.Go(func() { // the writer, which owns the reader's lifetime
		defer release()
		defer h.Metrics.Open.Dec()
		defer func() {
			cancel()
			nc.Close()
			<-readerDone
		}()
		go func() { // the reader notices at once when the client goes away
			defer close(readerDone)
			defer cancel()
			var buf [64]byte
			for {
				if _, err := nc.Read(buf[:]); err != nil {
					return
				}
			}
		}()
		n, err := hw.write([]byte(responseHead + retry))
		h.Metrics.Bytes.Add(float64(max(n-len(responseHead), 0)))
		if err != nil {
			h.Metrics.WriteErrors.Inc()
			return
		}
		_ = stream.Run(ctx, h.Stop, cfg, hw)
	})
	if !started { // shutting down: the stream ends before it began
		cancel()
		nc.Close()
		h.Metrics.Open.Dec()
		release()
	}
	return true
}

// hijacked writes SSE bytes straight to the socket: each batch of pre-built
// events goes out in one writev under a write deadline.
type hijacked struct {
	nc      net.Conn
	timeout time.Duration
	iovecs  *sync.Pool // *net.Buffers, shared by the handler's streams
	gapBuf  []byte
}

var _ stream.Writer = (*hijacked)(nil)

func (hw *hijacked) deadline() error {
	if hw.timeout <= 0 {
		return nil
	}
	return hw.nc.SetWriteDeadline(time.Now().Add(hw.timeout))
}

func (hw *hijacked) write(b []byte) (int, error) {
	if err := hw.deadline(); err != nil {
		return 0, err
	}
	return hw.nc.Write(b)
}

func (hw *hijacked) WriteFrames(frames []*feed.Frame) (int, error) {
	if err := hw.deadline(); err != nil {
		return 0, err
	}
	return stream.Writev(hw.nc, hw.iovecs, frames, sseEvent)
}

func sseEvent(f *feed.Frame) []byte { return f.SSE }

func (hw *hijacked) WriteGap(g feed.Gap) (int, error) {
	hw.gapBuf = appendGap(hw.gapBuf[:0], g)
	return hw.write(hw.gapBuf)
}

// heartbeat is an SSE comment: EventSource ignores it, proxies see traffic.
const heartbeat = ": ping\n\n"

func (hw *hijacked) KeepAlive() (int, error) { return hw.write([]byte(heartbeat)) }

func appendGap(b []byte, g feed.Gap) []byte {
	b = feed.AppendGapJSON(append(b, "event: gap\ndata: "...), g)
	return append(b, "\n\n"...)
}
