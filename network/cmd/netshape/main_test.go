package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBadFlagsExit2WithOneLine(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-profile", "wan"},
		{"-upstream", "127.0.0.1:8080"},
		{"-upstream", "127.0.0.1:8080", "-profile", "satellite"},
		{"-upstream", "127.0.0.1:8080", "-profile", "rtt=80"},
		{"-upstream", "127.0.0.1:8080", "-profile", "wan", "-listen", "0.0.0.0:0"},
		{"-upstream", "127.0.0.1:8080", "-profile", "wan", "-listen", "nonsense"},
		{"-upstream", "nonsense", "-profile", "wan"},
		{"-upstream", "127.0.0.1:0", "-profile", "wan"},
		{"-upstream", "127.0.0.1:http", "-profile", "wan"},
		{"-upstream", "127.0.0.1:8080", "-profile", "wan", "extra"},
		{"-nope"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr)
		out := strings.TrimRight(stderr.String(), "\n")
		if code != 2 || stdout.Len() > 0 || out == "" || strings.Contains(out, "\n") || !strings.HasPrefix(out, "netshape: ") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and one line on stderr", args, code, stdout.String(), stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &stdout, &stderr); code != 0 {
		t.Errorf("-h: exit %d, %q", code, stderr.String())
	}
	for _, flag := range []string{"-listen", "-upstream", "-profile", "mobile", "listening 127.0.0.1:PORT"} {
		if !strings.Contains(stderr.String(), flag) {
			t.Errorf("-h does not mention %s", flag)
		}
	}
}

// TestContract runs the real binary as bench does: one line on stdout
// naming the address, a proxied connection that carries bytes both ways
// with the profile's round trip, then exit 0 on SIGTERM.
func TestContract(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "netshape")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// The upstream answers each line with the same line.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		_, err = io.Copy(c, c)
		served <- err
	}()

	const rtt = 20 * time.Millisecond
	cmd := exec.Command(bin, "-upstream", ln.Addr().String(), "-profile", "rtt="+rtt.String())
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	lines := make(chan string, 2)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(20 * time.Second):
		t.Fatal("no line on stdout within 20 s")
	}
	m := regexp.MustCompile(`^listening (127\.0\.0\.1:[0-9]+)$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("first stdout line %q, want \"listening 127.0.0.1:PORT\"", line)
	}

	c, err := net.Dial("tcp", m[1])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	if _, err := c.Write([]byte("tick\n")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "tick\n" {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}
	if took := time.Since(start); took < rtt {
		t.Errorf("round trip through a %v profile took %v", rtt, took)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the deferred wait
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("netshape did not exit within 10 s of SIGTERM")
	}
	for l := range lines { // closed before the exit was reported
		t.Errorf("more on stdout: %q", l)
	}
	// The proxied connection ended with the process.
	if n, err := c.Read(got); err == nil {
		t.Errorf("read %d bytes after netshape exited", n)
	}
	<-served
}
