//go:build unix

package answersrv

import (
	"crypto/tls"
	"net"
	"syscall"
)

// readable waits under c's read deadline until the client sends (the
// first bytes of its next request are on the socket, left there for
// net/http to read) and reports whether it did; false for the deadline,
// the connection's end or an error. Over TLS it looks beneath TLS: the
// bytes are the next request's record.
func readable(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true // cannot look: net/http waits instead
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var (
		b    [1]byte
		n    int
		perr error
	)
	// A peek that finds nothing (EAGAIN) parks the goroutine in the
	// netpoller until the socket is readable or the deadline passes.
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, _, perr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
			if perr != syscall.EINTR {
				return perr != syscall.EAGAIN
			}
		}
	})
	return err == nil && perr == nil && n > 0
}
