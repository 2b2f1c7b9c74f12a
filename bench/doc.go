// Package bench is the pushbench orchestrator: it runs the comparison of
// Server-Sent Events, WebSocket, long polling and short polling as separate
// processes and writes tables an engineer can trust.
//
// The work is split the way the data flows:
//
//	cmd/bench   flags, signals, the results directory (the only main)
//	runner      the matrix: start bin/server, wait for /healthz, start
//	            bin/loadgen processes, sample, stop; one report.Run per run
//	proc        processes in their own process groups, pinned to CPUs,
//	            stopped with deadlines, killed with bench if bench dies
//	sample      the server seen from outside: /proc/PID/stat and /metrics
//	env         the machine, for env.json and the caveats under each table
//	report      Report (accumulate) and Reporters (render): ASCII and
//	            Markdown tables, JSON, charts, Go benchmark format, prose
//
// Results are data first (results.json) and rendered afterwards, so any
// report can be regenerated with `bench -from results/latest`.
package bench
