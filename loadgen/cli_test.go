package loadgen

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushbench/pushbench/loadgen/internal/servertest"
	"github.com/pushbench/pushbench/loadgen/result"
	"github.com/pushbench/pushbench/servers/server"
)

func runMain(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Main(context.Background(), args, &o, &e, false)
	return code, o.String(), e.String()
}

// TestCLIBadFlags: every usage error exits 2 with exactly one line.
func TestCLIBadFlags(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
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
		{[]string{"-slow", "1.5"}, "-slow"},
		{[]string{"-slow", "-0.1"}, "-slow"},
		{[]string{"-slow", "NaN"}, "-slow"},
		{[]string{"-slow", "many"}, "-slow"},
		{[]string{"-transport", "shortpoll", "-slow", "0.1"}, "-slow applies to sse, ws and poll"},
		{[]string{"-transport", "storm-sse", "-slow", "0.1"}, "-slow applies to sse, ws and poll"},
		{[]string{"-warmup", "-1s"}, "-warmup"},
		{[]string{"-warmup", "soon"}, "-warmup"},
		{[]string{"-transport", "storm-ws", "-warmup", "1s"}, "-warmup applies to"},
		{[]string{"-interval", "1us", "-transport", "shortpoll"}, "-interval"},
		{[]string{"-read-buffer", "1"}, "-read-buffer"},
		{[]string{"-idle-timeout", "0s"}, "timeout"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"-url", "wss://127.0.0.1:8080"}, "https://"},
		{[]string{"-url", "https://127.0.0.1:8080", "-ca", filepath.Join(t.TempDir(), "missing.pem")}, "-ca"},
		{[]string{"-url", "https://127.0.0.1:8080", "-ca", notPEM}, "no PEM certificate"},
		{[]string{"-insecure"}, "-insecure and -ca apply to https://"},
		{[]string{"-ca", notPEM}, "-insecure and -ca apply to https://"},
		{[]string{"-proto", "h3"}, "-proto must be h1 or h2"},
		{[]string{"-transport", "ws", "-proto", "h2"}, "WebSocket stays an HTTP/1.1 upgrade"},
		{[]string{"-transport", "storm-ws", "-proto", "h2"}, "-proto h2 applies to"},
		{[]string{"-h2-conns", "2"}, "-h2-conns applies to -proto h2"},
		{[]string{"-proto", "h2", "-h2-conns", "-1"}, "-h2-conns"},
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
		"-source-ips", "-out", "-interval", "-rate", "-seed", "-feed-symbols", "storm-sse", "shortpoll",
		"-slow", "-warmup", "stall", "warm-up"} {
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

	// -slow and -warmup reach the result file and the summary.
	code, stdout, stderr = runMain("-transport", "sse", "-url", good.URL, "-clients", "10", "-slow", "0.2",
		"-warmup", "200ms", "-duration", "300ms", "-out", out, "-strict", "-quiet")
	if code != ExitOK {
		t.Fatalf("-slow: exit %d: %s %s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "2 of 10 clients stalled on purpose") || !strings.Contains(stdout, "after 0.2s warm-up") {
		t.Errorf("-slow -warmup summary:\n%s", stdout)
	}
	if res, err = result.ReadFile(out); err != nil {
		t.Fatal(err)
	}
	if res.SlowClients != 2 || res.Slow.Stalled != 2 || res.Warmup != 0.2 {
		t.Errorf("result file: slow clients %d, %+v, warm-up %g", res.SlowClients, res.Slow, res.Warmup)
	}
	m, err := result.Merge(res, res)
	if err != nil || m.SlowClients != 4 || m.Slow.Stalled != 4 || m.Slow.BytesReceived != 2*res.Slow.BytesReceived || m.Warmup != 0.2 {
		t.Errorf("merge: %v; slow clients %d, %+v, warm-up %g", err, m.SlowClients, m.Slow, m.Warmup)
	}
	if want := m.MsgsPerSec / 16; m.PerClient != want {
		t.Errorf("merged per client %.2f msgs/s, want %.2f (over the 16 that kept up)", m.PerClient, want)
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

// TestCLIURLForms runs the command against the real server with -url as
// users paste it: the base URL or the transport's endpoint, ws:// for
// WebSocket, https:// and wss:// for TLS. Every form must reach the server
// and show its base URL; an endpoint of another transport is a one-line
// usage error that says which, and TLS to a plaintext server one line
// before the run.
func TestCLIURLForms(t *testing.T) {
	base := startServer(t, "all", 200)
	host := strings.TrimPrefix(base, "http://")
	tlsBase, ca := servertest.Serve(t, server.Config{Transport: "all", Feed: feedAt(200)}, "tls")
	tlsHost := strings.TrimPrefix(tlsBase, "https://")
	for _, c := range []struct {
		transport, url string
		code           int
		want           string // in the summary's first line, or the usage error
	}{
		{"ws", "wss://" + tlsHost + "/ws", ExitOK, "loadgen ws " + tlsBase + "  2 clients  0.3s  protocol tls "},
		{"sse", tlsBase + "/sse", ExitOK, "loadgen sse " + tlsBase + "  2 clients  0.3s  protocol tls "},
		{"storm-ws", "wss://" + tlsHost, ExitOK, "loadgen storm-ws " + tlsBase + " "},
		{"sse", base, ExitOK, "loadgen sse " + base + " "},
		{"sse", base + "/", ExitOK, "loadgen sse " + base + " "},
		{"sse", base + "/sse", ExitOK, "loadgen sse " + base + " "},
		{"sse", base + "/sse/", ExitOK, "loadgen sse " + base + " "},
		{"ws", "ws://" + host, ExitOK, "loadgen ws " + base + " "},
		{"ws", "ws://" + host + "/ws", ExitOK, "loadgen ws " + base + " "},
		{"ws", "WS://" + host + "/ws", ExitOK, "loadgen ws " + base + " "},
		{"ws", base + "/ws", ExitOK, "loadgen ws " + base + " "},
		{"poll", base + "/poll", ExitOK, "loadgen poll " + base + " "},
		{"shortpoll", base + "/poll", ExitOK, "loadgen shortpoll " + base + " "},
		{"storm-ws", "ws://" + host + "/ws", ExitOK, "loadgen storm-ws " + base + " "},
		{"storm-sse", base + "/sse", ExitOK, "loadgen storm-sse " + base + " "},
		{"sse", base + "/ws", ExitUsage, "names the ws endpoint (/ws), but -transport is sse"},
		{"ws", base + "/poll", ExitUsage, "names the poll endpoint (/poll), but -transport is ws"},
		{"shortpoll", base + "/sse", ExitUsage, "names the sse endpoint (/sse), but -transport is shortpoll: give the base URL or its /poll endpoint"},
		{"sse", "ws://" + host, ExitUsage, "is a WebSocket URL, but -transport is sse"},
		{"poll", "ws://" + host + "/poll", ExitUsage, "is a WebSocket URL, but -transport is poll"},
		{"ws", "wss://" + host + "/ws", ExitError, "started with -tls?"},
		{"sse", "https://" + host, ExitError, "started with -tls?"},
		{"sse", "wss://" + tlsHost, ExitUsage, "is a WebSocket URL, but -transport is sse: give https://"},
		{"sse", "ftp://" + host, ExitUsage, "http://"},
	} {
		t.Run(c.transport+" "+c.url, func(t *testing.T) {
			args := []string{"-transport", c.transport, "-url", c.url, "-clients", "2", "-duration", "300ms", "-quiet", "-strict"}
			if strings.HasPrefix(c.url, "https") || strings.HasPrefix(c.url, "wss") {
				args = append(args, "-ca", ca)
			}
			switch {
			case c.transport == "shortpoll":
				args = append(args, "-interval", "50ms")
			case strings.HasPrefix(c.transport, "storm-"):
				args = append(args, "-rate", "20")
			}
			code, stdout, stderr := runMain(args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d: %s%s", code, c.code, stdout, stderr)
			}
			if c.code != ExitOK {
				if stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.want) {
					t.Errorf("stdout %q, stderr %q: want one line saying %q", stdout, stderr, c.want)
				}
				return
			}
			first, _, _ := strings.Cut(stdout, "\n")
			if !strings.HasPrefix(first, c.want) || !strings.Contains(stdout, "ok: every expected tick arrived") {
				t.Errorf("summary does not start with %q or is not clean:\n%s", c.want, stdout)
			}
		})
	}
}
