package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBadFlagsExit2WithOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"-transport", "carrier-pigeon"},
		{"-rate", "0"},
		{"-rate", "abc"},
		{"-symbols", "0"},
		{"-history", "-1"},
		{"-heartbeat", "0s"},
		{"-ping", "-1s"},
		{"-addr", "nonsense"},
		{"-max-conns", "-3"},
		{"-header-timeout", "0s"},
		{"-idle-timeout", "-1s"},
		{"-sndbuf", "-1"},
		{"-sndbuf", "100"},
		{"-sndbuf", "1000000000"},
		{"-sndbuf", "64k"},
		{"-log", "loud"},
		{"-nope"},
		{"extra-arg"},
	} {
		var stderr bytes.Buffer
		code := run(args, &stderr)
		out := strings.TrimRight(stderr.String(), "\n")
		if code != 2 || out == "" || strings.Contains(out, "\n") || !strings.HasPrefix(out, "server: ") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line", args, code, stderr.String())
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"-h"}, &stderr); code != 0 {
		t.Errorf("-h: exit %d, %q", code, stderr.String())
	}
	for _, flag := range []string{"-transport", "-header-timeout", "-idle-timeout", "-sndbuf"} {
		if !strings.Contains(stderr.String(), flag) {
			t.Errorf("-h does not document %s", flag)
		}
	}
}

// TestSIGTERMExitsZero runs the real binary: it serves /healthz, then on
// SIGTERM shuts down and exits 0 within the shutdown bound.
func TestSIGTERMExitsZero(t *testing.T) {
	bin := serverBin
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "-addr", addr, "-transport", "sse", "-log", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not healthy: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// An open SSE stream must not keep the process from exiting.
	resp, err := http.Get("http://" + addr + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not exit within 10 s of SIGTERM")
	}
}
