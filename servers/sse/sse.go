// Package sse serves the feed as Server-Sent Events on net/http.
//
// The handler parses the resume point and admits the client, then takes the
// HTTP/1.1 connection over (hijacks it, as gorilla does for WebSocket) so
// that net/http's goroutine and buffers are released, writes the response
// head and the retry hint, and runs the shared stream loop in a goroutine of
// its own, the connection's only writer: each batch of pre-built event bytes
// goes out in one writev with a write deadline. A second goroutine reads, to
// notice at once when the client leaves.
//
// Over TLS the taken-over connection is the *tls.Conn, and a batch is joined
// into one buffer before it meets TLS, so that it becomes one record, not
// one per tick (see stream.Writev).
//
// An HTTP/2 stream cannot be taken over: it is one of many on its
// connection. It is streamed on net/http's handler goroutine, the stream's
// only writer, through http.ResponseController: each batch is one Write
// and one Flush, and a batch still not written at the write timeout has
// its stream reset (see writeWatch). The bytes, resume, gaps, heartbeats,
// shutdown and slow-client policy are the same on both paths: both run
// stream.Run.
package sse

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/pushbench/pushbench/servers/endpoint"
	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/metrics"
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
	endpoint.Base
	Retry     time.Duration
	Heartbeat time.Duration

	scratch sync.Pool // *stream.Scratch for stream.Writev
}

// ServeHTTP validates the request, then streams until the client leaves, a
// write fails or the server stops.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	req, err := h.Parse(r, "Last-Event-ID", "lastEventId")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	release, ok := h.Take(w, r, endpoint.HTTPError)
	if !ok {
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
	cfg := stream.Config{Ring: h.Feed.Ring(), Cursor: req.Cursor, Filter: req.Filter,
		KeepAlive: h.Heartbeat, Metrics: h.MetricsOf(r), Batches: h.Batches}
	if r.ProtoMajor == 1 && h.serveHijacked(w, retry, cfg, release) {
		return
	}
	h.serveStream(w, r, retry, cfg, release)
}

// serveStream streams on the handler's goroutine (HTTP/2), until the client
// resets the stream, a write fails or the server shuts down.
func (h *Handler) serveStream(w http.ResponseWriter, r *http.Request, retry string, cfg stream.Config, release func()) {
	rc := http.NewResponseController(w)
	sw := &streamed{w: w, rc: rc, timeout: h.WriteTimeout, scratch: &h.scratch, watch: newWriteWatch(rc, h.WriteTimeout)}
	defer sw.watch.close()
	ok := h.Serve(r, release, func(ctx context.Context) {
		sw.ctx = ctx
		// net/http's HTTP/2 gives a stream a write deadline of
		// http.Server.WriteTimeout from its start, which would reset a
		// stream that is only long-lived; the watch bounds each write
		// instead.
		if err := rc.SetWriteDeadline(time.Time{}); err != nil {
			cfg.Metrics.WriteFailed(fmt.Errorf("sse: clear write deadline: %w", err))
			return
		}
		hdr := w.Header()
		hdr.Set("Content-Type", "text/event-stream")
		hdr.Set("Cache-Control", "no-cache")
		hdr.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		n, err := sw.write(func() (int, error) { return io.WriteString(w, retry) })
		cfg.Metrics.Bytes.Add(float64(n))
		if err != nil {
			cfg.Metrics.WriteFailed(err)
			return
		}
		_ = stream.Run(ctx, cfg, sw)
	})
	if !ok {
		http.Error(w, "server at capacity: "+metrics.ReasonShutdown, http.StatusServiceUnavailable)
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
// when the connection cannot be hijacked.
func (h *Handler) serveHijacked(w http.ResponseWriter, retry string, cfg stream.Config, release func()) bool {
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	_ = brw // its buffers are dropped; a GET stream has no body to read
	hw := &hijacked{nc: nc, timeout: h.WriteTimeout, scratch: &h.scratch}
	h.Start(release, func() { nc.Close() }, func(ctx context.Context, cancel context.CancelFunc) {
		readerDone := make(chan struct{})
		var err error // the stream's write error
		defer func() {
			cancel()
			_ = stream.Close(nc, err != nil)
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
		var n int
		n, err = hw.write([]byte(responseHead + retry))
		cfg.Metrics.Bytes.Add(float64(max(n-len(responseHead), 0)))
		if err != nil {
			cfg.Metrics.WriteFailed(err)
			return
		}
		err = stream.Run(ctx, cfg, hw)
	})
	return true
}

// hijacked writes SSE bytes straight to the socket: each batch of pre-built
// events goes out in one writev under a write deadline.
type hijacked struct {
	nc      net.Conn
	timeout time.Duration
	scratch *sync.Pool // *stream.Scratch, shared by the handler's streams
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
	return stream.Writev(hw.nc, hw.scratch, frames, sseEvent)
}

func sseEvent(f *feed.Frame) []byte { return f.SSE }

func (hw *hijacked) WriteGap(g feed.Gap) (int, error) {
	hw.gapBuf = appendGap(hw.gapBuf[:0], g)
	return hw.write(hw.gapBuf)
}

// heartbeat is an SSE comment: EventSource ignores it, proxies see traffic.
const heartbeat = ": ping\n\n"

func (hw *hijacked) KeepAlive() (int, error) { return hw.write([]byte(heartbeat)) }

// streamed writes SSE bytes to a ResponseWriter (an HTTP/2 stream): one
// Write and one Flush per batch, bounded by the write timeout.
type streamed struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	ctx     context.Context // ends when the client goes away or at shutdown
	timeout time.Duration
	scratch *sync.Pool // *stream.Scratch, shared by the handler's streams
	gapBuf  []byte
	watch   *writeWatch
}

var _ stream.Writer = (*streamed)(nil)

// write runs fn, writes to w, then flushes, within the write timeout. A
// write still blocked at the timeout has its stream reset and fails with
// "stream closed": such a failure is reported as os.ErrDeadlineExceeded
// (a slow client), and one after the client left as net.ErrClosed, so
// that /metrics tells them apart as on HTTP/1.1.
func (sw *streamed) write(fn func() (int, error)) (int, error) {
	sw.watch.start()
	n, err := fn()
	if err == nil {
		err = sw.rc.Flush()
	}
	expired := sw.watch.stop()
	switch {
	case err == nil:
	case expired:
		err = fmt.Errorf("sse: %w: %w", os.ErrDeadlineExceeded, err)
	case sw.ctx.Err() != nil:
		err = fmt.Errorf("sse: %w: %w", net.ErrClosed, err)
	}
	return n, err
}

// writeWatch bounds each write of an HTTP/2 stream by the write timeout
// with a timer of the stream's own, armed only while a write is under way.
// Setting and clearing net/http's write deadline around every batch, as
// HTTP/1.1 does, sends two messages to the connection's serve loop, which
// arms and stops a timer there: about 12% of the server's CPU for SSE over
// h2 (pprof, 1000 streams on 10 connections at 20 ticks/s), and a deadline
// left set would reset a stream that is merely idle. When the watch fires
// it sets a deadline in the past, which resets the stream at once: what
// net/http does when a deadline passes (http2stream.onWriteTimeout).
type writeWatch struct {
	rc      *http.ResponseController
	timeout time.Duration
	timer   *time.Timer // nil: no timeout

	mu       sync.Mutex
	writing  bool // a write is under way
	expired  bool // the watch fired during this write
	finished bool // the handler is returning: rc must not be touched
}

func newWriteWatch(rc *http.ResponseController, timeout time.Duration) *writeWatch {
	ww := &writeWatch{rc: rc, timeout: timeout}
	if timeout > 0 {
		ww.timer = time.AfterFunc(time.Hour, ww.fire)
		ww.timer.Stop()
	}
	return ww
}

// start arms the watch for a write.
func (ww *writeWatch) start() {
	if ww.timer == nil {
		return
	}
	ww.mu.Lock()
	ww.writing, ww.expired = true, false
	ww.mu.Unlock()
	ww.timer.Reset(ww.timeout)
}

// stop disarms it and reports whether the write outlived the timeout.
func (ww *writeWatch) stop() (expired bool) {
	if ww.timer == nil {
		return false
	}
	// writing is cleared before the timer stops, so that a watch firing
	// in between finds the write over and leaves the stream alone.
	ww.mu.Lock()
	ww.writing = false
	expired = ww.expired
	ww.mu.Unlock()
	ww.timer.Stop()
	return expired
}

// fire resets the stream of a write still under way.
func (ww *writeWatch) fire() {
	ww.mu.Lock()
	defer ww.mu.Unlock()
	if !ww.writing || ww.finished {
		return
	}
	ww.expired = true
	_ = ww.rc.SetWriteDeadline(time.Unix(1, 0)) // in the past: the stream is reset now
}

// close ends the watch before the handler returns, after which net/http
// may reuse what rc points to.
func (ww *writeWatch) close() {
	if ww.timer == nil {
		return
	}
	ww.timer.Stop()
	ww.mu.Lock()
	ww.finished = true
	ww.mu.Unlock()
}

func (sw *streamed) WriteFrames(frames []*feed.Frame) (int, error) {
	return sw.write(func() (int, error) { return stream.Writev(sw.w, sw.scratch, frames, sseEvent) })
}

func (sw *streamed) WriteGap(g feed.Gap) (int, error) {
	sw.gapBuf = appendGap(sw.gapBuf[:0], g)
	return sw.write(func() (int, error) { return sw.w.Write(sw.gapBuf) })
}

func (sw *streamed) KeepAlive() (int, error) {
	return sw.write(func() (int, error) { return io.WriteString(sw.w, heartbeat) })
}

func appendGap(b []byte, g feed.Gap) []byte {
	b = feed.AppendGapJSON(append(b, "event: gap\ndata: "...), g)
	return append(b, "\n\n"...)
}
