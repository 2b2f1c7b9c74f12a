package loadgen

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushbench/pushbench/loadgen/internal/servertest"
	"github.com/pushbench/pushbench/loadgen/result"
	"github.com/pushbench/pushbench/servers/server"
)

// Every usage error of the answer workload exits 2 with one line that
// names the flag.
func TestCLIAnswerBadFlags(t *testing.T) {
	a := []string{"-workload", "answer"}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-workload", "chat"}, "-workload"},
		{append(a, "-transport", "shortpoll"), "-workload answer runs over"},
		{append(a, "-transport", "storm-sse"), "-workload answer runs over"},
		{append(a, "-rate", "-1"), "-rate"},
		{append(a, "-concurrency", "-1"), "-concurrency"},
		{append(a, "-tokens", "-3"), "-tokens"},
		{append(a, "-tokens", "many"), "-tokens"},
		{append(a, "-token-rate", "-1"), "-token-rate"},
		{append(a, "-think", "-1s"), "-think"},
		{append(a, "-conn", "pipelined"), "-conn"},
		{append(a, "-conn", "mux"), "-conn mux"},
		{append(a, "-conn", "h2"), "-conn h2"},
		{append(a, "-transport", "ws", "-conns", "5000", "-concurrency", "10"), "-conns"},
		{append(a, "-slow", "0.1"), "-workload answer takes none"},
		{append(a, "-clients", "0"), "-clients"},
		{append(a, "-churn", "0.1"), "-workload answer takes none"},
		{append(a, "-drain", "-1s"), "-drain"},
		{append(a, "-url", "http://127.0.0.1:1/sse", "-transport", "ws"), "-url"},
	}
	for _, c := range cases {
		code, out, errOut := runMain(c.args...)
		if code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", c.args, code, ExitUsage, errOut)
			continue
		}
		if out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: stdout %q stderr %q, want one line naming %q", c.args, out, errOut, c.want)
		}
	}
}

// A server that does not serve answers over the transport is one line
// before the run, exit 1.
func TestCLIAnswerPreflight(t *testing.T) {
	url := servertest.Start(t, server.Config{Transport: "ws"})
	code, _, errOut := runMain("-workload", "answer", "-transport", "sse", "-url", url, "-quiet", "-duration", "1s")
	if code != ExitError || !strings.Contains(errOut, "does not serve answers over sse") {
		t.Errorf("exit %d, stderr %q; want 1 and the 404 named", code, errOut)
	}
}

// bin/loadgen -workload answer writes the answer figures into the result
// and the summary, and -strict passes a clean run; the pasted /answer
// endpoint is taken as the base URL.
func TestCLIAnswerRun(t *testing.T) {
	url := servertest.Start(t, server.Config{Transport: "poll"})
	out := filepath.Join(t.TempDir(), "r.json")
	code, stdout, errOut := runMain("-workload", "answer", "-transport", "poll", "-url", url+"/answer", "-quiet", "-strict",
		"-rate", "40", "-concurrency", "8", "-tokens", "5", "-token-rate", "500", "-think", "5ms", "-duration", "300ms", "-out", out)
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, errOut, stdout)
	}
	for _, want := range []string{"TTFT", "ITL", "end to end", "chunk lat.", "ok: every answer sent"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	r, err := result.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	a := r.Answer
	if r.Workload != WorkloadAnswer || a == nil || a.Tokens != 5 || a.Answers.Completed == 0 ||
		a.Chunks.Received != 5*a.Answers.Completed || a.HistTTFT == "" || r.URL != url {
		t.Fatalf("result workload %q url %q answer %+v", r.Workload, r.URL, a)
	}
	if r.Counts.Expected != a.Chunks.Expected || r.Counts.Received != a.Chunks.Received || len(r.Counts.Faults()) != 0 {
		t.Errorf("counts %+v do not mirror the chunks %+v", r.Counts, a.Chunks)
	}
	m, err := result.Merge(r, r)
	if err != nil {
		t.Fatal(err)
	}
	if m.Answer.Answers.Completed != 2*a.Answers.Completed || m.Answer.TTFT.Count != 2*a.TTFT.Count ||
		m.Answer.Concurrency != 2*a.Concurrency || m.Answer.ChunksPerSec != 2*a.ChunksPerSec {
		t.Errorf("merge of two: answers %+v ttft n=%d cap %d chunks/s %.1f; one: %+v n=%d chunks/s %.1f",
			m.Answer.Answers, m.Answer.TTFT.Count, m.Answer.Concurrency, m.Answer.ChunksPerSec, a.Answers, a.TTFT.Count, a.ChunksPerSec)
	}
	feed := *r
	feed.Workload, feed.Answer = "", nil
	if _, err := result.Merge(r, &feed); err == nil {
		t.Error("merging an answer result with a feed result did not fail")
	}
}
