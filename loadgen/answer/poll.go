package answer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/pushbench/pushbench/loadgen/client"
)

// pollAnswer is a long poll's response body.
type pollAnswer struct {
	Chunks []wireChunk `json:"chunks"`
	Done   bool        `json:"done"`
}

// poll runs answer a by long polling: POST /answer answers 202 with the
// answer's id at once, then GET /answer/{id}?after=k holds until chunks
// after k exist, until one says done. With -conn fresh the answer gets a
// connection of its own, which carries all of its polls; with -conn h2
// each request is a stream of the pool's connections.
func (r *runner) poll(ctx context.Context, a *ans) error {
	tr := r.rt
	if r.cfg.Conn == ConnFresh {
		own := r.newTransport(false)
		own.MaxConnsPerHost = 1
		defer own.CloseIdleConnections()
		tr = own
	}
	resp, err := r.post(ctx, tr, a, "application/json")
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusAccepted {
		defer resp.Body.Close()
		return errStatus("poll", resp)
	}
	var id struct {
		ID string `json:"id"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, maxEvent)).Decode(&id)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxEvent))
	resp.Body.Close()
	if err != nil || id.ID == "" {
		return fmt.Errorf("poll: %w: no answer id in the 202 (%v)", client.ErrProtocol, err)
	}
	a.started, a.id = true, id.ID
	base := r.prefix + "/answer/" + url.PathEscape(id.ID) + "?timeout=" + r.cfg.PollTimeout.String()
	var pa pollAnswer
	for {
		u := base
		if a.maxI >= 0 {
			u += "&after=" + strconv.Itoa(a.maxI)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", "pushbench-loadgen")
		r.counters.Requests.Add(1)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			err := errStatus("poll", resp)
			resp.Body.Close()
			return err
		}
		// The whole body first: a read cut short (the run's end, a reset)
		// is a broken answer, not a malformed one.
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxPollBody))
		at := time.Now().UnixNano()
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("poll: read answer: %w", err)
		}
		pa = pollAnswer{}
		if err := json.Unmarshal(body, &pa); err != nil {
			a.malformed()
			return fmt.Errorf("poll: %w: %w", client.ErrProtocol, err)
		}
		for i := range pa.Chunks {
			if !a.handle(&pa.Chunks[i], at) {
				a.malformed()
			}
		}
		if pa.Done {
			a.done(-1, at)
			return nil
		}
	}
}
