package stream

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/metrics"
)

// call is one Writer call the stream made.
type call struct {
	kind string // frames, gap, keepalive
	seqs []uint64
	gap  feed.Gap
}

// fakeWriter records the stream's calls and fails them once fail is set.
// The lock orders the stream's writes before the test's reads for the race
// detector: the fake clock advancing is no synchronisation to it.
type fakeWriter struct {
	mu    sync.Mutex
	calls []call
	fail  error
}

func (w *fakeWriter) WriteFrames(frames []*feed.Frame) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail != nil {
		return 0, w.fail
	}
	c := call{kind: "frames"}
	for _, f := range frames {
		c.seqs = append(c.seqs, f.Seq)
	}
	w.calls = append(w.calls, c)
	return len(frames), nil
}

func (w *fakeWriter) WriteGap(g feed.Gap) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail != nil {
		return 0, w.fail
	}
	w.calls = append(w.calls, call{kind: "gap", gap: g})
	return 1, nil
}

func (w *fakeWriter) KeepAlive() (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail != nil {
		return 0, w.fail
	}
	w.calls = append(w.calls, call{kind: "keepalive"})
	return 1, nil
}

func (w *fakeWriter) count(kind string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.calls {
		if c.kind == kind {
			n++
		}
	}
	return n
}

// snapshot copies the calls made so far.
func (w *fakeWriter) snapshot() []call {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.calls)
}

// seqs lists every tick written, in order.
func (w *fakeWriter) seqs() []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var s []uint64
	for _, c := range w.calls {
		s = append(s, c.seqs...)
	}
	return s
}

// publish appends n ticks after the ring's newest.
func publish(r *feed.Ring, n int) {
	frames := make([]*feed.Frame, n)
	for i := range frames {
		frames[i] = feed.NewFrame(feed.Tick{Seq: r.Newest() + 1 + uint64(i)}, "AAPL")
	}
	r.Publish(frames...)
}

func value(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for q := from; q <= to; q++ {
		s = append(s, q)
	}
	return s
}

// run starts Run in the bubble and returns its result channel and a stop.
func run(cfg Config, w Writer) (<-chan error, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, w) }()
	return done, cancel
}

func newConfig(history int, cursor uint64) (Config, *metrics.Metrics) {
	m := metrics.New()
	return Config{Ring: feed.NewRing(history), Cursor: cursor, MaxBatch: 256, Metrics: m.For(metrics.SSE),
		Batches: NewBatchPool(256)}, m
}

// TestBatching: a backlog goes out in batches of MaxBatch, in order, and
// each publish afterwards in one write.
func TestBatching(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, _ := newConfig(1024, 0)
		publish(cfg.Ring, 600)
		w := &fakeWriter{}
		done, stop := run(cfg, w)
		synctest.Wait()
		var sizes []int
		for _, c := range w.snapshot() {
			sizes = append(sizes, len(c.seqs))
		}
		if !slices.Equal(sizes, []int{256, 256, 88}) {
			t.Errorf("backlog written in batches %v, want [256 256 88]", sizes)
		}
		publish(cfg.Ring, 10)
		synctest.Wait()
		if calls := w.snapshot(); len(calls) != 4 || len(calls[3].seqs) != 10 {
			t.Errorf("a publish of 10 became calls %+v", calls[3:])
		}
		if !slices.Equal(w.seqs(), seqRange(1, 610)) {
			t.Errorf("ticks written out of order or with holes")
		}
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run = %v after stop", err)
		}
	})
}

// TestGap: a resume point the ring no longer holds gets a gap first, which
// is no drop; falling behind later is one (drops_total{cause="gap"}).
func TestGap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, m := newConfig(16, 5)
		publish(cfg.Ring, 100) // retains 85..100
		w := &fakeWriter{}
		done, stop := run(cfg, w)
		synctest.Wait()
		if calls := w.snapshot(); len(calls) < 2 || calls[0].kind != "gap" || calls[0].gap != (feed.Gap{From: 6, To: 85}) {
			t.Fatalf("calls %+v, want a gap 6..85 first", calls)
		}
		if !slices.Equal(w.seqs(), seqRange(85, 100)) {
			t.Errorf("after the gap wrote %v, want 85..100", w.seqs())
		}
		tr := m.For(metrics.SSE)
		if g, b := value(t, tr.Gaps), value(t, tr.Behind); g != 1 || b != 0 {
			t.Errorf("after a resume gap: gaps %v, behind %v; want 1, 0", g, b)
		}
		publish(cfg.Ring, 40) // more than the history at once: 101..124 are gone
		synctest.Wait()
		calls := w.snapshot()
		last := calls[len(calls)-2]
		if last.kind != "gap" || last.gap != (feed.Gap{From: 101, To: 125}) {
			t.Errorf("falling behind: call %+v, want a gap 101..125", last)
		}
		if g, b := value(t, tr.Gaps), value(t, tr.Behind); g != 2 || b != 1 {
			t.Errorf("after falling behind: gaps %v, behind %v; want 2, 1", g, b)
		}
		stop()
		<-done
	})
}

// TestKeepAlive: SSE heartbeats (Always false) go out only after a period
// without writes; WebSocket pings (Always true) every period regardless.
func TestKeepAlive(t *testing.T) {
	for _, always := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			cfg, _ := newConfig(1024, 0)
			cfg.KeepAlive = 10 * time.Second
			cfg.Always = always
			w := &fakeWriter{}
			done, stop := run(cfg, w)
			// Busy for 60 s: a tick every 4 s.
			for range 15 {
				time.Sleep(4 * time.Second)
				publish(cfg.Ring, 1)
			}
			synctest.Wait()
			busy := w.count("keepalive")
			// Then idle for 60 s.
			time.Sleep(60 * time.Second)
			synctest.Wait()
			idle := w.count("keepalive") - busy
			if always {
				if busy != 6 || idle != 6 {
					t.Errorf("always: %d keep-alives while busy, %d idle; want 6 and 6", busy, idle)
				}
			} else if busy != 0 || idle < 5 || idle > 6 {
				t.Errorf("when idle: %d keep-alives while busy, %d idle; want 0 and 5 or 6", busy, idle)
			}
			stop()
			<-done
		})
	}
}

// TestStop: Run returns nil at once when its context ends, and when the
// ring closes after everything was written.
func TestStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, _ := newConfig(64, 0)
		w := &fakeWriter{}
		done, stop := run(cfg, w)
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Run returned %v before a stop", err)
		default:
		}
		stop()
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
		default:
			t.Fatal("Run still running after its context ended")
		}

		cfg, _ = newConfig(64, 0)
		done, stop = run(cfg, w)
		defer stop()
		publish(cfg.Ring, 3)
		cfg.Ring.Close()
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil || !slices.Equal(w.seqs(), seqRange(1, 3)) {
				t.Errorf("ring closed: Run = %v after writing %v; want nil after 1..3", err, w.seqs())
			}
		default:
			t.Fatal("Run still running after the ring closed")
		}
	})
}

// TestWriteError: a failed write ends Run with that error, counted by
// cause: a timeout is a slow client (a drop), a broken pipe a departure.
func TestWriteError(t *testing.T) {
	for _, tc := range []struct {
		err          error
		cause        string
		dropsTimeout float64
	}{
		{os.ErrDeadlineExceeded, metrics.WriteTimeout, 1},
		{syscall.EPIPE, metrics.WriteDeparted, 0},
		{errors.New("something else"), metrics.WriteOther, 0},
	} {
		synctest.Test(t, func(t *testing.T) {
			cfg, m := newConfig(64, 0)
			w := &fakeWriter{fail: tc.err}
			done, stop := run(cfg, w)
			defer stop()
			publish(cfg.Ring, 1)
			synctest.Wait()
			select {
			case err := <-done:
				if !errors.Is(err, tc.err) {
					t.Errorf("Run = %v, want %v", err, tc.err)
				}
			default:
				t.Fatal("Run still running after a failed write")
			}
			if v := value(t, m.WriteErrors.WithLabelValues(metrics.SSE, tc.cause)); v != 1 {
				t.Errorf("%v: write_errors_total{cause=%s} = %v, want 1", tc.err, tc.cause, v)
			}
			if v := value(t, m.Drops.WithLabelValues(metrics.SSE, metrics.CauseWriteTimeout)); v != tc.dropsTimeout {
				t.Errorf("%v: drops_total{cause=write_timeout} = %v, want %v", tc.err, v, tc.dropsTimeout)
			}
		})
	}
}
