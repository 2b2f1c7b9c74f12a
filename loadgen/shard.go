package loadgen

import (
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/pushbench/pushbench/loadgen/client"
	"github.com/pushbench/pushbench/loadgen/reach"
	"github.com/pushbench/pushbench/loadgen/result"
)

// shard is one slice of the run's measurements. Clients are spread over a
// few shards so that recording takes an uncontended lock most of the time,
// and a histogram (about 200 KB at the shared bounds) is not paid per
// client. Counters that the progress line reads are atomics.
type shard struct {
	mu        sync.Mutex
	lat       *hdrhistogram.Histogram // µs, arrival - scheduled ts
	conn      *hdrhistogram.Histogram // µs, dial to handshake done
	first     *hdrhistogram.Histogram // µs, dial to first tick
	sched     schedule
	failures  map[string]int64
	samples   map[string]string // one error message per cause, for the summary
	outOfHist int64             // values beyond the histogram bounds (clamped)
	reach     *reach.Recorder   // per-seq arrivals; nil in the storm modes

	counters client.Counters
	messages atomic.Int64 // ticks received
}

func newShards(n int) []*shard {
	s := make([]*shard, n)
	for i := range s {
		s[i] = &shard{
			lat: result.NewHistogram(), conn: result.NewHistogram(), first: result.NewHistogram(),
			failures: map[string]int64{}, samples: map[string]string{},
		}
	}
	return s
}

// record clamps v (µs) into the shared histogram bounds. Caller holds mu.
func (s *shard) record(h *hdrhistogram.Histogram, v int64) {
	if v < result.HistLowest {
		v = result.HistLowest
	} else if v > result.HistHighest {
		v = result.HistHighest
		s.outOfHist++
	}
	_ = h.RecordValue(v)
}

// tick accounts one delivered tick that arrived at recvAt (Unix ns): it
// teaches the schedule, and when record is set (not in the warm-up) its
// latency goes into the histogram. Its reach is recorded in any case: a
// seq's arrivals straddle the end of the warm-up, and reach picks the seqs
// of the measured window at the end.
func (s *shard) tick(seq uint64, ts, recvAt int64, record bool) {
	s.mu.Lock()
	if record {
		s.record(s.lat, (recvAt-ts)/1000)
	}
	if s.reach != nil {
		s.reach.Record(seq, recvAt-ts)
	}
	s.sched.observe(seq, ts)
	s.mu.Unlock()
}

func (s *shard) connected(d time.Duration) {
	s.mu.Lock()
	s.record(s.conn, d.Microseconds())
	s.mu.Unlock()
}

func (s *shard) firstTick(d time.Duration) {
	s.mu.Lock()
	s.record(s.first, d.Microseconds())
	s.mu.Unlock()
}

func (s *shard) fail(cause string, err error) {
	s.mu.Lock()
	s.failures[cause]++
	if _, ok := s.samples[cause]; !ok && err != nil {
		s.samples[cause] = err.Error()
	}
	s.mu.Unlock()
}

// schedule learns the feed's clock from the ticks seen: ts is
// start + seq/rate exactly, so the lowest and the highest seq seen give the
// rate and the start, and with them which seq was due at any instant.
type schedule struct {
	minSeq, maxSeq uint64
	minTS, maxTS   int64
}

func (s *schedule) observe(seq uint64, ts int64) {
	if s.minSeq == 0 || seq < s.minSeq {
		s.minSeq, s.minTS = seq, ts
	}
	if seq > s.maxSeq {
		s.maxSeq, s.maxTS = seq, ts
	}
}

func (s *schedule) merge(o schedule) {
	if o.minSeq != 0 {
		s.observe(o.minSeq, o.minTS)
		s.observe(o.maxSeq, o.maxTS)
	}
}

// known reports whether two distinct ticks were seen (the rate is known).
func (s *schedule) known() bool { return s.maxSeq > s.minSeq && s.maxTS > s.minTS }

// seqAt returns the newest seq scheduled at or before t (Unix ns). Without a
// known rate it returns the highest seq seen.
func (s *schedule) seqAt(t int64) uint64 {
	if !s.known() {
		return s.maxSeq
	}
	perTick := float64(s.maxTS-s.minTS) / float64(s.maxSeq-s.minSeq) // ns
	d := float64(t-s.minTS) / perTick
	if d < -float64(s.minSeq) {
		return 0
	}
	return uint64(int64(s.minSeq) + int64(d))
}

// rate returns ticks per second, or 0 when unknown.
func (s *schedule) rate() float64 {
	if !s.known() {
		return 0
	}
	return float64(s.maxSeq-s.minSeq) * 1e9 / float64(s.maxTS-s.minTS)
}
