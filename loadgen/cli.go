package loadgen

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"time"

	"github.com/pushbench/pushbench/loadgen/answer"
	"github.com/pushbench/pushbench/loadgen/client"
	"github.com/pushbench/pushbench/servers/feed"
)

// Exit statuses of Main.
const (
	ExitOK     = 0
	ExitError  = 1 // the run could not take place (server down, limits, output)
	ExitUsage  = 2 // bad flags or URL
	ExitFaults = 3 // -strict and delivery faults were found
)

const usageHead = `loadgen opens many clients of one transport against a pushbench server (or
any server that speaks PROTOCOL.md) and reports latency (arrival minus each
tick's scheduled ts), reach (per tick, the time until 50%, 99% and 100% of
the subscriptions owed it had it), throughput, delivery correctness per
subscription, bytes on the wire and its own CPU and memory.

Usage: loadgen -transport sse|ws|poll|shortpoll|storm-sse|storm-ws|storm-poll -url http://HOST:PORT [flags]
       loadgen -workload answer -transport sse|ws|poll -url http[s]://HOST:PORT [flags]

-url is the server's base URL or the transport's endpoint itself:
http://HOST:PORT, http://HOST:PORT/sse, ws://HOST:PORT/ws (ws:// only for
ws), http://HOST:PORT/poll; https:// (and wss://) for TLS, whose handshake
is part of the connect time. -insecure skips the certificate check, -ca
FILE trusts the certificates of a PEM file; an untrusted certificate is
one line (failure cause tls_cert), not a run of timeouts.

Protocols: -proto h2 (sse, poll, shortpoll, storm-sse, storm-poll) makes
the clients HTTP/2 streams over -h2-conns connections (0: one per 100
clients, rounded up), negotiated by ALPN over https and cleartext with
prior knowledge (h2c) over http. WebSocket stays an HTTP/1.1 upgrade.
Bytes are counted on the socket (over TLS the ciphertext) and, over TLS,
also above it: the summary gives TLS's own bytes per tick. TLS and HTTP/2
clients are read by goroutines whatever -reader says.

Modes (-transport):
  sse, ws, poll   -clients long-lived subscriptions (poll = long polling),
                  opened over -ramp, then measured for -duration; -churn drops
                  and resumes some of them every second; with -slow a share
                  of them stall (connect, then read nothing more).
  shortpoll       -clients pollers, each asking GET /poll?timeout=0 every
                  -interval: a fixed request rate (open model, vegeta).
  storm-sse, storm-ws, storm-poll
                  new connections at -rate per second for -duration (at most
                  -clients at once, vegeta-paced), each measured for time to
                  connect and time to first tick, then closed (or held -hold).

Answers (-workload answer; PROTOCOL.md "Answer streaming"; -url may be
http://HOST:PORT/answer): requests for answers of their own (-tokens chunks
at -token-rate per second after -think) arrive as a Poisson process of
-rate answers per second (seeded by -seed; answer n asks for seed -seed+n;
by default -clients over one answer's length, which keeps -clients answers
in flight on average), at most -concurrency in flight: an arrival that
finds them all busy is not sent and is counted (not_sent_cap), never
delayed. Each answer is timed from when it was meant to be sent: TTFT (to
its first chunk, and of it the way to the server: to the arrival time the
server stamps into the chunks' ts), ITL (between its chunks), end to end
(to done), and each chunk's lateness from its scheduled ts; and checked: every chunk once, in
order, done received, the text the seed determines. Arrivals come for
-ramp + -warmup + -duration; those before -duration are checked but not
measured. Then up to -drain (default: one answer's length plus 2s) for the
answers in flight. -conn: keepalive (connections reused, one answer at a
time on each; ws: a session per answer in flight), fresh (a new connection
per answer), mux (ws: answers multiplexed over -conns sessions; ws's
default), h2 (sse, poll: each request an HTTP/2 stream over -h2-conns
connections, 0: one per 32 of -concurrency; h2 by ALPN over https, h2c
over http; -proto h2 means -conn h2). Every mode runs over https (ws:
wss) with -insecure or -ca. -symbols and -feed-symbols (the feed's) are ignored; -slow,
-churn and -hold are refused.

Correctness: the checker replays the server's deterministic feed (-seed,
-feed-symbols must match the server's -seed, -symbols) to know which seqs
carry the subscribed symbols and what (sym, price) each must have. A fresh
subscription is owed every tick after the first one it sees (poll: after the
cursor of its first answer); reconnects resume and owe everything in between.
At the end the run waits up to -drain for ticks scheduled before the end.
-feed-symbols 0 checks only seq order and duplicates (no -symbols then).

Warm-up: with -warmup D, the run is -ramp, then D, then -duration. Ticks that
arrive before the warm-up ends (the ramp's too) are checked like every other
(the delivery counts cover the whole run) but are left out of the latency
histogram and of the messages and msgs/s figures, which cover -duration only.
Without -warmup every tick's latency is recorded, the ramp's included.

Slow clients: -slow 0.1 makes every 10th client (sse, ws, poll) stall: it
connects with a 4 KiB socket receive buffer and an Ethernet MSS (1460: the
server's send buffer to it is then sized as across a network, not for
loopback), then reads nothing more until the end (a long poll sends its next
request first). The server's writes to it block once its buffers are full,
and it must cope (drop it after its write timeout, or signal a gap) without
slowing the others. Stalled clients are left out of every other figure:
latency, messages, delivery counts and bytes are the others'. After the
drain each stalled connection is read once more, for up to 0.5s, to tell
whether the server had dropped it (EOF or reset) or still held it.

Exit status: 0 done, 1 the run could not take place, 2 bad flags,
3 delivery faults with -strict.

Flags:
`

// Main runs the command line: parses args, runs, prints the summary to
// stdout and the progress to stderr, and returns the exit status. live
// says stderr is a terminal (redraw one progress line).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, live bool) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		cfg        Config
		rawURL     string
		symbols    string
		sourceIPs  string
		out        string
		quiet      bool
		strict     bool
		feedSyms   int
		seed       uint64
		duration   time.Duration
		progressEv time.Duration
		cpuProfile string
		traceFile  string
	)
	fs.StringVar(&cfg.Workload, "workload", WorkloadFeed, "feed (the price feed's subscriptions) or answer (per-request answer streams; sse, ws, poll)")
	fs.StringVar(&cfg.Transport, "transport", "sse", "sse, ws, poll, shortpoll, storm-sse, storm-ws or storm-poll")
	fs.StringVar(&rawURL, "url", "http://127.0.0.1:8080", "the server's base URL, or the transport's endpoint (e.g. http://HOST:PORT/sse, ws://HOST:PORT/ws); https:// and wss:// for TLS")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "https: do not verify the server's certificate")
	fs.StringVar(&cfg.CAFile, "ca", "", "https: trust the certificates in this PEM file (instead of the system's)")
	fs.StringVar(&cfg.Proto, "proto", client.ProtoH1, "h1 or h2 (sse, poll, shortpoll, storm-sse, storm-poll; answer: -conn h2): HTTP/2 streams over -h2-conns connections (h2c over http)")
	fs.IntVar(&cfg.H2Conns, "h2-conns", 0, "-proto h2: connections the streams share (0: clients/100 rounded up; answer -conn h2: one per 32 of -concurrency)")
	fs.IntVar(&cfg.Clients, "clients", DefaultClients, "subscriptions (sse, ws, poll), pollers (shortpoll), connections open at once at most (storm) or answers in flight on average (answer)")
	fs.DurationVar(&duration, "duration", DefaultDuration, "measured time, from when the ramp is over and every client connected (and the -warmup is over)")
	fs.DurationVar(&cfg.Ramp, "ramp", 0, "spread connection opens over this time before -duration starts (streams)")
	fs.DurationVar(&cfg.Drain, "drain", DefaultDrain, "at the end, wait up to this for ticks scheduled before the end")
	fs.StringVar(&symbols, "symbols", "", "comma-separated symbols to subscribe to (empty: all)")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "after the ramp, run this long before -duration without recording latency or messages (the checker still sees every tick); not for storm modes")
	fs.Float64Var(&cfg.Churn, "churn", 0, "share of clients dropped and resumed per second, e.g. 0.05 (streams)")
	fs.Float64Var(&cfg.Slow, "slow", 0, "share of clients, 0..1, that stall after connecting and are reported apart, e.g. 0.1 (sse, ws, poll)")
	fs.StringVar(&sourceIPs, "source-ips", "auto", "source addresses, e.g. 127.0.0.2-127.0.0.40 or a comma list; auto: more loopback addresses when one lacks ports (~28k connections each)")
	fs.Uint64Var(&seed, "seed", feed.DefaultSeed, "the server's feed -seed; answer: seeds the arrivals, answer n asks for seed+n")
	fs.IntVar(&feedSyms, "feed-symbols", feed.DefaultSymbols, "the server's feed -symbols count; 0: unknown feed, check order and duplicates only")
	fs.DurationVar(&cfg.Interval, "interval", DefaultInterval, "shortpoll: each poller asks this often")
	fs.Float64Var(&cfg.Rate, "rate", DefaultRate, "storm: new connections per second; answer: answers per second (Poisson arrivals; default -clients over one answer's length)")
	fs.IntVar(&cfg.Answer.Concurrency, "concurrency", 0, "answer: answers in flight at most; an arrival beyond is not sent (counted); 0: 2×-clients+10")
	fs.IntVar(&cfg.Answer.Tokens, "tokens", answer.DefaultTokens, "answer: chunks per answer")
	fs.Float64Var(&cfg.Answer.TokenRate, "token-rate", answer.DefaultTokenRate, "answer: chunks per second within an answer")
	fs.DurationVar(&cfg.Answer.Think, "think", answer.DefaultThink, "answer: the server's wait before the first chunk")
	fs.StringVar(&cfg.Answer.Conn, "conn", "", "answer: keepalive, fresh, mux (ws) or h2 (sse, poll: HTTP/2 streams over -h2-conns connections); empty: keepalive for sse and poll (h2 with -proto h2), mux for ws")
	fs.IntVar(&cfg.Answer.Conns, "conns", 0, "answer, -conn mux: WebSocket sessions the answers share (0: one per 32 of -concurrency)")
	fs.DurationVar(&cfg.Hold, "hold", 0, "storm: keep each connection this long after its first tick")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", client.DefaultConnectTimeout, "bound on dial plus handshake (storm: also on the first tick)")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", client.DefaultIdleTimeout, "drop a stream silent for this long (goroutine reader: after half to all of it; loop: after it plus up to 1s)")
	fs.DurationVar(&cfg.PollTimeout, "poll-timeout", client.DefaultPollTimeout, "poll: the timeout parameter of each long poll")
	fs.StringVar(&cfg.Reader, "reader", DefaultReader, "sse, ws, poll: what reads the connections: loop (a few event-loop workers, epoll; Linux) or goroutine (one per client; always over TLS and HTTP/2)")
	fs.IntVar(&cfg.ReadBuffer, "read-buffer", client.DefaultReadBuffer, "bytes of parse buffer per client")
	fs.IntVar(&cfg.Handshakes, "handshakes", DefaultHandshakes, "connection opens in flight at once (the server's listen backlog is finite)")
	fs.StringVar(&out, "out", "", "write the result as JSON to this file (for bench)")
	fs.DurationVar(&progressEv, "progress", DefaultProgressEvery, "interval of the progress lines when stderr is not a terminal")
	fs.BoolVar(&quiet, "quiet", false, "no progress output")
	fs.BoolVar(&strict, "strict", false, "exit 3 when any delivery fault was counted")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the load generator to this file")
	fs.StringVar(&traceFile, "trace", "", "write a Go execution trace of the load generator to this file (go tool trace; answer runs log each arrival's intended send time)")

	usage := func(w io.Writer) {
		fmt.Fprint(w, usageHead)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "loadgen: %v (see loadgen -h)\n", oneLine(err))
		return ExitUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return ExitOK
		}
		return fail(err)
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return fail(fmt.Errorf("-url: %w", err))
	}
	cfg.URL, cfg.Duration, cfg.Seed, cfg.FeedSymbols, cfg.ProgressEvery = u, duration, seed, feedSyms, progressEv
	if cfg.Workload == WorkloadAnswer {
		// An answer run's drain and rate default to what its answers
		// need; the feed's defaults apply only when the flags are given.
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "drain":
				cfg.Answer.Drain = cfg.Drain
			case "rate":
				cfg.Answer.Rate = cfg.Rate
			}
		})
	}
	if symbols != "" {
		for s := range strings.SplitSeq(symbols, ",") {
			if s = strings.TrimSpace(s); s == "" {
				return fail(errors.New("-symbols: empty name in list"))
			}
			cfg.Symbols = append(cfg.Symbols, s)
		}
	}
	if cfg.SourceIPs, err = ParseSourceIPs(sourceIPs); err != nil {
		return fail(err)
	}
	if cfg.ReadBuffer < 64 || cfg.ReadBuffer > 1<<20 {
		return fail(fmt.Errorf("-read-buffer must be 64..1048576, got %d", cfg.ReadBuffer))
	}
	if cfg.ConnectTimeout <= 0 || cfg.IdleTimeout <= 0 || cfg.PollTimeout <= 0 {
		return fail(errors.New("-connect-timeout, -idle-timeout and -poll-timeout must be positive"))
	}
	if err := cfg.Validate(); err != nil {
		return fail(err)
	}
	if !quiet {
		cfg.Progress, cfg.Live = stderr, live
	}

	for _, r := range []struct {
		flag, path string
		start      func(io.Writer) error
		stop       func()
	}{
		{"-cpuprofile", cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile},
		{"-trace", traceFile, trace.Start, trace.Stop},
	} {
		if r.path == "" {
			continue
		}
		stop, err := startRecording(r.path, r.start, r.stop)
		if err != nil {
			fmt.Fprintf(stderr, "loadgen: %s: %v\n", r.flag, oneLine(err))
			return ExitError
		}
		defer stop()
	}
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", oneLine(err))
		return ExitError
	}
	if err := WriteSummary(stdout, res); err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return ExitError
	}
	if out != "" {
		if err := res.Write(out); err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", oneLine(err))
			return ExitError
		}
	}
	if strict && len(res.Counts.Faults()) > 0 { // an answer run's mirror its chunk checks
		return ExitFaults
	}
	return ExitOK
}

// oneLine keeps an error message on one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// startRecording starts a recording of the process (a CPU profile, an
// execution trace) into a new file at path; stop ends it and closes the
// file.
func startRecording(path string, start func(io.Writer) error, end func()) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		end()
		f.Close()
	}, nil
}
