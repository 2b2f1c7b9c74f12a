// Package rlimit reads and raises the open-files limit (RLIMIT_NOFILE),
// which bounds how many sockets one process can hold: every pushbench
// program raises its soft limit to the hard one before it sizes itself.
package rlimit

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Files returns the soft and hard open-files limits in force.
func Files() (soft, hard uint64, err error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, fmt.Errorf("read open-files limit: %w", err)
	}
	return lim.Cur, lim.Max, nil
}

// RaiseFiles raises the soft open-files limit to the hard one, which needs
// no privilege, and returns the limits then in force. A soft limit still
// below the hard one says raising failed (the caller sizes itself to the
// soft one); err says the limits could not be read at all.
func RaiseFiles() (soft, hard uint64, err error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, fmt.Errorf("read open-files limit: %w", err)
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &want) == nil {
			lim = want
		}
	}
	return lim.Cur, lim.Max, nil
}
