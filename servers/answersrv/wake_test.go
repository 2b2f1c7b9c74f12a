package answersrv

import (
	"context"
	"testing"
	"time"

	"github.com/pushbench/pushbench/internal/alarm"
)

// TestChunkWake checks that the first chunk waits on the alarm clock and
// the later ones on the Go timer, neither before its due, and that stop
// leaves nothing to receive.
func TestChunkWake(t *testing.T) {
	clock, stop, err := alarm.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	s := &Service{clock: clock}
	w := s.newChunkWake()

	for _, tc := range []struct {
		k         int
		wantAlarm bool
	}{{0, true}, {1, false}, {63, false}, {0, true}} {
		due := time.Now().Add(5 * time.Millisecond).UnixNano()
		w.set(tc.k == 0, due)
		var gotAlarm bool
		select {
		case <-w.A:
			gotAlarm = true
		case <-w.T:
		case <-time.After(2 * time.Second):
			t.Fatalf("chunk %d: no wake", tc.k)
		}
		if now := time.Now().UnixNano(); now < due {
			t.Errorf("chunk %d: woke %v early", tc.k, time.Duration(due-now))
		}
		if gotAlarm != tc.wantAlarm {
			t.Errorf("chunk %d: woke by the alarm %v; want %v", tc.k, gotAlarm, tc.wantAlarm)
		}
	}

	w.set(true, time.Now().Add(5*time.Millisecond).UnixNano())
	w.set(false, time.Now().Add(time.Hour).UnixNano()) // replaces the first chunk's alarm
	w.stop()
	select {
	case <-w.A:
		t.Error("the alarm fired after stop")
	case <-w.T:
		t.Error("the timer fired after stop")
	case <-time.After(30 * time.Millisecond):
	}
}
