// Package stream is the per-connection loop shared by the SSE and WebSocket
// servers: cursor -> read a batch from the ring -> write it -> flush once.
//
// A subscriber is only a cursor into the feed's shared Ring. Catch-up after a
// resume, live delivery, batching and slow-client handling are one
// mechanism: each wake-up writes every available tick (up to MaxBatch) in one
// flush, and a cursor that falls behind the ring's oldest tick gets a gap and
// jumps forward. There is no per-client queue, so a stalled client costs the
// publisher nothing and its memory stays bounded.
//
// Concurrency: Run is called by the one goroutine that owns the connection's
// writes; the Writer's methods are only ever called from it.
package stream

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/metrics"
)

// DefaultMaxBatch bounds the ticks written in one flush.
const DefaultMaxBatch = 256

// Writer adapts the stream to one wire format. Each method sets its own
// write deadline and flushes before it returns.
type Writer interface {
	// WriteFrames writes a batch and flushes once; it returns the body bytes written.
	WriteFrames(frames []*feed.Frame) (int, error)
	// WriteGap tells the client that ticks gap.From..gap.To-1 are lost to it.
	WriteGap(gap feed.Gap) (int, error)
	// KeepAlive writes an SSE heartbeat comment or a WebSocket ping.
	KeepAlive() (int, error)
}

// Config is one subscription.
type Config struct {
	Ring   *feed.Ring
	Cursor uint64      // the last seq the client has
	Filter feed.Filter // nil: all symbols
	// KeepAlive is the keep-alive period (0: none). With Always false it is
	// sent only after that long without any write (SSE heartbeats); with
	// Always true it is sent every period regardless (WebSocket pings, which
	// the peer must answer to prove it is alive).
	KeepAlive time.Duration
	Always    bool
	MaxBatch  int
	Metrics   *metrics.Transport
	// Batches lends batch buffers so that an idle connection holds none.
	Batches *sync.Pool
}

// NewBatchPool returns a pool of batch buffers for Config.Batches.
func NewBatchPool(maxBatch int) *sync.Pool {
	return &sync.Pool{New: func() any { b := make([]*feed.Frame, 0, maxBatch); return &b }}
}

// Run streams until ctx is done (the server shuts down or the client went
// away), the ring closes, or a write fails; it returns the write error, or
// nil.
func Run(ctx context.Context, cfg Config, w Writer) error {
	maxBatch := cfg.MaxBatch
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatch
	}
	var keepAlive <-chan time.Time
	if cfg.KeepAlive > 0 {
		t := time.NewTicker(cfg.KeepAlive)
		defer t.Stop()
		keepAlive = t.C
	}
	m := cfg.Metrics
	cursor := cfg.Cursor
	lastWrite := time.Now()
	cancel := func() {}
	defer func() { cancel() }()
	for {
		cancel()
		var wake <-chan struct{}
		wake, cancel = cfg.Ring.WaitFor(cursor, cfg.Filter)
		n, err := drain(cfg, &cursor, maxBatch, w)
		if err != nil {
			m.WriteFailed(err)
			return err
		}
		if n > 0 {
			lastWrite = time.Now()
		}
		if cfg.Ring.Closed() && cursor >= cfg.Ring.Newest() {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case now := <-keepAlive:
			if cfg.Always || now.Sub(lastWrite) >= cfg.KeepAlive {
				n, err := w.KeepAlive()
				m.Bytes.Add(float64(n))
				if err != nil {
					m.WriteFailed(err)
					return err
				}
				lastWrite = now
			}
		}
	}
}

// drain writes everything after *cursor that is retained now, batch by
// batch, and returns the number of writes made.
func drain(cfg Config, cursor *uint64, maxBatch int, w Writer) (int, error) {
	m := cfg.Metrics
	writes := 0
	for *cursor < cfg.Ring.Newest() {
		bp := cfg.Batches.Get().(*[]*feed.Frame)
		// Until the first read the cursor is the resume point the client
		// came back with: a gap there means those ticks were evicted while
		// it was away, not that it is too slow now.
		atResume := *cursor == cfg.Cursor
		frames, gap, next := cfg.Ring.Read(*cursor, cfg.Filter, (*bp)[:0], maxBatch)
		*cursor = next
		var err error
		if gap != nil {
			var n int
			n, err = w.WriteGap(*gap)
			m.Gaps.Inc()
			if !atResume {
				m.Behind.Inc()
			}
			m.Bytes.Add(float64(n))
			writes++
		}
		if err == nil && len(frames) > 0 {
			var n int
			n, err = w.WriteFrames(frames)
			m.Bytes.Add(float64(n))
			if err == nil {
				m.Delivered(len(frames))
			}
			writes++
		}
		clear(frames) // drop references to frames so the pool pins no history
		*bp = frames[:0]
		cfg.Batches.Put(bp)
		if err != nil {
			return writes, err
		}
	}
	return writes, nil
}

// Writev writes wire(f) for every frame of the batch in one call to w. On a
// socket (a conn with SyscallConn, such as *net.TCPConn) that is one writev
// of the frames' own bytes. Anything else, a *tls.Conn or an HTTP/2
// stream's ResponseWriter, would take a net.Buffers one Write per element,
// so one TLS record (22-29 bytes of overhead, and a syscall) per tick: the
// batch is joined into one buffer first and written once. The scratch
// space is borrowed from scratch (a zero sync.Pool will do), so that an
// idle connection holds none. The caller sets the write deadline.
func Writev(w io.Writer, scratch *sync.Pool, frames []*feed.Frame, wire func(*feed.Frame) []byte) (int, error) {
	sp, _ := scratch.Get().(*Scratch)
	if sp == nil {
		sp = new(Scratch)
	}
	defer scratch.Put(sp)
	if _, ok := w.(interface {
		SyscallConn() (syscall.RawConn, error)
	}); !ok {
		b := sp.joined[:0]
		for _, f := range frames {
			b = append(b, wire(f)...)
		}
		n, err := w.Write(b)
		// A batch is bounded (MaxBatch ticks), but a rare large one is not
		// worth keeping in every pooled buffer.
		if cap(b) <= maxKeptJoined {
			sp.joined = b[:0]
		}
		return n, err
	}
	bufs := sp.bufs[:0]
	for _, f := range frames {
		bufs = append(bufs, wire(f))
	}
	// WriteTo advances its receiver: write through the pooled pointer (a
	// local's address would escape, one allocation per batch) and keep the
	// full slice to reuse.
	sp.bufs = bufs
	n, err := sp.bufs.WriteTo(w)
	clear(bufs) // pin no frames in the pool
	sp.bufs = bufs[:0]
	return int(n), err
}

// Close closes a taken-over connection. After a failed write a *tls.Conn
// is closed beneath TLS: tls.Conn.Close would first send a close_notify
// alert under a write deadline of its own, 5 s, and the peer that made the
// write fail (stalled, or gone) would hold the connection's goroutines and
// slot that long, and a shutdown past its bound. A clean end sends the
// alert, which a peer that reads takes at once.
func Close(c net.Conn, writeFailed bool) error {
	if tc, ok := c.(*tls.Conn); ok && writeFailed {
		return tc.NetConn().Close()
	}
	return c.Close()
}

// maxKeptJoined is the largest joined batch buffer kept for reuse.
const maxKeptJoined = 64 << 10

// Scratch is Writev's borrowed space: the slice of slices of a writev, or
// the buffer a batch is joined into.
type Scratch struct {
	bufs   net.Buffers
	joined []byte
}
