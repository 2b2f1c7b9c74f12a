package server

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestBackListener: a connection handed back wakes an Accept blocked in
// the TCP listener and is returned as it was put; new connections are
// still accepted after that (the wake-up's deadline is cleared); Close
// closes the connections handed back and not yet taken, and so does a
// put after Close.
func TestBackListener(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	l := newBackListener(ln, ln, context.Background())
	type accepted struct {
		c   net.Conn
		err error
	}
	accept := func() <-chan accepted {
		ch := make(chan accepted, 1)
		go func() {
			c, err := l.Accept()
			ch <- accepted{c, err}
		}()
		return ch
	}
	got := func(ch <-chan accepted) accepted {
		t.Helper()
		select {
		case a := <-ch:
			return a
		case <-time.After(5 * time.Second):
			t.Fatal("Accept did not return")
			return accepted{}
		}
	}

	ch := accept()
	time.Sleep(20 * time.Millisecond) // let it block in the TCP accept
	back, peer := net.Pipe()
	defer peer.Close()
	l.put(back)
	if a := got(ch); a.err != nil || a.c != back {
		t.Fatalf("Accept after put: %v %v, want the connection put", a.c, a.err)
	}

	ch = accept()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a := got(ch)
	if a.err != nil {
		t.Fatalf("Accept of a new connection after a put: %v", a.err)
	}
	if a.c.RemoteAddr().String() != d.LocalAddr().String() {
		t.Errorf("accepted %v, want the dialled %v", a.c.RemoteAddr(), d.LocalAddr())
	}
	a.c.Close()

	queued, queuedPeer := net.Pipe()
	defer queuedPeer.Close()
	l.put(queued)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := queued.Read(make([]byte, 1)); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("a connection handed back before Close: read %v, want it closed", err)
	}
	late, latePeer := net.Pipe()
	defer latePeer.Close()
	l.put(late)
	if _, err := late.Read(make([]byte, 1)); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("a connection handed back after Close: read %v, want it closed", err)
	}
	if a := got(accept()); !errors.Is(a.err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v %v, want net.ErrClosed", a.c, a.err)
	}
}
