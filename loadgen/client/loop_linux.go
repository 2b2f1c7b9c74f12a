//go:build linux

package client

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// readChunk is the most one read asks for, after the kept tail in the
// worker's buffer. A read that fills it leaves the rest in the socket, and
// level-triggered epoll reports the socket again.
const readChunk = 64 << 10

// defaultSweep is how often a worker checks its connections' idle clocks
// when none has a shorter idle time (a quarter of it).
const defaultSweep = time.Second

// Loop reads many clients' connections on a few worker goroutines, each
// with its own epoll set (see loop.go). It is safe for concurrent use.
type Loop struct {
	workers []*worker
	next    atomic.Uint64
	wg      sync.WaitGroup
	closed  atomic.Bool
}

// NewLoop starts workers worker goroutines (<= 0: GOMAXPROCS).
func NewLoop(workers int) (*Loop, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	l := &Loop{}
	for range workers {
		w, err := newWorker()
		if err != nil {
			for _, w := range l.workers {
				w.closeFDs()
			}
			return nil, err
		}
		l.workers = append(l.workers, w)
	}
	for _, w := range l.workers {
		l.wg.Go(w.run)
	}
	return l, nil
}

// Name says which reader this is, for the result: "epoll".
func (l *Loop) Name() string { return "epoll" }

// Close stops the workers; every connection they still serve ends (its
// done is called with net.ErrClosed) before Close returns.
func (l *Loop) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	for _, w := range l.workers {
		w.mu.Lock()
		w.stop = true
		w.mu.Unlock()
		w.wake()
	}
	l.wg.Wait()
	return nil
}

// attach takes conn's socket over for lc and queues it to a worker.
func (l *Loop) attach(lc *loopConn, conn *Conn) error {
	sc, ok := conn.Conn.(syscall.Conn)
	if !ok {
		return errors.New("client: Serve needs a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	b := lc.owner
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("client closed: %w", net.ErrClosed)
	}
	if l.closed.Load() {
		return fmt.Errorf("loop closed: %w", net.ErrClosed)
	}
	var derr error
	if err := rc.Control(func(s uintptr) { lc.fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return fmt.Errorf("serve: %w", err) // closed by Drop since Connect
	}
	if derr != nil {
		return fmt.Errorf("serve: dup: %w", derr)
	}
	// The duplicate shares the socket (and its O_NONBLOCK); closing the
	// net.Conn takes the original out of Go's netpoller.
	lc.preAt = conn.LastRead()
	_ = conn.Close()
	if b.conn == conn {
		b.conn = nil
	}
	w := l.workers[l.next.Add(1)%uint64(len(l.workers))]
	lc.w = w
	if !w.add(lc) {
		_ = unix.Close(lc.fd)
		return fmt.Errorf("loop closed: %w", net.ErrClosed)
	}
	b.lc = lc
	return nil
}

type cutReq struct {
	lc      *loopConn
	closing bool
}

// worker is one goroutine and its epoll set. Everything but the queues
// under mu belongs to the goroutine.
type worker struct {
	epfd, evfd int
	// ep is epfd as a pollable file: the worker waits for its epoll set
	// through Go's netpoller (an epoll descriptor is readable while events
	// are ready), never in a blocking epoll_wait. A goroutine blocked in a
	// system call keeps its P until sysmon takes it back, up to 10 ms later
	// when the process is otherwise idle; with GOMAXPROCS 1 (a load
	// generator pinned to one CPU) every timer of the process, the lag
	// probe's included, then fired that late. Parked in the netpoller, the
	// worker leaves the P to the rest of the process.
	ep         *os.File
	due        int64 // Unix ns of the read deadline set on ep; 0: none
	buf        []byte
	conns      []*loopConn // by descriptor
	n          int         // connections registered
	sweepEvery int64       // ns
	lastSweep  int64

	mu   sync.Mutex
	adds []*loopConn
	cuts []cutReq
	stop bool
}

func newWorker() (*worker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	w := &worker{epfd: epfd, evfd: evfd, sweepEvery: int64(defaultSweep), lastSweep: time.Now().UnixNano()}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		w.closeFDs()
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	// Non-blocking, os.NewFile registers it with the runtime's netpoller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		w.closeFDs()
		return nil, fmt.Errorf("epoll set non-blocking: %w", err)
	}
	w.ep = os.NewFile(uintptr(epfd), "epoll")
	return w, nil
}

func (w *worker) closeFDs() {
	_ = unix.Close(w.evfd)
	if w.ep != nil {
		_ = w.ep.Close() // takes epfd out of the netpoller too
		return
	}
	_ = unix.Close(w.epfd)
}

// wait returns the ready events, parking the goroutine in Go's netpoller
// while there are none, until the sweep is due (0 events then).
func (w *worker) wait(rc syscall.RawConn, events []unix.EpollEvent) (int, error) {
	// The deadline moves only when a sweep ran or the set emptied: set it
	// then, not before every batch (each set resets a runtime timer).
	due := int64(0) // no connection: no sweep, no deadline
	if w.n > 0 {
		due = w.lastSweep + w.sweepEvery
	}
	if due != w.due {
		w.due = due
		dl := time.Time{}
		if due != 0 {
			dl = time.Unix(0, due)
		}
		_ = w.ep.SetReadDeadline(dl)
	}
	var n int
	var werr error
	err := rc.Read(func(fd uintptr) bool {
		n, werr = unix.EpollWait(int(fd), events, 0)
		if errors.Is(werr, unix.EINTR) {
			n, werr = 0, nil
		}
		return n > 0 || werr != nil // none ready: park until the set is readable
	})
	switch {
	case werr != nil:
		return 0, werr
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, nil
	case err != nil:
		return 0, err
	}
	return n, nil
}

// add queues lc for registration; false if the worker is stopping.
func (w *worker) add(lc *loopConn) bool {
	w.mu.Lock()
	if w.stop {
		w.mu.Unlock()
		return false
	}
	w.adds = append(w.adds, lc)
	w.mu.Unlock()
	w.wake()
	return true
}

// cut queues the end of lc (Drop, Close); safe from any goroutine.
func (w *worker) cut(lc *loopConn, closing bool) {
	w.mu.Lock()
	w.cuts = append(w.cuts, cutReq{lc, closing})
	w.mu.Unlock()
	w.wake()
}

func (w *worker) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(w.evfd, one[:]) // EAGAIN: a wake-up is pending anyway
}

func (w *worker) run() {
	defer w.closeFDs()
	events := make([]unix.EpollEvent, 128)
	rc, err := w.ep.SyscallConn()
	if err != nil {
		w.endAll(fmt.Errorf("epoll: %w", err))
		return
	}
	for {
		n, err := w.wait(rc, events)
		if err != nil {
			w.endAll(fmt.Errorf("epoll_wait: %w", err))
			return
		}
		for i := range n {
			ev := &events[i]
			fd := int(ev.Fd)
			if fd == w.evfd {
				if w.queued() {
					return
				}
				continue
			}
			if fd >= len(w.conns) || w.conns[fd] == nil {
				continue
			}
			lc := w.conns[fd]
			if ev.Events&unix.EPOLLOUT != 0 {
				w.flush(lc)
			}
			if !lc.ended && ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				w.read(lc)
			}
		}
		w.sweep()
		// Let the process's other goroutines (timers, the lag probe, the
		// run loop) have the P between batches: with GOMAXPROCS 1 a burst
		// of thousands of ready sockets would otherwise hold it until
		// preemption, 10 ms later.
		runtime.Gosched()
	}
}

// queued handles the adds and cuts other goroutines queued; true when the
// worker must stop (after ending every connection).
func (w *worker) queued() bool {
	var b [8]byte
	_, _ = unix.Read(w.evfd, b[:])
	w.mu.Lock()
	adds, cuts, stop := w.adds, w.cuts, w.stop
	w.adds, w.cuts = nil, nil
	w.mu.Unlock()
	now := time.Now().UnixNano()
	for _, lc := range adds {
		w.register(lc, now)
	}
	for _, c := range cuts {
		if c.lc.ended {
			continue
		}
		if c.closing {
			c.lc.closing = true
			c.lc.h.loopClose(c.lc)
		}
		w.end(c.lc, fmt.Errorf("%s: %w", c.lc.owner.cfg.Transport, net.ErrClosed))
	}
	if stop {
		w.endAll(fmt.Errorf("loop closed: %w", net.ErrClosed))
	}
	return stop
}

func (w *worker) register(lc *loopConn, now int64) {
	if lc.fd >= len(w.conns) {
		w.conns = append(w.conns, make([]*loopConn, lc.fd+1-len(w.conns)+64)...)
	}
	w.conns[lc.fd] = lc
	w.n++
	lc.since = now
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(lc.fd)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, lc.fd, &ev); err != nil {
		w.end(lc, fmt.Errorf("epoll_ctl: %w", err))
		return
	}
	if err := lc.h.loopStart(lc); err != nil {
		w.end(lc, err)
		return
	}
	if lc.idle > 0 {
		w.sweepEvery = min(w.sweepEvery, max(lc.idle/4, int64(5*time.Millisecond)))
	}
	if pre := lc.pre; len(pre) > 0 && !lc.ended {
		lc.pre = nil
		buf := w.buffer(len(pre))
		copy(buf, pre)
		if err := lc.process(buf, 0, len(pre), lc.preAt); err != nil {
			w.end(lc, err)
		}
	}
}

// buffer returns the worker's buffer with room for extra bytes plus a read.
func (w *worker) buffer(extra int) []byte {
	if cap(w.buf) < extra+readChunk {
		w.buf = make([]byte, extra+readChunk)
	}
	return w.buf[:cap(w.buf)]
}

// read reads lc once and parses what came.
func (w *worker) read(lc *loopConn) {
	t := len(lc.tail)
	buf := w.buffer(t)
	copy(buf, lc.tail)
	n, err := unix.Read(lc.fd, buf[t:t+readChunk])
	if err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return // level-triggered: reported again if still ready
		}
		w.end(lc, fmt.Errorf("%s: %w", lc.owner.cfg.Transport, errSys("read", err)))
		return
	}
	if n == 0 {
		w.end(lc, lc.h.loopEOF(lc))
		return
	}
	now := time.Now().UnixNano()
	lc.counters.In.Add(int64(n))
	if err := lc.process(buf, t, n, now); err != nil {
		w.end(lc, err)
	}
}

// writeSome writes what the socket takes now.
func (w *worker) writeSome(lc *loopConn, b []byte) (int, error) {
	for {
		n, err := unix.Write(lc.fd, b)
		switch {
		case err == nil:
			lc.counters.Out.Add(int64(n))
			return n, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return 0, nil
		}
		return 0, fmt.Errorf("%s: %w", lc.owner.cfg.Transport, errSys("write", err))
	}
}

// wantWrite turns the writability events of lc on or off.
func (w *worker) wantWrite(lc *loopConn, on bool) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(lc.fd)}
	if on {
		ev.Events |= unix.EPOLLOUT
	}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, lc.fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// flush writes what lc had left to write, now that the socket takes it.
func (w *worker) flush(lc *loopConn) {
	if len(lc.out) > 0 {
		n, err := w.writeSome(lc, lc.out)
		if err != nil {
			w.end(lc, err)
			return
		}
		if lc.out = lc.out[n:]; len(lc.out) > 0 {
			return
		}
	}
	lc.out = nil
	if err := w.wantWrite(lc, false); err != nil {
		w.end(lc, err)
	}
}

// sweep ends the connections whose idle time has passed.
func (w *worker) sweep() {
	now := time.Now().UnixNano()
	if now-w.lastSweep < w.sweepEvery {
		return
	}
	w.lastSweep = now
	for _, lc := range w.conns {
		if lc != nil && lc.idle > 0 && now-lc.since > lc.idle {
			w.end(lc, errTimeout(lc.owner.cfg.Transport))
		}
	}
}

func (w *worker) endAll(err error) {
	for _, lc := range w.conns {
		if lc != nil {
			w.end(lc, err)
		}
	}
}

// end closes lc's socket and calls its done, once.
func (w *worker) end(lc *loopConn, err error) {
	if lc.ended {
		return
	}
	lc.ended = true
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, lc.fd, nil)
	_ = unix.Close(lc.fd)
	if lc.fd < len(w.conns) && w.conns[lc.fd] == lc {
		w.conns[lc.fd] = nil
		w.n--
	}
	lc.tail, lc.out, lc.pre = nil, nil, nil
	b := lc.owner
	b.mu.Lock()
	if b.lc == lc {
		b.lc = nil
	}
	b.mu.Unlock()
	lc.done(doneErr(err))
}
