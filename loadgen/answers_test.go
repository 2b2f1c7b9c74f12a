package loadgen

import (
	"bytes"
	"os"
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
		{append(a, "-transport", "ws", "-conn", "h2"), "-conn h2"},
		{append(a, "-transport", "ws", "-proto", "h2"), "-proto h2"},
		{append(a, "-proto", "h2", "-conn", "keepalive"), "-proto h2"},
		{append(a, "-proto", "h3"), "-proto"},
		{append(a, "-conn", "h2", "-conns", "3"), "-h2-conns"},
		{append(a, "-h2-conns", "3"), "-h2-conns"},
		{append(a, "-conn", "h2", "-h2-conns", "-1"), "-h2-conns"},
		{append(a, "-insecure"), "-insecure"},
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

// bin/loadgen -workload answer over TLS (-ca) and HTTP/2: -proto h2 is
// -conn h2, over https h2 by ALPN, over http h2c; the result names the
// protocol, the mode and -h2-conns, which are the connections opened,
// and every answer is whole (-strict).
func TestCLIAnswerProtocols(t *testing.T) {
	cases := []struct {
		name, server, transport string
		flags                   []string
		conn                    string
	}{
		{"tls", "tls", "sse", []string{"-conn", "fresh"}, "fresh"},
		{"h2", "tls", "sse", []string{"-proto", "h2", "-h2-conns", "2"}, "h2"},
		{"h2c", "h2c", "poll", []string{"-conn", "h2", "-h2-conns", "2"}, "h2"},
	}
	for _, c := range cases {
		t.Run(c.name+"/"+c.transport, func(t *testing.T) {
			base, ca := servertest.Serve(t, server.Config{Transport: c.transport}, c.server)
			out := filepath.Join(t.TempDir(), "r.json")
			args := []string{"-workload", "answer", "-transport", c.transport, "-url", base, "-quiet", "-strict",
				"-rate", "40", "-concurrency", "8", "-tokens", "5", "-token-rate", "500", "-think", "5ms", "-duration", "300ms", "-out", out}
			if ca != "" {
				args = append(args, "-ca", ca)
			}
			code, stdout, errOut := runMain(append(args, c.flags...)...)
			if code != ExitOK {
				t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, errOut, stdout)
			}
			r, err := result.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			a := r.Answer
			if r.Protocol != c.name || a.Conn != c.conn || a.Answers.Completed == 0 {
				t.Fatalf("protocol %q conn %q answers %+v, want %q, %q and answers completed", r.Protocol, a.Conn, a.Answers, c.name, c.conn)
			}
			if c.conn == "h2" && (a.Conns != 2 || a.ConnectionsOpened != 2 || !strings.Contains(stdout, "(-conn h2, 2 connections)")) {
				t.Errorf("-h2-conns 2: conns %d, connections opened %d, summary:\n%s", a.Conns, a.ConnectionsOpened, stdout)
			}
			if tls := c.server == "tls"; tls != (r.Bytes.PlainReceived > 0 && r.Bytes.PlainReceived < r.Bytes.Received) {
				t.Errorf("bytes %+v: the plaintext is counted above TLS, and only over TLS", r.Bytes)
			}
		})
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
	traceFile := filepath.Join(t.TempDir(), "loadgen.trace")
	code, stdout, errOut := runMain("-workload", "answer", "-transport", "poll", "-url", url+"/answer", "-quiet", "-strict",
		"-rate", "40", "-concurrency", "8", "-tokens", "5", "-token-rate", "500", "-think", "5ms", "-duration", "300ms", "-out", out,
		"-trace", traceFile)
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, errOut, stdout)
	}
	for _, want := range []string{"TTFT", "to server", "ITL", "end to end", "chunk lat.", "ok: every answer sent"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	// -trace: a Go execution trace that logs each send by its seed (the
	// server runs in this process here, so its arrivals are in it too).
	if b, err := os.ReadFile(traceFile); err != nil || !bytes.HasPrefix(b, []byte("go 1.")) ||
		!bytes.Contains(b, []byte("send seed ")) || !bytes.Contains(b, []byte("arrival seed ")) {
		t.Errorf("-trace wrote %d bytes (%v): not a Go trace logging sends and arrivals", len(b), err)
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
