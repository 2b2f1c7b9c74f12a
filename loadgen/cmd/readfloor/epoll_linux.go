package main

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// readEpoll waits in epoll_wait (level-triggered) and reads each ready
// socket once into one 64 KiB buffer, as the load generator's loop does.
func readEpoll(ctx context.Context, fds []int, m *meter) error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	defer unix.Close(ep)
	for _, fd := range fds {
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			return fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	events := make([]unix.EpollEvent, 128)
	buf := make([]byte, 64<<10)
	for ctx.Err() == nil {
		n, err := unix.EpollWait(ep, events, 100)
		if err != nil && err != unix.EINTR {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for i := range n {
			k, err := unix.Read(int(events[i].Fd), buf)
			switch {
			case err == unix.EAGAIN || err == unix.EINTR:
			case err != nil:
				return fmt.Errorf("read: %w", err)
			case k == 0:
				return errEOF
			default:
				m.count(buf[:k])
			}
		}
		if !m.tick(time.Now()) {
			return nil
		}
	}
	return nil
}

func setNonblock(fd int) error {
	if err := unix.SetNonblock(fd, true); err != nil {
		return fmt.Errorf("set non-blocking: %w", err)
	}
	return nil
}
