package loadgen

// A deliberately faulty server for the checker's tests. It publishes the
// project's deterministic feed on its own clock over SSE, WebSocket and
// long polling, and breaks each connection's stream in one chosen way at its
// 10th item: a checker that cannot see these faults is worth nothing.

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbench/pushbench/servers/feed"
)

// Faults the server can inject.
const (
	faultNone    = "none"
	faultDrop    = "drop"    // one tick never sent
	faultRepeat  = "repeat"  // one tick sent twice
	faultReorder = "reorder" // two ticks swapped
	faultStall   = "stall"   // nothing after one tick, connection kept open
	faultWrong   = "wrong"   // one tick's price off by a cent
	faultGap     = "gap"     // three ticks replaced by a gap signal (not a fault)
)

// faultAt is the position, counted from a connection's start, where the
// fault happens: after the checker has started, well before the run ends.
const faultAt = 10

type faultServer struct {
	fault  string
	period time.Duration
	names  []string
	ticks  []feed.Tick // ticks[seq], ts stamped from start
	start  time.Time
	done   context.Context // ends when the test does
	stop   context.CancelFunc

	mu       sync.Mutex
	pollKeys map[string]uint64 // poll connection -> its fault position
	pollLast map[string]uint64 // poll connection -> the cursor it was last given
	sources  map[string]int    // requests per client address

	URL string
}

// newFaultServer serves the feed (seed 1, 16 symbols, rate ticks/s) with the
// fault; the feed's clock starts now.
func newFaultServer(t testing.TB, fault string, rate float64) *faultServer {
	t.Helper()
	const n = 20000
	g, err := feed.NewGenerator(1, 16)
	if err != nil {
		t.Fatal(err)
	}
	fs := &faultServer{
		fault: fault, period: time.Duration(float64(time.Second) / rate),
		names: feed.SymbolNames(16), ticks: make([]feed.Tick, n+1),
		start: time.Now(), pollKeys: map[string]uint64{}, pollLast: map[string]uint64{}, sources: map[string]int{},
	}
	fs.done, fs.stop = context.WithCancel(context.Background())
	for i := 1; i <= n; i++ {
		fs.ticks[i] = g.Next()
		fs.ticks[i].TS = feed.ScheduledAt(fs.start, rate, uint64(i))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/sse", fs.sse)
	mux.HandleFunc("/ws", fs.ws)
	mux.HandleFunc("/poll", fs.poll)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			fs.mu.Lock()
			fs.sources[host]++
			fs.mu.Unlock()
		}
		mux.ServeHTTP(w, r)
	}))
	fs.URL = ts.URL
	t.Cleanup(func() {
		fs.stop()
		ts.Close()
	})
	return fs
}

// sourceAddrs returns the client addresses seen, with their request counts.
func (fs *faultServer) sourceAddrs() map[string]int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return maps.Clone(fs.sources)
}

// item is what a connection whose fault is at position k delivers at
// position i: a tick (seq, with the price altered or not), a gap, or
// nothing ever again (stall).
type item struct {
	seq   uint64
	gap   *feed.Gap
	stall bool
	wrong bool
}

func (fs *faultServer) item(i, k uint64) item {
	switch fs.fault {
	case faultDrop:
		if i >= k {
			return item{seq: i + 1}
		}
	case faultRepeat:
		if i > k {
			return item{seq: i - 1}
		}
	case faultReorder:
		if i == k {
			return item{seq: k + 1}
		}
		if i == k+1 {
			return item{seq: k}
		}
	case faultStall:
		if i > k {
			return item{stall: true}
		}
	case faultWrong:
		return item{seq: i, wrong: i == k}
	case faultGap:
		if i == k {
			return item{gap: &feed.Gap{From: k, To: k + 3}}
		}
		if i > k {
			return item{seq: i + 2}
		}
	}
	return item{seq: i}
}

// newest is the newest position published by now.
func (fs *faultServer) newest() uint64 { return uint64(time.Since(fs.start) / fs.period) }

// bound derives a request's context that also ends when the server stops,
// so that no handler outlives the test.
func (fs *faultServer) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	unhook := context.AfterFunc(fs.done, cancel)
	return ctx, func() { unhook(); cancel() }
}

// waitFor waits until position i is published; false if ctx ended first.
func (fs *faultServer) waitFor(ctx context.Context, i uint64) bool {
	d := time.Until(fs.start.Add(time.Duration(i) * fs.period))
	return d <= 0 || sleep(ctx, d)
}

func (fs *faultServer) json(it item) []byte {
	tk := fs.ticks[it.seq]
	if it.wrong {
		tk.Price++
	}
	return feed.AppendJSON(nil, tk, fs.names[tk.Sym])
}

func (fs *faultServer) sse(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	fmt.Fprint(w, "retry: 2000\n\n")
	if rc.Flush() != nil {
		return
	}
	ctx, cancel := fs.bound(r.Context())
	defer cancel()
	fs.stream(ctx, func(it item) bool {
		if it.gap != nil {
			fmt.Fprintf(w, "event: gap\ndata: {\"from\":%d,\"to\":%d}\n\n", it.gap.From, it.gap.To)
		} else {
			fmt.Fprintf(w, "id: %d\ndata: %s\n\n", it.seq, fs.json(it))
		}
		return rc.Flush() == nil
	})
}

// stream sends this connection's items, from the next tick on, with send
// until send fails or ctx ends; a stalled item holds the stream until ctx
// ends.
func (fs *faultServer) stream(ctx context.Context, send func(item) bool) {
	start := fs.newest()
	k := start + faultAt
	for i := start + 1; ; i++ {
		if !fs.waitFor(ctx, i) {
			return
		}
		it := fs.item(i, k)
		if it.stall {
			<-ctx.Done()
			return
		}
		if !send(it) {
			return
		}
	}
}

func (fs *faultServer) ws(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	ctx, cancel := fs.bound(r.Context())
	defer cancel()
	go func() { // the read loop handles the client's close frame
		defer cancel()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	fs.stream(ctx, func(it item) bool {
		var msg []byte
		if it.gap != nil {
			msg = fmt.Appendf(nil, `{"gap":{"from":%d,"to":%d}}`, it.gap.From, it.gap.To)
		} else {
			msg = fs.json(it)
		}
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		return c.WriteMessage(websocket.TextMessage, msg) == nil
	})
}

// poll serves long polls. The cursor is a position of this connection's
// delivered sequence (opaque to clients, as PROTOCOL.md allows).
func (fs *faultServer) poll(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := fs.bound(r.Context())
	defer cancel()
	q := r.URL.Query()
	timeout, err := time.ParseDuration(q.Get("timeout"))
	if err != nil {
		timeout = 25 * time.Second
	}
	fs.mu.Lock()
	k, ok := fs.pollKeys[r.RemoteAddr]
	if !ok && q.Get("cursor") != "" {
		// A client that continues on a new connection (the old one was
		// closed after an answer) keeps its fault position: find the
		// connection that was last given this cursor, so that a reconnect
		// does not plant a second fault.
		for addr, last := range fs.pollLast {
			if strconv.FormatUint(last, 10) == q.Get("cursor") {
				k, ok = fs.pollKeys[addr], true
				delete(fs.pollLast, addr)
				break
			}
		}
	}
	if !ok {
		k = fs.newest() + faultAt
	}
	fs.pollKeys[r.RemoteAddr] = k
	fs.mu.Unlock()
	cursor := fs.newest()
	if c := q.Get("cursor"); c != "" {
		if cursor, err = strconv.ParseUint(c, 10, 64); err != nil {
			http.Error(w, `{"error":"bad cursor"}`, http.StatusBadRequest)
			return
		}
	}
	if fs.newest() <= cursor && timeout > 0 {
		wait, cancel := context.WithTimeout(ctx, timeout)
		fs.waitFor(wait, cursor+1)
		cancel()
	}
	b := []byte(`{"cursor":`)
	var ticks, gap []byte
	next := cursor
	stalled := false
	for i := cursor + 1; i <= fs.newest() && i <= cursor+512; i++ {
		it := fs.item(i, k)
		if it.stall {
			stalled = true
			break
		}
		if it.gap != nil {
			if len(ticks) > 0 {
				break // as in the real server, a gap comes before its batch
			}
			gap = fmt.Appendf(nil, `,"gap":{"from":%d,"to":%d}`, it.gap.From, it.gap.To)
			next = i
			continue
		}
		next = i
		if len(ticks) > 0 {
			ticks = append(ticks, ',')
		}
		ticks = append(ticks, fs.json(it)...)
	}
	if stalled && len(ticks) == 0 && gap == nil && timeout > 0 {
		wait, cancel := context.WithTimeout(ctx, timeout)
		<-wait.Done() // a stalled poll holds until its timeout, answering nothing
		cancel()
	}
	fs.mu.Lock()
	fs.pollLast[r.RemoteAddr] = next
	fs.mu.Unlock()
	b = strconv.AppendUint(b, next, 10)
	b = append(append(append(b, `,"ticks":[`...), ticks...), ']')
	b = append(append(b, gap...), "}\n"...)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
