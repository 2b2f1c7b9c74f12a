package server

import (
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pushbench/pushbench/servers/metrics"
)

// limitListener counts accept failures at the open-files limit and logs
// them at most once a second. net/http already backs off on such errors
// (5 ms doubling to 1 s), so the process neither crashes nor spins; the
// clients it has keep being served.
type limitListener struct {
	net.Listener
	s       *Server
	lastLog atomic.Int64
}

// Listener wraps l so that EMFILE/ENFILE accept failures are counted in
// pushbench_connections_refused_total{reason="emfile"} and logged.
func (s *Server) Listener(l net.Listener) net.Listener { return &limitListener{Listener: l, s: s} }

func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil && (errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) {
		l.s.metrics.Refused.WithLabelValues("any", metrics.ReasonEMFILE).Inc()
		now := time.Now().UnixNano()
		if last := l.lastLog.Load(); now-last > int64(time.Second) && l.lastLog.CompareAndSwap(last, now) {
			l.s.cfg.Logger.Warn("accept: out of file descriptors; refusing new clients until some leave",
				slog.Int64("clients", l.s.Open()), slog.Any("err", err))
		}
	}
	return c, err
}
