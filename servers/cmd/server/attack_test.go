package main

// Attacks on the real binary from outside, over raw TCP on 127.0.0.1: each
// test reproduces in small a way of exhausting the server and then checks
// that new clients, /healthz and /metrics are still served.

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serverBin is the server binary built once by TestMain.
var serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pushbench-server-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serverBin = filepath.Join(dir, "server")
	if out, err := exec.Command("go", "build", "-o", serverBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type proc struct {
	cmd  *exec.Cmd
	addr string
	log  string // file the server writes its stderr to
}

// logText is what the server has logged so far. The server writes to the
// file itself, so it can be read at any time without a copying goroutine
// or a lock.
func (p *proc) logText() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

// startBinary runs the server binary on a free port of 127.0.0.1 and waits
// until /healthz answers. openFiles > 0 runs it under that open-files limit
// (soft and hard). The process is stopped with SIGTERM when the test ends.
func startBinary(t *testing.T, openFiles int, args ...string) *proc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args = append([]string{"-addr", addr}, args...)
	var cmd *exec.Cmd
	if openFiles > 0 {
		cmd = exec.Command("/bin/sh", append([]string{"-c", `ulimit -n ` + strconv.Itoa(openFiles) + ` && exec "$0" "$@"`, serverBin}, args...)...)
	} else {
		cmd = exec.Command(serverBin, args...)
	}
	p := &proc{cmd: cmd, addr: addr, log: filepath.Join(t.TempDir(), "server.log")}
	logFile, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	err = cmd.Start()
	logFile.Close() // the child holds its own descriptor
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("server did not exit on SIGTERM")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", p.logText())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _, err := get(addr, "/healthz", 2*time.Second); err == nil && code == 200 {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not healthy; log:\n%s", p.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawRequest sends request on a new connection and reads one response under
// timeout; closed reports whether the server then closed the connection.
func rawRequest(addr, request string, timeout time.Duration) (resp *http.Response, body string, closed bool, err error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, "", false, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, request); err != nil {
		return nil, "", false, err
	}
	br := bufio.NewReader(c)
	method, _, _ := strings.Cut(request, " ")
	resp, err = http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return nil, "", false, fmt.Errorf("reading the response: %w", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, "", false, fmt.Errorf("reading the body: %w", err)
	}
	_, err = br.ReadByte()
	return resp, string(b), err == io.EOF, nil
}

// get asks path on a new connection with a bound on the whole exchange.
func get(addr, path string, timeout time.Duration) (int, string, error) {
	resp, body, _, err := rawRequest(addr, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout)
	if err != nil {
		return 0, "", err
	}
	return resp.StatusCode, body, nil
}

// checkServing: a new client gets /healthz, /metrics and a tick promptly.
func checkServing(t *testing.T, addr string) {
	t.Helper()
	for _, path := range []string{"/healthz", "/metrics"} {
		if code, _, err := get(addr, path, 3*time.Second); err != nil || code != 200 {
			t.Fatalf("%s after the attack: %d %v", path, code, err)
		}
	}
	if code, body, err := get(addr, "/poll?timeout=5s", 3*time.Second); err != nil || code != 200 || !strings.Contains(body, `"seq":`) {
		t.Fatalf("poll after the attack: %d %.200q %v", code, body, err)
	}
}

// TestBodyNeverSentIsRefused: a request that declares a body and never
// sends it gets 400 and a closed connection at once, on every path, instead
// of holding the connection forever.
func TestBodyNeverSentIsRefused(t *testing.T) {
	p := startBinary(t, 0, "-transport", "all", "-log", "warn")
	for _, path := range []string{"/healthz", "/metrics", "/poll?cursor=0", "/sse", "/"} {
		for _, hdr := range []string{"Content-Length: 1", "Transfer-Encoding: chunked"} {
			for _, method := range []string{"GET", "HEAD", "POST"} {
				req := method + " " + path + " HTTP/1.1\r\nHost: x\r\n" + hdr + "\r\n\r\n"
				resp, _, closed, err := rawRequest(p.addr, req, 3*time.Second)
				if err != nil {
					t.Fatalf("%s %s with %s and no body: %v", method, path, hdr, err)
				}
				if resp.StatusCode != http.StatusBadRequest || !closed {
					t.Fatalf("%s %s with %s and no body: %d, closed %v; want 400 and closed", method, path, hdr, resp.StatusCode, closed)
				}
			}
		}
	}
	checkServing(t, p.addr)
}

// TestLongPollOutlivesReadBound: a held poll longer than the request read
// bound (and than the write timeout) is held for its whole timeout and
// answered, not canceled when the read bound passes.
func TestLongPollOutlivesReadBound(t *testing.T) {
	p := startBinary(t, 0, "-transport", "poll", "-log", "warn", "-header-timeout", "1s", "-write-timeout", "1s")
	const hold = 3 * time.Second
	t0 := time.Now()
	// A cursor far ahead: nothing can answer the poll before its timeout.
	code, body, err := get(p.addr, "/poll?cursor=1000000000&timeout="+hold.String(), hold+5*time.Second)
	took := time.Since(t0)
	if err != nil || code != 200 || body != `{"cursor":1000000000,"ticks":[]}`+"\n" {
		t.Fatalf("held poll: %d %q %v", code, body, err)
	}
	if took < hold {
		t.Fatalf("held poll answered after %v, before its %v timeout", took, hold)
	}
	checkServing(t, p.addr)
}

// scrape returns the value of one series of /metrics (0 if absent).
func scrape(t *testing.T, addr, series string) float64 {
	t.Helper()
	code, body, err := get(addr, "/metrics", 3*time.Second)
	for deadline := time.Now().Add(10 * time.Second); err != nil && time.Now().Before(deadline); { // a full reserve: try again
		time.Sleep(100 * time.Millisecond)
		code, body, err = get(addr, "/metrics", 3*time.Second)
	}
	if err != nil || code != 200 {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// TestDescriptorExhaustion: under a small open-files limit, idle keep-alive
// connections and half-sent requests take more connections than the server
// has descriptors. New clients must then get 503 with Retry-After at once
// (counted once each), /healthz and /metrics must answer, and once the
// attackers leave, new clients are served.
func TestDescriptorExhaustion(t *testing.T) {
	const openFiles = 256
	p := startBinary(t, openFiles, "-transport", "all", "-log", "warn")
	var attack []net.Conn
	defer func() {
		for _, c := range attack {
			c.Close()
		}
	}()
	for i := range openFiles + 64 {
		c, err := net.DialTimeout("tcp", p.addr, 3*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		attack = append(attack, c)
		if i%2 == 0 { // an idle keep-alive connection, after one answer
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err == nil {
				if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
					resp.Body.Close()
				}
			}
		} else { // a request whose head never ends
			_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
		}
	}
	// The attackers past the bound sit in the reserve too, until its
	// deadline closes them; meanwhile a new connection meets a full reserve
	// and is closed unanswered. A probe then tries again.
	probe := func(request string) (*http.Response, bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, _, closed, err := rawRequest(p.addr, request, 3*time.Second)
			if err == nil {
				return resp, closed
			}
			if time.Now().After(deadline) {
				t.Fatalf("%q during the attack: %v", request, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		if resp, _ := probe("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("%s during the attack: %d", path, resp.StatusCode)
		}
	}
	before := scrape(t, p.addr, `pushbench_connections_refused_total{protocol="h1",reason="conn_limit",transport="sse"}`)
	const newClients = 5
	for i := range newClients {
		resp, closed := probe("GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !closed {
			t.Fatalf("new client %d during the attack: %d, Retry-After %q, closed %v; want 503, Retry-After and closed",
				i, resp.StatusCode, resp.Header.Get("Retry-After"), closed)
		}
	}
	after := scrape(t, p.addr, `pushbench_connections_refused_total{protocol="h1",reason="conn_limit",transport="sse"}`)
	if after-before != newClients {
		t.Fatalf("refused counter grew by %v for %d refused clients", after-before, newClients)
	}
	for _, c := range attack {
		c.Close()
	}
	attack = nil
	deadline := time.Now().Add(5 * time.Second)
	for scrape(t, p.addr, "pushbench_connections_accepted") > 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	checkServing(t, p.addr)
}

// sendQueue is the kernel send queue (tx_queue of /proc/net/tcp) of the
// server's end of the connection from local to server.
func sendQueue(t *testing.T, server, local string) (int, bool) {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	want := procAddr(t, server) + " " + procAddr(t, local)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 || f[1]+" "+f[2] != want {
			continue
		}
		tx, _, _ := strings.Cut(f[4], ":")
		n, err := strconv.ParseUint(tx, 16, 32)
		if err != nil {
			t.Fatalf("tx_queue %q: %v", f[4], err)
		}
		return int(n), true
	}
	return 0, false
}

// procAddr writes an IPv4 host:port as /proc/net/tcp does: the address as a
// little-endian hex word, then the port in hex.
func procAddr(t *testing.T, hostport string) string {
	ap, err := net.ResolveTCPAddr("tcp4", hostport)
	if err != nil {
		t.Fatal(err)
	}
	ip := ap.IP.To4()
	return strings.ToUpper(hex.EncodeToString([]byte{ip[3], ip[2], ip[1], ip[0]})) + fmt.Sprintf(":%04X", ap.Port)
}

// TestStalledClientSendQueueBounded: a client that asks for a fast stream
// and never reads holds at most 256 KiB of the server's kernel send queue.
func TestStalledClientSendQueueBounded(t *testing.T) {
	const bound = 256 << 10
	p := startBinary(t, 0, "-transport", "all", "-log", "warn", "-rate", "20000", "-write-timeout", "1m")
	for _, tc := range []struct{ name, request string }{
		{"sse", "GET /sse HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"ws", "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tc.request); err != nil {
				t.Fatal(err)
			}
			// The queue grows while the client's receive window fills, then
			// stops at the server's send buffer: wait until it has not
			// changed for a second (the feed keeps publishing meanwhile).
			var last, peak, still int
			for deadline := time.Now().Add(30 * time.Second); still < 20; time.Sleep(50 * time.Millisecond) {
				q, ok := sendQueue(t, p.addr, c.LocalAddr().String())
				if !ok {
					t.Fatal("server side of the connection not in /proc/net/tcp")
				}
				peak = max(peak, q)
				if peak > bound {
					t.Fatalf("server send queue of a stalled client reached %d bytes, over %d", peak, bound)
				}
				if q > 0 && q == last {
					still++
				} else {
					still = 0
				}
				last = q
				if time.Now().After(deadline) {
					t.Fatalf("send queue never settled: %d bytes", q)
				}
			}
			t.Logf("server send queue of a stalled %s client: %d bytes", tc.name, peak)
		})
	}
	checkServing(t, p.addr)
}
