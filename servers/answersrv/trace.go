package answersrv

import (
	"context"
	"runtime/trace"
)

// traceArrival logs an answer's arrival in the Go execution trace when
// one is being taken (bin/server -trace), by the request's seed, so that
// a slow answer can be followed across the load generator's trace (which
// logs each send by seed) and the server's. Without a trace it costs a
// flag's load.
func traceArrival(ctx context.Context, seed uint64, arrival int64) {
	if trace.IsEnabled() {
		trace.Logf(ctx, "answer", "arrival seed %d at %d", seed, arrival)
	}
}
