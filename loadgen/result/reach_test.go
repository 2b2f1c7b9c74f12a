package result

import (
	"strings"
	"testing"

	"github.com/pushbench/pushbench/loadgen/reach"
)

// TestMergeReach checks that the reach of load-generator processes merged
// side by side is that of one process recording every arrival, that a
// process without reach data leaves the merge without, and that corrupt
// data fails the merge.
func TestMergeReach(t *testing.T) {
	var all reach.Recorder
	var spans []reach.Span
	var rs []*Result
	for p := range 2 {
		var rec reach.Recorder
		var ps []reach.Span
		for c := range 5 {
			sp := reach.Span{From: uint64(10 + c), To: 60}
			ps = append(ps, sp)
			for seq := sp.From; seq <= 50; seq++ { // 51..60 never arrive
				ns := int64(seq*1000+uint64(c*p)*37_000) * 1000
				rec.Record(seq, ns)
				all.Record(seq, ns)
			}
		}
		spans = append(spans, ps...)
		s, err := reach.Build(12, 60, ps, nil, &rec)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, &Result{SchemaVersion: SchemaVersion, Transport: "sse", Reach: NewReach(s)})
	}
	one, err := reach.Build(12, 60, spans, nil, &all)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Merge(rs...)
	if err != nil {
		t.Fatal(err)
	}
	if want := NewReach(one); m.Reach == nil || *m.Reach != *want {
		t.Fatalf("merged reach %+v, want %+v", m.Reach, want)
	}
	if m.Reach.R100.Never != 10 || m.Reach.R100.Reached != 39 {
		t.Errorf("100%%: %+v, want 39 reached and 10 never", m.Reach.R100)
	}

	older := &Result{SchemaVersion: SchemaVersion, Transport: "sse"}
	if m, err := Merge(rs[0], older); err != nil || m.Reach != nil {
		t.Errorf("merge with a result without reach: %+v, %v", m.Reach, err)
	}
	bad := *rs[1]
	bad.Reach = &Reach{Data: "UgEA"}
	if _, err := Merge(rs[0], &bad); err == nil || !strings.Contains(err.Error(), "reach") {
		t.Errorf("corrupt reach data merged: %v", err)
	}
}
