package client

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// The event-loop reader.
//
// A goroutine per client calling Next costs, for every wake-up of a socket,
// a read, a second read that returns EAGAIN (Go's netpoller reads until it
// would block before it parks) and two goroutine switches, plus a stack and
// the parser's buffers per idle client. At a few ticks per wake-up that is
// about as much CPU per message as the server spends per delivery, so the
// load generator would saturate first. A Loop instead gives each of a few
// worker goroutines many sockets in one epoll set (level-triggered), reads
// each ready socket once into the worker's buffer, parses in place, and
// keeps per client only the bytes of an incomplete message.
//
// Handshakes stay where they are: Connect dials and reads the response head
// on the caller's goroutine with Go's net package; Serve then takes the
// socket over (it duplicates the descriptor and closes the net.Conn, which
// removes it from Go's netpoller) together with whatever the handshake had
// read past the head.
//
// Why not github.com/lesismal/nbio: its engine reads a ready socket again
// when a read filled the buffer (up to 3 reads per event, the last often
// EAGAIN), keeps a mutex, two timers and write queues per connection (read
// deadlines are a timer reset per connection; here one sweep per worker
// checks every connection's idle clock), hands data through a per-engine
// callback with a borrowed buffer (the tail of an incomplete message would
// still be ours to copy), and brings a large dependency for what takes a
// few hundred lines on golang.org/x/sys/unix, which the module already
// uses.

// handler is the transport-specific half of a client served by a Loop.
// The Loop calls it on one worker goroutine only.
type handler interface {
	// loopStart runs once the connection is registered: it may hand out
	// events the handshake already brought and write a request.
	loopStart(lc *loopConn) error
	// loopData parses b: b[:old] is what the last call asked to keep (in
	// whatever form it left it), b[old:] the bytes one read brought at
	// recvAt. b is the worker's buffer: the handler may rewrite it in
	// place. It returns the part of b to keep for the next call.
	loopData(lc *loopConn, b []byte, old int, recvAt int64) (keep []byte, err error)
	// loopEOF tells why a stream that the peer ended is over.
	loopEOF(lc *loopConn) error
	// loopClose runs when Close (not Drop) ends the connection: WebSocket
	// writes its close frame.
	loopClose(lc *loopConn)
}

// loopClient is a client that can hand its connection to a Loop.
type loopClient interface {
	Client
	handler
	// handoff returns the connected Conn and a copy of the bytes the
	// handshake read past the response head, and releases the client's
	// handshake buffers.
	handoff() (*Conn, []byte, error)
	loopBase() *base
}

// errReconnect ends a connection that the server closed after a complete
// answer (a long poll with Connection: close): done gets nil, and the
// client should Connect again at once, as a browser would.
var errReconnect = errors.New("reconnect")

// doneErr is the error done gets for err.
func doneErr(err error) error {
	if errors.Is(err, errReconnect) {
		return nil
	}
	return err
}

// maxPendingWrite bounds what a connection may have left to write when the
// socket would block: a poll request or a few control frames.
const maxPendingWrite = 64 << 10

// loopConn is one connection served by a Loop. Only its worker touches it,
// except that Drop and Close queue a cut through the worker.
type loopConn struct {
	w        *worker // nil in tests that drive process directly
	fd       int
	h        handler
	owner    *base
	counters *Counters
	sink     func(*Event)
	done     func(error)

	tail  []byte // what the handler kept from the last read
	out   []byte // bytes left to write when the socket would block
	pre   []byte // bytes the handshake read past the head, handed in once
	preAt int64  // when they arrived

	// The connection is cut when now-since > idle: since moves with every
	// read (rolling, for streams) or with every request (poll).
	since   int64
	idle    int64
	rolling bool

	closing bool // Close, not Drop: say goodbye first
	ended   bool
}

// process runs one read's worth of bytes through the handler: buf holds
// the kept tail in buf[:t] and the n bytes just read after it.
func (lc *loopConn) process(buf []byte, t, n int, recvAt int64) error {
	if lc.rolling {
		lc.since = recvAt
	}
	keep, err := lc.h.loopData(lc, buf[:t+n], t, recvAt)
	if err != nil {
		return err
	}
	switch {
	case len(keep) == 0:
		if cap(lc.tail) > 512 {
			lc.tail = nil // a large partial message is over: give it back
		} else {
			lc.tail = lc.tail[:0]
		}
	default:
		lc.tail = append(lc.tail[:0], keep...)
	}
	return nil
}

// write sends b, or keeps what the socket would not take for when it
// becomes writable.
func (lc *loopConn) write(b []byte) error {
	if lc.w == nil {
		lc.out = append(lc.out, b...) // tests: the writes are looked at
		lc.counters.Out.Add(int64(len(b)))
		return nil
	}
	if len(lc.out) > 0 {
		if len(lc.out)+len(b) > maxPendingWrite {
			return fmt.Errorf("write: %d bytes pending", len(lc.out)+len(b))
		}
		lc.out = append(lc.out, b...)
		return nil
	}
	n, err := lc.w.writeSome(lc, b)
	if err != nil {
		return err
	}
	if n < len(b) {
		lc.out = append(lc.out[:0], b[n:]...)
		return lc.w.wantWrite(lc, true)
	}
	return nil
}

// errTimeout is what an idle connection ends with (Cause: "timeout").
func errTimeout(what string) error {
	return fmt.Errorf("%s: read: %w", what, os.ErrDeadlineExceeded)
}

// errSys wraps an errno from a read or write.
func errSys(op string, err error) error {
	if errors.Is(err, syscall.EBADF) {
		err = net.ErrClosed
	}
	return os.NewSyscallError(op, err)
}

// Serve hands c's current, connected connection to the loop and returns at
// once: the loop reads it, parses, calls sink for each event on a worker
// goroutine (never concurrently for one client; the event is valid until
// sink returns), and calls done exactly once, on that goroutine, when the
// connection ends: Drop, Close, the peer's close, the idle timeout, an
// error, or Loop.Close. After done, Connect may be called again (not from
// done itself, which must not block: the worker serves other clients). done
// gets nil when a long poll's server closed the connection after a
// complete answer; reconnect at once then. sink and done must not block.
//
// When Serve returns an error (c was closed or dropped since Connect, or
// the loop is closed), done is not called. Stalled clients (-slow) are not
// served: Stall and ReadRest work on the client's own connection.
func (l *Loop) Serve(c Client, sink func(*Event), done func(error)) error {
	lcl, ok := c.(loopClient)
	if !ok {
		return errors.New("client: not one of this package's clients")
	}
	conn, pre, err := lcl.handoff()
	if err != nil {
		return err
	}
	b := lcl.loopBase()
	lc := &loopConn{h: lcl, owner: b, counters: b.counters, sink: sink, done: done, pre: pre, fd: -1}
	return l.attach(lc, conn)
}

// cutLoop asks the loop serving b's connection, if any, to end it. It is
// called with b.mu held.
func (b *base) cutLoop(closing bool) {
	if b.lc != nil && b.lc.w != nil {
		b.lc.w.cut(b.lc, closing)
	}
}
