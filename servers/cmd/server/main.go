// Command server runs one pushbench server: the deterministic price feed
// over SSE, WebSocket or long polling (or all three for the demo page), per
// ../shared/PROTOCOL.md.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/trace"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pushbench/pushbench/internal/rlimit"
	"github.com/pushbench/pushbench/servers/answer"
	"github.com/pushbench/pushbench/servers/answersrv"
	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/impls"
	"github.com/pushbench/pushbench/servers/impls/host"
	"github.com/pushbench/pushbench/servers/protocol"
	"github.com/pushbench/pushbench/servers/server"
	"github.com/pushbench/pushbench/servers/sse"
	"github.com/pushbench/pushbench/servers/ws"
)

// shutdownTimeout bounds a graceful stop.
const shutdownTimeout = 5 * time.Second

// -sndbuf bounds: Linux clamps smaller values to about 4.6 KiB, and a larger
// buffer defeats the purpose of the flag.
const (
	minSndBuf = 4 << 10
	maxSndBuf = 64 << 20
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		transport    = fs.String("transport", "all", "transport to serve: sse, ws, poll or all (all: every endpoint, for the demo page)")
		addr         = fs.String("addr", "127.0.0.1:8080", "listen address host:port (port 0 picks a free one)")
		seed         = fs.Uint64("seed", feed.DefaultSeed, "feed seed: the same seed, symbols and rate give the same ticks")
		symbols      = fs.Int("symbols", feed.DefaultSymbols, fmt.Sprintf("number of symbols in the feed (1..%d)", feed.MaxSymbols))
		rate         = fs.Float64("rate", feed.DefaultRate, "ticks per second for the whole feed")
		history      = fs.Int("history", feed.DefaultHistory, "ticks retained for resume")
		heartbeat    = fs.Duration("heartbeat", sse.DefaultHeartbeat, "SSE heartbeat comment after this long without writes")
		retry        = fs.Duration("retry", sse.DefaultRetry, "SSE retry hint sent to clients")
		ping         = fs.Duration("ping", ws.DefaultPing, "WebSocket ping period; a peer that misses a pong for 1.5 periods is dropped")
		writeTimeout = fs.Duration("write-timeout", sse.DefaultWriteTimeout, "deadline of every write; a client that blocks longer is dropped")
		maxConns     = fs.Int("max-conns", 0, fmt.Sprintf("cap on streaming clients and held polls (0: the open-files limit minus %d)", server.FDReserve))
		headerTO     = fs.Duration("header-timeout", server.DefaultHeaderTimeout, "time allowed to read a request's head; a request that declares a body gets 400 (no endpoint takes one)")
		idleTO       = fs.Duration("idle-timeout", server.DefaultIdleTimeout, "a keep-alive connection that has not begun its next request within this is closed")
		sndbuf       = fs.Int("sndbuf", server.DefaultSndBuf, "SO_SNDBUF of every connection, bytes: bounds the kernel memory a client that stops reading holds (Linux doubles it; 0: the kernel's autotuning, up to 4 MiB)")
		allowOrigin  = fs.String("allow-origin", "", "WebSocket origins allowed besides same-origin, comma separated, or * for any")
		impl         = fs.String("impl", impls.Default, "implementation of -transport (see the list below); a library's is valid only with the transport it serves")
		logLevel     = fs.String("log", "info", "log level: debug, info, warn or error")
		useTLS       = fs.Bool("tls", false, "serve HTTPS and WSS; HTTP/2 is offered by ALPN for /sse, /poll, /metrics and / (WebSocket stays HTTP/1.1). "+
			"Without -cert/-key a self-signed ECDSA P-256 certificate for 127.0.0.1, ::1, localhost and the host of -addr is made at start and its SHA-256 fingerprint logged")
		certFile   = fs.String("cert", "", "with -tls: PEM certificate chain file (with -key)")
		keyFile    = fs.String("key", "", "with -tls: PEM private key file (with -cert)")
		h2c        = fs.Bool("h2c", false, "also accept cleartext HTTP/2 with prior knowledge (no TLS; browsers never use it, load generators and curl --http2-prior-knowledge can)")
		maxStreams = fs.Int("h2-max-streams", protocol.DefaultMaxStreams, "concurrent streams per HTTP/2 connection; a client past it is refused (RST_STREAM), counted in pushbench_connections_refused_total{reason=\"h2_max_streams\"}")

		ansTokens   = fs.Int("answer-max-tokens", answer.DefaultMaxTokens, "largest tokens (chunks) an answer request may ask for")
		ansRate     = fs.Float64("answer-max-rate", answer.DefaultMaxRate, "largest rate (chunks/s) an answer request may ask for")
		ansThink    = fs.Duration("answer-max-think", answer.DefaultMaxThink, "longest think (time before the first chunk) an answer request may ask for")
		ansDuration = fs.Duration("answer-max-duration", answer.DefaultMaxDuration, "longest answer: think + (tokens-1)/rate; longer requests get 400")
		ansInFlight = fs.Int("answer-max-inflight", answersrv.DefaultMaxInFlight, "answers in flight in the server (SSE, WebSocket and polling together); past it 503 or a WebSocket error message")
		ansPerConn  = fs.Int("answer-max-per-conn", answersrv.DefaultMaxPerConn, "answers in flight per WebSocket session or HTTP connection (polling answers count against -answer-max-inflight only)")
		ansRetain   = fs.Duration("answer-retain", answersrv.DefaultRetain, "how long an SSE or polling answer stays resumable after its last chunk was due; then GET /answer/{id} is 404")
		ansIdle     = fs.Duration("answer-idle", answersrv.DefaultIdle, "a polling answer nobody polls for this long gives its slot back")
		traceFile   = fs.String("trace", "", "write a Go execution trace of the server to this file until it shuts down (go tool trace; answers log their arrival)")
	)
	usage := func() {
		fmt.Fprintf(stderr, "Usage: server [flags]\n\nServes the pushbench feed per PROTOCOL.md on /sse, /ws, /poll, /metrics, /healthz and / (demo page),\n"+
			"and answer streams on /answer (POST: SSE or polling by Accept; GET with Upgrade: WebSocket) and /answer/{id}.\n"+
			"Open connections are bounded at the open-files limit minus %d; %d more are accepted that may only ask /healthz\n"+
			"and /metrics (anything else gets 503 with Retry-After), and past those a connection is closed at once.\n\nFlags:\n",
			server.FDReserve, server.ReserveConns)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		printImpls(stderr)
	}
	fs.Usage = func() {} // parse errors are reported in one line below
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "server: "+format+"\n", a...)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage()
			return 0
		}
		return fail("%v (see -h)", err)
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q (see -h)", fs.Arg(0))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fail("-log must be debug, info, warn or error, got %q", *logLevel)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"heartbeat", *heartbeat}, {"retry", *retry}, {"ping", *ping}, {"write-timeout", *writeTimeout},
		{"header-timeout", *headerTO}, {"idle-timeout", *idleTO}, {"answer-max-duration", *ansDuration},
		{"answer-retain", *ansRetain}, {"answer-idle", *ansIdle}} {
		if d.v <= 0 {
			return fail("-%s must be a positive duration, got %v", d.name, d.v)
		}
	}
	if !slices.Contains(server.Transports, *transport) {
		return fail("-transport must be one of %s, got %q", strings.Join(server.Transports, ", "), *transport)
	}
	if *impl != impls.Default {
		if _, err := impls.Lookup(*impl, *transport); err != nil {
			return fail("-%v", err)
		}
	}
	if !(*rate > 0 && *rate <= feed.MaxRate) {
		return fail("-rate must be > 0 and <= %g ticks/s, got %g", feed.MaxRate, *rate)
	}
	if *symbols < 1 || *symbols > feed.MaxSymbols {
		return fail("-symbols must be 1..%d, got %d", feed.MaxSymbols, *symbols)
	}
	if *history < 1 {
		return fail("-history must be at least 1, got %d", *history)
	}
	if *maxConns < 0 {
		return fail("-max-conns must be >= 0, got %d", *maxConns)
	}
	if *sndbuf != 0 && (*sndbuf < minSndBuf || *sndbuf > maxSndBuf) {
		return fail("-sndbuf must be 0 or %d..%d bytes, got %d", minSndBuf, maxSndBuf, *sndbuf)
	}
	if *ansThink < 0 {
		return fail("-answer-max-think must be >= 0, got %v", *ansThink)
	}
	if *ansTokens < 1 || !(*ansRate > 0) || *ansInFlight < 1 || *ansPerConn < 1 {
		return fail("-answer-max-tokens, -answer-max-rate, -answer-max-inflight and -answer-max-per-conn must be positive, got %d, %g, %d, %d",
			*ansTokens, *ansRate, *ansInFlight, *ansPerConn)
	}
	if _, _, err := net.SplitHostPort(*addr); err != nil {
		return fail("-addr must be host:port, got %q", *addr)
	}
	if *maxStreams < 1 {
		return fail("-h2-max-streams must be at least 1, got %d", *maxStreams)
	}
	if *h2c && *useTLS {
		return fail("-h2c is cleartext HTTP/2; with -tls HTTP/2 is negotiated by ALPN already")
	}
	if (*certFile != "" || *keyFile != "") && !*useTLS {
		return fail("-cert and -key need -tls")
	}
	proto := protocol.Config{H2C: *h2c, MaxStreams: *maxStreams}
	var fingerprint string
	if *useTLS {
		var cert tls.Certificate
		var err error
		if *certFile != "" || *keyFile != "" {
			cert, err = protocol.Load(*certFile, *keyFile)
		} else {
			host, _, _ := net.SplitHostPort(*addr)
			cert, err = protocol.SelfSigned(host)
		}
		if err != nil {
			return fail("%v", err)
		}
		proto.TLS = protocol.TLSConfig(cert)
		fingerprint = protocol.Fingerprint(cert)
	}
	var origins []string
	if *allowOrigin != "" {
		origins = strings.Split(*allowOrigin, ",")
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	soft, hard, err := rlimit.RaiseFiles()
	if err != nil {
		log.Warn("could not read the open-files limit", "err", err)
	} else if soft < hard {
		log.Warn("could not raise the open-files limit to the hard limit", "soft", soft, "hard", hard)
	}
	// Every connection holds a descriptor: the connection bound keeps
	// FDReserve of them from clients (half for a reserve that still answers
	// /healthz and /metrics), so that accept never fails with EMFILE.
	budget := max(int(soft)-server.FDReserve, 1)
	if *maxConns == 0 {
		*maxConns = budget
	} else if *maxConns > budget {
		log.Warn("-max-conns exceeds the open-files limit; connections past it get 503",
			"max_conns", *maxConns, "conns", budget, "open_files", soft, "raise_with", "ulimit -n (hard limit) or /etc/security/limits.conf")
	}
	log.Info("open files", "soft", soft, "hard", hard, "max_conns", *maxConns, "conns", budget, "reserve", server.ReserveConns)

	srv, err := server.New(server.Config{
		Transport: *transport,
		Feed:      feed.Config{Seed: *seed, Symbols: *symbols, Rate: *rate, History: *history},
		Retry:     *retry, Heartbeat: *heartbeat, Ping: *ping, WriteTimeout: *writeTimeout,
		MaxConns: *maxConns, AllowOrigin: origins, Impl: *impl, Logger: log, Protocol: proto,
		Answer: answersrv.Config{
			Limits:      answer.Limits{MaxTokens: *ansTokens, MaxRate: *ansRate, MaxThink: *ansThink, MaxDuration: *ansDuration},
			MaxInFlight: *ansInFlight, MaxPerConn: *ansPerConn, Retain: *ansRetain, Idle: *ansIdle,
		},
	})
	if err != nil {
		return fail("%s", strings.TrimPrefix(strings.TrimPrefix(err.Error(), "server: "), "feed: "))
	}
	tcpAddr, err := net.ResolveTCPAddr("tcp", *addr)
	if err != nil {
		return fail("-addr: %v", err)
	}
	ln, err := net.ListenTCP("tcp", tcpAddr)
	if err != nil {
		fmt.Fprintf(stderr, "server: listen: %v\n", err)
		return 1
	}
	var hs host.Engine // net/http's server, or the implementation's own loop
	limits := server.Limits{Conns: budget, Reserve: server.ReserveConns, SndBuf: *sndbuf,
		HeaderTimeout: *headerTO, IdleTimeout: *idleTO}
	hs, limited := srv.HTTP(ln, limits)
	if eng := srv.Engine(limits); eng != nil { // the library's own network loop serves every path
		hs, limited = eng, ln
	}
	if *traceFile != "" {
		f, err := os.Create(*traceFile)
		if err != nil {
			fmt.Fprintf(stderr, "server: -trace: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			fmt.Fprintf(stderr, "server: -trace: %v\n", err)
			return 1
		}
		defer trace.Stop()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	feedDone := make(chan error, 1)
	go func() { feedDone <- srv.Run(ctx) }()
	serveDone := make(chan error, 1)
	go func() { serveDone <- hs.Serve(limited) }()
	scheme := "http"
	if *useTLS {
		scheme = "https"
		if *certFile == "" {
			log.Info("self-signed certificate", "sha256", fingerprint)
		} else {
			log.Info("certificate", "file", *certFile, "sha256", fingerprint)
		}
	}
	log.Info("serving", "url", scheme+"://"+ln.Addr().String(), "transport", *transport, "impl", *impl, "h2c", *h2c,
		"h2_max_streams", *maxStreams, "seed", *seed, "symbols", *symbols, "rate", *rate, "history", *history)

	code := 0
	select {
	case <-ctx.Done():
		log.Info("signal received: shutting down")
	case err := <-serveDone:
		log.Error("serve", "err", err)
		code = 1
	case err := <-feedDone:
		log.Error("feed stopped", "err", err)
		code = 1
	}
	stop() // a second signal kills the process the default way
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- srv.Shutdown(sctx) }()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
		_ = hs.Close()
	}
	if err := <-errc; err != nil {
		log.Warn("stream shutdown", "err", err)
	}
	log.Info("stopped")
	return code
}

// printImpls lists the implementations -impl accepts, per transport.
func printImpls(w io.Writer) {
	fmt.Fprintf(w, "\nImplementations (-impl NAME with its -transport):\n")
	for _, i := range impls.List() {
		lib := i.Library
		if lib == "" {
			lib = "net/http"
		}
		fmt.Fprintf(w, "  %-5s %-12s %s %s\n        %s; supports: %s; deliveries counted: %s\n",
			i.Transport, i.Name, lib, i.Version(), i.Pattern, i.SupportsString(), i.Deliveries)
	}
}
