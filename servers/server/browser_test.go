package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pushbench/pushbench/servers/feed"
)

// screenshotEnv names a file the browser test writes a screenshot of the
// demo page to; this is how docs/demo.png is made (from the module root):
//
//	PUSHBENCH_SCREENSHOT=$PWD/docs/demo.png go test -count=1 -run TestDemoPageInBrowser/sse ./servers/server/
//
// A relative path is relative to this package's directory. The first
// transport that gets there writes it, after the restart and after waiting
// until every symbol's sparkline has enough points to look like a chart.
// Every run also saves screenshots in each subtest's ArtifactDir, which
// `go test -artifacts -outputdir DIR` keeps.
const screenshotEnv = "PUSHBENCH_SCREENSHOT"

// The demo feed: light on a shared 2-core machine, still busy enough that
// every symbol moves within a second.
const (
	demoSeed    = 1
	demoSymbols = 16
	demoRate    = 50 // ticks/s for the whole feed
)

// waitLimit bounds each wait for the page. The waits end as soon as their
// condition holds (about a second each here); the limit only leaves room for
// a loaded shared machine.
const waitLimit = 20 * time.Second

var demoFeed = feed.Config{Seed: demoSeed, Symbols: demoSymbols, Rate: demoRate, History: 4096}

var (
	priceText  = regexp.MustCompile(`^\d+\.\d\d$`)
	numberText = regexp.MustCompile(`^\d+(\.\d+)?$`)
)

// pageState mirrors window.pushbench, the counters the page keeps.
type pageState struct {
	Transport   string                 `json:"transport"`
	Received    uint64                 `json:"received"`
	FirstSeq    uint64                 `json:"firstSeq"`
	LastSeq     uint64                 `json:"lastSeq"`
	Missing     uint64                 `json:"missing"`
	Duplicates  uint64                 `json:"duplicates"`
	Gaps        uint64                 `json:"gaps"`
	GapTicks    uint64                 `json:"gapTicks"`
	Connects    uint64                 `json:"connects"`
	Disconnects uint64                 `json:"disconnects"`
	Reconnects  uint64                 `json:"reconnects"`
	Failures    uint64                 `json:"failures"`
	Connected   bool                   `json:"connected"`
	P50         *float64               `json:"p50"`
	P99         *float64               `json:"p99"`
	Symbols     map[string]symbolState `json:"symbols"`
}

type symbolState struct {
	Seq   uint64  `json:"seq"`
	Price float64 `json:"price"`
	Count int     `json:"count"`
}

func (s pageState) String() string {
	return fmt.Sprintf("transport=%s connected=%t received=%d seq=%d..%d missing=%d duplicates=%d gaps=%d (%d ticks) connects=%d disconnects=%d failures=%d reconnects=%d symbols=%d",
		s.Transport, s.Connected, s.Received, s.FirstSeq, s.LastSeq, s.Missing, s.Duplicates, s.Gaps, s.GapTicks,
		s.Connects, s.Disconnects, s.Failures, s.Reconnects, len(s.Symbols))
}

// requireChromium returns Chromium's path for a browser test. Without it
// the test skips, except under CI=true, where the browser tests must run
// (.ci/run installs it): there it fails.
func requireChromium(t *testing.T) string {
	t.Helper()
	exe := findChromium()
	if exe == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("Chromium not found at /usr/bin/chromium or on PATH, and CI=true: the browser tests must run in CI; install it with `apt-get update && apt-get install -y chromium` (.ci/run does)")
		}
		t.Skip("install Chromium: apt-get install chromium")
	}
	return exe
}

// findChromium returns Debian's Chromium, or chromium on PATH, or "".
func findChromium() string {
	if fi, err := os.Stat("/usr/bin/chromium"); err == nil && !fi.IsDir() {
		return "/usr/bin/chromium"
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

// TestDemoPageInBrowser loads the demo page in headless Chromium over each
// transport and checks what a user would see and what the page counts:
// prices appear and keep changing, and match the deterministic feed; after
// the server restarts on the same port (same seed, so the same sequence
// again) the page retries, resumes on its own and has every seq exactly
// once; the switch on the page changes transport without loss; and a resume
// point older than the server's history shows an explicit gap, never silent
// loss. A last subtest feeds the page a lossy stream to prove that its
// missing and duplicate counters do count.
func TestDemoPageInBrowser(t *testing.T) {
	exe := requireChromium(t)
	browser := startBrowser(t, exe)
	var shot sync.Once
	for _, tr := range []string{"sse", "ws", "poll"} {
		t.Run(tr, func(t *testing.T) { testDemoPage(t, browser, tr, &shot) })
	}
	t.Run("loss-detector", func(t *testing.T) { testLossDetector(t, browser) })
}

// startBrowser starts one headless Chromium for all subtests (each gets its
// own tab) with a fresh profile and extra options; cleanup waits for the
// process to exit before the profile directory is removed.
func startBrowser(t *testing.T, exe string, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], // includes --headless, --no-first-run, --disable-sync, --disable-background-networking
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 860),
	)
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc) // runs before TempDir's cleanup: it waits for Chromium to exit
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)
	// The first Run starts the browser; it lives as long as bctx.
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[int](`1`)); err != nil {
		t.Fatalf("start Chromium %s: %v", exe, err)
	}
	return bctx
}

func testDemoPage(t *testing.T, browser context.Context, transport string, shot *sync.Once) {
	cfg := Config{
		Transport: "all",
		Feed:      demoFeed,
		// A short SSE retry hint so that EventSource comes back quickly
		// after the restart; the WebSocket and poll clients back off on
		// their own from 250 ms.
		Retry: 300 * time.Millisecond,
	}
	a := startDemoServer(t, "127.0.0.1:0", cfg)
	addr := a.addr

	tab, closeTab := chromedp.NewContext(browser)
	exceptions := watchExceptions(t, tab) // the first call on tab opens it
	defer func() {
		closeTab()
		for _, e := range exceptions() {
			t.Errorf("page exception: %s", e)
		}
	}()
	do(t, tab, chromedp.EmulateViewport(1280, 812), chromedp.Navigate("http://"+addr+"/?transport="+transport))

	// 1. Prices appear and keep changing; the counter grows.
	s := waitState(t, tab, waitLimit, "every symbol priced", func(s pageState) bool {
		return s.Connected && len(s.Symbols) == demoSymbols && s.Received >= 2*demoSymbols
	})
	if s.Transport != transport {
		t.Fatalf("page runs transport %q, want %q", s.Transport, transport)
	}
	first := domPrices(t, tab)
	if len(first) != demoSymbols {
		t.Fatalf("table shows %d symbols, want %d: %v", len(first), demoSymbols, first)
	}
	for sym, p := range first {
		if !priceText.MatchString(p) {
			t.Fatalf("price of %s is %q, want a number with two decimals", sym, p)
		}
	}
	eventually(t, tab, waitLimit, "prices change in the table", func() (bool, string) {
		now := domPrices(t, tab)
		changed := 0
		for sym, p := range now {
			if p != first[sym] {
				changed++
			}
		}
		return changed >= 4, fmt.Sprintf("%d of %d prices changed", changed, len(now))
	})
	s = waitState(t, tab, waitLimit, "received counter grows", func(n pageState) bool {
		return n.Received >= s.Received+demoSymbols && n.P50 != nil
	})
	stats := domStats(t, tab)
	if !numberText.MatchString(stats["p50"]) || !numberText.MatchString(stats["p99"]) {
		t.Errorf("latency shown as p50=%q p99=%q, want numbers", stats["p50"], stats["p99"])
	}
	if stats["received"] == "" || stats["received"] == "0" || stats["transport"] == "" {
		t.Errorf("stats shown: %v, want the transport and a received count", stats)
	}
	checkExactlyOnce(t, s)
	checkPrices(t, s)

	// 2. Stop the server and start it again on the same port. The page must
	// notice, reconnect on its own and resume after its last seq: the new
	// server publishes the same sequence from seq 1, and a resume point
	// beyond its newest seq waits for it.
	stopAt := time.Now()
	a.stop(t)
	// Wait until the page has also failed to connect while the port is
	// closed, so that its retry path runs, not only the first reconnect.
	before := waitState(t, tab, waitLimit, "page sees the server go away and retries", func(n pageState) bool {
		return !n.Connected && n.Disconnects > s.Disconnects && n.Failures >= s.Failures+3
	})
	sawLoss := time.Since(stopAt)
	b := startDemoServer(t, addr, cfg)
	// The new server reaches the page's seq as late as the old one did, so
	// the wait grows with how long the old one ran (long on a loaded machine).
	catchUp := time.Duration(float64(before.LastSeq) / demoRate * float64(time.Second))
	after := waitState(t, tab, catchUp+waitLimit, "page resumes on the restarted server", func(n pageState) bool {
		return n.Connected && n.Reconnects >= 1 && n.Received >= before.Received+2*demoSymbols
	})
	if after.Transport != transport {
		t.Errorf("after the restart the page runs %q, want %q", after.Transport, transport)
	}
	t.Logf("restart: the page lost the server and retried within %v, and resumed %v after the stop", sawLoss.Round(time.Millisecond), time.Since(stopAt).Round(time.Millisecond))
	t.Logf("before the restart: %v", before)
	t.Logf("after the restart:  %v", after)
	checkExactlyOnce(t, after)
	checkPrices(t, after)
	if newest := b.srv.Feed().Ring().Newest(); newest < after.LastSeq {
		t.Errorf("page has seq %d but the restarted server only published up to %d", after.LastSeq, newest)
	}
	if path := os.Getenv(screenshotEnv); path != "" {
		shot.Do(func() {
			// Let every sparkline fill before the picture for the README.
			waitState(t, tab, 30*time.Second, "sparklines fill", func(n pageState) bool {
				for _, sym := range n.Symbols {
					if sym.Count < 24 {
						return false
					}
				}
				return true
			})
			writeFile(t, path, screenshot(t, tab))
			t.Logf("wrote %s", path)
		})
	}
	writeFile(t, filepath.Join(t.ArtifactDir(), "demo-"+transport+".png"), screenshot(t, tab))

	// The switch on the page moves to another transport and resumes from
	// the same seq: seq is one sequence for every transport.
	next := map[string]string{"sse": "ws", "ws": "poll", "poll": "sse"}[transport]
	do(t, tab, chromedp.Evaluate[chromedp.Void](`document.querySelector('.switch button[data-transport="`+next+`"]').click()`))
	switched := waitState(t, tab, waitLimit, "page switches to "+next, func(n pageState) bool {
		return n.Transport == next && n.Connected && n.Received >= after.Received+demoSymbols
	})
	checkExactlyOnce(t, switched)
	if q, err := run(tab, chromedp.Evaluate[string](`location.search`)); err != nil || q != "?transport="+next {
		t.Errorf("after the switch the URL query is %q (%v), want ?transport=%s", q, err, next)
	}
	b.stop(t)

	// 3. A resume point the server no longer retains: the page must show
	// the gap signal and count it, and still miss nothing silently.
	small := cfg
	small.Feed.History = 16
	c := startDemoServer(t, "127.0.0.1:0", small)
	eventually(t, tab, waitLimit, "small-history server evicts", func() (bool, string) {
		n := c.srv.Feed().Ring().Newest()
		return n > 2*uint64(small.Feed.History), fmt.Sprintf("newest seq %d", n)
	})
	do(t, tab, chromedp.Navigate("http://"+c.addr+"/?transport="+transport+"&since=0"))
	g := waitState(t, tab, waitLimit, "gap signalled and shown", func(n pageState) bool {
		return n.Connected && n.Gaps >= 1 && n.Received >= demoSymbols
	})
	t.Logf("resumed from seq 0 on a 16-tick history: %v", g)
	if g.Missing != 0 || g.Duplicates != 0 {
		t.Errorf("after a gap: %v; want no missing and no duplicate seq", g)
	}
	// Every seq after 0 is either received or inside a signalled gap.
	if g.Received+g.GapTicks != g.LastSeq {
		t.Errorf("received %d + gap ticks %d != last seq %d: %v", g.Received, g.GapTicks, g.LastSeq, g)
	}
	banner, err := run(tab, chromedp.Evaluate[string](`(() => { const b = document.getElementById('gap-banner'); return b.hidden ? '' : b.textContent; })()`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(banner, "Gap") {
		t.Errorf("gap banner %q, want it visible and saying Gap", banner)
	}
	writeFile(t, filepath.Join(t.ArtifactDir(), "demo-"+transport+"-gap.png"), screenshot(t, tab))
	checkPrices(t, g)
}

// testLossDetector proves that the page's counters can fail: a fake SSE
// stream skips a seq without a gap signal and repeats one, and the page
// must count one missing and one duplicate and say so on screen.
func testLossDetector(t *testing.T, browser context.Context) {
	web, err := fs.Sub(webFiles, "web")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServerFS(web))
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "retry: 60000\n\n")
		for _, seq := range []int{1, 2, 4, 4, 5} { // 3 lost silently, 4 twice
			fmt.Fprintf(w, "id: %d\ndata: {\"seq\":%d,\"sym\":\"AAPL\",\"price\":100.%02d,\"ts\":%d}\n\n",
				seq, seq, seq, time.Now().UnixNano())
		}
		if err := http.NewResponseController(w).Flush(); err != nil {
			return
		}
		select { // hold the stream so that EventSource does not reconnect
		case <-r.Context().Done():
		case <-done:
		}
	})
	hs := httptest.NewServer(mux)
	defer hs.Close()
	defer close(done)

	tab, closeTab := chromedp.NewContext(browser)
	exceptions := watchExceptions(t, tab)
	defer func() {
		closeTab()
		for _, e := range exceptions() {
			t.Errorf("page exception: %s", e)
		}
	}()
	do(t, tab, chromedp.EmulateViewport(1280, 812), chromedp.Navigate(hs.URL+"/?transport=sse"))
	s := waitState(t, tab, waitLimit, "page reads the lossy stream", func(n pageState) bool { return n.LastSeq == 5 })
	if s.Received != 4 || s.Missing != 1 || s.Duplicates != 1 || s.Gaps != 0 {
		t.Errorf("page counted %v; want received=4 missing=1 duplicates=1 gaps=0", s)
	}
	banner, err := run(tab, chromedp.Evaluate[string](`document.getElementById('gap-banner').textContent`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(banner, "Lost without notice") {
		t.Errorf("banner %q, want it to report the silent loss", banner)
	}
}

// checkExactlyOnce: with no filter and no gap, the page must have received
// every seq from its first to its last exactly once.
func checkExactlyOnce(t *testing.T, s pageState) {
	t.Helper()
	if s.Missing != 0 || s.Duplicates != 0 || s.Gaps != 0 {
		t.Errorf("page counted %v; want no missing, duplicate or gap", s)
	}
	if s.FirstSeq == 0 || s.Received != s.LastSeq-s.FirstSeq+1 {
		t.Errorf("received %d ticks for seq %d..%d, want every seq once: %v", s.Received, s.FirstSeq, s.LastSeq, s)
	}
}

// checkPrices replays the deterministic feed and checks that every symbol's
// last (seq, price) on the page is what the feed published at that seq.
func checkPrices(t *testing.T, s pageState) {
	t.Helper()
	var maxSeq uint64
	for _, p := range s.Symbols {
		maxSeq = max(maxSeq, p.Seq)
	}
	g, err := feed.NewGenerator(demoSeed, demoSymbols)
	if err != nil {
		t.Fatal(err)
	}
	names := feed.SymbolNames(demoSymbols)
	ticks := make([]feed.Tick, maxSeq+1)
	for seq := uint64(1); seq <= maxSeq; seq++ {
		ticks[seq] = g.Next()
	}
	for sym, p := range s.Symbols {
		want := ticks[p.Seq]
		if names[want.Sym] != sym || int64(math.Round(p.Price*100)) != want.Price {
			t.Errorf("page shows %s %.2f at seq %d; the feed published %s %d.%02d", sym, p.Price, p.Seq,
				names[want.Sym], want.Price/100, want.Price%100)
		}
	}
}

// ---- the server under test ----------------------------------------------

type demoServer struct {
	addr      string
	srv       *Server
	hs        *http.Server
	stopFeed  context.CancelFunc
	runDone   chan error
	serveDone chan error
	once      sync.Once
}

// startServer serves a new server on addr (":0" for a free port) and stops
// it at the end of the test if the test did not.
func startDemoServer(t *testing.T, addr string, cfg Config) *demoServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	srv, err := New(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &demoServer{addr: ln.Addr().String(), srv: srv, stopFeed: cancel,
		hs: &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second}, runDone: make(chan error, 1), serveDone: make(chan error, 1)}
	go func() { s.runDone <- srv.Run(ctx) }()
	go func() { s.serveDone <- s.hs.Serve(ln) }()
	t.Cleanup(func() { s.stop(t) })
	select {
	case <-srv.Feed().Ready():
	case err := <-s.runDone:
		t.Fatalf("feed stopped at start: %v", err)
	}
	return s
}

// stop shuts the server down the way a process does on SIGTERM: streams
// end, WebSocket clients get 1001, held polls are answered.
func (s *demoServer) stop(t *testing.T) {
	t.Helper()
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		var srvErr, hsErr error
		wg.Go(func() { srvErr = s.srv.Shutdown(ctx) })
		wg.Go(func() { hsErr = s.hs.Shutdown(ctx) })
		wg.Wait()
		s.stopFeed()
		if err := <-s.runDone; err != nil {
			t.Errorf("feed: %v", err)
		}
		if err := <-s.serveDone; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
		if srvErr != nil || hsErr != nil {
			t.Errorf("shutdown %s: server: %v, http: %v", s.addr, srvErr, hsErr)
		}
	})
}

// ---- the browser side ---------------------------------------------------

// run runs one action on the tab with a deadline. The tab was opened by
// its first call without one, as chromedp requires.
func run[T any](tab context.Context, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(tab, 15*time.Second)
	defer cancel()
	return chromedp.Run(ctx, a)
}

func do(t *testing.T, tab context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if _, err := run(tab, chromedp.Steps(steps...)); err != nil {
		t.Fatal(err)
	}
}

func state(t *testing.T, tab context.Context) pageState {
	t.Helper()
	s, err := run(tab, chromedp.Evaluate[pageState](`window.pushbench`))
	if err != nil {
		t.Fatalf("read window.pushbench: %v", err)
	}
	return s
}

// eventually polls cond until it holds or the deadline passes; cond returns
// a description of what it saw for the failure message.
func eventually(t *testing.T, tab context.Context, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last saw %s", what, timeout, saw)
		}
		select {
		case <-tick.C:
		case <-tab.Done():
			t.Fatalf("%s: browser tab closed: %v", what, tab.Err())
		}
	}
}

// waitState polls window.pushbench until cond holds and returns that state.
func waitState(t *testing.T, tab context.Context, timeout time.Duration, what string, cond func(pageState) bool) pageState {
	t.Helper()
	var s pageState
	eventually(t, tab, timeout, what, func() (bool, string) {
		s = state(t, tab)
		return cond(s), s.String()
	})
	return s
}

// domPrices reads the price column as the user sees it.
func domPrices(t *testing.T, tab context.Context) map[string]string {
	t.Helper()
	m, err := run(tab, chromedp.Evaluate[map[string]string](`Object.fromEntries(
		[...document.querySelectorAll('#quotes tbody tr')].map(r => [r.dataset.sym, r.querySelector('.price').textContent]))`))
	if err != nil {
		t.Fatalf("read prices: %v", err)
	}
	return m
}

func domStats(t *testing.T, tab context.Context) map[string]string {
	t.Helper()
	m, err := run(tab, chromedp.Evaluate[map[string]string](`({
		transport: document.getElementById('st-transport').textContent,
		received: document.getElementById('st-received').textContent,
		p50: document.getElementById('st-p50').textContent,
		p99: document.getElementById('st-p99').textContent,
	})`))
	if err != nil {
		t.Fatalf("read stats: %v", err)
	}
	return m
}

func screenshot(t *testing.T, tab context.Context) []byte {
	t.Helper()
	png, err := run(tab, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	return png
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// watchExceptions opens the tab and collects the page's uncaught
// exceptions until the tab closes; the returned func waits for that and
// returns them. Network errors while the server restarts are expected and
// are browser log entries, not exceptions.
func watchExceptions(t *testing.T, tab context.Context) func() []string {
	t.Helper()
	msgs := chromedp.Console(tab)
	var (
		mu   sync.Mutex
		seen []string
		wg   sync.WaitGroup
	)
	wg.Go(func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.IsException() {
				mu.Lock()
				seen = append(seen, fmt.Sprintf("%s (%s:%d)", m.Text, m.URL, m.Line+1))
				mu.Unlock()
			}
		}
	})
	return func() []string {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
}
