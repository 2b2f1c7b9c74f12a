package answer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/pushbench/pushbench/loadgen/client"
)

// wireChunk is a chunk, done or error message on any transport: a chunk
// has i, done (ws) has done, an error has error; SSE's done event has
// chunks only.
type wireChunk struct {
	ID     string  `json:"id"`
	I      *int    `json:"i"`
	Text   *string `json:"text"`
	TS     int64   `json:"ts"`
	Done   bool    `json:"done"`
	Chunks *int    `json:"chunks"`
	Error  string  `json:"error"`
}

// handle checks one chunk message that arrived at at; false when it is not
// a chunk.
func (a *ans) handle(m *wireChunk, at int64) bool {
	if m.I == nil || m.Text == nil || m.TS == 0 {
		return false
	}
	a.chunk(m.ID, *m.I, *m.Text, m.TS, at)
	return true
}

// doneCount is the chunks a done message says, -1 when absent.
func (m *wireChunk) doneCount() int {
	if m.Chunks == nil {
		return -1
	}
	return *m.Chunks
}

// maxEvent bounds one SSE event or poll answer the client reads.
const (
	maxEvent    = 64 << 10
	maxPollBody = 4 << 20
)

// sse runs answer a as POST /answer answered by an event stream: one
// event per chunk, then event: done, then the end of the response.
func (r *runner) sse(ctx context.Context, a *ans) error {
	resp, err := r.post(ctx, r.rt, a, "text/event-stream")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errStatus("sse", resp)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return fmt.Errorf("sse: %w: Content-Type %q", client.ErrProtocol, resp.Header.Get("Content-Type"))
	}
	a.started = true
	a.id = resp.Header.Get("X-Answer-Id")
	p := client.NewParser(resp.Body, 1<<10, maxEvent)
	var m wireChunk
	for {
		e, err := p.Next()
		at := time.Now().UnixNano()
		if err != nil {
			if errors.Is(err, io.EOF) && a.doneAt != 0 {
				return nil
			}
			return fmt.Errorf("sse: %w", err)
		}
		m = wireChunk{}
		if json.Unmarshal(e.Data, &m) != nil {
			a.malformed()
			continue
		}
		switch string(e.Type) {
		case "", "message":
			if !a.handle(&m, at) {
				a.malformed()
			}
		case "done":
			if m.ID != a.id {
				a.c.Wrong++
			}
			a.done(m.doneCount(), at)
			// The response ends after done; read its end so that the
			// connection goes back to the pool.
			_, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxEvent))
			return err
		}
	}
}

// post sends answer a's request to POST /answer over tr, accepting
// accept.
func (r *runner) post(ctx context.Context, tr http.RoundTripper, a *ans, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.prefix+"/answer", bytes.NewReader(r.body(a, "")))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pushbench-loadgen")
	r.counters.Requests.Add(1)
	return tr.RoundTrip(req)
}
