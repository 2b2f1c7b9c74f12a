//go:build !linux

package alarm

import (
	"errors"
	"sync"
	"time"
)

// timerWaker waits with a time.Timer: as late as Go's timers, which is
// what a Clock offers off Linux.
type timerWaker struct {
	t    *time.Timer
	stop chan struct{}
	once sync.Once
}

func newWaker() (waker, error) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &timerWaker{t: t, stop: make(chan struct{})}, nil
}

func (w *timerWaker) arm(due int64) error {
	if due == 0 {
		w.t.Stop()
		return nil
	}
	w.t.Reset(time.Until(time.Unix(0, due)))
	return nil
}

func (w *timerWaker) wait() error {
	select {
	case <-w.t.C:
		return nil
	case <-w.stop:
		return errors.New("alarm: closed")
	}
}

func (w *timerWaker) close() error {
	w.once.Do(func() { close(w.stop) })
	return nil
}
