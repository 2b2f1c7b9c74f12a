package server_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/pushbench/pushbench/servers/server"
)

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startLimited serves cfg on 127.0.0.1 behind srv.HTTP with lim, as
// bin/server does.
func startLimited(t *testing.T, cfg server.Config, lim server.Limits) (*server.Server, string) {
	t.Helper()
	cfg.Feed.Seed, cfg.Feed.Rate = testSeed, 200
	srv, stopRun := runServer(t, cfg)
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	hs, l := srv.HTTP(ln, lim)
	serveDone := make(chan error, 1)
	go func() { serveDone <- hs.Serve(l) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := hs.Shutdown(sctx); err != nil {
			t.Errorf("http Shutdown: %v", err)
		}
		if err := <-serveDone; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		stopRun()
	})
	return srv, "http://" + ln.Addr().String()
}

func gaugeValue(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Gauge != nil {
		return m.GetGauge().GetValue()
	}
	return m.GetCounter().GetValue()
}

// exchange sends request on c and reads one response; closed reports
// whether the server closed the connection after it.
func exchange(t *testing.T, c net.Conn, request string) (resp *http.Response, closed bool) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%q: %v", request, err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatalf("%q: body: %v", request, err)
	}
	resp.Body.Close()
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = br.ReadByte()
	return resp, err == io.EOF
}

// closedByPeer tells a connection the server closed from a read that
// failed for another reason (such as the test's own deadline).
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

func dial(t *testing.T, base string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestConnectionBoundAndReserve: idle keep-alive connections, which no
// admission counts, fill the connection bound. A new client then gets 503
// with Retry-After and a closed connection (counted once, by transport),
// /healthz and /metrics are still served from the reserve, a connection
// past the reserve is closed unanswered, a silent reserve connection is
// closed at its deadline, and once the idle connections leave, every slot
// is back (counted down exactly once, whoever closed the connection).
func TestConnectionBoundAndReserve(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			const bound = 3
			var logs lockedBuffer
			srv, base := startLimited(t, server.Config{Transport: tr, Logger: slog.New(slog.NewTextHandler(&logs, nil))},
				server.Limits{Conns: bound, Reserve: 1})
			m := srv.Metrics()
			idle := make([]net.Conn, bound)
			for i := range idle {
				idle[i] = dial(t, base)
				if resp, closed := exchange(t, idle[i], "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 || closed {
					t.Fatalf("keep-alive /healthz: %d, closed %v", resp.StatusCode, closed)
				}
			}
			if got := gaugeValue(t, m.Accepted); got != bound {
				t.Fatalf("accepted connections %v, want %d", got, bound)
			}

			resp, closed := exchange(t, dial(t, base), rawGet("/"+tr))
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !closed {
				t.Fatalf("client past the bound: %d, Retry-After %q, closed %v; want 503, 1, closed",
					resp.StatusCode, resp.Header.Get("Retry-After"), closed)
			}
			if got := gaugeValue(t, m.Refused.WithLabelValues(tr, "conn_limit", "h1")); got != 1 {
				t.Fatalf("refused{%s,conn_limit} = %v, want 1", tr, got)
			}
			if !strings.Contains(logs.String(), "conns="+strconv.Itoa(bound+1)) {
				t.Errorf("the warning does not report the open connections:\n%s", logs.String())
			}
			for _, path := range []string{"/healthz", "/metrics"} {
				c := dial(t, base)
				if resp, closed := exchange(t, c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 || !closed {
					t.Fatalf("%s from the reserve: %d, closed %v; want 200 and closed", path, resp.StatusCode, closed)
				}
				c.Close()
			}

			silent := dial(t, base) // takes the reserve and says nothing
			waitFor(t, 5*time.Second, "the silent connection accepted", func() bool { return gaugeValue(t, m.Accepted) == bound+1 })
			past := dial(t, base)
			_ = past.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := past.Read(make([]byte, 1)); !closedByPeer(err) {
				t.Fatalf("connection past the reserve: read %d bytes, %v; want it closed", n, err)
			}
			if got := gaugeValue(t, m.Refused.WithLabelValues("any", "reserve_full", "any")); got != 1 {
				t.Fatalf("refused{any,reserve_full} = %v, want 1", got)
			}
			_ = silent.SetReadDeadline(time.Now().Add(server.ReserveTimeout + 5*time.Second))
			if n, err := silent.Read(make([]byte, 1)); !closedByPeer(err) {
				t.Fatalf("silent reserve connection: read %d bytes, %v; want it closed at its deadline", n, err)
			}

			for _, c := range idle {
				c.Close()
			}
			waitFor(t, 5*time.Second, "every slot back", func() bool { return gaugeValue(t, m.Accepted) == 0 })
			if tr == "poll" {
				return // a poll's slot is the keep-alive connection's, counted above
			}
			// Streams taken over from net/http give their slot back when
			// they end, once.
			var subs []*sub
			for range bound {
				s := subscribe(t, base, tr, subOpts{})
				if s.status != 0 && s.status != 200 {
					t.Fatalf("stream after the attack: status %d", s.status)
				}
				s.next(t, 5*time.Second)
				subs = append(subs, s)
			}
			for _, s := range subs {
				s.close()
			}
			waitFor(t, 5*time.Second, "stream slots back", func() bool { return gaugeValue(t, m.Accepted) == 0 })
		})
	}
}
