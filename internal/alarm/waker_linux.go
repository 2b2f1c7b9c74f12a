//go:build linux

package alarm

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// fdWaker is a timerfd on CLOCK_REALTIME with absolute expiries (the
// alarms' dues are Unix ns), read through Go's netpoller: the runtime's
// epoll_wait returns when the timerfd expires, to the microsecond.
type fdWaker struct {
	fd  int
	f   *os.File // owns fd; non-blocking, so Read parks in the netpoller
	buf [8]byte
}

func newWaker() (waker, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_REALTIME, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("alarm: timerfd_create: %w", err)
	}
	return &fdWaker{fd: fd, f: os.NewFile(uintptr(fd), "timerfd")}, nil
}

// arm is called with the Clock's lock held, never after close.
func (w *fdWaker) arm(due int64) error {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(due)} // 0: disarm
	if err := unix.TimerfdSettime(w.fd, unix.TFD_TIMER_ABSTIME, &spec, nil); err != nil {
		return fmt.Errorf("alarm: timerfd_settime: %w", err)
	}
	return nil
}

func (w *fdWaker) wait() error {
	if _, err := w.f.Read(w.buf[:]); err != nil {
		return fmt.Errorf("alarm: read timerfd: %w", err)
	}
	return nil
}

func (w *fdWaker) close() error { return w.f.Close() }
