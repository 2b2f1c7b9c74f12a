package runner

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pushbench/pushbench/loadgen/result"
)

// The test binary doubles as a fake bin/server and bin/loadgen, chosen by
// BENCH_FAKE, so that the runner's process handling (start, health, sample,
// crash, failure, stop) is tested quickly and without the real programs.
//
//	server        serves /healthz and /metrics, exits 0 on SIGTERM
//	server-crash  like server, but exits 3 ("panic: fake crash") on the
//	              first request to a streaming path
//	loadgen       requests URL/TRANSPORT once, waits warmup+duration,
//	              writes a Result to -out
//	loadgen-fail  exits 2 with a one-line error and writes nothing
//	proxy         like bin/netshape: forwards -listen to -upstream, prints
//	              "listening ADDR", exits 0 on SIGTERM; appends a line per
//	              connection to $BENCH_FAKE_PROXY_LOG when set
func fakeMain() {
	switch mode := os.Getenv("BENCH_FAKE"); mode {
	case "server", "server-crash":
		os.Exit(fakeServer(mode == "server-crash"))
	case "loadgen":
		os.Exit(fakeLoadgen())
	case "proxy":
		os.Exit(fakeProxy())
	case "loadgen-fail":
		fmt.Fprintln(os.Stderr, "loadgen: -frobnicate: no such flag")
		os.Exit(2)
	}
}

// flags reads "-name value" pairs; -quiet is the only boolean.
func flags() map[string]string {
	m := map[string]string{}
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		name := strings.TrimLeft(args[i], "-")
		if name == "quiet" || i+1 >= len(args) {
			m[name] = "true"
			continue
		}
		m[name] = args[i+1]
		i++
	}
	return m
}

func fakeServer(crash bool) int {
	f := flags()
	ln, err := net.Listen("tcp", f["addr"])
	if err != nil {
		fmt.Fprintf(os.Stderr, "server: listen: %v\n", err)
		return 1
	}
	start := time.Now()
	var streams atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		// Deliveries grow with time so that CPU per delivery has a
		// denominator; the transport label is summed by the sampler.
		d := int64(time.Since(start).Seconds() * 10000)
		fmt.Fprintf(w, "go_goroutines %d\n", 5+2*streams.Load())
		fmt.Fprintf(w, "pushbench_connections_open{transport=%q} %d\n", f["transport"], streams.Load())
		fmt.Fprintf(w, "pushbench_deliveries_total{transport=%q} %d\n", f["transport"], d)
		fmt.Fprintf(w, "pushbench_bytes_written_total{transport=%q} %d\n", f["transport"], 90*d)
	})
	for _, path := range []string{"/sse", "/ws", "/poll"} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			if crash {
				fmt.Fprintln(os.Stderr, "panic: fake crash")
				os.Exit(3)
			}
			streams.Add(10)
			fmt.Fprint(w, "ok")
		})
	}
	go func() { _ = http.Serve(ln, mux) }()
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	<-c
	return 0
}

func fakeLoadgen() int {
	f := flags()
	dur, _ := time.ParseDuration(f["duration"])
	warm, _ := time.ParseDuration(f["warmup"])
	n, _ := strconv.Atoi(f["clients"])
	path := strings.TrimPrefix(f["transport"], "short")
	if resp, err := http.Get(f["url"] + "/" + path); err == nil {
		resp.Body.Close()
	}
	// Like bin/loadgen: Start is the beginning of the ramp, and the run
	// spans ramp, warm-up and duration.
	ramp, _ := time.ParseDuration(f["ramp"])
	start := time.Now()
	time.Sleep(ramp + warm)
	h := result.NewHistogram()
	for i := int64(1); i <= 1000; i++ {
		_ = h.RecordValue(i * 10)
	}
	time.Sleep(dur)
	hl, err := result.EncodeHist(h)
	if err != nil {
		return 1
	}
	d := time.Since(start).Seconds()
	res := &result.Result{SchemaVersion: result.SchemaVersion, Transport: f["transport"], URL: f["url"], Clients: n,
		Start: start, Duration: d, Connected: int64(n), Messages: 1000, MsgsPerSec: 1000 / d,
		Counts: result.Counts{Expected: 1000, Received: 1000}, Bytes: result.Bytes{Received: 100000, PerTick: 100},
		Dists: result.Dists{Latency: result.Summarize(h), HistLatency: hl}}
	if err := res.Write(f["out"]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// fakeProxy forwards every connection on -listen to -upstream, byte for
// byte, until SIGTERM.
func fakeProxy() int {
	f := flags()
	ln, err := net.Listen("tcp", f["listen"])
	if err != nil {
		fmt.Fprintf(os.Stderr, "netshape: %v\n", err)
		return 1
	}
	logPath := os.Getenv("BENCH_FAKE_PROXY_LOG")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if logPath != "" {
				if lf, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
					fmt.Fprintln(lf, "accepted", c.RemoteAddr())
					lf.Close()
				}
			}
			up, err := net.Dial("tcp", f["upstream"])
			if err != nil {
				c.Close()
				continue
			}
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	fmt.Printf("listening %s\n", ln.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	return 0
}
