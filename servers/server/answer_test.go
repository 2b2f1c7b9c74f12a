package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbench/pushbench/servers/answer"
	"github.com/pushbench/pushbench/servers/answersrv"
	"github.com/pushbench/pushbench/servers/server"
)

// runAnswers runs reqs concurrently over tr against base (WebSocket: all on
// one session) and returns what each client saw, in order.
func runAnswers(t *testing.T, base, tr string, reqs []answer.Request) []answerRun {
	t.Helper()
	runs := make([]answerRun, len(reqs))
	if tr == "ws" {
		s := dialSession(t, base)
		ids := make([]string, len(reqs))
		for i, r := range reqs {
			ids[i] = "r" + strconv.Itoa(i)
			s.send(ids[i], answerBody(r))
		}
		got := s.wait(time.Minute, ids...)
		for i, id := range ids {
			runs[i] = got[id]
		}
		return runs
	}
	c := &http.Client{}
	defer c.CloseIdleConnections()
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() {
			if tr == "sse" {
				runs[i] = sseAnswer(t, c, base, answerBody(r))
			} else {
				runs[i] = pollAnswer(t, c, base, answerBody(r))
			}
		})
	}
	wg.Wait()
	return runs
}

// TestAnswerEveryTransport: several answers at once on each transport (on
// a server of that transport alone), each with every chunk exactly once,
// in order, with the seed's text on its schedule, then done; the metrics
// count them.
func TestAnswerEveryTransport(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ts := startServer(t, server.Config{Transport: tr})
			var reqs []answer.Request
			for i := range 6 {
				reqs = append(reqs, answer.Request{Tokens: 20 + 7*i, Rate: 200, Think: time.Duration(10*i) * time.Millisecond, Seed: uint64(i)})
			}
			reqs = append(reqs, answer.Request{Tokens: 1, Rate: 1, Think: 0, Seed: 99}) // one chunk, no wait
			chunks := 0
			for i, run := range runAnswers(t, ts.base, tr, reqs) {
				checkAnswer(t, fmt.Sprintf("answer %d", i), run, reqs[i])
				chunks += reqs[i].Tokens
			}
			label := `transport="` + tr + `"`
			if v := scrape(t, ts.base, "pushbench_answer_chunks_total", label); v != float64(chunks) {
				t.Errorf("answer_chunks_total = %v, want %d", v, chunks)
			}
			waitFor(t, 5*time.Second, "every answer finished", func() bool {
				return scrape(t, ts.base, "pushbench_answers_finished_total", `outcome="done",`+label) == float64(len(reqs))
			})
			if v := scrape(t, ts.base, "pushbench_answers_in_flight", label); v != 0 {
				t.Errorf("answers_in_flight = %v after every answer is done", v)
			}
		})
	}
}

// TestAnswerDefaults: an empty request asks for the documented defaults.
func TestAnswerDefaults(t *testing.T) {
	ts := startServer(t, server.Config{Transport: "sse"})
	run := sseAnswer(t, &http.Client{}, ts.base, "")
	checkAnswer(t, "defaults", run, answer.Request{Tokens: answer.DefaultTokens, Rate: answer.DefaultRate, Think: answer.DefaultThink, Seed: answer.DefaultSeed})
}

// TestAnswerResume: an SSE client drops after a few chunks and resumes with
// Last-Event-ID on GET /answer/{id}: it gets the rest exactly once, with the
// same texts on the original schedule, then done; once the answer is no
// longer retained, the same GET is 404.
func TestAnswerResume(t *testing.T) {
	const retain = 500 * time.Millisecond
	ts := startServer(t, server.Config{Transport: "sse", Answer: answersrv.Config{Retain: retain}})
	req := answer.Request{Tokens: 30, Rate: 100, Think: 20 * time.Millisecond, Seed: 5}
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := postAnswer(ctx, &http.Client{}, ts.base, "", answerBody(req))
	if err != nil {
		t.Fatal(err)
	}
	first := answerRun{id: resp.Header.Get("X-Answer-Id")}
	readSSE(t, &first, resp.Body, func(r answerRun) bool { return len(r.chunks) == 4 })
	cancel()
	resp.Body.Close()
	if len(first.chunks) != 4 || first.done {
		t.Fatalf("first part: %d chunks, done %v", len(first.chunks), first.done)
	}
	checkChunks(t, "before the drop", first, req, 0)
	waitFor(t, 5*time.Second, "the dropped stream ended", func() bool {
		return scrape(t, ts.base, "pushbench_answers_finished_total", `outcome="departed",transport="sse"`) == 1
	})

	for _, viaQuery := range []bool{false, true} {
		q, lastID := "", "3"
		if viaQuery {
			q, lastID = "?lastEventId=3", ""
		}
		resp, err = getAnswer(context.Background(), &http.Client{}, ts.base, first.id, q, "text/event-stream", lastID)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("resume: %v %v", resp, err)
		}
		rest := answerRun{id: first.id}
		readSSE(t, &rest, resp.Body, nil)
		resp.Body.Close()
		if !rest.done || rest.total != req.Tokens || len(rest.chunks) != req.Tokens-4 {
			t.Fatalf("resume: %d chunks, done %v (%d), want %d then done", len(rest.chunks), rest.done, rest.total, req.Tokens-4)
		}
		checkChunks(t, "after the resume", rest, req, 4)
		if rest.chunks[0].TS != first.chunks[0].TS+req.Due(0, 4)-req.Due(0, 0) {
			t.Errorf("resumed chunk 4 ts %d is off the original schedule (chunk 0 at %d)", rest.chunks[0].TS, first.chunks[0].TS)
		}
	}
	for _, bad := range []string{"30", "x", "-1"} {
		resp, err = getAnswer(context.Background(), &http.Client{}, ts.base, first.id, "", "text/event-stream", bad)
		if err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("Last-Event-ID %q: %v %v, want 400", bad, resp, err)
		}
	}
	end := first.chunks[0].TS + int64(req.Duration()-req.Think) + int64(retain)
	time.Sleep(time.Until(time.Unix(0, end)) + 100*time.Millisecond)
	resp, err = getAnswer(context.Background(), &http.Client{}, ts.base, first.id, "", "text/event-stream", "3")
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("resume after retention: %v %v, want 404", resp, err)
	}
	resp.Body.Close()
}

// TestAnswerBadRequests: malformed and out-of-range requests get 400 with a
// JSON error and start nothing (WebSocket: an error message, and the
// session goes on); an Accept that fits no flavour is 406; flavours the
// server does not serve are 404.
func TestAnswerBadRequests(t *testing.T) {
	ts := startServer(t, server.Config{Transport: "all", Answer: answersrv.Config{Limits: answer.Limits{MaxTokens: 100}}})
	bodies := []string{`{"tokens":101}`, `{"tokens":0}`, `{"rate":0}`, `{"think":"-1s"}`, `{"think":"x"}`, `{"seed":-1}`,
		`{"nope":1}`, `{"tokens":5`, `[1]`, `{"tokens":5} x`}
	c := &http.Client{}
	for _, accept := range []string{"text/event-stream", "application/json"} {
		for _, body := range bodies {
			resp, err := postAnswer(context.Background(), c, ts.base, accept, body)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/json" ||
				!strings.HasPrefix(string(b), `{"error":"`) {
				t.Errorf("%s %s: %d %s %q, want 400 with a JSON error", accept, body, resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
		}
	}
	s := dialSession(t, ts.base)
	var ids []string
	for i, body := range bodies[:7] {
		ids = append(ids, "bad"+strconv.Itoa(i))
		s.send(ids[i], body)
	}
	s.send("good", `{"tokens":3,"rate":100,"think":"0s"}`)
	got := s.wait(10*time.Second, append(ids, "good")...)
	for _, id := range ids {
		if got[id].err == "" || len(got[id].chunks) != 0 {
			t.Errorf("ws %s: %+v, want an error message", id, got[id])
		}
	}
	checkAnswer(t, "ws after bad requests", got["good"], answer.Request{Tokens: 3, Rate: 100, Seed: answer.DefaultSeed})
	if v := scrape(t, ts.base, "pushbench_answers_started_total", `transport="sse"`) +
		scrape(t, ts.base, "pushbench_answers_started_total", `transport="poll"`); v != 0 {
		t.Errorf("%v answers started by bad requests", v)
	}

	for _, accept := range []string{"text/html", "application/xml, text/plain", "text/event-stream;q=0"} {
		resp, err := postAnswer(context.Background(), c, ts.base, accept, `{}`)
		if err != nil || resp.StatusCode != http.StatusNotAcceptable {
			t.Errorf("Accept %q: %v %v, want 406", accept, resp, err)
		}
	}
	for _, tc := range []struct{ transport, accept string }{
		{"sse", "application/json"}, {"poll", "text/event-stream"}, {"ws", ""}, {"ws", "application/json"},
	} {
		one := startServer(t, server.Config{Transport: tc.transport})
		resp, err := postAnswer(context.Background(), c, one.base, tc.accept, `{}`)
		if err != nil || resp.StatusCode != http.StatusNotFound {
			t.Errorf("-transport %s, POST with Accept %q: %v %v, want 404", tc.transport, tc.accept, resp, err)
		}
		if tc.transport != "ws" {
			_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(one.base, "http")+"/answer", nil)
			if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
				t.Errorf("-transport %s, WebSocket session: %v %v, want 404", tc.transport, resp, err)
			}
		}
	}
}

// TestAnswerBodyOnlyForAnswer: behind the server's front (as bin/server
// runs), POST /answer may carry its body, a body over 4 KiB is 413 and
// closes the connection, and every other path still refuses a body.
func TestAnswerBodyOnlyForAnswer(t *testing.T) {
	_, base := startLimited(t, server.Config{Transport: "all"}, server.Limits{})
	c := dial(t, base)
	body := `{"tokens":2,"rate":100,"think":"0s"}`
	resp, closed := exchange(t, c, "POST /answer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\n\r\n"+body)
	if resp.StatusCode != http.StatusOK || closed {
		t.Fatalf("POST /answer with a body: %d, closed %v; want 200 on a kept connection", resp.StatusCode, closed)
	}
	// The server does not read an oversized body: closing with it unread,
	// the kernel resets the connection instead of a FIN.
	big := `{"seed":1` + strings.Repeat(" ", answer.MaxBody) + `}`
	c = dial(t, base)
	resp, closed = exchange(t, c, "POST /answer HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(len(big))+"\r\n\r\n"+big)
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(make([]byte, 1)); err != nil && closedByPeer(err) {
		closed = true
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !closed {
		t.Errorf("POST /answer with %d bytes: %d, closed %v; want 413 and closed", len(big), resp.StatusCode, closed)
	}
	resp, closed = exchange(t, dial(t, base), "POST /answer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+
		fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(big), big))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !closed {
		t.Errorf("chunked POST /answer with %d bytes: %d, closed %v; want 413 and closed", len(big), resp.StatusCode, closed)
	}
	for _, path := range []string{"/sse", "/poll", "/answer/abc", "/metrics"} {
		resp, closed = exchange(t, dial(t, base), "POST "+path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
		if resp.StatusCode != http.StatusBadRequest || !closed {
			t.Errorf("POST %s with a body: %d, closed %v; want 400 and closed", path, resp.StatusCode, closed)
		}
	}
}

// TestAnswerLimits: past the server's bound, a new answer gets 503 with
// Retry-After on SSE and polling and an error message on WebSocket; past
// the per-session bound a WebSocket request gets an error message while
// another session is still served. Refusals are counted.
func TestAnswerLimits(t *testing.T) {
	long := `{"tokens":1000,"rate":10,"think":"0s"}`
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ts := startServer(t, server.Config{Transport: tr, Answer: answersrv.Config{MaxInFlight: 2, MaxPerConn: 2}})
			label := `reason="server_limit",transport="` + tr + `"`
			switch tr {
			case "ws":
				s := dialSession(t, ts.base)
				s.send("a", long)
				s.send("b", long)
				s.send("c", long)
				got := s.wait(5*time.Second, "c")
				if !strings.Contains(got["c"].err, "conn_limit") {
					t.Errorf("third answer on one session: %+v, want a conn_limit error", got["c"])
				}
				other := dialSession(t, ts.base)
				other.send("d", long)
				if got := other.wait(5*time.Second, "d"); !strings.Contains(got["d"].err, "server_limit") {
					t.Errorf("third answer in the server: %+v, want a server_limit error", got["d"])
				}
				if v := scrape(t, ts.base, "pushbench_answers_refused_total", `reason="conn_limit",transport="ws"`); v != 1 {
					t.Errorf("conn_limit refusals = %v, want 1", v)
				}
			default:
				accept := map[string]string{"sse": "text/event-stream", "poll": "application/json"}[tr]
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				for range 2 {
					resp, err := postAnswer(ctx, &http.Client{}, ts.base, accept, long)
					if err != nil || resp.StatusCode/100 != 2 {
						t.Fatalf("answer within the bound: %v %v", resp, err)
					}
					defer resp.Body.Close()
				}
				waitFor(t, 5*time.Second, "two in flight", func() bool { return ts.srv.Answers().InFlight() == 2 })
				resp, err := postAnswer(ctx, &http.Client{}, ts.base, accept, long)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), `"error"`) {
					t.Errorf("third answer: %d Retry-After %q %s, want 503 with Retry-After and a JSON error", resp.StatusCode, resp.Header.Get("Retry-After"), b)
				}
			}
			if v := scrape(t, ts.base, "pushbench_answers_refused_total", label); v != 1 {
				t.Errorf("server_limit refusals = %v, want 1", v)
			}
		})
	}
}

// TestAnswerDepartedClientCancels: a client that goes away in the middle
// of a long answer (SSE: closes the connection; WebSocket: closes the
// session; polling: stops polling for the idle limit) gets its answer
// stopped and its slot freed at once, counted by outcome, and the server
// goes back to its idle goroutine count.
func TestAnswerDepartedClientCancels(t *testing.T) {
	const idle = 300 * time.Millisecond
	long := answer.Request{Tokens: 1000, Rate: 20, Think: 0, Seed: 3}
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ts := startServer(t, server.Config{Transport: tr, Answer: answersrv.Config{Idle: idle}})
			before := runtime.NumGoroutine()
			const n = 20
			var leave []func()
			switch tr {
			case "ws":
				for range n / 4 {
					s := dialSession(t, ts.base)
					for j := range 4 {
						s.send(strconv.Itoa(j), answerBody(long))
					}
					leave = append(leave, func() { s.c.Close() })
				}
			default:
				accept := map[string]string{"sse": "text/event-stream", "poll": "application/json"}[tr]
				for range n {
					c := &http.Client{Transport: &http.Transport{}}
					resp, err := postAnswer(context.Background(), c, ts.base, accept, answerBody(long))
					if err != nil || resp.StatusCode/100 != 2 {
						t.Fatalf("POST: %v %v", resp, err)
					}
					if tr == "sse" {
						run := answerRun{id: resp.Header.Get("X-Answer-Id")}
						readSSE(t, &run, resp.Body, func(answerRun) bool { return true }) // the first chunk
					}
					leave = append(leave, func() { resp.Body.Close(); c.CloseIdleConnections() })
				}
			}
			waitFor(t, 5*time.Second, "every answer in flight", func() bool { return ts.srv.Answers().InFlight() == n })
			left := time.Now()
			for _, l := range leave {
				l()
			}
			waitFor(t, 10*time.Second, "every slot freed", func() bool { return ts.srv.Answers().InFlight() == 0 })
			took := time.Since(left)
			outcome := map[string]string{"sse": "departed", "ws": "departed", "poll": "idle"}[tr]
			if v := scrape(t, ts.base, "pushbench_answers_finished_total", `outcome="`+outcome+`",transport="`+tr+`"`); v != n {
				t.Errorf("%s answers = %v, want %d", outcome, v, n)
			}
			t.Logf("slots freed %v after the clients left", took)
			waitFor(t, 10*time.Second, "idle goroutine count", func() bool { return runtime.NumGoroutine() <= before })
		})
	}
}

// TestAnswerShutdown: at shutdown an SSE answer's stream ends, a WebSocket
// session gets 1001, and a held poll is answered; every slot is freed with
// outcome shutdown (polling: its answer keeps its slot until shutdown ends
// the janitor, so only the held poll is checked).
func TestAnswerShutdown(t *testing.T) {
	long := `{"tokens":1000,"rate":10,"think":"0s"}`
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ts := startServer(t, server.Config{Transport: tr})
			ended := make(chan string, 1)
			switch tr {
			case "sse":
				resp, err := postAnswer(context.Background(), &http.Client{}, ts.base, "", long)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				go func() {
					run := answerRun{id: resp.Header.Get("X-Answer-Id")}
					readSSE(t, &run, resp.Body, nil)
					ended <- fmt.Sprintf("done=%v err=%q", run.done, run.err)
				}()
			case "ws":
				s := dialSession(t, ts.base)
				s.send("a", long)
				go func() {
					err := <-s.readErr
					ended <- fmt.Sprint(websocket.IsCloseError(err, websocket.CloseGoingAway))
				}()
			case "poll":
				run := pollAnswer(t, &http.Client{}, ts.base, `{"tokens":1,"rate":1,"think":"0s"}`)
				if !run.done {
					t.Fatal("short polling answer not done")
				}
				resp, err := postAnswer(context.Background(), &http.Client{}, ts.base, "application/json", `{"tokens":2,"rate":0.1,"think":"0s"}`)
				if err != nil {
					t.Fatal(err)
				}
				id := resp.Header.Get("X-Answer-Id")
				resp.Body.Close()
				go func() {
					resp, err := getAnswer(context.Background(), &http.Client{}, ts.base, id, "?after=0&timeout=60s", "application/json", "")
					if err != nil {
						ended <- err.Error()
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					ended <- string(b)
				}()
			}
			waitFor(t, 5*time.Second, "answer in flight", func() bool { return ts.srv.Answers().InFlight() >= 1 })
			time.Sleep(50 * time.Millisecond) // let the poll be held
			go ts.srv.Shutdown(context.Background())
			want := map[string]string{"sse": `done=false err=""`, "ws": "true", "poll": `{"chunks":[],"done":false}` + "\n"}[tr]
			select {
			case got := <-ended:
				if got != want {
					t.Errorf("at shutdown: %s, want %s", got, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("not ended by shutdown")
			}
			if tr != "poll" {
				waitFor(t, 5*time.Second, "slot freed", func() bool { return ts.srv.Answers().InFlight() == 0 })
				if v := scrape(t, ts.base, "pushbench_answers_finished_total", `outcome="shutdown",transport="`+tr+`"`); v != 1 {
					t.Errorf("shutdown outcomes = %v, want 1", v)
				}
			}
		})
	}
}

// TestAnswerSlowClientDropped: a client that stops reading in the middle of
// a fast answer is dropped at the write deadline (SSE: its connection;
// WebSocket: its session), counted as outcome slow, and its slot is freed.
func TestAnswerSlowClientDropped(t *testing.T) {
	fast := `{"tokens":10000,"rate":10000,"think":"0s"}` // ~800 KB in a second
	for _, tr := range []string{"sse", "ws"} {
		t.Run(tr, func(t *testing.T) {
			srv, base := startLimited(t, server.Config{Transport: tr, WriteTimeout: time.Second},
				server.Limits{SndBuf: 4 << 10})
			addr := strings.TrimPrefix(base, "http://")
			if tr == "sse" {
				stalledConn(t, addr, "POST /answer HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(len(fast))+"\r\n\r\n"+fast)
			} else {
				// The handshake (gorilla refuses data sent before its
				// answer), then the request as one masked text frame (a
				// zero mask leaves the payload as it is).
				c := stalledConn(t, addr, strings.Replace(rawGet("/ws"), "/ws", "/answer", 1))
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				head := make([]byte, 0, 512)
				for !strings.Contains(string(head), "\r\n\r\n") {
					var b [1]byte
					if _, err := c.Read(b[:]); err != nil {
						t.Fatalf("handshake: %v after %q", err, head)
					}
					head = append(head, b[0])
				}
				msg := `{"req":"a",` + fast[1:]
				if _, err := c.Write(append([]byte{0x81, 0x80 | byte(len(msg)), 0, 0, 0, 0}, msg...)); err != nil {
					t.Fatal(err)
				}
			}
			defer func() {
				if t.Failed() {
					for _, name := range []string{"pushbench_answer_chunks_total", "pushbench_answers_in_flight", "pushbench_answer_bad_requests_total"} {
						t.Logf("%s %v", name, scrape(t, base, name, `transport="`+tr+`"`))
					}
				}
			}()
			waitFor(t, 10*time.Second, "the stalled client dropped", func() bool {
				return scrape(t, base, "pushbench_answers_finished_total", `outcome="slow",transport="`+tr+`"`) == 1
			})
			if n := srv.Answers().InFlight(); n != 0 {
				t.Errorf("%d answers in flight after the drop", n)
			}
		})
	}
}
