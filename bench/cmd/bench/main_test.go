package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pushbench/pushbench/bench/matrix"
	"github.com/pushbench/pushbench/bench/report"
)

func TestMain(m *testing.M) {
	var err error
	if binDir, err = os.MkdirTemp("", "pushbench-bin-"); err != nil {
		panic(err)
	}
	code := m.Run()
	_ = os.RemoveAll(binDir)
	os.Exit(code)
}

// TestFlagValidation: every bad flag is one line on stderr and exit 2.
func TestFlagValidation(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bins := []string{"-server", exe, "-loadgen", exe}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-transports", "sse,carrier-pigeon"}, `-transports: unknown "carrier-pigeon"`},
		{[]string{"-transports", "sse,sse"}, `-transports: "sse" given twice`},
		{[]string{"-transports", ""}, "-transports: empty entry"},
		{[]string{"-clients", "10,abc"}, `-clients: "abc" is not a positive integer`},
		{[]string{"-clients", "0"}, `-clients: "0" is not a positive integer`},
		{[]string{"-clients", "10,10"}, "-clients: 10 given twice"},
		{[]string{"-clients", "1000000"}, "-clients: 1000000 exceeds what one server process can hold"},
		{[]string{"-scenarios", "steady,panic"}, `-scenarios: unknown "panic"`},
		{[]string{"-duration", "10ms"}, "-duration must be at least 500ms"},
		{[]string{"-duration", "soon"}, "invalid value"},
		{[]string{"-warmup", "-1s"}, "-warmup must not be negative"},
		{[]string{"-repeat", "0"}, "-repeat must be 1..100"},
		{[]string{"-rate", "0"}, "-rate must be > 0"},
		{[]string{"-symbols", "0"}, "-symbols must be 1.."},
		{[]string{"-slow-share", "1"}, "-slow-share must be between 0 and 1"},
		{[]string{"-churn", "0"}, "-churn must be a share"},
		{[]string{"-poll-interval", "0s"}, "-poll-interval must be at least 1ms"},
		{[]string{"-out", ""}, "-out must not be empty"},
		{[]string{"-pin", "maybe"}, "-pin must be auto, taskset"},
		{[]string{"-charts", "gif"}, "-charts must be svg, png or none"},
		{[]string{"-progress", "loud"}, "-progress must be auto, bar, lines or off"},
		{[]string{"-sample-interval", "1ms"}, "-sample-interval must be at least 10ms"},
		{[]string{"-sample-interval", "2s", "-duration", "3s"}, "too long for -duration"},
		{[]string{"-clients-per-loadgen", "-1"}, "-clients-per-loadgen must not be negative"},
		{[]string{"-no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-server", "/nonexistent/server"}, "-server: /nonexistent/server is not an executable file"},
		{[]string{"-server", exe, "-loadgen", "go.mod"}, "-loadgen: go.mod is not an executable file"},
	} {
		var stdout, stderr bytes.Buffer
		args := tc.args
		if !strings.HasPrefix(tc.want, "-server") && !strings.HasPrefix(tc.want, "-loadgen") {
			args = append(append([]string{}, bins...), args...)
		}
		code := run(args, &stdout, &stderr, nil)
		msg := stderr.String()
		if code != 2 || !strings.HasPrefix(msg, "bench: ") || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line with %q", tc.args, code, msg, tc.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("%v: wrote to stdout: %q", tc.args, stdout.String())
		}
	}
}

func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-h"}, &stdout, &stderr, nil); code != 0 {
		t.Errorf("-h exit %d", code)
	}
	for _, f := range []string{"-transports", "-clients", "-duration", "-out", "-repeat", "-scenarios", "-warmup", "-rate", "-symbols", "-full"} {
		if !strings.Contains(stderr.String(), "  "+f+" ") && !strings.Contains(stderr.String(), "  "+f+"\n") {
			t.Errorf("-h does not document %s", f)
		}
	}
}

func TestFullMatrixDefaults(t *testing.T) {
	if got := fmt.Sprint(matrix.FullClients(19000)); got != "[100 1000 5000 10000 19000]" {
		t.Errorf("FullClients(19000) = %s", got)
	}
	if got := fmt.Sprint(matrix.FullClients(960)); got != "[100]" {
		t.Errorf("FullClients(960) = %s", got)
	}
}

// binDir receives the real programs; TestMain sets it before any test runs
// and removes it after the last.
var binDir string

// buildBinaries builds bin/server and bin/loadgen into binDir, once for all
// the tests that need them.
var buildBinaries = sync.OnceValue(func() error {
	for name, pkg := range map[string]string{
		"server":  "github.com/pushbench/pushbench/servers/cmd/server",
		"loadgen": "github.com/pushbench/pushbench/loadgen/cmd/loadgen",
	} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, name), pkg).CombinedOutput()
		if err != nil {
			return &buildError{pkg, string(out), err}
		}
	}
	return nil
})

type buildError struct {
	pkg, out string
	err      error
}

func (e *buildError) Error() string { return "go build " + e.pkg + ": " + e.err.Error() + "\n" + e.out }

func realBinaries(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the real server and load generator")
	}
	if err := buildBinaries(); err != nil {
		t.Fatal(err)
	}
	return binDir
}

// TestEndToEnd runs a tiny matrix with the real programs and checks the
// files, the tables and the results.
func TestEndToEnd(t *testing.T) {
	bin := realBinaries(t)
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"-server", filepath.Join(bin, "server"), "-loadgen", filepath.Join(bin, "loadgen"),
		"-transports", "sse,ws", "-clients", "10", "-scenarios", "steady", "-repeat", "1",
		"-duration", "1s", "-warmup", "0s", "-rate", "50", "-out", out, "-progress", "lines"}
	code := run(args, &stdout, &stderr, nil)
	if code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr.String(), stdout.String())
	}
	latest, err := os.Readlink(filepath.Join(out, "latest"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(out, latest)
	for _, f := range []string{"results.json", "summary.md", "env.json", "bench.txt", "tables.txt", "steady_latency.svg", "steady_memory.svg"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	rep, err := report.LoadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Cells) != 2 {
		t.Fatalf("%d cells, want 2", len(rep.Cells))
	}
	for _, c := range rep.Cells {
		run := c.Runs[0]
		if !run.OK() {
			t.Fatalf("%s failed: %s", c.Key(), run.Error)
		}
		if run.Result.Connected != 10 || run.Result.Counts.Received == 0 || run.Server.IdleRSSBytes == 0 || run.Server.Samples < 2 {
			t.Errorf("%s: implausible run %+v", c.Key(), run.Server)
		}
		if c.Merged == nil || c.Merged.Latency.Count == 0 {
			t.Errorf("%s: no merged latency", c.Key())
		}
	}
	summary, _ := os.ReadFile(filepath.Join(dir, "summary.md"))
	for _, want := range []string{"# pushbench results", "## What these numbers say", "## steady", "| transport | clients |", "| sse ", "| ws ", "![steady: p99 latency"} {
		if !bytes.Contains(summary, []byte(want)) {
			t.Errorf("summary.md lacks %q", want)
		}
	}
	for _, want := range []string{"+-----------+", "| sse ", "| ws ", "Written to " + dir} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "[1/2] steady sse 10 clients (repeat 1)") {
		t.Errorf("no progress lines:\n%s", stderr.String())
	}
	var env map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "env.json"))
	if err := json.Unmarshal(b, &env); err != nil || env["cores"] == nil || env["pinning"] == nil || env["open_files_limit"] == nil {
		t.Errorf("env.json: %v %v", err, env)
	}
	bt, _ := os.ReadFile(filepath.Join(dir, "bench.txt"))
	if !bytes.Contains(bt, []byte("BenchmarkPushbench/scenario=steady/transport=sse/clients=10 \t1\t")) {
		t.Errorf("bench.txt:\n%s", bt)
	}

	// Re-rendering from results.json gives the same tables.
	var again bytes.Buffer
	if code := run([]string{"-from", dir}, &again, &stderr, nil); code != 0 {
		t.Fatalf("-from: exit %d: %s", code, stderr.String())
	}
	tables, _ := os.ReadFile(filepath.Join(dir, "tables.txt"))
	if !bytes.Equal(again.Bytes(), tables) {
		t.Errorf("-from tables differ:\n%s\n%s", again.Bytes(), tables)
	}
}

// TestServerCrashEndToEnd: a server that dies is reported in the table,
// the notes and the exit status, and its log is kept.
func TestServerCrashEndToEnd(t *testing.T) {
	bin := realBinaries(t)
	crash := filepath.Join(t.TempDir(), "server")
	if err := os.WriteFile(crash, []byte("#!/bin/sh\necho 'panic: fake crash' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run([]string{"-server", crash, "-loadgen", filepath.Join(bin, "loadgen"), "-transports", "sse", "-clients", "10",
		"-scenarios", "steady", "-repeat", "1", "-duration", "1s", "-out", out, "-progress", "off", "-charts", "none"}, &stdout, &stderr, nil)
	if code != 1 {
		t.Errorf("exit %d, want 1\n%s", code, stderr.String())
	}
	for _, want := range []string{"CRASHED", "SERVER CRASHED in 1/1 runs", "exit status 3", "panic: fake crash"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
	logs, _ := filepath.Glob(filepath.Join(out, "latest", "logs", "*.log"))
	if len(logs) != 1 {
		t.Errorf("logs %v", logs)
	}
}
