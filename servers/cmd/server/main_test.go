package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushbench/pushbench/servers/protocol"
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
		{"-impl", "nbio", "-transport", "sse"},
		{"-impl", "nope", "-transport", "ws"},
		{"-impl", "go-sse"}, // -transport all
		{"-h2-max-streams", "0"},
		{"-tls", "-h2c"},
		{"-cert", "c.pem", "-key", "k.pem"},
		{"-tls", "-cert", "c.pem"},
		{"-tls", "-cert", "/nonexistent/c.pem", "-key", "/nonexistent/k.pem"},
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
	for _, flag := range []string{"-transport", "-header-timeout", "-idle-timeout", "-sndbuf", "-impl", "gorilla-hub", "lesismal/nbio", "-tls", "-cert", "-key", "-h2c", "-h2-max-streams"} {
		if !strings.Contains(stderr.String(), flag) {
			t.Errorf("-h does not document %s", flag)
		}
	}
}

// TestBadCertFilesExit2: certificate files that are not PEM, or a key that
// belongs to another certificate, stop the server with exit 2 and one line
// naming the files.
func TestBadCertFilesExit2(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pair := func(name string) (certFile, keyFile string) {
		c, err := protocol.SelfSigned()
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})),
			write(name+".key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	certA, keyA := pair("a")
	_, keyB := pair("b")
	garbage := write("garbage.pem", []byte("not a certificate\n"))
	for name, files := range map[string][2]string{
		"mismatched key":   {certA, keyB},
		"cert not PEM":     {garbage, keyA},
		"key not PEM":      {certA, garbage},
		"cert is the key":  {keyA, keyA},
		"missing key file": {certA, filepath.Join(dir, "none.key")},
	} {
		t.Run(name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run([]string{"-tls", "-cert", files[0], "-key", files[1], "-addr", "127.0.0.1:0"}, &stderr)
			out := strings.TrimRight(stderr.String(), "\n")
			if code != 2 || strings.Contains(out, "\n") || !strings.HasPrefix(out, "server: ") || !strings.Contains(out, files[0]) {
				t.Errorf("exit %d, stderr %q; want 2 and one line naming %s", code, stderr.String(), files[0])
			}
		})
	}
}

// TestSIGTERMExitsZero runs the real binary, served by net/http and by
// nbio's own engine: it serves /healthz and /metrics, then on SIGTERM
// shuts down with a stream open and exits 0 within the shutdown bound.
func TestSIGTERMExitsZero(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		path string // the stream opened before SIGTERM
	}{
		{"sse", []string{"-transport", "sse"}, "/sse"},
		{"ws-nbio", []string{"-transport", "ws", "-impl", "nbio"}, "/ws"},
	} {
		t.Run(tc.name, func(t *testing.T) { testSIGTERM(t, tc.args, tc.path) })
	}
}

func testSIGTERM(t *testing.T, args []string, path string) {
	bin := serverBin
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, append([]string{"-addr", addr, "-log", "warn"}, args...)...)
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
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("pushbench_deliveries_total")) {
		t.Fatalf("/metrics: %d %.200q", resp.StatusCode, body)
	}
	// An open stream must not keep the process from exiting.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "GET " + path + " HTTP/1.1\r\nHost: x\r\n"
	if path == "/ws" {
		req += "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 12)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conn, head); err != nil || !(string(head) == "HTTP/1.1 200" || string(head) == "HTTP/1.1 101") {
		t.Fatalf("stream %s: %q %v", path, head, err)
	}
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

// TestTraceLogsAnswers runs the real binary with -trace: the file is a Go
// execution trace, written by the time the server exits on SIGTERM, and it
// logs each answer's arrival by its seed (for following a slow answer
// across the load generator's trace and the server's).
func TestTraceLogsAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	file := filepath.Join(t.TempDir(), "server.trace")
	cmd := exec.Command(serverBin, "-addr", addr, "-log", "warn", "-transport", "sse", "-trace", file)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var resp *http.Response
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err = http.Post("http://"+addr+"/answer", "application/json", strings.NewReader(`{"tokens":1,"think":"0s","seed":4242}`))
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("event: done")) {
		t.Fatalf("answer: %d %.200q", resp.StatusCode, body)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("go 1.")) || !bytes.Contains(b, []byte("arrival seed 4242 at ")) {
		t.Fatalf("trace of %d bytes: not a Go trace logging the answer's arrival (starts %.16q)", len(b), b)
	}
}
