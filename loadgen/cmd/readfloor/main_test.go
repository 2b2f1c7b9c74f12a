package main

import (
	"bytes"
	"net/url"
	"regexp"
	"runtime"
	"strconv"
	"testing"

	"github.com/pushbench/pushbench/loadgen/internal/servertest"
	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/server"
)

// TestReadersCountTheFeed runs both readers against a real server and
// checks that each took in about what the feed sent its streams in the
// window (20 streams × 100 ticks/s × 0.5 s), so that the figures the
// command prints are of reading that happened.
func TestReadersCountTheFeed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("epoll and io_uring are Linux's")
	}
	base := servertest.Start(t, server.Config{Transport: "sse", Feed: feed.Config{Rate: 100}})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`msgs=(\d+) .*msgs_per_cpu_s=(\d+)`)
	for _, mode := range []string{"epoll", "uring"} {
		t.Run(mode, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run([]string{"-addr", u.Host, "-clients", "20", "-mode", mode, "-warmup", "200ms", "-duration", "500ms"}, &out, &errOut)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			m := line.FindStringSubmatch(out.String())
			if m == nil {
				t.Fatalf("no figures in %q", out.String())
			}
			msgs, _ := strconv.Atoi(m[1])
			// 1000 owed; the window's edges and a loaded machine move it.
			if msgs < 500 || msgs > 1500 {
				t.Errorf("%s took in %d messages in the window; want about 1000 (20 streams × 100/s × 0.5 s)", mode, msgs)
			}
		})
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-mode", "poll"},
		{"-clients", "0"},
		{"-duration", "0s"},
		{"-warmup", "-1s"},
		{"-nope"},
		{"extra"},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d; want 2 (stderr %q)", args, code, errOut.String())
		}
		if n := bytes.Count(errOut.Bytes(), []byte("\n")); n != 1 {
			t.Errorf("%v: %d lines on stderr; want one: %q", args, n, errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"-h"}, &out, &errOut); code != 0 || !bytes.Contains(out.Bytes(), []byte("-mode")) {
		t.Errorf("-h: exit %d, stdout %q; want 0 and the flags", code, out.String())
	}
}
