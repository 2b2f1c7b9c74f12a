package answersrv

import (
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/pushbench/pushbench/internal/alarm"
	"github.com/pushbench/pushbench/servers/metrics"
	"github.com/pushbench/pushbench/servers/stream"
)

const (
	// alarmLead is how long before an answer's first chunk is due its
	// wait moves from the connection's read deadline, which fires as late
	// as Go's timers (up to about a millisecond in a quiet process), to
	// the alarm clock (see chunkWake).
	alarmLead = 2 * time.Millisecond
	// chunkRoom is kept free before a batch for its chunk-size line: up
	// to 6 hex digits (16 MiB; a batch of maxBatch events is tens of KiB)
	// and CRLF.
	chunkRoom = 8
	// maxPipelined bounds the bytes a client may send while its answer
	// streams: a pipelined request (head and body) fits in it. They are
	// read and dropped, and the connection closes after the answer; past
	// the bound it closes at once.
	maxPipelined = 32 << 10
	// bodyEnd ends a chunked body.
	bodyEnd = "0\r\n\r\n"
)

// aLongTimeAgo is a deadline in the past: a read waiting under it returns
// at once.
var aLongTimeAgo = time.Unix(1, 0)

// sseConn is an SSE answer served on its HTTP/1.x connection, taken over
// from net/http: one goroutine (run) owns the connection, writes the
// response and reads nothing but what tells it the client left.
type sseConn struct {
	s       *Service
	nc      net.Conn
	rec     *record
	next    int // the next chunk to write
	release func(outcome string)
	http10  bool // an HTTP/1.0 request: the body is delimited by the connection's close
	// back hands the connection back to net/http after a clean end (nil:
	// it is closed), once the client began its next request within
	// keepAlive.
	back      func(net.Conn)
	keepAlive time.Duration
	read      int          // bytes the client sent during the answer (pipelined requests)
	alarm     *alarm.Alarm // the first chunk's, while it waits
	buf       [16]byte     // scratch: what the client sends is read into it and dropped
	// prev and next link the service's taken-over connections (conns).
	prevConn, nextConn *sseConn
}

// conns are the connections taken over for SSE answers, for shutdown to
// wake: a list threaded through them rather than a context per
// answer, which would cost each answer an allocation and a map entry.
type conns struct {
	mu    sync.Mutex
	head  *sseConn
	woken bool // shutdown began: every connection was woken, none is added
}

// add links a, or reports false once shutdown began.
func (cs *conns) add(a *sseConn) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.woken {
		return false
	}
	a.nextConn = cs.head
	if cs.head != nil {
		cs.head.prevConn = a
	}
	cs.head = a
	return true
}

// remove unlinks a.
func (cs *conns) remove(a *sseConn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if a.prevConn != nil {
		a.prevConn.nextConn = a.nextConn
	} else if cs.head == a {
		cs.head = a.nextConn
	}
	if a.nextConn != nil {
		a.nextConn.prevConn = a.prevConn
	}
	a.prevConn, a.nextConn = nil, nil
}

// wake ends every wait at once (at shutdown): a read deadline in the
// past. A wait checks the shutdown signal after every deadline it sets, so
// that it cannot move this one later unnoticed.
func (cs *conns) wake() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.woken = true
	for a := cs.head; a != nil; a = a.nextConn {
		_ = a.nc.SetReadDeadline(aLongTimeAgo)
	}
}

// takeOver serves an admitted SSE answer on its HTTP/1.x connection,
// taken over from net/http (as the feed's SSE streams and gorilla's
// WebSocket do) once the request and its body are read: net/http's
// per-connection goroutine (with its deep stack), its 4 KiB read and write
// buffers, its chunk writer and background-read goroutine, the request and
// its contexts are released while the answer waits between chunks. One
// goroutine of its own, started through Config.Go so that shutdown waits
// for it, writes the response and waits for each chunk in a read of the
// connection under a deadline (see wait), so that a client that leaves is
// noticed at once without a reader goroutine.
//
// The response is the one net/http wrote: HTTP/1.1 answers are chunked,
// each batch one chunk in one write, and the body's end follows once the
// slot is freed (as net/http ended the body after the handler returned),
// so that the connection can go back to net/http (Config.HandBack) for
// the client's next request. It is closed instead, and the head says
// "Connection: close", when the client asked for that, when it pipelined
// a request behind this one (bytes already read past the request: not
// served), or when the connection cannot go back. An HTTP/1.0 answer's
// body ends with the connection. It reports false, having done nothing,
// when the connection cannot be taken over.
func (s *Service) takeOver(w http.ResponseWriter, r *http.Request, rec *record, from int, release func(outcome string)) bool {
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	a := &sseConn{s: s, nc: nc, rec: rec, next: from, release: release, http10: !r.ProtoAtLeast(1, 1)}
	if !a.http10 && !r.Close && brw.Reader.Buffered() == 0 && s.cfg.HandBack != nil {
		a.back, a.keepAlive = s.cfg.HandBack(nc)
	}
	// brw's buffers are dropped: the request and its body are read, and
	// what else is buffered is a pipelined request, not served.
	if !s.conns.add(a) {
		_ = nc.Close()
		release(metrics.AnswerShutdown)
		return true
	}
	if !s.cfg.Go(a.run) {
		s.conns.remove(a)
		_ = nc.Close()
		release(metrics.AnswerShutdown)
	}
	return true
}

// run delivers the answer, frees its slot and then ends the connection's
// part in it: after a clean end a reusable connection waits for the
// client's next request and goes back to net/http (see awaitNext);
// anything else closes it, a shutdown after ending the chunked body, so
// that the client reads a whole response without event: done, as from
// net/http.
func (a *sseConn) run() {
	defer a.s.conns.remove(a)
	outcome := a.stream()
	if a.alarm != nil {
		a.alarm.Stop()
	}
	// The slot is free before the body ends, as it was when net/http
	// ended the body after the handler returned: a client that sends its
	// next request on this connection finds it free.
	a.release(outcome)
	switch {
	case outcome == metrics.AnswerDone && !a.http10:
		if _, err := a.write(append(a.buf[:0], bodyEnd...)); err != nil {
			_ = stream.Close(a.nc, true)
			return
		}
		if a.back != nil && a.read == 0 && a.awaitNext() {
			a.back(a.nc)
			return
		}
		_ = stream.Close(a.nc, false)
	case outcome == metrics.AnswerDone:
		_ = stream.Close(a.nc, false)
	case outcome == metrics.AnswerShutdown && !a.http10:
		err := a.nc.SetWriteDeadline(time.Now().Add(closeWait))
		if err == nil {
			_, err = a.nc.Write(append(a.buf[:0], bodyEnd...))
		}
		_ = stream.Close(a.nc, err != nil)
	default: // the client left, stalled, or broke the protocol: no goodbye
		_ = stream.Close(a.nc, true)
	}
}

// awaitNext waits, after a clean end, until the client begins its next
// request (its first bytes are on the socket, not read), and reports
// whether it did within keepAlive, with the server still running and the
// connection's deadlines cleared for net/http. net/http would wait the
// same way with its own keep-alive connections, but with its connection
// goroutine and 8 KiB of buffers each; this goroutine waits with neither.
// Its deadline is net/http's idle timeout, and net/http's header timeout
// starts once the connection is back, as it does after its own wait.
func (a *sseConn) awaitNext() bool {
	if a.keepAlive > 0 {
		if err := a.nc.SetReadDeadline(time.Now().Add(a.keepAlive)); err != nil {
			return false
		}
	}
	if a.s.cfg.Shutdown.Err() != nil { // after the deadline was set: see conns.wake
		return false
	}
	if !readable(a.nc) {
		return false
	}
	return a.nc.SetDeadline(time.Time{}) == nil && a.s.cfg.Shutdown.Err() == nil
}

// stream writes the response head at once, then the answer's chunks from
// a.next on as SSE events as they fall due, then event: done, and returns
// how the delivery ended.
func (a *sseConn) stream() string {
	m, rec := a.s.cfg.Metrics, a.rec
	chunks, bytes := m.Chunks.WithLabelValues(metrics.SSE), m.Bytes.WithLabelValues(metrics.SSE)
	bp := bufs.Get().(*[]byte)
	b := a.appendHead((*bp)[:0])
	_, err := a.write(b)
	*bp = b[:0]
	bufs.Put(bp)
	if err != nil {
		return outcomeOf(err)
	}
	req := rec.req
	for {
		if due := req.DueBy(rec.arrival, time.Now().UnixNano()); due > a.next {
			end := min(due, a.next+maxBatch)
			bp := bufs.Get().(*[]byte)
			b := appendBatch((*bp)[:chunkRoom], rec, a.next, end)
			payload := len(b) - chunkRoom
			start := chunkRoom
			if !a.http10 { // one chunk of the chunked body (run ends the body)
				size := strconv.AppendInt(a.buf[:0], int64(payload), 16)
				start -= len(size) + 2
				copy(b[start:], size)
				b[chunkRoom-2], b[chunkRoom-1] = '\r', '\n'
				b = append(b, "\r\n"...)
			}
			n, err := a.write(b[start:])
			bytes.Add(float64(min(max(n-(chunkRoom-start), 0), payload)))
			*bp = b[:0]
			bufs.Put(bp)
			if err != nil {
				return outcomeOf(err)
			}
			chunks.Add(float64(end - a.next))
			a.next = end
			if a.next == req.Tokens {
				return metrics.AnswerDone
			}
			continue // more may be due already (a batch was cut at maxBatch)
		}
		if outcome := a.wait(req.Due(rec.arrival, a.next), a.next == 0); outcome != "" {
			return outcome
		}
	}
}

// appendHead appends the response head, the bytes net/http wrote for an
// SSE answer: the handler's headers in net/http's order (sorted), then
// Date, Connection and Transfer-Encoding as net/http adds them.
func (a *sseConn) appendHead(b []byte) []byte {
	if a.http10 {
		b = append(b, "HTTP/1.0 200 OK\r\n"...)
	} else {
		b = append(b, "HTTP/1.1 200 OK\r\n"...)
	}
	b = append(b, "Cache-Control: no-cache\r\nContent-Type: text/event-stream\r\nX-Accel-Buffering: no\r\nX-Answer-Id: "...)
	b = strconv.AppendUint(b, uint64(a.rec.id), 16)
	b = append(b, "\r\nDate: "...)
	b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
	b = append(b, "\r\n"...)
	if !a.http10 {
		if a.back == nil {
			b = append(b, "Connection: close\r\n"...)
		}
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	return append(b, "\r\n"...)
}

// write sends b in one write under the write deadline.
func (a *sseConn) write(b []byte) (int, error) {
	if t := a.s.cfg.WriteTimeout; t > 0 {
		if err := a.nc.SetWriteDeadline(time.Now().Add(t)); err != nil {
			return 0, err
		}
	}
	return a.nc.Write(b)
}

// wait returns "" once due (Unix ns), when the next chunk is due, or how
// the answer ends before that. It waits in a read of the connection under
// a read deadline, the one way to learn at once, without a reader
// goroutine, that the client went away (the read ends: EOF or a reset) or
// that the server shuts down (conns.wake moves the deadline to the past). The
// deadline fires as late as Go's timers, which later chunks accept (see
// chunkWake); the first chunk's wait moves to the alarm clock alarmLead
// before it is due, and for that last stretch the client's leaving goes
// unnoticed until the chunk is written.
//
// A client that sends bytes during its answer is pipelining requests: they
// are read and dropped, and the connection is closed after the answer
// (they were not served); past maxPipelined it is closed at once.
func (a *sseConn) wait(due int64, first bool) string {
	shutdown := a.s.cfg.Shutdown
	until := due
	if first {
		until -= int64(alarmLead)
	}
	for time.Now().UnixNano() < until {
		if err := a.nc.SetReadDeadline(time.Unix(0, until)); err != nil {
			return metrics.AnswerDeparted // closed
		}
		if shutdown.Err() != nil { // after the deadline was set: see conns.wake
			return metrics.AnswerShutdown
		}
		n, err := a.nc.Read(a.buf[:])
		if a.read += n; a.read > maxPipelined {
			return metrics.AnswerError
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return metrics.AnswerDeparted
		}
	}
	if !first {
		return ""
	}
	if a.alarm == nil {
		a.alarm = a.s.clock.NewAlarm()
	}
	a.alarm.Set(due)
	select {
	case <-a.alarm.C:
		a.alarm = nil // the later chunks wait on the deadline
		return ""
	case <-shutdown.Done():
		return metrics.AnswerShutdown
	}
}
