package answersrv

import (
	"time"

	"github.com/pushbench/pushbench/internal/alarm"
)

// chunkWake is how whoever delivers an answer waits for its next chunk.
//
// The first chunk waits on the service's alarm clock, which wakes to the
// microsecond: time to first token is what users feel, and Go's timers
// fire up to a millisecond late in a quiet process (0.6 ms at the median),
// which TTFT would carry although no transport causes it. The later chunks
// wait on a Go timer: precise wake-ups for every chunk cost the server
// about three times the CPU per chunk (measured: 25 against 70 ms per
// 1,000 SSE chunks at 100 answers in flight), because late Go timers
// coalesce many answers' chunks into one wake-up, each of which a precise
// wake-up through the netpoller pays for alone. ITL therefore includes Go's
// timer lateness; the answer table's ITL is read with that in mind.
//
// Receive from both A and T; one owner.
type chunkWake struct {
	first *alarm.Alarm
	later *time.Timer
	A     <-chan struct{}
	T     <-chan time.Time
}

func (s *Service) newChunkWake() *chunkWake {
	a := s.clock.NewAlarm()
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &chunkWake{first: a, later: t, A: a.C, T: t.C}
}

// set arms the wake for due (Unix ns): on the alarm for an answer's
// first chunk, on the Go timer for anything else.
func (w *chunkWake) set(first bool, due int64) {
	if first {
		w.later.Stop()
		w.first.Set(due)
		return
	}
	w.first.Stop()
	w.later.Reset(time.Duration(due - time.Now().UnixNano()))
}

// stop disarms it.
func (w *chunkWake) stop() {
	w.first.Stop()
	w.later.Stop()
}
