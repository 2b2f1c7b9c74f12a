//go:build linux

package client

import (
	"context"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// processCPU returns the CPU time this process used so far (user+system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkReaders compares the goroutine reader with the loop against this
// project's server in the same process: 200 clients, the feed at 500
// ticks/s (100,000 messages/s in all, one tick per socket wake-up), until
// b.N ticks have arrived. msgs/cpu-s is ticks per CPU-second of the whole
// process, the server's share included (it is the same for both readers,
// so the difference is the readers'); run it with e.g. -benchtime 200000x.
func BenchmarkReaders(b *testing.B) {
	const clients, rate = 200, 500
	for _, tr := range Transports {
		for _, reader := range []string{"goroutine", "loop"} {
			b.Run(tr+"/"+reader, func(b *testing.B) {
				base := realServer(b, tr, rate)
				benchReader(b, base, tr, reader == "loop", clients)
			})
		}
	}
}

// benchConfig prepares the Config of tr's clients against base and, with
// loop, starts the Loop that serves them (nil without), for the caller to
// close.
func benchConfig(b *testing.B, base *url.URL, tr string, loop bool) (*Config, *Loop) {
	b.Helper()
	cfg := &Config{Transport: tr, Base: base, Handoff: loop}
	if err := cfg.Prepare(); err != nil {
		b.Fatal(err)
	}
	if !loop {
		return cfg, nil
	}
	l, err := NewLoop(0)
	if err != nil {
		b.Fatal(err)
	}
	return cfg, l
}

func benchReader(b *testing.B, base *url.URL, tr string, loop bool, clients int) {
	cfg, l := benchConfig(b, base, tr, loop)
	if l != nil {
		defer l.Close()
	}
	var ticks atomic.Int64
	var wg sync.WaitGroup
	d := NewDialer(nil, 5*time.Second)
	cs := make([]Client, clients)
	for i := range cs {
		c, err := New(cfg, d, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Connect(context.Background()); err != nil {
			b.Fatal(err)
		}
		cs[i] = c
		if loop {
			if err := l.Serve(c, func(ev *Event) {
				if ev.Kind == KindTick {
					ticks.Add(1)
				}
			}, func(error) {}); err != nil {
				b.Fatal(err)
			}
			continue
		}
		wg.Go(func() {
			for {
				ev, err := c.Next()
				if err != nil {
					return
				}
				if ev.Kind == KindTick {
					ticks.Add(1)
				}
			}
		})
	}
	defer func() {
		for _, c := range cs {
			_ = c.Close()
		}
		wg.Wait()
	}()
	time.Sleep(200 * time.Millisecond) // settle
	b.ResetTimer()
	t0, cpu0 := ticks.Load(), processCPU()
	for ticks.Load()-t0 < int64(b.N) {
		time.Sleep(10 * time.Millisecond)
	}
	cpu := processCPU() - cpu0
	n := ticks.Load() - t0
	b.StopTimer()
	b.ReportMetric(float64(n)/cpu.Seconds(), "msgs/cpu-s")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkIdleLoopClient is BenchmarkIdleClient with the clients served by
// a loop: heap and stacks after GC per connected, idle client. Run it with
// -benchtime 1x.
func BenchmarkIdleLoopClient(b *testing.B) { benchIdle(b, true) }
