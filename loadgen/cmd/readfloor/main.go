// Command readfloor measures the floor of what reading many SSE streams
// costs on this machine: it opens -clients streams to a pushbench server
// and reads them with nothing above the kernel but counting "\n\n" (no
// parsing, no checker, no histograms), either with epoll and one read per
// ready socket (what the load generator's loop does) or with io_uring
// multishot receives into a provided-buffer ring (many sockets' receives
// per kernel entry). It prints the messages taken in per CPU-second.
//
// Issue 14 asks the load generator to take in twice the messages per
// CPU-second that the server delivers per CPU-second. This command tells
// whether any reader could on a given machine: if even the floor is not
// twice the server's rate, the target is out of reach there, whatever the
// user-space code does. scripts/read-floor.sh runs it beside bin/server
// and prints the ratio.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

// reader reads the sockets until the measured window is over.
type reader func(ctx context.Context, fds []int, m *meter) error

// meter counts what arrived and when the measured window runs.
type meter struct {
	msgs, bytes int64
	warm, dur   time.Duration
	start       time.Time // of the window; zero during the warm-up
	first       time.Time
	cpu0        time.Duration
	msgs0       int64
}

func (m *meter) count(b []byte) {
	m.bytes += int64(len(b))
	m.msgs += int64(bytes.Count(b, []byte("\n\n")))
}

// tick is called after each batch; false once the window is over.
func (m *meter) tick(now time.Time) bool {
	if m.first.IsZero() {
		m.first = now
	}
	if m.start.IsZero() {
		if now.Sub(m.first) >= m.warm {
			m.start, m.cpu0, m.msgs0 = now, cpuTime(), m.msgs
		}
		return true
	}
	return now.Sub(m.start) < m.dur
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("readfloor", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors in one line below; -h prints the flags
	addr := fs.String("addr", "127.0.0.1:8080", "the server's host:port (plain HTTP/1.1)")
	clients := fs.Int("clients", 1000, "SSE streams to open")
	mode := fs.String("mode", "epoll", "epoll (one read per ready socket) or uring (io_uring multishot receives)")
	warm := fs.Duration("warmup", time.Second, "read this long before measuring")
	dur := fs.Duration("duration", 5*time.Second, "the measured window")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "Usage: readfloor [flags] (see scripts/read-floor.sh)")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "readfloor: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "readfloor: unexpected arguments %q\n", fs.Args())
		return 2
	}
	readers := map[string]reader{"epoll": readEpoll, "uring": readUring}
	read, ok := readers[*mode]
	switch {
	case !ok:
		fmt.Fprintf(stderr, "readfloor: -mode must be epoll or uring, got %q\n", *mode)
		return 2
	case *clients < 1:
		fmt.Fprintf(stderr, "readfloor: -clients must be at least 1, got %d\n", *clients)
		return 2
	case *dur <= 0 || *warm < 0:
		fmt.Fprintln(stderr, "readfloor: -duration must be positive and -warmup not negative")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	// One thread reads, as one event-loop worker does (and io_uring's
	// deferred completions require: they run on the thread that asks).
	runtime.LockOSThread()
	files, err := dial(ctx, *addr, *clients)
	if err != nil {
		fmt.Fprintf(stderr, "readfloor: %v\n", err)
		return 1
	}
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd()) // Fd makes it blocking: made non-blocking again below
		if err := setNonblock(fds[i]); err != nil {
			fmt.Fprintf(stderr, "readfloor: %v\n", err)
			return 1
		}
	}
	m := &meter{warm: *warm, dur: *dur}
	if err := read(ctx, fds, m); err != nil {
		fmt.Fprintf(stderr, "readfloor: %s: %v\n", *mode, err)
		return 1
	}
	if m.start.IsZero() {
		fmt.Fprintln(stderr, "readfloor: interrupted before the window began")
		return 1
	}
	el, cpu, n := time.Since(m.start), cpuTime()-m.cpu0, m.msgs-m.msgs0
	per := 0.0
	if m.msgs > 0 {
		per = float64(m.bytes) / float64(m.msgs)
	}
	fmt.Fprintf(stdout, "mode=%s clients=%d msgs=%d window_s=%.2f cpu_s=%.3f msgs_per_cpu_s=%.0f bytes_per_msg=%.0f\n",
		*mode, *clients, n, el.Seconds(), cpu.Seconds(), float64(n)/cpu.Seconds(), per)
	return 0
}

// dial opens n SSE streams (a request each, the response read by whoever
// reads the socket) and returns their sockets as files.
func dial(ctx context.Context, addr string, n int) ([]*os.File, error) {
	req := []byte("GET /sse HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\n\r\n")
	var d net.Dialer
	files := make([]*os.File, 0, n)
	for i := range n {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			closeAll(files)
			return nil, fmt.Errorf("stream %d of %d: %w", i+1, n, err)
		}
		if _, err := c.Write(req); err != nil {
			c.Close()
			closeAll(files)
			return nil, fmt.Errorf("stream %d: request: %w", i+1, err)
		}
		f, err := c.(*net.TCPConn).File() // a duplicate the readers own
		c.Close()
		if err != nil {
			closeAll(files)
			return nil, fmt.Errorf("stream %d: %w", i+1, err)
		}
		files = append(files, f)
		if i%100 == 99 {
			time.Sleep(20 * time.Millisecond) // let the server accept: no connect storm
		}
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		_ = f.Close()
	}
}

// errEOF: a stream ended, which a live feed never does.
var errEOF = errors.New("a stream ended (is the server still up?)")
