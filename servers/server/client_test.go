package server_test

// Conformance clients for the tests: independent implementations we did not
// write (tmaxmax/go-sse, coder/websocket) plus a plain poll loop, behind one
// small interface so that behaviour shared by the three transports is tested
// by one table.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	cws "github.com/coder/websocket"
	gosse "github.com/tmaxmax/go-sse"

	"github.com/pushbench/pushbench/servers/feed"
)

var transports = []string{"sse", "ws", "poll"}

// msg is one thing a client received: a tick (raw JSON kept) or a gap.
type msg struct {
	raw  string
	tick struct {
		Seq   uint64  `json:"seq"`
		Sym   string  `json:"sym"`
		Price float64 `json:"price"`
		TS    int64   `json:"ts"`
	}
	gap *feed.Gap
}

// sub is a subscription over one transport. Messages arrive on ch; the
// reading goroutine ends when ctx is canceled or the stream ends (err).
type sub struct {
	ch     chan msg
	done   chan struct{}
	err    error
	cancel context.CancelFunc
	status int
	// closeCode is the WebSocket close code seen, if any.
	closeCode int
}

type subOpts struct {
	resume   *uint64 // Last-Event-ID / since / cursor
	symbols  string
	viaQuery bool // SSE: lastEventId query instead of the header
	// client asks for SSE and polls, wsClient makes WebSocket handshakes;
	// nil: httpClient().
	client, wsClient *http.Client
}

// wsUpgrade are the headers that make a GET a WebSocket handshake (the key
// is RFC 6455's sample), for tests that build requests by hand.
var wsUpgrade = [][2]string{
	{"Upgrade", "websocket"},
	{"Connection", "Upgrade"},
	{"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
	{"Sec-WebSocket-Version", "13"},
}

// newGet is a GET of base+path; on a /ws path it carries wsUpgrade, so that
// the server treats it as a handshake.
func newGet(ctx context.Context, base, path string) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if strings.HasPrefix(path, "/ws") {
		for _, h := range wsUpgrade {
			req.Header.Set(h[0], h[1])
		}
	}
	return req
}

// rawGet is newGet as raw HTTP/1.1 bytes, for tests that write to a socket.
func rawGet(path string) string {
	var b strings.Builder
	b.WriteString("GET " + path + " HTTP/1.1\r\nHost: x\r\n")
	if strings.HasPrefix(path, "/ws") {
		for _, h := range wsUpgrade {
			b.WriteString(h[0] + ": " + h[1] + "\r\n")
		}
	}
	b.WriteString("\r\n")
	return b.String()
}

// httpClient opens a fresh connection per request, so that a test that
// counts goroutines sees no idle keep-alive connections.
func httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

func parseTick(t testing.TB, raw string) msg {
	t.Helper()
	m := msg{raw: raw}
	if strings.HasPrefix(raw, `{"gap":`) {
		var g struct{ Gap feed.Gap }
		if err := json.Unmarshal([]byte(raw), &g); err != nil {
			t.Errorf("bad gap %q: %v", raw, err)
		}
		m.gap = &g.Gap
		return m
	}
	if err := json.Unmarshal([]byte(raw), &m.tick); err != nil {
		t.Errorf("bad tick %q: %v", raw, err)
	}
	return m
}

func subscribe(t testing.TB, base, transport string, o subOpts) *sub {
	t.Helper()
	s, err := trySubscribe(t, base, transport, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// trySubscribe may be called from any goroutine: it reports a failure to
// connect as an error.
func trySubscribe(t testing.TB, base, transport string, o subOpts) (*sub, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sub{ch: make(chan msg, 1024), done: make(chan struct{}), cancel: cancel}
	if o.client == nil {
		o.client = httpClient()
	}
	if o.wsClient == nil {
		o.wsClient = httpClient()
	}
	q := url.Values{}
	if o.symbols != "" {
		q.Set("symbols", o.symbols)
	}
	switch transport {
	case "sse":
		if o.resume != nil && o.viaQuery {
			q.Set("lastEventId", strconv.FormatUint(*o.resume, 10))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?"+q.Encode(), nil)
		if o.resume != nil && !o.viaQuery {
			req.Header.Set("Last-Event-ID", strconv.FormatUint(*o.resume, 10))
		}
		resp, err := o.client.Do(req)
		if ok, ret, err := s.answered(resp, err, "sse connect"); !ok {
			return ret, err
		}
		go func() {
			defer close(s.done)
			defer resp.Body.Close()
			for ev, err := range gosse.Read(resp.Body, &gosse.ReadConfig{MaxEventSize: 64 << 10}) {
				if err != nil {
					s.err = err
					return
				}
				switch ev.Type {
				case "":
					m := parseTick(t, ev.Data)
					if ev.LastEventID != strconv.FormatUint(m.tick.Seq, 10) {
						t.Errorf("sse id %q for tick %d", ev.LastEventID, m.tick.Seq)
					}
					if !s.push(ctx, m) {
						return
					}
				case "gap":
					var g feed.Gap
					if err := json.Unmarshal([]byte(ev.Data), &g); err != nil {
						t.Errorf("bad sse gap %q", ev.Data)
					}
					if !s.push(ctx, msg{raw: ev.Data, gap: &g}) {
						return
					}
				default:
					t.Errorf("unexpected sse event type %q", ev.Type)
				}
			}
			s.err = io.EOF
		}()
	case "ws":
		if o.resume != nil {
			q.Set("since", strconv.FormatUint(*o.resume, 10))
		}
		c, resp, err := cws.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws?"+q.Encode(), &cws.DialOptions{HTTPClient: o.wsClient})
		if err != nil {
			if resp == nil {
				cancel()
				return nil, fmt.Errorf("ws dial: %w", err)
			}
			s.status = resp.StatusCode
			close(s.done)
			return s, nil
		}
		s.status = http.StatusOK // the upgrade (101) succeeded
		c.SetReadLimit(1 << 20)
		go func() {
			defer close(s.done)
			defer c.CloseNow()
			for {
				_, data, err := c.Read(ctx)
				if err != nil {
					s.err = err
					s.closeCode = int(cws.CloseStatus(err))
					return
				}
				if !s.push(ctx, parseTick(t, string(data))) {
					return
				}
			}
		}()
	case "poll":
		var cursor uint64
		hasCursor := o.resume != nil
		if hasCursor {
			cursor = *o.resume
		}
		hc := o.client
		get := func() (*http.Response, error) {
			qq := url.Values{}
			for k, v := range q {
				qq[k] = v
			}
			qq.Set("timeout", "2s")
			if hasCursor {
				qq.Set("cursor", strconv.FormatUint(cursor, 10))
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/poll?"+qq.Encode(), nil)
			return hc.Do(req)
		}
		resp, err := get()
		if ok, ret, err := s.answered(resp, err, "poll"); !ok {
			return ret, err
		}
		go func() {
			defer close(s.done)
			for {
				var body struct {
					Cursor *uint64           `json:"cursor"`
					Ticks  []json.RawMessage `json:"ticks"`
					Gap    *feed.Gap         `json:"gap"`
				}
				err := json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				if err != nil {
					s.err = fmt.Errorf("poll decode: %w", err)
					return
				}
				if body.Cursor == nil || body.Ticks == nil {
					t.Errorf("poll response without cursor or ticks")
				}
				if body.Gap != nil {
					if !s.push(ctx, msg{gap: body.Gap}) {
						return
					}
				}
				for _, raw := range body.Ticks {
					if !s.push(ctx, parseTick(t, string(raw))) {
						return
					}
				}
				cursor, hasCursor = *body.Cursor, true
				resp, err = get()
				if err != nil {
					s.err = err
					return
				}
				if resp.StatusCode != 200 {
					resp.Body.Close()
					s.err = fmt.Errorf("poll status %d", resp.StatusCode)
					return
				}
			}
		}()
	default:
		cancel()
		return nil, fmt.Errorf("unknown transport %q", transport)
	}
	t.Cleanup(s.close)
	return s, nil
}

// answered records the status of the first answer to an SSE or poll
// subscription and reports whether it has a body to read. When not, the
// caller returns (ret, err): nil and the error if the request failed, or s,
// finished, if the server refused it, so that the test can check s.status.
func (s *sub) answered(resp *http.Response, err error, what string) (ok bool, ret *sub, _ error) {
	if err != nil {
		s.cancel()
		return false, nil, fmt.Errorf("%s: %w", what, err)
	}
	s.status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		close(s.done)
		return false, s, nil
	}
	return true, nil, nil
}

// push hands m to the test, or gives up when the subscription is closed.
func (s *sub) push(ctx context.Context, m msg) bool {
	select {
	case s.ch <- m:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *sub) close() {
	s.cancel()
	<-s.done
}

// next returns the next message or fails the test after the timeout.
func (s *sub) next(t testing.TB, timeout time.Duration) msg {
	t.Helper()
	select {
	case m := <-s.ch:
		return m
	case <-s.done:
		select {
		case m := <-s.ch:
			return m
		default:
		}
		t.Fatalf("stream ended: %v", s.err)
	case <-time.After(timeout):
		t.Fatalf("no message within %v", timeout)
	}
	return msg{}
}

// ended waits for the stream to end and returns its error.
func (s *sub) ended(timeout time.Duration) (error, bool) {
	select {
	case <-s.done:
		return s.err, true
	case <-time.After(timeout):
		return nil, false
	}
}
