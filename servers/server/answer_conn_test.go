package server_test

// SSE answers over HTTP/1.x take their connection over from net/http and,
// when the answer is done, hand a keep-alive connection back to it: these
// tests run the server as bin/server does (srv.HTTP) and look at the
// connection itself.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushbench/pushbench/servers/answer"
	"github.com/pushbench/pushbench/servers/server"
)

// postRequest is a raw POST /answer of body, with extra header lines.
func postRequest(proto, extra, body string) string {
	return "POST /answer " + proto + "\r\nHost: x\r\n" + extra + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// readAnswer reads one SSE answer response from br: the response (its body
// read), what the client saw, and the body's bytes (unframed).
func readAnswer(t *testing.T, br *bufio.Reader) (*http.Response, answerRun, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	run := answerRun{id: resp.Header.Get("X-Answer-Id"), status: resp.StatusCode}
	readSSE(t, &run, bytes.NewReader(body), nil)
	return resp, run, body
}

// closedSoon reports whether the server closes c within d, reading (and
// dropping) anything before that.
func closedSoon(c net.Conn, br *bufio.Reader, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, br)
	return err == nil || closedByPeer(err) // io.Copy reports EOF as nil
}

// TestAnswerKeepAlive: SSE answers in sequence on one keep-alive
// connection, over plaintext HTTP/1.1 and over TLS, with net/http's
// client: POSTs and a resume (GET with Last-Event-ID) each get their whole
// answer, the client dials once, and the server accepted one connection
// and holds it open (a connection handed back is not counted again).
func TestAnswerKeepAlive(t *testing.T) {
	for _, p := range []proto{{name: "h1"}, {name: "tls", tls: true}} {
		t.Run(p.name, func(t *testing.T) {
			ts := startOver(t, p, server.Config{Transport: "sse"})
			c := clientOf(ts.roots, false, p.tls, true)
			var dials atomic.Int64
			tr := c.Transport.(*http.Transport)
			tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}
			defer tr.CloseIdleConnections()
			var first answerRun
			for i := range 3 {
				req := answer.Request{Tokens: 6 + i, Rate: 500, Think: time.Duration(i) * time.Millisecond, Seed: uint64(i)}
				run := sseAnswer(t, c, ts.base, answerBody(req))
				checkAnswer(t, "answer "+strconv.Itoa(i), run, req)
				if i == 0 {
					first = run
				}
			}
			resp, err := getAnswer(context.Background(), c, ts.base, first.id, "", "text/event-stream", "2")
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("resume: %v %v", resp, err)
			}
			rest := answerRun{id: first.id}
			readSSE(t, &rest, resp.Body, nil)
			resp.Body.Close()
			if !rest.done || len(rest.chunks) != 3 {
				t.Errorf("resume: %d chunks, done %v; want 3 and done", len(rest.chunks), rest.done)
			}
			checkChunks(t, "resumed", rest, answer.Request{Tokens: 6, Rate: 500, Seed: 0}, 3)
			if n := dials.Load(); n != 1 {
				t.Errorf("the client dialled %d connections for 4 answers, want 1", n)
			}
			if n := gaugeValue(t, ts.srv.Metrics().Accepted); n != 1 {
				t.Errorf("connections_accepted = %v, want 1", n)
			}
			if v := gaugeValue(t, ts.srv.Metrics().Answers.Finished.WithLabelValues("sse", "done")); v != 4 {
				t.Errorf("answers done = %v, want 4", v)
			}
		})
	}
}

// sseHead is the head net/http wrote for an SSE answer (checked with curl
// against the handler it replaced): its headers sorted, then Date and
// Transfer-Encoding.
var sseHead = regexp.MustCompile(`^HTTP/1\.1 200 OK\r\nCache-Control: no-cache\r\nContent-Type: text/event-stream\r\n` +
	`X-Accel-Buffering: no\r\nX-Answer-Id: [0-9a-f]{16}\r\nDate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n` +
	`Transfer-Encoding: chunked\r\n\r\n` +
	// then each batch one chunk, the last with the done event, and the body's end
	`([0-9a-f]+\r\n(id: \d+\ndata: \{[^\n]*\}\n\n)+(event: done\ndata: \{[^\n]*\}\n\n)?\r\n)+0\r\n\r\n$`)

// TestAnswerWire: a taken-over answer's bytes are the ones net/http wrote
// (head, chunk framing, events), and the bytes metric counts the body
// without the framing.
func TestAnswerWire(t *testing.T) {
	srv, base := startLimited(t, server.Config{Transport: "sse"}, server.Limits{})
	c := dial(t, base)
	var raw bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &raw))
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := answer.Request{Tokens: 5, Rate: 100, Think: 5 * time.Millisecond, Seed: 4}
	if _, err := io.WriteString(c, postRequest("HTTP/1.1", "", answerBody(req))); err != nil {
		t.Fatal(err)
	}
	resp, run, body := readAnswer(t, br)
	checkAnswer(t, "answer", run, req)
	if resp.Close || closedSoon(c, br, 200*time.Millisecond) {
		t.Errorf("a keep-alive answer closed its connection (Connection: close %v)", resp.Close)
	}
	if !sseHead.Match(raw.Bytes()) {
		t.Errorf("response bytes %q are not net/http's", raw.Bytes())
	}
	if v := gaugeValue(t, srv.Metrics().Answers.Bytes.WithLabelValues("sse")); v != float64(len(body)) {
		t.Errorf("answer_bytes_written_total = %v, the body has %d", v, len(body))
	}
}

// TestAnswerKeepAliveTimeouts: a connection handed back after an answer
// keeps net/http's keep-alive timeouts: the client may send its next
// request after more than the header timeout (up to the idle timeout), a
// request begun must be whole within the header timeout, and a silent
// connection is closed at the idle timeout.
func TestAnswerKeepAliveTimeouts(t *testing.T) {
	const header, idle = 250 * time.Millisecond, 2 * time.Second
	srv, base := startLimited(t, server.Config{Transport: "sse"}, server.Limits{HeaderTimeout: header, IdleTimeout: idle})
	body := `{"tokens":2,"rate":1000,"think":"0s"}`
	c := dial(t, base)
	br := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for i := range 2 {
		if i == 1 {
			time.Sleep(3 * header)
		}
		if _, err := io.WriteString(c, postRequest("HTTP/1.1", "", body)); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if _, run, _ := readAnswer(t, br); !run.done {
			t.Fatalf("answer %d: not done: %+v", i, run)
		}
	}
	// Begun, never finished: closed at the header timeout, not the idle one.
	if _, err := io.WriteString(c, "POST /answer HTTP/1.1\r\n"); err != nil {
		t.Fatal(err)
	}
	begun := time.Now()
	if !closedSoon(c, br, idle/2) {
		t.Errorf("a half-sent request's connection is still open %v later (header timeout %v)", time.Since(begun), header)
	}
	// Silent: closed at the idle timeout.
	c = dial(t, base)
	br = bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, postRequest("HTTP/1.1", "", body)); err != nil {
		t.Fatal(err)
	}
	readAnswer(t, br)
	done := time.Now()
	if !closedSoon(c, br, 3*idle) {
		t.Fatalf("an idle connection is still open %v after its answer (idle timeout %v)", time.Since(done), idle)
	}
	if took := time.Since(done); took < idle-100*time.Millisecond {
		t.Errorf("an idle connection was closed %v after its answer, before the idle timeout %v", took, idle)
	}
	waitFor(t, 5*time.Second, "every connection closed", func() bool { return gaugeValue(t, srv.Metrics().Accepted) == 0 })
}

// TestAnswerClientLeaves: a client that closes its connection while its
// answer waits (in the think time, or between chunks) frees the slot at
// once, long before anything would be written to it, and the connection's
// slot with it.
func TestAnswerClientLeaves(t *testing.T) {
	srv, base := startLimited(t, server.Config{Transport: "sse"}, server.Limits{})
	for i, tc := range []struct {
		what, body string
		chunks     int // read before leaving
	}{
		{"in the think time", `{"tokens":5,"rate":10,"think":"1m"}`, 0},
		{"between chunks", `{"tokens":2,"rate":0.01,"think":"0s"}`, 1},
	} {
		c := dial(t, base)
		br := bufio.NewReader(c)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, postRequest("HTTP/1.1", "", tc.body)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %v %v", tc.what, resp, err)
		}
		if tc.chunks > 0 {
			run := answerRun{id: resp.Header.Get("X-Answer-Id")}
			readSSE(t, &run, resp.Body, func(r answerRun) bool { return len(r.chunks) == tc.chunks })
		}
		waitFor(t, 5*time.Second, "the answer in flight", func() bool { return srv.Answers().InFlight() == 1 })
		c.Close()
		waitFor(t, 5*time.Second, "the slot freed "+tc.what, func() bool { return srv.Answers().InFlight() == 0 })
		if v := gaugeValue(t, srv.Metrics().Answers.Finished.WithLabelValues("sse", "departed")); v != float64(i+1) {
			t.Errorf("%s: departed answers = %v, want %d", tc.what, v, i+1)
		}
		waitFor(t, 5*time.Second, "the connection's slot freed", func() bool { return gaugeValue(t, srv.Metrics().Accepted) == 0 })
	}
}

// TestAnswerShutdownEndsTakenOver: shutdown ends taken-over answers at
// once, one in its think time and one between chunks: each response ends
// whole (the chunked body's end, without event: done) and the connection
// closes; both count as outcome shutdown.
func TestAnswerShutdownEndsTakenOver(t *testing.T) {
	srv, base := startLimited(t, server.Config{Transport: "sse"}, server.Limits{})
	type client struct {
		c    net.Conn
		br   *bufio.Reader
		resp *http.Response
		run  answerRun
	}
	var clients []*client
	for _, body := range []string{`{"tokens":5,"rate":10,"think":"1m"}`, `{"tokens":2,"rate":0.01,"think":"0s"}`} {
		cl := &client{c: dial(t, base)}
		cl.br = bufio.NewReader(cl.c)
		_ = cl.c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(cl.c, postRequest("HTTP/1.1", "", body)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(cl.br, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%v %v", resp, err)
		}
		cl.resp, cl.run.id = resp, resp.Header.Get("X-Answer-Id")
		clients = append(clients, cl)
	}
	readSSE(t, &clients[1].run, clients[1].resp.Body, func(r answerRun) bool { return len(r.chunks) == 1 })
	waitFor(t, 5*time.Second, "both answers in flight", func() bool { return srv.Answers().InFlight() == 2 })
	go srv.Shutdown(context.Background())
	for i, cl := range clients {
		readSSE(t, &cl.run, cl.resp.Body, nil)
		if cl.run.err != "" || cl.run.done || len(cl.run.chunks) != i {
			t.Errorf("client %d at shutdown: %d chunks, done %v, err %q; want %d chunks and a clean end without done",
				i, len(cl.run.chunks), cl.run.done, cl.run.err, i)
		}
		if !closedSoon(cl.c, cl.br, 5*time.Second) {
			t.Errorf("client %d: the connection stays open after shutdown", i)
		}
	}
	waitFor(t, 5*time.Second, "the slots freed", func() bool { return srv.Answers().InFlight() == 0 })
	if v := gaugeValue(t, srv.Metrics().Answers.Finished.WithLabelValues("sse", "shutdown")); v != 2 {
		t.Errorf("shutdown outcomes = %v, want 2", v)
	}
}

// TestAnswerClosesAfter: the connection is closed after the answer, which
// is delivered whole, when the client asks for that (Connection: close,
// or HTTP/1.0, whose body ends with the connection), when it pipelined a
// request behind the POST (not served: the head says Connection: close),
// or when it sends bytes while its answer streams (read and dropped).
func TestAnswerClosesAfter(t *testing.T) {
	srv, base := startLimited(t, server.Config{Transport: "sse"}, server.Limits{})
	req := answer.Request{Tokens: 4, Rate: 50, Think: 50 * time.Millisecond, Seed: 8}
	body := answerBody(req)
	next := "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
	for i, tc := range []struct {
		what, request, during string
		proto                 string // of the response
		chunked, close        bool   // Transfer-Encoding: chunked; Connection: close (or HTTP/1.0)
	}{
		{"Connection: close", postRequest("HTTP/1.1", "Connection: close\r\n", body), "", "HTTP/1.1", true, true},
		{"HTTP/1.0", postRequest("HTTP/1.0", "", body), "", "HTTP/1.0", false, true},
		{"HTTP/1.0 keep-alive", postRequest("HTTP/1.0", "Connection: keep-alive\r\n", body), "", "HTTP/1.0", false, true},
		{"pipelined", postRequest("HTTP/1.1", "", body) + next, "", "HTTP/1.1", true, true},
		{"sent during the answer", postRequest("HTTP/1.1", "", body), next, "HTTP/1.1", true, false},
	} {
		c := dial(t, base)
		br := bufio.NewReader(c)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, tc.request); err != nil {
			t.Fatal(err)
		}
		if tc.during != "" {
			if _, err := br.Peek(1); err != nil { // the head is on its way
				t.Fatal(err)
			}
			if _, err := io.WriteString(c, tc.during); err != nil {
				t.Fatal(err)
			}
		}
		resp, run, _ := readAnswer(t, br)
		checkAnswer(t, tc.what, run, req)
		chunked := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"
		if resp.Proto != tc.proto || chunked != tc.chunked || resp.Close != tc.close {
			t.Errorf("%s: %s, chunked %v, close %v; want %s, %v, %v", tc.what, resp.Proto, chunked, resp.Close, tc.proto, tc.chunked, tc.close)
		}
		rest, err := io.ReadAll(br)
		if err != nil && !closedByPeer(err) {
			t.Errorf("%s: the connection is not closed after the answer: %v", tc.what, err)
		}
		if len(rest) > 0 {
			t.Errorf("%s: %q after the answer, want the connection closed", tc.what, rest)
		}
		if v := gaugeValue(t, srv.Metrics().Answers.Finished.WithLabelValues("sse", "done")); v != float64(i+1) {
			t.Errorf("%s: done answers = %v, want %d", tc.what, v, i+1)
		}
	}
	waitFor(t, 5*time.Second, "every connection closed", func() bool { return gaugeValue(t, srv.Metrics().Accepted) == 0 })
}

// TestAnswerProtocolViolation: a client that keeps sending while its
// answer streams, past what a pipelined request could be, is cut off.
func TestAnswerProtocolViolation(t *testing.T) {
	srv, base := startLimited(t, server.Config{Transport: "sse"}, server.Limits{})
	c := dial(t, base)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, postRequest("HTTP/1.1", "", `{"tokens":5,"rate":10,"think":"1m"}`)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%v %v", resp, err)
	}
	junk := strings.Repeat("x", 64<<10)
	if _, err := io.WriteString(c, junk); err != nil && !errors.Is(err, net.ErrClosed) && !closedByPeer(err) {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the answer ended", func() bool { return srv.Answers().InFlight() == 0 })
	if v := gaugeValue(t, srv.Metrics().Answers.Finished.WithLabelValues("sse", "error")); v != 1 {
		t.Errorf("error outcomes = %v, want 1", v)
	}
	if !closedSoon(c, br, 5*time.Second) {
		t.Error("the connection is still open")
	}
}
