// Package runner drives a bench matrix: for every run it starts bin/server
// on a free loopback port, waits for /healthz, samples the idle server,
// starts as many bin/loadgen processes as the open-files limit requires,
// samples the server from outside while they run, stops everything, and
// turns what it saw into a report.Run.
//
// A run never takes the whole bench down: a server that crashes, a load
// generator that fails or hangs, all become a Run with Crashed or Error set,
// so that the report says what happened in that cell instead of hiding it.
//
// Ownership: Run is called from one goroutine. Each run owns its processes
// (registered in Config.Group too, so that a second Ctrl-C can kill them
// from outside) and its sampler goroutine, and stops all of them before it
// returns, on every path.
package runner

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pushbench/pushbench/bench/matrix"
	"github.com/pushbench/pushbench/bench/proc"
	"github.com/pushbench/pushbench/bench/report"
	"github.com/pushbench/pushbench/bench/sample"
	"github.com/pushbench/pushbench/loadgen"
	"github.com/pushbench/pushbench/loadgen/result"
	"github.com/pushbench/pushbench/servers/server"
)

// Defaults double as bench's flag defaults.
const (
	DefaultHost           = "127.0.0.1"
	DefaultSampleInterval = 250 * time.Millisecond
	DefaultIdleSettle     = 300 * time.Millisecond
	DefaultStopGrace      = 5 * time.Second
	// LoadgenFDReserve is what bench leaves a load-generator process
	// besides one socket per client: loadgen's own reserve (the runtime,
	// pipes, its result file) and room for the overlap of a closing and a
	// new connection while clients reconnect (churn) or poll.
	LoadgenFDReserve = loadgen.FDReserve + 960
	// ScrapeFDReserve is room for bench's /metrics scrapes on top of the
	// server's own reserve (server.FDReserve).
	ScrapeFDReserve = 64
)

// Config is everything a matrix run needs. Transports, Scenarios and the
// other lists are run in the given order.
type Config struct {
	ServerBin, LoadgenBin string
	// NetshapeBin is the network-shaping proxy, started for runs whose
	// network value asks for one (matrix.Value.Proxy).
	NetshapeBin string

	// Tables are run in order, repeats outermost. Without tables, one main
	// table is made of the fields below.
	Tables []matrix.Table

	Transports []string
	Clients    []int
	Scenarios  []string
	Repeat     int
	Duration   time.Duration // measured
	Warmup     time.Duration // after the ramp, not measured
	Rate       float64       // feed ticks/s
	Symbols    int           // feed symbols
	Seed       uint64

	ClientSymbols string        // loadgen -symbols (the subscription), "" for its default
	SlowShare     float64       // slow: share of clients that stall
	ChurnShare    float64       // churn: share of clients dropped and resumed per second
	PollInterval  time.Duration // shortpoll: each client polls this often (0: loadgen.DefaultInterval)

	Host      string // loopback address to serve on
	OpenFiles uint64 // RLIMIT_NOFILE of the children (sizes the load generators)
	// MaxPerLoadgen caps the clients of one load-generator process below
	// what the open-files limit allows (0: no cap).
	MaxPerLoadgen  int
	Pinning        *proc.Pinning // nil: no pinning
	SampleInterval time.Duration
	IdleSettle     time.Duration // wait after /healthz before the idle sample
	StopGrace      time.Duration // SIGTERM to SIGKILL
	StartTimeout   time.Duration // server start to /healthz

	// WorkDir receives the load generators' result files; LogDir (if set)
	// keeps the stderr of every run that failed or warned.
	WorkDir, LogDir string

	// Extra flags and environment, appended last (tests use them to turn
	// the test binary into a fake server or load generator).
	ServerArgs, LoadgenArgs []string
	ServerEnv, LoadgenEnv   []string

	Group *proc.Group // owns every process; required

	// Progress, if set, is called from Run's goroutine before and after
	// every run.
	Progress func(Event)
}

// Event reports progress.
type Event struct {
	Index, Total int // 0-based index of the run
	Spec         Spec
	Done         bool        // false: starting; true: finished
	Run          *report.Run // when Done
	Estimate     time.Duration
}

// Runner runs a matrix.
type Runner struct {
	cfg    Config
	client *http.Client
}

// New checks cfg and fills in defaults.
func New(cfg Config) (*Runner, error) {
	if cfg.Group == nil {
		return nil, errors.New("runner: no process group")
	}
	if cfg.Host == "" {
		cfg.Host = DefaultHost
	}
	if ip := net.ParseIP(cfg.Host); ip == nil || !ip.IsLoopback() {
		// Load tests here must never leave the machine.
		return nil, fmt.Errorf("runner: host %q is not a loopback address", cfg.Host)
	}
	if cfg.SampleInterval <= 0 {
		cfg.SampleInterval = DefaultSampleInterval
	}
	if cfg.IdleSettle < 0 {
		cfg.IdleSettle = 0
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 15 * time.Second
	}
	if cfg.OpenFiles == 0 {
		cfg.OpenFiles = 1024
	}
	if cfg.WorkDir == "" {
		return nil, errors.New("runner: no work directory")
	}
	if len(cfg.Tables) == 0 {
		cfg.Tables = []matrix.Table{{Name: report.MainTable, Title: "Transports", Scenarios: cfg.Scenarios, Transports: cfg.Transports,
			Clients: cfg.Clients, Rate: cfg.Rate, Duration: cfg.Duration, Warmup: cfg.Warmup, Repeat: cfg.Repeat}}
	}
	most := ServerCapacity(cfg.OpenFiles)
	for i := range cfg.Tables {
		t := &cfg.Tables[i]
		if err := t.Check(); err != nil {
			return nil, fmt.Errorf("runner: %w", err)
		}
		if slices.Max(t.Clients) > most {
			return nil, fmt.Errorf("runner: table %s: %d clients exceed what one server process can hold under an open-files limit of %d (at most %d)",
				t.Name, slices.Max(t.Clients), cfg.OpenFiles, most)
		}
		for _, c := range t.Cells(Applies) {
			if _, err := matrix.Resolve(c.Dims, c.Transport); err != nil {
				return nil, fmt.Errorf("runner: table %s: %w", t.Name, err)
			}
			if setup, _ := matrix.Resolve(c.Dims, c.Transport); setup.Proxy != nil && cfg.NetshapeBin == "" {
				return nil, fmt.Errorf("runner: table %s: network %s needs the proxy binary (bin/netshape)", t.Name, setup.ProxyName)
			}
		}
	}
	// Every request bench makes goes to loopback; never through a proxy.
	// A server run over TLS has a certificate it made itself at start:
	// bench's own /healthz and /metrics requests do not verify it (the
	// load generators are told the same with their -insecure).
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, DisableCompression: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // loopback, the server's own throwaway certificate
	return &Runner{cfg: cfg, client: &http.Client{Transport: tr, Timeout: 5 * time.Second}}, nil
}

// ServerCapacity is the most clients one server process can hold: its
// open-files limit less the server's own reserve (bin/server refuses
// clients past that with 503) and a margin for /metrics scrapes.
func ServerCapacity(openFiles uint64) int {
	return max(int(openFiles)-server.FDReserve-ScrapeFDReserve, 1)
}

// Loadgens is how many load-generator processes n clients need: each holds
// one socket per client and keeps LoadgenFDReserve for itself, and at most
// maxPer clients if maxPer > 0.
func Loadgens(n int, openFiles uint64, maxPer int) int {
	per := max(int(openFiles)-LoadgenFDReserve, 1)
	if maxPer > 0 {
		per = min(per, maxPer)
	}
	return (n + per - 1) / per
}

// Plan lists the runs in order. Repeats are the outer loop, so that slow
// drift of the machine (thermal, other work) spreads over every cell instead
// of biasing the cells run last, and so that an interrupted bench still
// covers every table once.
func (r *Runner) Plan() []Spec {
	var out []Spec
	most := 0
	for _, t := range r.cfg.Tables {
		most = max(most, t.Repeat)
	}
	for rep := 1; rep <= most; rep++ {
		for _, t := range r.cfg.Tables {
			if rep > t.Repeat {
				continue
			}
			for _, c := range t.Cells(Applies) {
				out = append(out, Spec{Table: t.Name, Scenario: c.Scenario, Transport: c.Transport, Dims: c.Dims, Clients: c.Clients, Repeat: rep})
			}
		}
	}
	return out
}

// Tables lists the tables of the plan as the report describes them.
func (r *Runner) Tables() []report.Table {
	out := make([]report.Table, len(r.cfg.Tables))
	for i := range r.cfg.Tables {
		out[i] = r.cfg.Tables[i].Report()
	}
	return out
}

// table returns the table of a run.
func (c *Config) table(s Spec) *matrix.Table {
	for i := range c.Tables {
		if c.Tables[i].Name == s.Table {
			return &c.Tables[i]
		}
	}
	if len(c.Tables) > 0 {
		return &c.Tables[0] // a Spec made outside Plan: the first table
	}
	// A Config that New has not seen (tests): its own fields.
	return &matrix.Table{Name: report.MainTable, Scenarios: c.Scenarios, Transports: c.Transports, Clients: c.Clients,
		Rate: c.Rate, Duration: c.Duration, Warmup: c.Warmup, Repeat: c.Repeat}
}

// Estimate is the expected wall time of a run: start and idle sample,
// ramp, warm-up, measurement, stop.
func (r *Runner) Estimate(s Spec) time.Duration {
	return 700*time.Millisecond + r.cfg.IdleSettle + Ramp(s.Scenario, s.Clients) + r.cfg.warmup(s) + r.cfg.duration(s) +
		time.Duration(s.Clients)*100*time.Microsecond
}

// Run runs the whole plan, adding every run to rep. It returns ctx.Err()
// if it was interrupted; the runs done so far are in rep.
func (r *Runner) Run(ctx context.Context, rep *report.Report) error {
	plan := r.Plan()
	for i, s := range plan {
		if err := ctx.Err(); err != nil {
			return err
		}
		var left time.Duration
		for _, p := range plan[i:] {
			left += r.Estimate(p)
		}
		r.progress(Event{Index: i, Total: len(plan), Spec: s, Estimate: left})
		run := r.RunOne(ctx, s)
		if ctx.Err() != nil {
			// An interrupted run measured nothing worth reporting.
			return ctx.Err()
		}
		rep.Add(run)
		r.progress(Event{Index: i, Total: len(plan), Spec: s, Done: true, Run: &run, Estimate: left - r.Estimate(s)})
	}
	return nil
}

func (r *Runner) progress(e Event) {
	if r.cfg.Progress != nil {
		r.cfg.Progress(e)
	}
}

// freePort asks the kernel for a free port on host. Another process could
// take it before the server binds; the server then fails to listen and
// RunOne tries another port.
func freePort(host string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// RunOne runs one cell once. It never panics on a failing process: the
// returned Run says what went wrong.
func (r *Runner) RunOne(ctx context.Context, s Spec) (out report.Run) {
	run := report.Run{Table: r.cfg.table(s).Name, Dims: s.Dims, Scenario: s.Scenario, Transport: s.Transport, Clients: s.Clients, Repeat: s.Repeat, Start: time.Now().UTC()}
	start := time.Now()
	var logs []*proc.Proc
	var warnings []string
	// Registered first, so it runs last: after the processes below are
	// stopped, which can add warnings.
	defer func() {
		run.Wall = time.Since(start).Seconds()
		run.Warnings = warnings
		run.Figures = report.Derive(&run)
		if run.Error != "" || len(warnings) > 0 {
			r.keepLogs(s, logs, run.Error, warnings)
		}
		out = run
	}()
	fail := func(crashed bool, format string, a ...any) report.Run {
		run.Crashed = crashed
		run.Error = fmt.Sprintf(format, a...)
		return run
	}

	setup, err := matrix.Resolve(s.Dims, s.Transport)
	if err != nil {
		return fail(false, "%v", err)
	}
	srv, base, err := r.startServer(ctx, s, setup)
	if srv != nil {
		logs = append(logs, srv)
		defer func() {
			if err := srv.Stop(r.cfg.StopGrace); err != nil {
				warnings = append(warnings, err.Error())
			} else if err := srv.Err(); err != nil && !srv.Unexpected() {
				warnings = append(warnings, "on SIGTERM: "+srv.ExitSummary())
			}
		}()
	}
	if err != nil {
		crashed := srv != nil && srv.Unexpected()
		return fail(crashed, "%v", err)
	}

	if pin := r.cfg.Pinning; pin != nil && pin.Mode != proc.ModeOff {
		// Check the pinning took, rather than trust it.
		if got, err := proc.AllowedCPUs(srv.Pid()); err == nil && got != proc.CPUList(pin.ServerCPUs) {
			warnings = append(warnings, fmt.Sprintf("server runs on CPUs %s, not %s as planned", got, proc.CPUList(pin.ServerCPUs)))
		}
	}

	// Idle figures: after the feed runs, before any client.
	if !sleep(ctx, r.cfg.IdleSettle) {
		return fail(false, "interrupted")
	}
	smp := &sample.Sampler{Pid: srv.Pid(), MetricsURL: base + "/metrics", Interval: r.cfg.SampleInterval, Client: r.client}
	idle, err := smp.Sample(ctx)
	if err != nil || idle.ScrapeErr != nil {
		if srv.Unexpected() {
			return fail(true, "server crashed before any client: %s", srv.ExitSummary())
		}
		return fail(false, "idle sample: %v", errors.Join(err, idle.ScrapeErr))
	}
	if len(idle.Missing) > 0 {
		warnings = append(warnings, "server /metrics lacks "+strings.Join(idle.Missing, ", "))
	}
	run.Server.IdleRSSBytes, run.Server.IdleGoroutines = idle.RSSBytes, idle.Goroutines

	// The load generators' URL: the server's, or the proxy's in front of
	// it, in the scheme the protocol asks for.
	target := base
	var side *proc.Proc
	var sideIdle sample.Point
	if setup.Proxy != nil {
		var addr string
		upstream := base[strings.Index(base, "://")+3:]
		side, addr, err = r.startProxy(ctx, setup, upstream)
		if side != nil {
			logs = append(logs, side)
			defer func() { _ = side.Stop(r.cfg.StopGrace) }()
		}
		if err != nil {
			return fail(false, "%v", err)
		}
		target = strings.Replace(target, upstream, addr, 1)
		if sideIdle, err = (&sample.Sampler{Pid: side.Pid()}).Sample(ctx); err != nil {
			return fail(false, "proxy idle sample: %v", err)
		}
	}

	// Sample in the background for the whole run; the samplers' owner is
	// this function, which cancels and waits for them on every path.
	sctx, stopSampling := context.WithCancel(ctx)
	ptsCh := make(chan []sample.Point, 1)
	go func() { ptsCh <- smp.Run(sctx) }()
	var sidePtsCh chan []sample.Point
	if side != nil {
		sidePtsCh = make(chan []sample.Point, 1)
		ss := &sample.Sampler{Pid: side.Pid(), Interval: r.cfg.SampleInterval}
		go func() { sidePtsCh <- ss.Run(sctx) }()
	}
	var pts, sidePts []sample.Point
	collect := func() {
		if ptsCh != nil {
			stopSampling()
			pts = <-ptsCh
			ptsCh = nil
			if sidePtsCh != nil {
				sidePts = <-sidePtsCh
			}
		}
	}
	defer collect()

	// Load generators.
	k := Loadgens(s.Clients, r.cfg.OpenFiles, r.cfg.MaxPerLoadgen)
	run.Loadgens = k
	var gens []*proc.Proc
	var outs []string
	stopGens := func() {
		for _, g := range gens {
			_ = g.Stop(r.cfg.StopGrace)
		}
	}
	defer stopGens()
	for i := 0; i < k; i++ {
		n := s.Clients / k
		if i < s.Clients%k {
			n++
		}
		out := filepath.Join(r.cfg.WorkDir, fmt.Sprintf("%s_lg%d.json", s.Slug(), i+1))
		_ = os.Remove(out)
		var cpus []int
		if r.cfg.Pinning != nil {
			cpus = r.cfg.Pinning.LoadgenCPUs
		}
		g, err := r.cfg.Group.Start(proc.Spec{
			Name: fmt.Sprintf("loadgen %d/%d", i+1, k), Path: r.cfg.LoadgenBin,
			Args: r.cfg.loadgenArgs(s, target, n, out, setup), Env: r.cfg.LoadgenEnv, CPUs: cpus,
		}, r.cfg.Pinning)
		if err != nil {
			return fail(false, "%v", err)
		}
		gens, outs, logs = append(gens, g), append(outs, out), append(logs, g)
	}

	// Wait for the load generators, watching the server. The deadline is
	// generous: a slow run is a result, a hung one is not.
	budget := Ramp(s.Scenario, s.Clients) + r.cfg.warmup(s) + r.cfg.duration(s) + Drain + r.cfg.pollInterval()
	deadline := time.NewTimer(budget*2 + 30*time.Second + time.Duration(s.Clients)*time.Millisecond)
	defer deadline.Stop()
	for _, g := range gens {
		select {
		case <-g.Done():
		case <-srv.Done():
			collect()
			return r.crashed(&run, srv, pts)
		case <-deadline.C:
			return fail(false, "%s did not finish within %s", g.Name(), budget*2+30*time.Second)
		case <-ctx.Done():
			return fail(false, "interrupted")
		}
	}
	collect()
	if srv.Unexpected() {
		return r.crashed(&run, srv, pts)
	}

	// Results.
	var results []*result.Result
	for i, g := range gens {
		res, rerr := result.ReadFile(outs[i])
		if gerr := g.Err(); gerr != nil {
			if rerr != nil {
				return fail(false, "%s", g.ExitSummary())
			}
			// A result with a failing status (for example the load
			// generator's own correctness verdict) is still a result.
			warnings = append(warnings, g.ExitSummary())
		}
		if rerr != nil {
			return fail(false, "%s: %v", g.Name(), rerr)
		}
		results = append(results, res)
	}
	merged, err := result.Merge(results...)
	if err != nil {
		return fail(false, "%v", err)
	}
	run.Result = merged
	r.serverFigures(&run, s, merged, idle, pts, start)
	if side != nil {
		run.Side = sideFigures(s, setup, merged, sideIdle, sidePts, r.cfg)
		if side.Exited() {
			warnings = append(warnings, "proxy exited during the run: "+side.ExitSummary())
		}
	}
	if run.Server.Samples < 2 {
		warnings = append(warnings, fmt.Sprintf("only %d server samples inside the measuring window", run.Server.Samples))
	}
	return run
}

// crashed records that the server died during the run.
func (r *Runner) crashed(run *report.Run, srv *proc.Proc, pts []sample.Point) report.Run {
	<-srv.Done()
	run.Crashed = true
	run.Error = "server crashed during the run: " + srv.ExitSummary()
	if len(pts) > 0 {
		run.Server.RSSBytes = pts[len(pts)-1].RSSBytes
	}
	return *run
}

// startServer starts bin/server on a free port and waits for /healthz. It
// retries on another port if the server could not listen (the port was
// taken between freePort and the server's bind).
func (r *Runner) startServer(ctx context.Context, s Spec, setup matrix.Setup) (*proc.Proc, string, error) {
	var cpus []int
	if r.cfg.Pinning != nil {
		cpus = r.cfg.Pinning.ServerCPUs
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort(r.cfg.Host)
		if err != nil {
			return nil, "", err
		}
		addr := net.JoinHostPort(r.cfg.Host, fmt.Sprint(port))
		srv, err := r.cfg.Group.Start(proc.Spec{
			Name: "server", Path: r.cfg.ServerBin, Args: r.cfg.serverArgs(s, addr, setup), Env: r.cfg.ServerEnv, CPUs: cpus,
		}, r.cfg.Pinning)
		if err != nil {
			return nil, "", err
		}
		scheme := "http"
		if setup.Scheme != "" {
			scheme = setup.Scheme
		}
		base := scheme + "://" + addr
		err = r.waitHealthy(ctx, srv, base)
		if err == nil {
			return srv, base, nil
		}
		if srv.Exited() && strings.Contains(srv.Stderr(), "listen") && attempt < 2 {
			lastErr = err
			_ = srv.Stop(r.cfg.StopGrace)
			continue
		}
		return srv, "", err
	}
	return nil, "", lastErr
}

// ProxyReady is the line bin/netshape prints on stdout once it listens:
// "listening 127.0.0.1:PORT".
const ProxyReady = "listening "

// startProxy starts the run's network-shaping proxy in front of upstream,
// pinned with the load generators (it is on their side of the network),
// and waits for the address it listens on.
func (r *Runner) startProxy(ctx context.Context, setup matrix.Setup, upstream string) (*proc.Proc, string, error) {
	var cpus []int
	if r.cfg.Pinning != nil {
		cpus = r.cfg.Pinning.LoadgenCPUs
	}
	pr, pw := io.Pipe()
	args := append(append([]string{}, setup.Proxy...), "-upstream", upstream, "-listen", net.JoinHostPort(r.cfg.Host, "0"))
	p, err := r.cfg.Group.Start(proc.Spec{Name: "proxy " + setup.ProxyName, Path: r.cfg.NetshapeBin, Args: args, Stdout: pw, CPUs: cpus}, r.cfg.Pinning)
	if err != nil {
		pw.Close()
		return nil, "", err
	}
	addrCh := make(chan string, 1)
	// Reads the proxy's stdout until it closes (the process exits, which
	// closes pw below): the first ready line is the address, the rest is
	// drained so that the proxy never blocks on a full pipe.
	go func() {
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			if line := sc.Text(); !sent && strings.HasPrefix(line, ProxyReady) {
				addrCh <- strings.TrimSpace(strings.TrimPrefix(line, ProxyReady))
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		<-p.Done()
		pw.Close()
	}()
	t := time.NewTimer(r.cfg.StartTimeout)
	defer t.Stop()
	select {
	case addr := <-addrCh:
		return p, addr, nil
	case <-p.Done():
		return p, "", fmt.Errorf("proxy exited before it listened: %s", p.ExitSummary())
	case <-t.C:
		return p, "", fmt.Errorf("proxy did not say it listens within %s", r.cfg.StartTimeout)
	case <-ctx.Done():
		return p, "", ctx.Err()
	}
}

// sideFigures is what the proxy cost over the server's measuring window.
func sideFigures(s Spec, setup matrix.Setup, res *result.Result, idle sample.Point, pts []sample.Point, cfg Config) *report.Side {
	sd := &report.Side{Name: "netshape " + setup.ProxyName, IdleRSSBytes: idle.RSSBytes}
	from := res.Start.Add(Ramp(s.Scenario, s.Clients) + cfg.warmup(s))
	first, last, _, ok := sample.Window(pts, from, from.Add(cfg.duration(s)))
	if !ok {
		if len(pts) < 2 {
			return sd
		}
		first, last = pts[0], pts[len(pts)-1]
	}
	sd.RSSBytes = last.RSSBytes
	sd.CPUSeconds = last.CPUSeconds - first.CPUSeconds
	sd.WindowSeconds = last.At.Sub(first.At).Seconds()
	if sd.WindowSeconds > 0 {
		sd.Saturated = sd.CPUSeconds/sd.WindowSeconds >= report.SideSaturation
	}
	return sd
}

// waitHealthy polls /healthz until it answers 200, the server exits, or
// StartTimeout passes.
func (r *Runner) waitHealthy(ctx context.Context, srv *proc.Proc, base string) error {
	deadline := time.Now().Add(r.cfg.StartTimeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
		if err != nil {
			return fmt.Errorf("healthz: %w", err)
		}
		resp, err := r.client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if srv.Exited() {
			return fmt.Errorf("server exited before /healthz answered: %s", srv.ExitSummary())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not healthy after %s (last: %v)", r.cfg.StartTimeout, err)
		}
		if !sleep(ctx, 20*time.Millisecond) {
			return fmt.Errorf("healthz: %w", ctx.Err())
		}
	}
}

// serverFigures fills run.Server from the samples taken while every client
// was connected and measured: from the end of the ramp and the warm-up to
// the end of -duration, counted from the load generators' start. The load
// generators' own result spans more (ramp, drain, closing), so its
// Start+Duration would count connection set-up and tear-down as the
// server's steady cost, and goroutines at its end after clients left.
func (r *Runner) serverFigures(run *report.Run, s Spec, res *result.Result, idle sample.Point, pts []sample.Point, runStart time.Time) {
	from := res.Start.Add(Ramp(s.Scenario, s.Clients) + r.cfg.warmup(s))
	to := from.Add(r.cfg.duration(s))
	first, last, n, ok := sample.Window(pts, from, to)
	if !ok {
		// Fewer than two samples in the window (a very short -duration):
		// fall back to every sample taken after the idle one.
		first, last, n, ok = sample.Window(pts, idle.At.Add(time.Nanosecond), time.Now())
	}
	srv := &run.Server
	for _, p := range pts {
		srv.Series = append(srv.Series, report.Point{T: p.At.Sub(runStart).Seconds(), RSSBytes: p.RSSBytes,
			CPUSeconds: p.CPUSeconds, Goroutines: p.Goroutines, Deliveries: p.Deliveries, Conns: p.ConnsOpen})
	}
	if !ok {
		return
	}
	srv.Samples = n
	srv.RSSBytes, srv.Goroutines, srv.ConnsOpen, srv.Refused = last.RSSBytes, last.Goroutines, last.ConnsOpen, last.Refused
	srv.RSSGrowthBytes = last.RSSBytes - first.RSSBytes
	srv.WindowSeconds = last.At.Sub(first.At).Seconds()
	srv.CPUSeconds = last.CPUSeconds - first.CPUSeconds
	srv.Deliveries = last.Deliveries - first.Deliveries
	srv.BytesWritten = last.BytesWritten - first.BytesWritten
	srv.Gaps = last.Gaps - first.Gaps
	srv.PollRequests = last.PollRequests - first.PollRequests
	for _, p := range pts {
		if !p.At.Before(first.At) && !p.At.After(last.At) {
			srv.PeakRSSBytes = max(srv.PeakRSSBytes, p.RSSBytes)
		}
	}
}

// keepLogs writes the stderr of a failed or warned run's processes to
// LogDir, named after the run, for the notes to point at.
func (r *Runner) keepLogs(s Spec, procs []*proc.Proc, errText string, warnings []string) {
	if r.cfg.LogDir == "" {
		return
	}
	if err := os.MkdirAll(r.cfg.LogDir, 0o755); err != nil {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "run: %s\n", s)
	if errText != "" {
		fmt.Fprintf(&b, "error: %s\n", errText)
	}
	for _, w := range warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	for _, p := range procs {
		fmt.Fprintf(&b, "\n--- %s (pid %d) stderr, last %d bytes ---\n%s", p.Name(), p.Pid(), proc.StderrTail, p.Stderr())
	}
	_ = os.WriteFile(filepath.Join(r.cfg.LogDir, s.Slug()+".log"), []byte(b.String()), 0o644)
}

// sleep waits d or until ctx ends; it reports whether the full d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
