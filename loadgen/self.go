package loadgen

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/pushbench/pushbench/loadgen/result"
)

// Saturation thresholds: above them the latency figures contain the load
// generator's own delays and the summary says so.
const (
	saturatedShare = 0.9                   // of the cores Go may use
	saturatedLag   = 10 * time.Millisecond // p99 timer lateness
	lagPeriod      = 5 * time.Millisecond
)

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// maxRSS returns the peak resident set size in bytes.
func maxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024 // KiB on Linux
}

// currentRSS reads the resident set size now from /proc (0 if unavailable).
func currentRSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// lagProbe measures how late a periodic timer fires: when the process (or
// the machine) has no CPU to spare, every client's reads are late by about
// as much, and the latencies measured include that delay. Run it in its own
// goroutine; it returns the histogram (µs) when stop is closed.
func lagProbe(stop <-chan struct{}) *hdrhistogram.Histogram {
	h := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 2)
	t := time.NewTimer(lagPeriod)
	defer t.Stop()
	due := time.Now().Add(lagPeriod)
	for {
		select {
		case <-stop:
			return h
		case now := <-t.C:
			_ = h.RecordValue(max(1, now.Sub(due).Microseconds()))
			due = now.Add(lagPeriod)
			t.Reset(lagPeriod)
		}
	}
}

// selfCost fills result.Self from CPU time used over wall time, peak RSS and
// the lag histogram, with a warning when the load generator was saturated.
func selfCost(cpu, wall time.Duration, lag *hdrhistogram.Histogram) result.Self {
	procs := runtime.GOMAXPROCS(0)
	s := result.Self{
		CPUSeconds:  cpu.Seconds(),
		MaxRSSBytes: maxRSS(),
		GOMAXPROCS:  procs,
	}
	if wall > 0 {
		s.CPUCores = cpu.Seconds() / wall.Seconds()
	}
	if lag != nil && lag.TotalCount() > 0 {
		s.LagP99Ms = float64(lag.ValueAtQuantile(99)) / 1000
	}
	var why []string
	if s.CPUCores >= saturatedShare*float64(procs) {
		why = append(why, fmt.Sprintf("it used %.2f of %d cores", s.CPUCores, procs))
	}
	if s.LagP99Ms >= float64(saturatedLag.Milliseconds()) {
		why = append(why, fmt.Sprintf("its timers fired %.1f ms late at p99 (CPU starved: the load generator or the machine is saturated)", s.LagP99Ms))
	}
	if len(why) > 0 {
		s.Saturated = true
		s.Warning = "load generator saturated: " + strings.Join(why, "; ") +
			"; latency figures include its own delay, not only the server's"
	}
	return s
}
