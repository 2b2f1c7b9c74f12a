package alarm

import (
	"context"
	"sort"
	"testing"
	"time"
)

// startClock runs a new Clock until the test ends.
func startClock(t testing.TB) *Clock {
	t.Helper()
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run returned %v; want context.Canceled", err)
		}
	})
	return c
}

// receive waits for a's value, failing after a generous bound (a loaded
// machine is slow, never a second slow).
func receive(t *testing.T, a *Alarm, what string) time.Time {
	t.Helper()
	select {
	case <-a.C:
		return time.Now()
	case <-time.After(2 * time.Second):
		t.Fatalf("%s: no value on C", what)
	}
	return time.Time{}
}

func TestAlarmsFireInOrderNeverEarly(t *testing.T) {
	c := startClock(t)
	base := time.Now().Add(20 * time.Millisecond).UnixNano()
	offsets := []time.Duration{9, 3, 0, 6, 1} // ms, set out of order
	type fired struct {
		due int64
		at  time.Time
	}
	got := make(chan fired, len(offsets))
	for _, off := range offsets {
		a := c.NewAlarm()
		due := base + int64(off*time.Millisecond)
		a.Set(due)
		go func() {
			<-a.C
			got <- fired{due, time.Now()}
		}()
	}
	var all []fired
	for range offsets {
		select {
		case f := <-got:
			if f.at.UnixNano() < f.due {
				t.Errorf("alarm due at %d fired %v early", f.due, time.Duration(f.due-f.at.UnixNano()))
			}
			all = append(all, f)
		case <-time.After(2 * time.Second):
			t.Fatalf("only %d of %d alarms fired", len(all), len(offsets))
		}
	}
	if !sort.SliceIsSorted(all, func(i, j int) bool { return all[i].at.Before(all[j].at) }) {
		t.Errorf("fired out of order: %+v", all)
	}
}

func TestSetReplacesAndStopCancels(t *testing.T) {
	c := startClock(t)
	a := c.NewAlarm()
	a.Set(time.Now().Add(time.Hour).UnixNano())
	due := time.Now().Add(5 * time.Millisecond).UnixNano()
	a.Set(due) // replaces the hour
	if at := receive(t, a, "replaced alarm"); at.UnixNano() < due {
		t.Errorf("fired %v before its due", time.Duration(due-at.UnixNano()))
	}

	b := c.NewAlarm()
	b.Set(time.Now().Add(5 * time.Millisecond).UnixNano())
	b.Stop()
	select {
	case <-b.C:
		t.Fatal("a stopped alarm fired")
	case <-time.After(30 * time.Millisecond):
	}

	// A value not received is dropped by the next Set: one value per Set.
	p := c.NewAlarm()
	p.Set(time.Now().UnixNano() - 1) // past: at once
	p.Set(time.Now().Add(10 * time.Millisecond).UnixNano())
	start := time.Now()
	receive(t, p, "re-set alarm")
	if waited := time.Since(start); waited < 5*time.Millisecond {
		t.Errorf("received after %v: the first Set's value was not dropped", waited)
	}
}

func TestAlarmsAfterRunEndFireAtOnce(t *testing.T) {
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	pending := c.NewAlarm()
	pending.Set(time.Now().Add(time.Hour).UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run returned %v; want context.Canceled", err)
	}
	receive(t, pending, "alarm pending when Run ended")
	later := c.NewAlarm()
	later.Set(time.Now().Add(time.Hour).UnixNano())
	receive(t, later, "alarm set after Run ended")
}

// BenchmarkLateness reports how late a waiting goroutine wakes after its
// instant (µs at p50 and p99), for an alarm and for a time.Timer, both
// 1-3 ms ahead in an otherwise idle process.
func BenchmarkLateness(b *testing.B) {
	c := startClock(b)
	a := c.NewAlarm()
	run := func(b *testing.B, wait func(due time.Time)) {
		late := make([]time.Duration, 0, b.N)
		for i := range b.N {
			due := time.Now().Add(time.Millisecond + time.Duration(i%64)*31*time.Microsecond)
			wait(due)
			late = append(late, time.Since(due))
		}
		sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
		b.ReportMetric(float64(late[len(late)/2].Microseconds()), "p50-late-µs")
		b.ReportMetric(float64(late[len(late)*99/100].Microseconds()), "p99-late-µs")
	}
	b.Run("alarm", func(b *testing.B) {
		run(b, func(due time.Time) {
			a.Set(due.UnixNano())
			<-a.C
		})
	})
	b.Run("time.Timer", func(b *testing.B) {
		t := time.NewTimer(time.Hour)
		run(b, func(due time.Time) {
			t.Reset(time.Until(due))
			<-t.C
		})
	})
}

// TestStartStop checks the clock Start runs: its alarms fire, and once
// stop returned the clock is released (an alarm set then fires at once).
func TestStartStop(t *testing.T) {
	c, stop, err := Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	a := c.NewAlarm()
	due := time.Now().Add(5 * time.Millisecond).UnixNano()
	a.Set(due)
	if at := receive(t, a, "alarm of a started clock"); at.UnixNano() < due {
		t.Errorf("fired %v early", time.Duration(due-at.UnixNano()))
	}
	stop()
	a.Set(time.Now().Add(time.Hour).UnixNano())
	receive(t, a, "alarm set after stop")
}
