package env

import (
	"context"
	"runtime"
	"testing"

	"github.com/pushbench/pushbench/bench/proc"
)

func TestCollect(t *testing.T) {
	pin, err := proc.PlanPinning("auto")
	if err != nil {
		t.Fatal(err)
	}
	e := Collect(context.Background(), pin, t.TempDir())
	if e.Cores < 1 || e.GoVersion != runtime.Version() || e.OpenFiles == 0 || e.Kernel == "" || len(e.UsableCPUs) == 0 {
		t.Errorf("incomplete env: %+v", e)
	}
	if e.Pinning.Mode == "" || e.Pinning.Note == "" {
		t.Errorf("pinning not recorded: %+v", e.Pinning)
	}
	if e.GitCommit != "" {
		t.Errorf("a temporary directory has commit %q", e.GitCommit)
	}
}
