package rlimit

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestRaiseFiles lowers this test process's soft limit, raises it again
// and checks that it reached the hard limit.
func TestRaiseFiles(t *testing.T) {
	soft, hard, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	if soft < 2 || hard < soft {
		t.Fatalf("limits soft %d, hard %d", soft, hard)
	}
	low := unix.Rlimit{Cur: soft / 2, Max: hard}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatalf("lower the soft limit: %v", err)
	}
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: soft, Max: hard}) })
	if s, _, _ := Files(); s != soft/2 {
		t.Fatalf("soft limit %d after lowering it to %d", s, soft/2)
	}
	s, h, err := RaiseFiles()
	if err != nil || s != hard || h != hard {
		t.Errorf("RaiseFiles = %d, %d, %v; want %d, %d, nil", s, h, err, hard, hard)
	}
	if s, _, _ := Files(); s != hard {
		t.Errorf("soft limit %d after raising, want %d", s, hard)
	}
}
