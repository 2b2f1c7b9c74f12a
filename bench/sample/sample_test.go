package sample

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and a ')' must not shift the fields.
	stat := "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 100 123456789 300 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	p, err := parseStat([]byte(stat), 4096)
	if err != nil {
		t.Fatal(err)
	}
	if p.CPUSeconds != 3 || p.RSSBytes != 300*4096 || p.Threads != 7 {
		t.Errorf("parsed %+v, want 3 CPU s, %d bytes, 7 threads", p, 300*4096)
	}
	if _, err := parseStat([]byte("12 (x) S 1 2"), 4096); err == nil {
		t.Error("short stat accepted")
	}
}

func TestReadProcSelf(t *testing.T) {
	p, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.RSSBytes < 1<<20 || p.Threads < 1 || p.CPUSeconds < 0 {
		t.Errorf("implausible %+v", p)
	}
	if _, err := ReadProc(1 << 30); err == nil {
		t.Error("no error for a pid that does not exist")
	}
}

const exposition = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 2012
# HELP pushbench_connections_open Open streaming connections.
# TYPE pushbench_connections_open gauge
pushbench_connections_open{transport="sse"} 1000
# HELP pushbench_connections_refused_total Refused connections.
# TYPE pushbench_connections_refused_total counter
pushbench_connections_refused_total{reason="max_conns",transport="sse"} 3
pushbench_connections_refused_total{reason="emfile",transport="sse"} 2
# HELP pushbench_deliveries_total Ticks written.
# TYPE pushbench_deliveries_total counter
pushbench_deliveries_total{transport="sse"} 123456
# HELP pushbench_bytes_written_total Bytes written.
# TYPE pushbench_bytes_written_total counter
pushbench_bytes_written_total{transport="sse"} 1.2345678e+07
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 5.4e+07
`

func TestParseMetrics(t *testing.T) {
	m, err := ParseMetrics(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	want := Metrics{Goroutines: 2012, ConnsOpen: 1000, Refused: 5, Deliveries: 123456, BytesWritten: 12345678}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Errorf("got %+v, want %+v", m, want)
	}
	m, err = ParseMetrics(strings.NewReader("# TYPE go_goroutines gauge\ngo_goroutines 5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Missing) != 3 {
		t.Errorf("missing %v, want the three required pushbench families", m.Missing)
	}
	if _, err := ParseMetrics(strings.NewReader("this is { not metrics\n")); err == nil {
		t.Error("garbage accepted")
	}
}

func TestSamplerAndWindow(t *testing.T) {
	var scrapes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := scrapes.Add(1)
		fmt.Fprintf(w, "go_goroutines %d\npushbench_connections_open 10\npushbench_deliveries_total %d\npushbench_bytes_written_total %d\n", 10+n, 100*n, 1000*n)
	}))
	defer srv.Close()
	s := &Sampler{Pid: os.Getpid(), MetricsURL: srv.URL, Interval: 5 * time.Millisecond, Client: srv.Client()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan []Point)
	go func() { done <- s.Run(ctx) }()
	// The sampler scrapes one at a time and keeps each point before the
	// next scrape: once the sixth has begun, five points are kept (the
	// fifth alone could still be in flight, and cut short by cancel).
	deadline := time.Now().Add(10 * time.Second)
	for scrapes.Load() < 6 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	pts := <-done
	if len(pts) < 5 {
		t.Fatalf("%d points", len(pts))
	}
	for i := 1; i < len(pts); i++ {
		if pts[i].Deliveries <= pts[i-1].Deliveries || pts[i].At.Before(pts[i-1].At) {
			t.Errorf("point %d not after point %d: %+v %+v", i, i-1, pts[i], pts[i-1])
		}
	}
	first, last, n, ok := Window(pts, pts[1].At, pts[len(pts)-2].At)
	if !ok || n != len(pts)-2 || first.At != pts[1].At || last.At != pts[len(pts)-2].At {
		t.Errorf("window: ok %v n %d", ok, n)
	}
	if _, _, _, ok := Window(pts, pts[1].At, pts[1].At); ok {
		t.Error("a window of one point gave a delta")
	}
}

func TestScrapeStatus(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	if _, err := Scrape(context.Background(), srv.Client(), srv.URL); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("404 not reported: %v", err)
	}
}
