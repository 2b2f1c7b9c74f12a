// Command loadgen opens many clients of one transport against a pushbench
// server and reports latency, throughput, delivery correctness, bytes on
// the wire and its own cost. Run loadgen -h for the flags; the work is in
// package loadgen.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/pushbench/pushbench/loadgen"
)

func main() {
	// The first Ctrl-C ends the run early and still prints the summary; a
	// second one kills the process (signal.NotifyContext stops catching).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	live := term.IsTerminal(int(os.Stderr.Fd())) && os.Getenv("CI") == ""
	os.Exit(loadgen.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, live))
}
