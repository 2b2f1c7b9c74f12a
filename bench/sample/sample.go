// Package sample measures a server process from outside while it runs:
// RSS and CPU time from /proc/PID/stat, goroutines, connections and
// delivery counters from its Prometheus /metrics.
//
// Measuring from outside matters: the figures include everything the
// process costs (runtime, buffers, the kernel's accounting of its memory),
// and the same code measures every transport.
//
// Concurrency: a Sampler is run by one goroutine (its owner), which gets
// the points back when the context ends; Read and Scrape are plain calls.
package sample

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports (the kernel converts its
// internal HZ for this ABI); reading it for real needs sysconf and cgo.
const clockTicks = 100

// Proc is what /proc says about a process.
type Proc struct {
	RSSBytes   int64
	CPUSeconds float64 // user + system
	Threads    int
}

// ReadProc reads /proc/PID/stat.
func ReadProc(pid int) (Proc, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Proc{}, fmt.Errorf("read /proc/%d/stat: %w", pid, err)
	}
	return parseStat(b, int64(os.Getpagesize()))
}

// parseStat reads utime, stime, num_threads and rss. The command name can
// hold spaces and parentheses, so fields are counted after the last ')'.
func parseStat(b []byte, pageSize int64) (Proc, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Proc{}, fmt.Errorf("parse stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime 15, num_threads 20, rss 24.
	const base = 3
	if len(f) < 24-base+1 {
		return Proc{}, fmt.Errorf("parse stat: %d fields", len(f)+base-1)
	}
	num := func(field int) (int64, error) {
		v, err := strconv.ParseInt(f[field-base], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse stat field %d: %w", field, err)
		}
		return v, nil
	}
	utime, err := num(14)
	if err != nil {
		return Proc{}, err
	}
	stime, err := num(15)
	if err != nil {
		return Proc{}, err
	}
	threads, err := num(20)
	if err != nil {
		return Proc{}, err
	}
	rss, err := num(24)
	if err != nil {
		return Proc{}, err
	}
	return Proc{RSSBytes: rss * pageSize, CPUSeconds: float64(utime+stime) / clockTicks, Threads: int(threads)}, nil
}

// Metric names the server exports (see servers/metrics). Families with
// labels (transport, reason) are summed: one server process measures one
// transport.
const (
	MetricGoroutines   = "go_goroutines"
	MetricConnsOpen    = "pushbench_connections_open"
	MetricRefused      = "pushbench_connections_refused_total"
	MetricDeliveries   = "pushbench_deliveries_total"
	MetricBytesWritten = "pushbench_bytes_written_total"
	MetricGaps         = "pushbench_gaps_total"
	MetricPollRequests = "pushbench_poll_requests_total"
)

// Metrics is one scrape of /metrics.
type Metrics struct {
	Goroutines   float64
	ConnsOpen    float64
	Refused      float64
	Deliveries   float64
	BytesWritten float64
	Gaps         float64
	PollRequests float64
	// Missing lists the expected families that were absent, so that a
	// renamed metric shows up as a warning and not as zeros.
	Missing []string
}

// ParseMetrics reads the Prometheus text format.
func ParseMetrics(r io.Reader) (Metrics, error) {
	// The zero TextParser panics on use: it must be built with a scheme.
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return Metrics{}, fmt.Errorf("parse metrics: %w", err)
	}
	var m Metrics
	for _, f := range []struct {
		name     string
		dst      *float64
		optional bool
	}{
		{MetricGoroutines, &m.Goroutines, false},
		{MetricConnsOpen, &m.ConnsOpen, false},
		{MetricRefused, &m.Refused, true},
		{MetricDeliveries, &m.Deliveries, false},
		{MetricBytesWritten, &m.BytesWritten, false},
		{MetricGaps, &m.Gaps, true},
		{MetricPollRequests, &m.PollRequests, true},
	} {
		fam, ok := fams[f.name]
		if !ok {
			if !f.optional {
				m.Missing = append(m.Missing, f.name)
			}
			continue
		}
		*f.dst = sum(fam)
	}
	return m, nil
}

// sum adds every series of a family, whatever its type.
func sum(f *dto.MetricFamily) float64 {
	var s float64
	for _, m := range f.GetMetric() {
		switch {
		case m.Counter != nil:
			s += m.GetCounter().GetValue()
		case m.Gauge != nil:
			s += m.GetGauge().GetValue()
		case m.Untyped != nil:
			s += m.GetUntyped().GetValue()
		}
	}
	return s
}

// Scrape fetches and parses url (the server's /metrics).
func Scrape(ctx context.Context, c *http.Client, url string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Metrics{}, fmt.Errorf("scrape: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return Metrics{}, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Metrics{}, fmt.Errorf("scrape %s: status %s", url, resp.Status)
	}
	return ParseMetrics(resp.Body)
}

// Point is one sample of the server.
type Point struct {
	At time.Time
	Proc
	Metrics
	ScrapeErr error // the /proc part may be valid when the scrape failed
}

// Sampler samples one process periodically.
type Sampler struct {
	Pid        int
	MetricsURL string
	Interval   time.Duration
	Client     *http.Client
}

// Sample takes one point: /proc first (cheap, always works while the
// process lives), then /metrics under a timeout of one interval.
func (s *Sampler) Sample(ctx context.Context) (Point, error) {
	pr, err := ReadProc(s.Pid)
	if err != nil {
		return Point{}, err
	}
	pt := Point{At: time.Now(), Proc: pr}
	if s.MetricsURL == "" {
		return pt, nil // a process without /metrics (a proxy): /proc only
	}
	timeout := max(s.Interval, time.Second)
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pt.Metrics, pt.ScrapeErr = Scrape(sctx, s.Client, s.MetricsURL)
	return pt, nil
}

// Run samples every Interval until ctx ends or the process is gone, and
// returns the points. The first sample is taken at once.
func (s *Sampler) Run(ctx context.Context) []Point {
	var pts []Point
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		pt, err := s.Sample(ctx)
		if err != nil {
			return pts // the process is gone; the runner reports that
		}
		if ctx.Err() != nil && pt.ScrapeErr != nil && errors.Is(pt.ScrapeErr, context.Canceled) {
			return pts // cut short by the end of the run, not a failure
		}
		pts = append(pts, pt)
		select {
		case <-ctx.Done():
			return pts
		case <-t.C:
		}
	}
}

// Window returns the samples that bound [from, to]: the first one at or
// after from and the last one at or before to. Samples whose scrape failed
// are skipped for the counters. ok is false when fewer than two samples fall
// inside, so that no delta is computed from one point.
func Window(pts []Point, from, to time.Time) (first, last Point, n int, ok bool) {
	var in []Point
	for _, p := range pts {
		if !p.At.Before(from) && !p.At.After(to) && p.ScrapeErr == nil {
			in = append(in, p)
		}
	}
	if len(in) < 2 {
		return Point{}, Point{}, len(in), false
	}
	return in[0], in[len(in)-1], len(in), true
}
