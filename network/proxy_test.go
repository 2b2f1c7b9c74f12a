package network

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// connDeadline bounds every socket operation of these tests.
const connDeadline = 30 * time.Second

// echoServer listens on 127.0.0.1 and writes back whatever each connection
// sends, until the test ends; it returns its address.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(connDeadline))
				_, _ = io.Copy(c, c) // the connection's only writer
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// shaped starts a proxy of the profile to upstream until the test ends.
func shaped(t *testing.T, spec, upstream string) *Proxy {
	t.Helper()
	prof, err := Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Listen("127.0.0.1:0", upstream, prof)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(connDeadline)); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestToxics: a profile gets only the toxics it needs, latency before
// bandwidth, with the profile's figures in toxiproxy's units.
func TestToxics(t *testing.T) {
	for spec, want := range map[string][]string{
		"loopback":            nil,
		"lan":                 {"latency_downstream 1 0"},
		"wan":                 {"latency_upstream 30 5", "latency_downstream 30 5"},
		"mobile":              {"latency_upstream 75 30", "latency_downstream 75 30", "bandwidth_upstream 125", "bandwidth_downstream 250"},
		"down=5mbit":          {"bandwidth_downstream 625"},
		"rtt=81ms,up=800kbit": {"latency_upstream 40 0", "latency_downstream 41 0", "bandwidth_upstream 100"},
	} {
		prof, err := Parse(spec)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, tx := range prof.toxics() {
			s := tx.Type + "_" + tx.Stream
			switch tx.Type {
			case "latency":
				s += fmt.Sprint(" ", tx.Attributes["latency"], " ", tx.Attributes["jitter"])
			case "bandwidth":
				s += fmt.Sprint(" ", tx.Attributes["rate"])
			}
			got = append(got, s)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: toxics %q, want %q", spec, got, want)
		}
	}
}

// attempts is how many times a timing check may be measured before it
// fails. The machine is shared: a measurement that other work delayed is
// taken again, while a shaping fault (a delay or limit left out or applied
// twice) is wrong every time. What the proxy must never do (deliver sooner
// than its delay, or faster than its limit) fails at once.
const attempts = 3

// TestDelay: a round trip through the proxy takes the profile's RTT, its
// median within 10% or 2 ms (whichever is larger), and never less than
// the RTT minus the jitter of both directions. The profiles run at once:
// the test mostly waits.
func TestDelay(t *testing.T) {
	echo := echoServer(t)
	for _, spec := range []string{"lan", "wan", "rtt=40ms", "rtt=150ms,down=2mbit,up=1mbit"} {
		t.Run(spec, func(t *testing.T) {
			t.Parallel()
			p := shaped(t, spec, echo)
			prof := p.Profile()
			tol := max(prof.RTT/10, 2*time.Millisecond)
			c := dial(t, p.Addr())
			for try := 1; ; try++ {
				const trips = 25
				msg := []byte("ping 0123456789 0123456789 0123456789\n")
				buf := make([]byte, len(msg))
				rtts := make([]time.Duration, 0, trips)
				for range trips {
					start := time.Now()
					if _, err := c.Write(msg); err != nil {
						t.Fatal(err)
					}
					if _, err := io.ReadFull(c, buf); err != nil {
						t.Fatal(err)
					}
					rtts = append(rtts, time.Since(start))
					if !bytes.Equal(buf, msg) {
						t.Fatalf("echo %q, sent %q", buf, msg)
					}
				}
				slices.Sort(rtts)
				median := rtts[trips/2]
				t.Logf("%s: round trips min %v median %v max %v (tolerance ±%v)", prof, rtts[0], median, rtts[trips-1], tol)
				if floor := prof.RTT - 2*prof.Jitter; rtts[0] < floor {
					t.Fatalf("fastest round trip %v, below the RTT minus both jitters %v", rtts[0], floor)
				}
				d := median - prof.RTT
				if d <= tol && d >= -tol {
					return
				}
				if try == attempts {
					t.Fatalf("median round trip %v, want %v ± %v (%d measurements)", median, prof.RTT, tol, attempts)
				}
			}
		})
	}
}

// TestBandwidth: a transfer through a limited direction takes about its
// size over the rate; it is never faster than the limit (toxiproxy's sleep
// is per chunk, so a small allowance), nor far slower. The other direction
// is unlimited, so the echo's time is the limited direction's.
func TestBandwidth(t *testing.T) {
	echo := echoServer(t)
	for _, spec := range []string{"down=400kbit", "up=400kbit"} {
		t.Run(spec, func(t *testing.T) {
			t.Parallel()
			p := shaped(t, spec, echo)
			prof := p.Profile()
			rate := float64(max(prof.Down, prof.Up)) / 8 // bytes/s
			size := int(rate / 2)                        // half a second at the limit
			c := dial(t, p.Addr())
			data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
			for try := 1; ; try++ {
				start := time.Now()
				var werr error
				var wg sync.WaitGroup
				wg.Go(func() { _, werr = c.Write(data) })
				got := make([]byte, len(data))
				_, rerr := io.ReadFull(c, got)
				elapsed := time.Since(start)
				wg.Wait()
				if err := errors.Join(werr, rerr); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Fatal("echoed bytes differ from those sent")
				}
				measured := float64(len(data)) / elapsed.Seconds()
				t.Logf("%s: %d bytes in %v: %.0f B/s, limit %.0f B/s", prof, len(data), elapsed, measured, rate)
				if measured > 1.1*rate {
					t.Fatalf("%.0f B/s through a %.0f B/s limit: more than 10%% over it", measured, rate)
				}
				if measured >= 0.7*rate {
					return
				}
				if try == attempts {
					t.Fatalf("%.0f B/s through a %.0f B/s limit: more than 30%% under it (%d measurements)", measured, rate, attempts)
				}
			}
		})
	}
}

// TestClose: after Close the proxy refuses new connections and ends the
// ones it carried, and Close may be called again.
func TestClose(t *testing.T) {
	echo := echoServer(t)
	p := shaped(t, "rtt=2ms", echo)
	c := dial(t, p.Addr())
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	p.Close()
	p.Close()
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes from a connection of a closed proxy", n)
	}
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		c2.Close()
		t.Error("a closed proxy accepted a connection")
	}
}

func TestListenChecks(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "localhost", "example.com:80"} {
		if p, err := Listen(addr, "127.0.0.1:1", Profile{}); err == nil {
			p.Close()
			t.Errorf("Listen(%q) accepted a non-loopback address", addr)
		}
	}
}
