package result

import (
	"fmt"

	"github.com/pushbench/pushbench/loadgen/reach"
)

// Reach is a run's per-tick reach (see loadgen/reach): for each tick the
// time from its scheduled ts until 50%, 99% and 100% of the subscriptions
// owed it had it, summarised over the ticks, and the per-seq data those
// figures come from, which merges exactly across load-generator processes.
// 100% is exact; 50% and 99% are at most 1/64 (1.6%) above the true value.
type Reach struct {
	reach.Summary
	Data string `json:"data"` // reach.Set.Encode: base64
}

// NewReach summarises and encodes a set.
func NewReach(s *reach.Set) *Reach {
	return &Reach{Summary: s.Summarize(), Data: s.Encode()}
}

// mergeReach merges the reach of processes that ran side by side. Without
// the data of every one of them the merge could not be exact: then there
// is none.
func mergeReach(rs []*Result) (*Reach, error) {
	sets := make([]*reach.Set, 0, len(rs))
	for _, r := range rs {
		if r.Reach == nil {
			return nil, nil
		}
		s, err := reach.Decode(r.Reach.Data)
		if err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
		sets = append(sets, s)
	}
	return NewReach(reach.Merge(sets...)), nil
}
