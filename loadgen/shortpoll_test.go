package loadgen

import (
	"net/http"
	"testing"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/pushbench/pushbench/loadgen/client"
)

// TestStaleFromNowAnswerKeepsCursor: when two polls without a cursor
// ("from now") of one poller are in flight at once, as under load, the
// second answer to be read is stale. Its cursor is only the newest seq when
// the server read it, with no ticks: the poller must not move on to it, or
// the ticks in between are skipped and counted missing.
func TestStaleFromNowAnswerKeepsCursor(t *testing.T) {
	r := &run{cfg: &Config{}, shards: newShards(1)}
	polls := []*poller{{sub: r.newSubscription(nil, r.shards[0])}}
	var ans client.PollAnswer
	answer := func(url, body string) {
		r.pollResult(&vegeta.Result{URL: url, Code: http.StatusOK, Body: []byte(body)}, polls, &ans)
	}
	answer("http://x/poll?timeout=0s#0", `{"cursor":10,"ticks":[]}`)
	answer("http://x/poll?timeout=0s#0", `{"cursor":30,"ticks":[]}`) // sent before the first came back
	if got := polls[0].cursor.Load(); got != 11 {
		t.Fatalf("cursor after a stale from-now answer: %d, want 10 (+1)", int64(got)-1)
	}
	// An answer to a request with the current cursor moves it on.
	answer("http://x/poll?timeout=0s&cursor=10#0", `{"cursor":31,"ticks":[]}`)
	if got := polls[0].cursor.Load(); got != 32 {
		t.Fatalf("cursor after a fresh answer: %d, want 31", int64(got)-1)
	}
}
