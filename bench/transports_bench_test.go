package bench_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pushbench/pushbench/bench/sample"
	"github.com/pushbench/pushbench/loadgen"
	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/server"
)

// BenchmarkTransports is the comparison at small scale, in one test binary:
// a server and its clients side by side, so that benchstat can compare two
// commits or two machines:
//
//	go test ./bench -run '^$' -bench Transports -benchtime 1x -count 6 > new.txt
//	benchstat old.txt new.txt
//
// Each iteration is one load run (connect, measure, drain), so run it with
// -benchtime 1x; ns/op is the length of that run and means nothing. The
// figures are the custom units: p50/p99 latency from each tick's scheduled
// time, delivered messages/s, wire bytes per tick as the clients saw them,
// bytes the server wrote per tick, and heap and goroutines per connection.
// Server and clients share one process, so heap-B/conn and
// goroutines/conn count both ends of a connection; compare them between
// transports and commits, not with bin/bench's server-only figures.
func BenchmarkTransports(b *testing.B) {
	for _, tr := range []string{"sse", "ws", "poll"} {
		for _, n := range []int{100, 1000} {
			b.Run(fmt.Sprintf("%s/clients=%d", tr, n), func(b *testing.B) { benchTransport(b, tr, n) })
		}
	}
}

const (
	benchRate     = 100.0 // feed ticks/s: 100 messages/s per client
	benchSymbols  = 16
	benchDuration = time.Second
)

func benchTransport(b *testing.B, transport string, clients int) {
	srv, err := server.New(server.Config{
		Transport: transport,
		Feed:      feed.Config{Seed: 1, Symbols: benchSymbols, Rate: benchRate, History: feed.DefaultHistory},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Run(ctx) })
	ts := httptest.NewServer(srv)
	defer func() {
		ts.CloseClientConnections()
		ts.Close()
		cancel()
		wg.Wait()
	}()
	<-srv.Feed().Ready()
	u, err := url.Parse(ts.URL)
	if err != nil {
		b.Fatal(err)
	}
	ramp := time.Duration(clients) * 200 * time.Microsecond

	var p50, p99, msgs, perTick, serverPerTick, heap, gor float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		heap0, gor0 := heapInuse(), runtime.NumGoroutine()
		before := scrape(b, ts)
		b.StartTimer()

		// Sample the heap and goroutines while every client is connected:
		// after the ramp, halfway through the measured time. The sampling
		// goroutine ends on its own; its result is read below.
		type peak struct {
			heap uint64
			gor  int
		}
		peakc := make(chan peak, 1)
		go func() {
			t := time.NewTimer(ramp + benchDuration/2)
			defer t.Stop()
			<-t.C
			peakc <- peak{heapInuse(), runtime.NumGoroutine()}
		}()
		res, err := loadgen.Run(context.Background(), loadgen.Config{
			Transport: transport, URL: u, Clients: clients, Duration: benchDuration, Ramp: ramp,
			Seed: 1, FeedSymbols: benchSymbols,
		})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		pk := <-peakc
		after := scrape(b, ts)

		// A wrong number must fail, not be printed (as centrifuge's
		// benchmarks do): every client connected, nothing lost.
		if res.Connected != int64(clients) {
			b.Fatalf("%d of %d clients connected at the end: %v", res.Connected, clients, res.Failures)
		}
		if c := res.Counts; c.Missing+c.Duplicates+c.OutOfOrder+c.WrongContent+c.WrongSymbol > 0 {
			b.Fatalf("incorrect delivery: %+v", c)
		}
		p50 += res.Latency.P50
		p99 += res.Latency.P99
		msgs += res.MsgsPerSec
		perTick += res.Bytes.PerTick
		if d := after.Deliveries - before.Deliveries; d > 0 {
			serverPerTick += (after.BytesWritten - before.BytesWritten) / d
		}
		heap += (float64(pk.heap) - float64(heap0)) / float64(clients)
		gor += float64(pk.gor-gor0) / float64(clients)
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(p50/n*1e6, "p50-ns")
	b.ReportMetric(p99/n*1e6, "p99-ns")
	b.ReportMetric(msgs/n, "msgs/s")
	b.ReportMetric(perTick/n, "B/tick")
	b.ReportMetric(serverPerTick/n, "server-B/tick")
	b.ReportMetric(heap/n, "heap-B/conn")
	b.ReportMetric(gor/n, "goroutines/conn")
}

// heapInuse is the in-use heap after a collection, so that garbage does not
// count as per-connection memory.
func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// scrape reads the server's counters through its own /metrics, the way
// bin/bench does.
func scrape(b *testing.B, ts *httptest.Server) sample.Metrics {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := sample.Scrape(ctx, ts.Client(), ts.URL+"/metrics")
	if err != nil {
		b.Fatal(err)
	}
	return m
}

var _ http.Handler = (*server.Server)(nil)
