package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/metrics"
	"github.com/pushbench/pushbench/servers/server"
)

// drainer is a minimal in-process client: raw TCP, one request, then it
// reads and discards everything (SSE, WebSocket) or re-polls (poll), so that
// the benchmark's CPU goes to the server as far as possible.
func drainer(ctx context.Context, addr, transport string, ready *sync.WaitGroup) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	context.AfterFunc(ctx, func() { c.Close() })
	if transport == "poll" {
		return pollLoop(ctx, c, ready)
	}
	if _, err := io.WriteString(c, rawGet("/"+transport)); err != nil {
		return err
	}
	ready.Done()
	buf := make([]byte, 32<<10)
	for {
		if _, err := c.Read(buf); err != nil {
			return nil
		}
	}
}

// pollLoop long-polls on one keep-alive connection, taking the cursor from
// the start of each response body ({"cursor":N,...}).
func pollLoop(ctx context.Context, c net.Conn, ready *sync.WaitGroup) error {
	br := bufio.NewReaderSize(c, 32<<10)
	cursor := ""
	first := true
	for ctx.Err() == nil {
		q := "timeout=20s"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		if _, err := io.WriteString(c, "GET /poll?"+q+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return nil
		}
		if first {
			ready.Done()
			first = false
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			return fmt.Errorf("poll: status %d: %v", resp.StatusCode, err)
		}
		s := strings.TrimPrefix(string(body), `{"cursor":`)
		cursor = s[:strings.IndexByte(s, ',')]
		if _, err := strconv.ParseUint(cursor, 10, 64); err != nil {
			return fmt.Errorf("poll: bad cursor in %q", body)
		}
	}
	return nil
}

func counterValue(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// BenchmarkFanOut publishes one tick at a time to N connected in-process
// clients and waits until every client has been written it: the cost of
// fanning one tick out, per transport. Clients and server share the
// process, so CPU figures include the clients' reads; use bin/bench for
// server-only CPU.
func BenchmarkFanOut(b *testing.B) {
	for _, tr := range transports {
		for _, n := range []int{100, 1000} {
			b.Run(fmt.Sprintf("%s/clients=%d", tr, n), func(b *testing.B) { benchFanOut(b, tr, n) })
		}
	}
}

func benchFanOut(b *testing.B, tr string, n int) {
	srv, err := server.New(server.Config{Transport: tr, Feed: feed.Config{Seed: 1, Symbols: 16, Rate: 1, History: 1 << 16}})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = hs.Shutdown(ctx)
	}()
	f := srv.Feed()
	f.Step(1) // start the feed: clients without a resume point begin after seq 1
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ready, done sync.WaitGroup
	ready.Add(n)
	for range n {
		done.Go(func() {
			if err := drainer(ctx, ln.Addr().String(), tr, &ready); err != nil {
				b.Error(err)
			}
		})
	}
	ready.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for srv.Open() < int64(n) { // streams connected, or polls held
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d clients connected", srv.Open(), n)
		}
		time.Sleep(time.Millisecond)
	}
	m := srv.Metrics().For(map[string]string{"sse": metrics.SSE, "ws": metrics.WS, "poll": metrics.Poll}[tr])
	wait := func(want float64) {
		deadline := time.Now().Add(30 * time.Second)
		for float64(m.DeliveredTotal()) < want {
			if time.Now().After(deadline) {
				b.Fatalf("deliveries %v, want %v", m.DeliveredTotal(), want)
			}
			runtime.Gosched()
		}
	}
	base, baseBytes := counterValue(m.Deliveries), counterValue(m.Bytes)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		f.Step(1)
		wait(base + float64(n*(i+1)))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	deliveries := counterValue(m.Deliveries) - base
	b.ReportMetric(deliveries/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric((counterValue(m.Bytes)-baseBytes)/deliveries, "B/delivery")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/deliveries, "allocs/delivery")
	cancel()
}
