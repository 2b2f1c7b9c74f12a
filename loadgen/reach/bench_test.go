package reach

import (
	"math/rand/v2"
	"runtime"
	"testing"
)

// BenchmarkRecord measures what recording one arrival costs the load
// generator, in the pattern a shard sees: every seq reaches the shard's
// clients within a short window, latencies spread over about two octaves
// and growing with arrival order. "fresh" includes the first arrival of
// each seq (the seq's slot and its first buckets are allocated then);
// "steady" records into seqs that already hold their buckets.
// Reported: ns/record, allocs/record, and for fresh the bytes kept per
// seq after GC.
func BenchmarkRecord(b *testing.B) {
	const perSeq = 250 // a shard's share of 1,000 clients
	r := rand.New(rand.NewPCG(1, 1))
	lat := make([]int64, perSeq)
	for i := range lat {
		// 0.5 to about 2 ms, growing with the client's place in the fan-out.
		lat[i] = 500_000 + int64(i)*6_000 + r.Int64N(50_000)
	}
	b.Run("fresh", func(b *testing.B) {
		var rec Recorder
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			rec.Record(uint64(1+i/perSeq), lat[i%perSeq])
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		seqs := float64(max(b.N/perSeq, 1))
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/record")
		b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(b.N), "allocs/record")
		b.ReportMetric(float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/seqs, "B/seq")
		runtime.KeepAlive(&rec)
	})
	b.Run("steady", func(b *testing.B) {
		const seqs = 64
		var rec Recorder
		for s := range seqs {
			for _, l := range lat {
				rec.Record(uint64(1+s), l)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			rec.Record(uint64(1+(i/perSeq)%seqs), lat[i%perSeq])
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/record")
	})
}
