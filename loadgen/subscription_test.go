package loadgen

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushbench/pushbench/loadgen/client"
)

// asyncReader is a non-blocking driver like an event loop: Serve returns at
// once and a goroutine of its own delivers the events and the end. wg owns
// those goroutines: each ends with its connection.
type asyncReader struct {
	wg            sync.WaitGroup
	served, ended atomic.Int64
}

func (a *asyncReader) Serve(c client.Client, sink func(*client.Event), done func(error)) error {
	a.served.Add(1)
	a.wg.Go(func() {
		_ = readLoop{}.Serve(c, sink, func(err error) {
			a.ended.Add(1) // before done: Run may return once done is
			done(err)
		})
	})
	return nil
}

// TestNonBlockingDriver runs streams whose connections a non-blocking
// driver reads, with churn, so that every reconnect goes through the
// driver's done callback: delivery must be as clean as with the goroutine
// reader, and when Run returns no connection may still be served.
func TestNonBlockingDriver(t *testing.T) {
	var cfgs []Config
	var readers []*asyncReader
	for _, tr := range streamTransports {
		cfg := testConfig(t, tr, startServer(t, tr, 200))
		cfg.Duration, cfg.Churn = 2*time.Second, 1.0
		a := &asyncReader{}
		cfg.reader = a
		cfgs, readers = append(cfgs, cfg), append(readers, a)
	}
	for i, res := range runAll(t, cfgs) {
		a := readers[i]
		t.Run(cfgs[i].Transport, func(t *testing.T) {
			clean(t, res)
			n := int64(cfgs[i].Clients)
			// Churn 1.0 drops about every client once a second; a starved
			// machine churns less, but some must have come back.
			if res.Counts.Reconnects == 0 || a.served.Load() != n+res.Counts.Reconnects {
				t.Errorf("%d reconnects, %d connections served: want reconnects, each served", res.Counts.Reconnects, a.served.Load())
			}
			if res.Connect.Count != a.served.Load() || res.FirstTick.Count != n {
				t.Errorf("connect measured %d times, first tick %d: want %d and %d", res.Connect.Count, res.FirstTick.Count, a.served.Load(), n)
			}
			// Run returns only once every connection it handed over ended.
			if e := a.ended.Load(); e != a.served.Load() {
				t.Errorf("Run returned with %d of %d connections not ended", a.served.Load()-e, a.served.Load())
			}
		})
	}
	for _, a := range readers {
		a.wg.Wait()
	}
}
