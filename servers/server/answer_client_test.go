package server_test

// Answer clients for the tests: net/http with tmaxmax/go-sse's parser for
// SSE, a plain net/http loop for polling, gorilla for WebSocket sessions.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	gosse "github.com/tmaxmax/go-sse"

	"github.com/pushbench/pushbench/servers/answer"
)

// answerMsg is one message of an answer: a chunk, or (WebSocket) a done or
// error message.
type answerMsg struct {
	ID     string `json:"id"`
	I      int    `json:"i"`
	Text   string `json:"text"`
	TS     int64  `json:"ts"`
	Done   bool   `json:"done"`
	Chunks int    `json:"chunks"`
	Error  string `json:"error"`
	at     int64  // received, Unix ns
	keys   int    // number of keys in the JSON
}

// answerRun is what a client saw of one answer.
type answerRun struct {
	id     string
	status int
	chunks []answerMsg
	done   bool // the done event or message arrived
	total  int  // chunks, per the done event
	err    string
}

func parseAnswerMsg(t testing.TB, data []byte) answerMsg {
	t.Helper()
	var m answerMsg
	if err := json.Unmarshal(data, &m); err != nil {
		t.Errorf("bad answer message %q: %v", data, err)
	}
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(data, &keys)
	m.keys, m.at = len(keys), time.Now().UnixNano()
	return m
}

// checkAnswer checks a complete answer against its request: every chunk
// exactly once, in order, with the seed's text, on the schedule of chunk 0,
// never before its ts, and done with the chunk count.
func checkAnswer(t testing.TB, what string, run answerRun, req answer.Request) {
	t.Helper()
	if !run.done || run.total != req.Tokens {
		t.Errorf("%s: done=%v chunks=%d, want done with %d", what, run.done, run.total, req.Tokens)
	}
	if len(run.chunks) != req.Tokens {
		t.Errorf("%s: %d chunks, want %d", what, len(run.chunks), req.Tokens)
	}
	checkChunks(t, what, run, req, 0)
}

// checkChunks checks that run's chunks are chunks from, from+1, ... of req.
func checkChunks(t testing.TB, what string, run answerRun, req answer.Request, from int) {
	t.Helper()
	var ts0 int64
	for j, c := range run.chunks {
		k := from + j
		if c.I != k || c.ID != run.id || c.Text != answer.Text(req.Seed, k) || c.keys != 4 {
			t.Errorf("%s: message %d is %+v, want chunk %d of answer %q with text %q and 4 keys", what, j, c, k, run.id, answer.Text(req.Seed, k))
			return
		}
		if j == 0 {
			ts0 = c.TS - req.Due(0, k) + req.Due(0, 0)
		}
		if want := ts0 + req.Due(0, k) - req.Due(0, 0); c.TS != want {
			t.Errorf("%s: chunk %d ts %d, want %d (the schedule of chunk 0)", what, k, c.TS, want)
		}
		if c.at < c.TS {
			t.Errorf("%s: chunk %d arrived %v before its ts", what, k, time.Duration(c.TS-c.at))
		}
	}
}

func answerBody(r answer.Request) string {
	return fmt.Sprintf(`{"tokens":%d,"rate":%g,"think":%q,"seed":%d}`, r.Tokens, r.Rate, r.Think.String(), r.Seed)
}

// postAnswer sends POST /answer with body and Accept (none if "").
func postAnswer(ctx context.Context, c *http.Client, base, accept, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/answer", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return c.Do(req)
}

// readSSE reads an answer's events from an SSE body until done, the body
// ends, or stop returns true after a chunk.
func readSSE(t testing.TB, run *answerRun, body io.Reader, stop func(answerRun) bool) {
	t.Helper()
	for ev, err := range gosse.Read(body, &gosse.ReadConfig{MaxEventSize: 64 << 10}) {
		if err != nil {
			run.err = err.Error()
			return
		}
		switch ev.Type {
		case "":
			m := parseAnswerMsg(t, []byte(ev.Data))
			if ev.LastEventID != strconv.Itoa(m.I) {
				t.Errorf("event id %q for chunk %d", ev.LastEventID, m.I)
			}
			run.chunks = append(run.chunks, m)
			if stop != nil && stop(*run) {
				return
			}
		case "done":
			var d struct {
				ID     string `json:"id"`
				Chunks int    `json:"chunks"`
			}
			if err := json.Unmarshal([]byte(ev.Data), &d); err != nil || d.ID != run.id {
				t.Errorf("done event %q for answer %q: %v", ev.Data, run.id, err)
			}
			run.done, run.total = true, d.Chunks
		default:
			t.Errorf("unexpected event %q: %q", ev.Type, ev.Data)
		}
	}
}

// sseAnswer runs one answer over SSE on c.
func sseAnswer(t testing.TB, c *http.Client, base, body string) answerRun {
	t.Helper()
	resp, err := postAnswer(context.Background(), c, base, "text/event-stream", body)
	if err != nil {
		t.Errorf("POST /answer: %v", err)
		return answerRun{}
	}
	defer resp.Body.Close()
	run := answerRun{id: resp.Header.Get("X-Answer-Id"), status: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		run.err = string(b)
		return run
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	readSSE(t, &run, resp.Body, nil)
	return run
}

// getAnswer is GET /answer/{id}+query with Accept and Last-Event-ID (if not "").
func getAnswer(ctx context.Context, c *http.Client, base, id, query, accept, lastID string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/answer/"+id+query, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	return c.Do(req)
}

// pollAnswer runs one answer by long polling on c.
func pollAnswer(t testing.TB, c *http.Client, base, body string) answerRun {
	t.Helper()
	resp, err := postAnswer(context.Background(), c, base, "application/json", body)
	if err != nil {
		t.Errorf("POST /answer: %v", err)
		return answerRun{}
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	run := answerRun{status: resp.StatusCode}
	if resp.StatusCode != http.StatusAccepted {
		run.err = string(b)
		return run
	}
	var created struct{ ID string }
	if err := json.Unmarshal(b, &created); err != nil || created.ID == "" {
		t.Errorf("202 body %q: %v", b, err)
		return run
	}
	run.id = created.ID
	after := ""
	for polls := 0; !run.done; polls++ {
		if polls > 10_000 {
			t.Errorf("answer %s not done after %d polls", run.id, polls)
			return run
		}
		q := "?timeout=10s"
		if after != "" {
			q += "&after=" + after
		}
		resp, err := getAnswer(context.Background(), c, base, run.id, q, "application/json", "")
		if err != nil {
			t.Errorf("poll: %v", err)
			return run
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("poll %s%s: %d %s", run.id, q, resp.StatusCode, b)
			return run
		}
		var page struct {
			Chunks []json.RawMessage `json:"chunks"`
			Done   bool              `json:"done"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			t.Errorf("poll body %q: %v", b, err)
			return run
		}
		for _, raw := range page.Chunks {
			m := parseAnswerMsg(t, raw)
			run.chunks = append(run.chunks, m)
			after = strconv.Itoa(m.I)
		}
		if page.Done {
			run.done, run.total = true, len(run.chunks)
		}
	}
	return run
}

// wsSession is a gorilla client of GET /answer: requests go out as
// messages, the reader sorts the replies by answer id.
type wsSession struct {
	t    testing.TB
	c    *websocket.Conn
	mu   sync.Mutex
	runs map[string]*answerRun
	// finished gets the id of every answer that ends (done or error).
	finished chan string
	readErr  chan error
}

func dialSession(t testing.TB, base string) *wsSession {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/answer", nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial /answer: %v (status %d)", err, status)
	}
	s := &wsSession{t: t, c: c, runs: map[string]*answerRun{}, finished: make(chan string, 10_000), readErr: make(chan error, 1)}
	go s.read()
	t.Cleanup(func() { c.Close() })
	return s
}

func (s *wsSession) read() {
	for {
		_, data, err := s.c.ReadMessage()
		if err != nil {
			s.readErr <- err
			return
		}
		m := parseAnswerMsg(s.t, data)
		s.mu.Lock()
		run := s.runs[m.ID]
		if run == nil {
			run = &answerRun{id: m.ID}
			s.runs[m.ID] = run
		}
		switch {
		case m.Error != "":
			if m.keys != 2 {
				s.t.Errorf("error message %s has %d keys, want 2", data, m.keys)
			}
			run.err = m.Error
			s.finished <- m.ID
		case m.Done:
			if m.keys != 3 {
				s.t.Errorf("done message %s has %d keys, want 3", data, m.keys)
			}
			run.done, run.total = true, m.Chunks
			s.finished <- m.ID
		default:
			run.chunks = append(run.chunks, m)
		}
		s.mu.Unlock()
	}
}

// send asks for an answer tagged req; body is the request's JSON object.
func (s *wsSession) send(req, body string) {
	s.t.Helper()
	msg := `{"req":` + strconv.Quote(req)
	if b := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(body), "{"), "}")); b != "" {
		msg += "," + b
	}
	if err := s.c.WriteMessage(websocket.TextMessage, []byte(msg+"}")); err != nil {
		s.t.Fatalf("send %s: %v", msg, err)
	}
}

// wait returns the answers of ids once each has ended.
func (s *wsSession) wait(timeout time.Duration, ids ...string) map[string]answerRun {
	s.t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	deadline := time.After(timeout)
	for len(want) > 0 {
		select {
		case id := <-s.finished:
			delete(want, id)
		case err := <-s.readErr:
			s.t.Fatalf("session ended: %v (waiting for %v)", err, want)
		case <-deadline:
			s.t.Fatalf("answers %v not done within %v", want, timeout)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]answerRun{}
	for _, id := range ids {
		out[id] = *s.runs[id]
	}
	return out
}
