package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pushbench/pushbench/loadgen/answer"
)

// listen returns a listener on a free port of 127.0.0.1.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestFloorTimesEveryAnswer runs both ends on 127.0.0.1 with a short
// schedule: every answer that arrived in the window is timed, and its
// first chunk came after its think.
func TestFloorTimesEveryAnswer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ln := listen(t)
	sh := shape{tokens: 4, rate: 200, think: 20 * time.Millisecond}
	served := make(chan error, 1)
	go func() { served <- serveAnswers(ctx, ln, sh) }()

	const inFlight, seed = 5, 3
	warm, dur := 100*time.Millisecond, 600*time.Millisecond
	f, err := measure(ctx, ln.Addr().String(), sh, inFlight, seed, warm, dur)
	if err != nil {
		t.Fatal(err)
	}
	// The arrivals the window holds, by the same pacer.
	p := &answer.PoissonPacer{Freq: f.rate, Seed: seed}
	want := 0
	for n := uint64(0); p.At(n) < warm+dur; n++ {
		if p.At(n) >= warm {
			want++
		}
	}
	if want == 0 || f.answers != want {
		t.Fatalf("timed %d answers, the window held %d arrivals", f.answers, want)
	}
	for name, h := range map[string]int64{"ttft": f.ttft.TotalCount(), "send": f.send.TotalCount(), "deliver": f.deliver.TotalCount()} {
		if h != int64(want) {
			t.Errorf("%s histogram holds %d values, want %d", name, h, want)
		}
	}
	var out bytes.Buffer
	f.print(&out)
	for _, s := range []string{"answers timed", "TTFT-think", "send", "deliver"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, out.String())
		}
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("server end: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server end did not stop with its context")
	}
}

// TestFloorRejectsWrongChunks: a chunk of another answer or out of order
// is an error, not a timed answer.
func TestFloorRejectsWrongChunks(t *testing.T) {
	ln := listen(t)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req := make([]byte, requestSize)
		if _, err := io.ReadFull(c, req); err != nil {
			return
		}
		msg := make([]byte, chunkSize)
		binary.LittleEndian.PutUint64(msg, binary.LittleEndian.Uint64(req)+1) // another answer's
		_, _ = c.Write(msg)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _, err = ask(c, 7, shape{tokens: 2, rate: 100, think: 0})
	if err == nil || !strings.Contains(err.Error(), "came as answer 8") {
		t.Fatalf("got %v, want an error naming the wrong answer", err)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-clients", "0"},
		{"-tokens", "0"},
		{"-token-rate", "-1"},
		{"-think", "-1s"},
		{"-duration", "0s"},
		{"-nope"},
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 || !strings.HasPrefix(stderr.String(), "answerfloor: ") || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want 2 and one line", args, code, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "-clients") {
		t.Errorf("-h: exit %d, stdout %q", code, stdout.String())
	}
}
