// Command bench runs the pushbench comparison: for every scenario,
// transport, client count and repeat it starts bin/server and bin/loadgen
// processes, samples the server from outside, and writes
// results/<UTC timestamp>/ (results.json, summary.md, charts, bench.txt,
// env.json) with results/latest pointing at it, then prints the tables.
//
// Exit status: 0 when every run produced figures (flagged cells included:
// saturation and incorrect delivery are results), 1 when a run failed or a
// server crashed or the results could not be written, 2 on a bad flag,
// 130 when interrupted (the runs done so far are still written).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/pushbench/pushbench/bench/env"
	"github.com/pushbench/pushbench/bench/matrix"
	"github.com/pushbench/pushbench/bench/proc"
	"github.com/pushbench/pushbench/bench/report"
	"github.com/pushbench/pushbench/bench/runner"
	"github.com/pushbench/pushbench/internal/rlimit"
	"github.com/pushbench/pushbench/servers/feed"
)

// The flags' defaults are the main table's (bench/matrix.Transports); a
// matrix flag given explicitly replaces that figure in every table run.
// The tables themselves, and which of them `make bench` runs, are defined
// in bench/matrix.
const (
	DefaultTransports = "sse,ws,poll,shortpoll"
	DefaultClients    = "100,1000,5000"
	DefaultScenarios  = "steady,slow,churn,storm"
	DefaultDuration   = time.Second
	DefaultWarmup     = 500 * time.Millisecond
	DefaultRepeat     = 3
	DefaultRate       = 10.0
	DefaultSymbols    = feed.DefaultSymbols
	DefaultSlowShare  = 0.1
	DefaultChurn      = 0.1
	DefaultPollEvery  = time.Second
)

func main() {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	code := run(os.Args[1:], os.Stdout, os.Stderr, sig)
	signal.Stop(sig)
	os.Exit(code)
}

// options are the parsed and checked flags.
type options struct {
	tables     []matrix.Table
	netshape   string
	transports []string
	clients    []int
	scenarios  []string
	duration   time.Duration
	warmup     time.Duration
	repeat     int
	rate       float64
	symbols    int
	seed       uint64
	subscribe  string
	slowShare  float64
	churn      float64
	pollEvery  time.Duration
	out        string
	serverBin  string
	loadgenBin string
	pin        string
	charts     string
	progress   string
	from       string
	sampleEvry time.Duration
	serverArgs []string
	lgArgs     []string
	perLoadgen int
	openFiles  uint64
}

// usageError is a bad flag: one line on stderr and exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

func run(args []string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "bench: %s\n", ue.msg)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	if o.from != "" {
		return rerender(o, stdout, stderr)
	}
	return bench(o, args, stdout, stderr, sig)
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		transports = fs.String("transports", DefaultTransports, "transports to compare, comma separated: sse, ws, poll (long polling), shortpoll (plain polling against the poll server); given, it replaces every table's")
		clients    = fs.String("clients", DefaultClients, "client counts, comma separated; at most the open-files limit minus a reserve; given, it replaces every table's")
		scenarios  = fs.String("scenarios", DefaultScenarios, "scenarios, comma separated: steady, slow (a share of clients stall), churn (reconnect and resume), storm (everyone connects at once); given, it replaces every table's")
		duration   = fs.Duration("duration", DefaultDuration, "measured time of every run (given: every table's; default: each table's own)")
		warmup     = fs.Duration("warmup", DefaultWarmup, "time after the clients connected and before measuring (given: every table's)")
		repeat     = fs.Int("repeat", DefaultRepeat, "repeats of every cell; tables show the median with min–max (given: every table's)")
		rate       = fs.Float64("rate", DefaultRate, "feed rate, ticks per second for the whole feed (given: every table's)")
		symbols    = fs.Int("symbols", DefaultSymbols, "symbols in the feed")
		seed       = fs.Uint64("seed", feed.DefaultSeed, "feed seed")
		subscribe  = fs.String("subscribe", "", "what each client subscribes to, passed to bin/loadgen -symbols (empty: loadgen's default)")
		slowShare  = fs.Float64("slow-share", DefaultSlowShare, "slow scenario: share of clients that stall, between 0 and 1")
		churn      = fs.Float64("churn", DefaultChurn, "churn scenario: share of clients dropped and resumed per second, between 0 and 10")
		pollEvery  = fs.Duration("poll-interval", DefaultPollEvery, "shortpoll: each client polls this often")
		out        = fs.String("out", "results", "directory for results: each run writes OUT/<UTC timestamp>/ and points OUT/latest at it")
		serverBin  = fs.String("server", "bin/server", "server binary (make build)")
		loadgenBin = fs.String("loadgen", "bin/loadgen", "load generator binary, built from the same tree (make build): bench passes it this version's flags")
		pin        = fs.String("pin", "auto", "CPU pinning: auto (taskset if found), taskset, sched_setaffinity or off")
		charts     = fs.String("charts", "svg", "chart format: svg, png or none")
		prog       = fs.String("progress", "auto", "progress display: auto (a bar on a terminal, lines otherwise), bar, lines or off")
		from       = fs.String("from", "", "do not run: re-render the reports of an existing results.json (or its directory) in place")
		sampleEvry = fs.Duration("sample-interval", runner.DefaultSampleInterval, "how often the server is sampled (/proc and /metrics)")
		serverArgs = fs.String("server-flags", "", "extra flags for every bin/server, space separated")
		lgArgs     = fs.String("loadgen-flags", "", "extra flags for every bin/loadgen, space separated")
		perLoadgen = fs.Int("clients-per-loadgen", 0, "most clients one bin/loadgen process holds (0: as many as the open-files limit allows); more processes share the load-generator CPUs")
		full       = fs.Bool("full", false, "every table at full size (make bench-full): client counts up to the open-files limit, longer runs, every dimension value; explicit flags still win")
		tables     = fs.String("tables", "", "tables to run, comma separated (default: make bench's curated set; with a dimension flag below, the tables that vary it); see -h for the list")
		protocols  = fs.String("protocols", "", "protocol values, comma separated (e.g. h1,tls,h2); replaces the protocols of every table run")
		networks   = fs.String("networks", "", "network profiles, comma separated (e.g. loopback,wan,mobile, or rtt=80ms,jitter=10ms); replaces the networks of every table run")
		impls      = fs.String("impls", "", "server implementations, comma separated (e.g. pushbench,nethttp); replaces the implementations of every table run")
		netshape   = fs.String("netshape", "bin/netshape", "network-shaping proxy binary (make build), for networks other than loopback")
	)
	// Parse prints Usage itself on any error; bench prints the one-line
	// error instead, and the usage only for -h.
	fs.Usage = func() {}
	usage := func() {
		fmt.Fprintf(stderr, `Usage: bench [flags]

Runs the pushbench comparison: a set of tables, each a matrix of scenarios ×
transports × dimension values (protocol, network, implementation, workload)
× clients × repeats. For every run it starts bin/server (and a network proxy
when the profile needs one) and bin/loadgen, samples them from outside, and
writes OUT/<UTC timestamp>/{results.json,summary.md,bench.txt,env.json,charts}.

Tables (* = in make bench):
%s
Flags:
`, tableList())
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage()
			return nil, err
		}
		return nil, usagef("%v (see -h)", err)
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q (see -h)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	// The server and load generators inherit the raised limit; it sizes
	// how many clients one load-generator process may hold.
	openFiles, _, err := rlimit.RaiseFiles()
	if err != nil {
		return nil, err
	}
	o := &options{duration: *duration, warmup: *warmup, repeat: *repeat, rate: *rate, symbols: *symbols, seed: *seed,
		subscribe: *subscribe, slowShare: *slowShare, churn: *churn, pollEvery: *pollEvery, out: *out, pin: *pin, charts: *charts,
		progress: *prog, from: *from, sampleEvry: *sampleEvry, perLoadgen: *perLoadgen, openFiles: openFiles}
	if o.transports, err = parseList("transports", *transports, report.Transports); err != nil {
		return nil, err
	}
	if o.scenarios, err = parseList("scenarios", *scenarios, report.Scenarios); err != nil {
		return nil, err
	}
	if o.clients, err = parseClients(*clients, openFiles); err != nil {
		return nil, err
	}
	switch {
	case o.duration < 500*time.Millisecond:
		return nil, usagef("-duration must be at least 500ms, got %v", o.duration)
	case o.warmup < 0:
		return nil, usagef("-warmup must not be negative, got %v", o.warmup)
	case o.repeat < 1 || o.repeat > 100:
		return nil, usagef("-repeat must be 1..100, got %d", o.repeat)
	case !(o.rate > 0 && o.rate <= feed.MaxRate):
		return nil, usagef("-rate must be > 0 and <= %g ticks/s, got %g", feed.MaxRate, o.rate)
	case o.symbols < 1 || o.symbols > feed.MaxSymbols:
		return nil, usagef("-symbols must be 1..%d, got %d", feed.MaxSymbols, o.symbols)
	case !(o.slowShare > 0 && o.slowShare < 1):
		return nil, usagef("-slow-share must be between 0 and 1 (exclusive), got %g", o.slowShare)
	case !(o.churn > 0 && o.churn <= 10):
		return nil, usagef("-churn must be a share of clients per second in (0, 10], got %g", o.churn)
	case o.pollEvery < time.Millisecond:
		return nil, usagef("-poll-interval must be at least 1ms, got %v", o.pollEvery)
	case o.out == "":
		return nil, usagef("-out must not be empty")
	case !slices.Contains([]string{"auto", proc.ModeTaskset, proc.ModeSchedSetaffinity, proc.ModeOff}, o.pin):
		return nil, usagef("-pin must be auto, taskset, sched_setaffinity or off, got %q", o.pin)
	case !slices.Contains([]string{"svg", "png", "none"}, o.charts):
		return nil, usagef("-charts must be svg, png or none, got %q", o.charts)
	case !slices.Contains([]string{"auto", "bar", "lines", "off"}, o.progress):
		return nil, usagef("-progress must be auto, bar, lines or off, got %q", o.progress)
	case o.perLoadgen < 0:
		return nil, usagef("-clients-per-loadgen must not be negative, got %d", o.perLoadgen)
	case o.sampleEvry < 10*time.Millisecond:
		return nil, usagef("-sample-interval must be at least 10ms, got %v", o.sampleEvry)
	case o.sampleEvry*2 > o.duration:
		return nil, usagef("-sample-interval %v is too long for -duration %v: the window needs at least two samples", o.sampleEvry, o.duration)
	}
	o.serverArgs, o.lgArgs = strings.Fields(*serverArgs), strings.Fields(*lgArgs)
	dimFlags := map[string]string{}
	for flagName, dim := range map[string]string{"protocols": report.DimProtocol, "networks": report.DimNetwork, "impls": report.DimImpl} {
		if set[flagName] {
			dimFlags[dim] = map[string]string{report.DimProtocol: *protocols, report.DimNetwork: *networks, report.DimImpl: *impls}[dim]
		}
	}
	if o.tables, err = selectTables(matrix.Scale{Full: *full, MaxClients: runner.ServerCapacity(openFiles)}, *tables, set, dimFlags, o); err != nil {
		return nil, err
	}
	if o.from != "" {
		return o, nil // re-rendering needs no binaries
	}
	for _, t := range o.tables {
		for _, c := range t.Cells(runner.Applies) {
			if setup, _ := matrix.Resolve(c.Dims, c.Transport); setup.Proxy != nil && o.netshape == "" {
				if o.netshape, err = findBinary("netshape", *netshape); err != nil {
					return nil, err
				}
			}
		}
	}
	if o.serverBin, err = findBinary("server", *serverBin); err != nil {
		return nil, err
	}
	if o.loadgenBin, err = findBinary("loadgen", *loadgenBin); err != nil {
		return nil, err
	}
	return o, nil
}

// selectTables picks the tables to run and applies the matrix flags given
// explicitly to each. Which tables: -tables if given; else the tables
// that vary a dimension whose flag was given; else, if only -transports,
// -clients or -scenarios was given, the main table; else make bench's
// curated set (every table with -full).
func selectTables(sc matrix.Scale, names string, set map[string]bool, dimFlags map[string]string, o *options) ([]matrix.Table, error) {
	all := matrix.All(sc)
	var out []matrix.Table
	switch {
	case set["tables"]:
		var known []string
		for _, t := range all {
			known = append(known, t.Name)
		}
		list, err := parseList("tables", names, known)
		if err != nil {
			return nil, err
		}
		for _, n := range list {
			t, _ := matrix.Lookup(n, sc)
			out = append(out, t)
		}
	case len(dimFlags) > 0:
		for _, t := range all {
			for dim := range dimFlags {
				if len(t.Values(dim)) > 1 && !slices.ContainsFunc(out, func(x matrix.Table) bool { return x.Name == t.Name }) {
					out = append(out, t)
				}
			}
		}
		if len(out) == 0 {
			out = append(out, all[0])
		}
	case set["transports"] || set["clients"] || set["scenarios"]:
		out = append(out, all[0])
	default:
		for _, t := range all {
			if t.Default || sc.Full {
				out = append(out, t)
			}
		}
	}
	for i := range out {
		t := &out[i]
		if set["transports"] {
			t.Transports = o.transports
		}
		if set["clients"] {
			t.Clients = o.clients
		}
		if set["scenarios"] {
			t.Scenarios = o.scenarios
		}
		if set["repeat"] {
			t.Repeat = o.repeat
		}
		if set["duration"] {
			t.Duration = o.duration
		}
		if set["warmup"] {
			t.Warmup = o.warmup
		}
		if set["rate"] {
			t.Rate = o.rate
		}
		for dim, v := range dimFlags {
			d, _ := matrix.DimensionNamed(dim)
			var vals []string
			for _, name := range strings.Split(v, ",") {
				name = strings.TrimSpace(name)
				if _, err := d.Lookup(name); err != nil {
					return nil, usagef("-%s: %v", map[string]string{report.DimProtocol: "protocols", report.DimNetwork: "networks", report.DimImpl: "impls"}[dim], err)
				}
				if slices.Contains(vals, name) {
					return nil, usagef("%s %q given twice", dim, name)
				}
				vals = append(vals, name)
			}
			if t.Dims == nil {
				t.Dims = map[string][]string{}
			} else {
				t.Dims = maps.Clone(t.Dims)
			}
			t.Dims[dim] = vals
		}
		if err := t.Check(); err != nil {
			return nil, usagef("%v", err)
		}
		if len(t.Cells(runner.Applies)) == 0 {
			return nil, usagef("table %s: no run left (no transport takes part in its scenarios with these values)", t.Name)
		}
		if most := runner.ServerCapacity(o.openFiles); slices.Max(t.Clients) > most {
			return nil, usagef("table %s: %d clients exceed what one server process can hold with an open-files limit of %d (at most %d)", t.Name, slices.Max(t.Clients), o.openFiles, most)
		}
	}
	return out, nil
}

// tableList describes every table for -h.
func tableList() string {
	var b strings.Builder
	for _, t := range matrix.All(matrix.Scale{MaxClients: 10000}) {
		mark := " "
		if t.Default {
			mark = "*"
		}
		fmt.Fprintf(&b, "  %s %-11s %s\n", mark, t.Name, t.About)
	}
	return b.String()
}

// parseList splits a comma-separated list, refusing unknown and repeated names.
func parseList(name, v string, allowed []string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		switch {
		case s == "":
			return nil, usagef("-%s: empty entry in %q", name, v)
		case !slices.Contains(allowed, s):
			return nil, usagef("-%s: unknown %q (want %s)", name, s, strings.Join(allowed, ", "))
		case slices.Contains(out, s):
			return nil, usagef("-%s: %q given twice", name, s)
		}
		out = append(out, s)
	}
	return out, nil
}

// parseClients reads the client counts, each positive and within what one
// server process can hold under the open-files limit.
func parseClients(v string, openFiles uint64) ([]int, error) {
	most := runner.ServerCapacity(openFiles)
	var out []int
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		n, err := strconv.Atoi(s)
		switch {
		case err != nil || n < 1:
			return nil, usagef("-clients: %q is not a positive integer", s)
		case n > most:
			return nil, usagef("-clients: %d exceeds what one server process can hold with an open-files limit of %d (at most %d)", n, openFiles, most)
		case slices.Contains(out, n):
			return nil, usagef("-clients: %d given twice", n)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// findBinary checks that path is an executable file; a relative path that
// does not exist is also looked up next to bench's own binary (bin/).
func findBinary(name, path string) (string, error) {
	candidates := []string{path}
	if !filepath.IsAbs(path) {
		if exe, err := os.Executable(); err == nil {
			candidates = append(candidates, filepath.Join(filepath.Dir(exe), filepath.Base(path)))
		}
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			abs, err := filepath.Abs(c)
			if err != nil {
				return "", fmt.Errorf("-%s: %w", name, err)
			}
			return abs, nil
		}
	}
	return "", usagef("-%s: %s is not an executable file (run make build first)", name, path)
}

// bench runs the matrix and writes everything.
func bench(o *options, args []string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	group := &proc.Group{}
	// Processes are stopped by their run on every path; this is the last
	// line of defence (a panic in bench, or leaving run early).
	defer func() { _ = group.StopAll(time.Second) }()

	// First signal: stop cleanly and write what was measured. Second: kill
	// every process at once and leave.
	sigDone := make(chan struct{})
	defer close(sigDone)
	go func() {
		select {
		case <-sig:
		case <-sigDone:
			return
		}
		fmt.Fprintln(stderr, "\nbench: interrupted: stopping the processes and writing the runs done so far (again to kill at once)")
		cancel()
		select {
		case <-sig:
			group.KillAll()
			fmt.Fprintln(stderr, "bench: killed")
			os.Exit(130)
		case <-sigDone:
		}
	}()

	pin, err := proc.PlanPinning(o.pin)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	work, err := os.MkdirTemp("", "pushbench-")
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	defer os.RemoveAll(work)

	// The run's directory exists only once the run can start.
	started := time.Now().UTC()
	dir := filepath.Join(o.out, started.Format("20060102T150405Z"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	wd, _ := os.Getwd()
	e := env.Collect(ctx, pin, wd)
	main := o.tables[0]
	cfg := report.Config{
		Transports: main.Transports, Clients: main.Clients, Scenarios: main.Scenarios, Repeat: main.Repeat,
		Duration: report.Duration(main.Duration), Warmup: report.Duration(main.Warmup), Rate: main.Rate, Symbols: o.symbols, Seed: o.seed,
		SlowShare: o.slowShare, ChurnShare: o.churn, PollInterval: report.Duration(o.pollEvery),
		StormRate: runner.StormMinRate, Subscribe: o.subscribe, Args: args,
	}
	for _, t := range o.tables {
		cfg.StormRate = max(cfg.StormRate, t.Rate)
		if slices.Contains(t.Transports, "shortpoll") && slices.ContainsFunc(t.Scenarios, func(s string) bool { return s != report.Steady }) {
			cfg.Caveats = append(cfg.Caveats, "shortpoll runs in steady only: stalls, churn and storms concern held connections, and a short poller holds none between requests.")
			break
		}
	}
	if l := e.LoadAvg; len(l) > 0 && l[0] > 0.5*float64(e.Cores) {
		cfg.Caveats = append(cfg.Caveats, fmt.Sprintf("The machine was busy when bench started (load average %.1f on %d cores): other work competed for the CPUs, so latency and saturation figures are pessimistic.", l[0], e.Cores))
	}
	var pr *progress // set once the plan is known; the runner calls it from Run's goroutine
	rn, err := runner.New(runner.Config{
		ServerBin: o.serverBin, LoadgenBin: o.loadgenBin, NetshapeBin: o.netshape, Tables: o.tables,
		Symbols: o.symbols, Seed: o.seed,
		ClientSymbols: o.subscribe, SlowShare: o.slowShare, ChurnShare: o.churn, PollInterval: o.pollEvery,
		OpenFiles: o.openFiles, MaxPerLoadgen: o.perLoadgen, Pinning: pin, SampleInterval: o.sampleEvry,
		WorkDir: work, LogDir: filepath.Join(dir, "logs"),
		ServerArgs: o.serverArgs, LoadgenArgs: o.lgArgs, Group: group,
		Progress: func(e runner.Event) {
			if pr != nil {
				pr.event(e)
			}
		},
	})
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	cfg.Tables = rn.Tables()
	rep := report.New(cfg, e, started)
	plan := rn.Plan()
	var planned time.Duration
	for _, s := range plan {
		planned += rn.Estimate(s)
	}
	var names []string
	for _, t := range o.tables {
		names = append(names, t.Name)
	}
	fmt.Fprintf(stderr, "bench: %d runs in %d table(s) (%s), about %s; writing %s\nbench: %s\n",
		len(plan), len(o.tables), strings.Join(names, ", "), planned.Round(time.Second), dir, pin.Note)
	showBar := o.progress == "bar" || (o.progress == "auto" && isTerminal(stderr) && os.Getenv("CI") == "")
	if o.progress != "off" {
		pr = newProgress(stderr, showBar, len(plan), planned)
	}
	runErr := rn.Run(ctx, rep)
	if pr != nil {
		pr.finish()
	}
	interrupted := errors.Is(runErr, context.Canceled)
	rep.Interrupted = interrupted
	code := 0
	if err := rep.Close(time.Now()); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		code = 1
	}
	if err := writeAll(rep, dir, o.charts); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	if err := pointLatest(o.out, filepath.Base(dir)); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		code = 1
	}
	if err := report.NewTablesReporter(rep, report.ASCII)(stdout); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "\n%s\n\nWritten to %s (summary.md, results.json, bench.txt, env.json).\n", report.Conditions(rep), dir)
	switch {
	case interrupted:
		return 130
	case rep.Failed() > 0:
		fmt.Fprintf(stderr, "bench: %d run(s) failed or crashed; see the notes and %s\n", rep.Failed(), filepath.Join(dir, "logs"))
		return 1
	}
	return code
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// writeAll writes every report file into dir.
func writeAll(rep *report.Report, dir, chartFormat string) error {
	var charts []report.Chart
	if chartFormat != "none" {
		charts = report.Charts(rep, chartFormat)
	}
	files := []struct {
		name string
		r    report.Reporter
	}{
		{"results.json", report.NewJSONReporter(rep)},
		{"env.json", func(w io.Writer) error { return writeJSON(w, rep.Env) }},
		{"bench.txt", report.NewBenchfmtReporter(rep)},
		{"tables.txt", report.NewTablesReporter(rep, report.ASCII)},
	}
	var written []report.Chart
	for _, c := range charts {
		if err := writeFile(filepath.Join(dir, c.File), report.NewChartReporter(rep, c)); err != nil {
			return err
		}
		written = append(written, c)
	}
	files = append(files, struct {
		name string
		r    report.Reporter
	}{"summary.md", report.NewSummaryReporter(rep, written)})
	for _, f := range files {
		if err := writeFile(filepath.Join(dir, f.name), f.r); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path string, r report.Reporter) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := r(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// pointLatest makes out/latest a relative symlink to the run's directory,
// replacing the old link atomically (rename over it).
func pointLatest(out, name string) error {
	tmp := filepath.Join(out, ".latest.tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(name, tmp); err != nil {
		return fmt.Errorf("link latest: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(out, "latest")); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("link latest: %w", err)
	}
	return nil
}

// rerender rewrites the reports of an existing run from its results.json.
func rerender(o *options, stdout, stderr io.Writer) int {
	path := o.from
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "results.json")
	}
	rep, err := report.LoadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	dir := filepath.Dir(path)
	if err := writeAll(rep, dir, o.charts); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	if err := report.NewTablesReporter(rep, report.ASCII)(stdout); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}
