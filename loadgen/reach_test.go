package loadgen

import (
	"strings"
	"testing"

	"github.com/pushbench/pushbench/loadgen/reach"
	"github.com/pushbench/pushbench/loadgen/result"
)

func TestReachLine(t *testing.T) {
	var rec reach.Recorder
	spans := []reach.Span{{From: 1, To: 4}, {From: 1, To: 4}}
	for seq := uint64(1); seq <= 4; seq++ {
		rec.Record(seq, 2_000_000) // 2 ms
		if seq != 3 {
			rec.Record(seq, 7_000_000) // 7 ms; seq 3 misses its second subscription
		}
	}
	s, err := reach.Build(1, 4, spans, nil, &rec)
	if err != nil {
		t.Fatal(err)
	}
	res := &result.Result{Transport: "sse", Reach: result.NewReach(s)}
	var b strings.Builder
	if err := WriteSummary(&b, res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"over 4 ticks:\n",
		// 50% is the upper edge of 2 ms's bucket, 2.015 ms (within 1/64).
		"   50%      p50 2.02  p99 2.02  max 2.02 ms\n",
		"   99%      p50 7.00  p99 7.00  max 7.00 ms  (1 ticks never did)\n",
		"  100%      p50 7.00  p99 7.00  max 7.00 ms  (1 ticks never did)\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := WriteSummary(&b, &result.Result{Transport: "storm-sse"}); err != nil || strings.Contains(b.String(), "\nreach ") {
		t.Errorf("a result without reach has a reach line: %v\n%s", err, b.String())
	}
}
