// Command netshape shapes the network between pushbench's clients and a
// server: it listens on a loopback address and proxies every connection to
// -upstream through toxiproxy's latency and bandwidth toxics, per a network
// profile (see package network). It runs as its own process, so that bench
// can pin it, sample its CPU and memory like the server's, and stop it.
//
// Contract (bench relies on it): once it accepts connections it prints
// exactly one line to stdout, "listening 127.0.0.1:PORT", then serves until
// SIGTERM or SIGINT and exits 0. Bad flags or profile: exit 2 with one line
// on stderr; a listener that cannot be opened: exit 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/pushbench/pushbench/internal/rlimit"
	"github.com/pushbench/pushbench/network"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run serves until ctx ends (the signal) and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("netshape", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		listen   = fs.String("listen", "127.0.0.1:0", "loopback address to listen on, host:port (port 0 picks a free one)")
		upstream = fs.String("upstream", "", "address of the server to proxy to, host:port (required)")
		profile  = fs.String("profile", "", "network profile (required): "+strings.Join(network.Names, ", ")+
			", or rtt=80ms,jitter=10ms,down=5mbit,up=1mbit (loopback: a proxy with no toxics, the proxy's own cost)")
	)
	fs.Usage = func() {}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "netshape: "+format+"\n", a...)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "Usage: netshape -upstream host:port -profile P [-listen 127.0.0.1:PORT]\n\n"+
				"Proxies every connection on -listen to -upstream, delaying each direction by half the profile's\n"+
				"RTT (with its jitter) and limiting its bandwidth, with toxiproxy. When ready it prints one line,\n"+
				"\"listening 127.0.0.1:PORT\", and serves until SIGTERM or SIGINT (exit 0).\n\nFlags:\n")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return 0
		}
		return fail("%v (see -h)", err)
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q (see -h)", fs.Arg(0))
	}
	if *upstream == "" {
		return fail("-upstream host:port is required")
	}
	if _, port, err := net.SplitHostPort(*upstream); err != nil || port == "" {
		return fail("-upstream must be host:port, got %q", *upstream)
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fail("-upstream port must be 1..65535, got %q", port)
	}
	if *profile == "" {
		return fail("-profile is required: %s, or rtt=80ms,jitter=10ms,down=5mbit,up=1mbit", strings.Join(network.Names, ", "))
	}
	prof, err := network.Parse(*profile)
	if err != nil {
		return fail("-profile: %v", err)
	}
	if err := network.CheckListen(*listen); err != nil {
		return fail("-listen: %v", err)
	}
	// Each proxied client holds two descriptors (its own and the upstream's).
	if soft, hard, err := rlimit.RaiseFiles(); err != nil {
		fmt.Fprintf(stderr, "netshape: warning: %v\n", err)
	} else if soft < hard {
		fmt.Fprintf(stderr, "netshape: warning: open-files limit %d, could not raise it to %d\n", soft, hard)
	}

	p, err := network.Listen(*listen, *upstream, prof)
	if err != nil {
		fmt.Fprintf(stderr, "netshape: %v\n", err)
		return 1
	}
	defer p.Close()
	fmt.Fprintf(stdout, "listening %s\n", p.Addr())
	<-ctx.Done()
	return 0
}
