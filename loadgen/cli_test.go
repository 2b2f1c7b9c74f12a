package loadgen

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushbench/pushbench/loadgen/result"
)

func runMain(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Main(context.Background(), args, &o, &e, false)
	return code, o.String(), e.String()
}

// TestCLIBadFlags: every usage error exits 2 with exactly one line.
func TestCLIBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-nope"}, "flag provided but not defined"},
		{[]string{"-clients", "x"}, "-clients"},
		{[]string{"-clients", "0"}, "-clients"},
		{[]string{"-transport", "smoke"}, "-transport"},
		{[]string{"-url", "ws://127.0.0.1:8080"}, "http://"},
		{[]string{"-url", "127.0.0.1:8080"}, "-url"},
		{[]string{"-url", "http://"}, "-url"},
		{[]string{"-url", "http://h:1/?x=1"}, "base URL"},
		{[]string{"-url", "http://[::1"}, "-url"},
		{[]string{"-duration", "0s"}, "-duration"},
		{[]string{"-duration", "soon"}, "-duration"},
		{[]string{"-symbols", "AAPL,ZZZZ"}, "ZZZZ"},
		{[]string{"-symbols", "AAPL,,MSFT"}, "empty name"},
		{[]string{"-symbols", "AAPL", "-feed-symbols", "0"}, "-feed-symbols"},
		{[]string{"-feed-symbols", "-1"}, "-feed-symbols"},
		{[]string{"-source-ips", "127.0.0.9-127.0.0.1"}, "-source-ips"},
		{[]string{"-transport", "shortpoll", "-churn", "0.1"}, "-churn"},
		{[]string{"-churn", "-1"}, "-churn"},
		{[]string{"-interval", "1us", "-transport", "shortpoll"}, "-interval"},
		{[]string{"-read-buffer", "1"}, "-read-buffer"},
		{[]string{"-idle-timeout", "0s"}, "timeout"},
		{[]string{"extra"}, "unexpected argument"},
	}
	for _, c := range cases {
		code, out, errOut := runMain(c.args...)
		if code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", c.args, code, ExitUsage)
		}
		if out != "" || strings.Count(errOut, "\n") != 1 || !strings.HasSuffix(errOut, "\n") {
			t.Errorf("%v: stdout %q, stderr %q: want one line on stderr only", c.args, out, errOut)
		}
		if !strings.Contains(errOut, c.want) {
			t.Errorf("%v: %q does not mention %q", c.args, errOut, c.want)
		}
	}
}

func TestCLIHelp(t *testing.T) {
	code, out, _ := runMain("-h")
	if code != ExitOK {
		t.Errorf("-h: exit %d", code)
	}
	for _, f := range []string{"-transport", "-url", "-clients", "-duration", "-ramp", "-symbols", "-churn",
		"-source-ips", "-out", "-interval", "-rate", "-seed", "-feed-symbols", "storm-sse", "shortpoll"} {
		if !strings.Contains(out, f) {
			t.Errorf("-h does not document %s", f)
		}
	}
}

func TestCLIServerDown(t *testing.T) {
	code, out, errOut := runMain("-url", "http://127.0.0.1:9", "-quiet")
	if code != ExitError || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "is the server running") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestCLIRun runs the command against a clean and a faulty server, with -out
// and -strict.
func TestCLIRun(t *testing.T) {
	good := newFaultServer(t, faultNone, 100)
	out := filepath.Join(t.TempDir(), "r.json")
	code, stdout, stderr := runMain("-transport", "ws", "-url", good.URL, "-clients", "10", "-duration", "500ms",
		"-out", out, "-strict", "-progress", "100ms")
	if code != ExitOK {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "ok: every expected tick arrived") || !strings.Contains(stdout, "latency") {
		t.Errorf("summary:\n%s", stdout)
	}
	if !strings.Contains(stderr, "clients") {
		t.Errorf("no progress lines on stderr: %q", stderr)
	}
	res, err := result.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if res.SchemaVersion != result.SchemaVersion || res.Transport != "ws" || res.HistLatency == "" || res.Counts.Received == 0 {
		t.Errorf("result file: %+v", res)
	}
	h, err := result.DecodeHist(res.HistLatency)
	if err != nil || h.TotalCount() != res.Latency.Count {
		t.Errorf("histogram: %v, %d values, summary says %d", err, h.TotalCount(), res.Latency.Count)
	}
	if _, err := result.Merge(res, res); err != nil {
		t.Errorf("merge: %v", err)
	}

	bad := newFaultServer(t, faultRepeat, 100)
	code, stdout, _ = runMain("-transport", "sse", "-url", bad.URL, "-clients", "5", "-duration", "500ms", "-strict", "-quiet")
	if code != ExitFaults || !strings.Contains(stdout, "FAULTS: 5 duplicates") {
		t.Errorf("faulty server: exit %d, summary:\n%s", code, stdout)
	}
	if _, err := os.Stat(out); err != nil {
		t.Error(err)
	}
}
