package loadgen

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pushbench/pushbench/loadgen/internal/servertest"
	"github.com/pushbench/pushbench/loadgen/result"
	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/server"
)

// protoCase is a protocol the load generator speaks to the real server:
// what the server serves (servertest.Protocols), the client's -proto,
// and the transports that run over it (WebSocket only over HTTP/1.1).
type protoCase struct {
	name, server, proto string
	transports          []string
}

// protoCases are the protocols besides plain HTTP/1.1, which the other
// tests of this package run over.
var protoCases = []protoCase{
	{"tls", "tls", "h1", []string{"sse", "ws", "poll"}},
	{"h2", "tls", "h2", []string{"sse", "poll"}},
	{"h2c", "h2c", "h2", []string{"sse", "poll"}},
}

// protoConfig is testConfig against a server of pc's protocol (one per
// call), trusting its certificate with -ca.
func protoConfig(t *testing.T, pc protoCase, mode string, scfg server.Config) Config {
	t.Helper()
	base, ca := servertest.Serve(t, scfg, pc.server)
	cfg := testConfig(t, mode, base)
	cfg.Proto, cfg.CAFile = pc.proto, ca
	return cfg
}

func feedAt(rate float64) feed.Config {
	return feed.Config{Seed: 1, Symbols: 16, Rate: rate, History: 4096}
}

// checkProto checks what every run over pc must show: the protocol named
// in the result, the goroutine reader where the loop cannot read, and
// over TLS the bytes above it fewer than those on the socket.
func checkProto(t *testing.T, pc protoCase, res *result.Result) {
	t.Helper()
	if res.Protocol != pc.name {
		t.Errorf("result protocol %q, want %q", res.Protocol, pc.name)
	}
	if pc.name != "h1" && res.Reader != "" && res.Reader != ReaderGoroutine {
		t.Errorf("reader %q over %s, want goroutine", res.Reader, pc.name)
	}
	b := res.Bytes
	switch pc.server {
	case "tls":
		if b.PlainReceived <= 0 || b.PlainReceived >= b.Received || b.PlainSent <= 0 || b.PlainSent >= b.Sent || b.TLSOverheadPerTick <= 0 {
			t.Errorf("bytes %+v: want the plaintext counted above TLS, less than the ciphertext", b)
		}
	default:
		if b.PlainReceived != 0 || b.TLSOverheadPerTick != 0 {
			t.Errorf("bytes %+v: no TLS, no plaintext count", b)
		}
	}
}

// TestProtocols runs every stream transport over every protocol against
// the real server: everything delivered once, in order.
func TestProtocols(t *testing.T) {
	// One batch per protocol: a run per transport at once.
	for _, pc := range protoCases {
		var cfgs []Config
		for _, tr := range pc.transports {
			cfg := protoConfig(t, pc, tr, server.Config{Transport: tr, Feed: feedAt(200)})
			cfg.Clients = 30
			if pc.proto == "h2" {
				cfg.H2Conns = 3 // ten streams a connection
			}
			cfgs = append(cfgs, cfg)
		}
		for i, res := range runAll(t, cfgs) {
			cfg := cfgs[i]
			t.Run(pc.name+"/"+cfg.Transport, func(t *testing.T) {
				clean(t, res)
				checkProto(t, pc, res)
				if res.Connected != int64(cfg.Clients) || len(res.Failures) != 0 {
					t.Errorf("connected %d of %d, failures %v %v", res.Connected, cfg.Clients, res.Failures, res.FailureSamples)
				}
				if res.Connect.Count != int64(cfg.Clients) || res.FirstTick.Count != int64(cfg.Clients) {
					t.Errorf("connect %d, first tick %d measurements, want %d", res.Connect.Count, res.FirstTick.Count, cfg.Clients)
				}
			})
		}
	}
}

// TestProtocolsChurn drops every client about once a second over every
// protocol (over h2 a drop resets the stream, the connection stays): each
// resumes and must lose nothing and see nothing twice.
func TestProtocolsChurn(t *testing.T) {
	var cfgs []Config
	var pcs []protoCase
	for _, pc := range protoCases {
		for _, tr := range pc.transports {
			cfg := protoConfig(t, pc, tr, server.Config{Transport: tr, Feed: feedAt(200)})
			cfg.Duration, cfg.Churn = 2*time.Second, 1.0
			cfgs = append(cfgs, cfg)
			pcs = append(pcs, pc)
		}
	}
	for i, res := range runAll(t, cfgs) {
		t.Run(pcs[i].name+"/"+cfgs[i].Transport, func(t *testing.T) {
			clean(t, res)
			checkProto(t, pcs[i], res)
			if res.Counts.Reconnects < int64(cfgs[i].Clients) {
				t.Errorf("%d reconnects, want at least %d", res.Counts.Reconnects, cfgs[i].Clients)
			}
		})
	}
}

// TestProtocolsStormAndShortPoll runs the storm modes and short polling
// over every protocol.
func TestProtocolsStormAndShortPoll(t *testing.T) {
	var cfgs []Config
	var pcs []protoCase
	for _, pc := range protoCases {
		modes := []string{"shortpoll"}
		for _, tr := range pc.transports {
			modes = append(modes, "storm-"+tr)
		}
		for _, m := range modes {
			cfg := protoConfig(t, pc, m, server.Config{Transport: "all", Feed: feedAt(200)})
			cfg.Rate, cfg.Duration, cfg.Interval = 40, time.Second, 100*time.Millisecond
			cfgs = append(cfgs, cfg)
			pcs = append(pcs, pc)
		}
	}
	for i, res := range runAll(t, cfgs) {
		pc, cfg := pcs[i], cfgs[i]
		t.Run(pc.name+"/"+cfg.Transport, func(t *testing.T) {
			checkProto(t, pc, res)
			if len(res.Failures) != 0 {
				t.Errorf("failures %v %v", res.Failures, res.FailureSamples)
			}
			if cfg.Transport == "shortpoll" {
				clean(t, res)
				if res.Connected != int64(cfg.Clients) {
					t.Errorf("%d pollers answered, want %d", res.Connected, cfg.Clients)
				}
				return
			}
			if res.Connected < 30 || res.Connected > 45 {
				t.Errorf("%d storm connections, want about 40", res.Connected)
			}
			if res.Connect.Count < res.Connected || res.FirstTick.Count != res.Connected {
				t.Errorf("connect %d, first tick %d measurements for %d connections", res.Connect.Count, res.FirstTick.Count, res.Connected)
			}
			if res.Counts.WrongContent != 0 || res.Counts.Duplicates != 0 {
				t.Errorf("counts %+v", res.Counts)
			}
		})
	}
}

// TestProtocolsSlow stalls a quarter of the clients over TLS and HTTP/2:
// the others must get every tick once and the stalled ones be reported
// apart. Over HTTP/1.1 (TLS too) the server's writes block and it drops
// the stalled SSE and WebSocket clients; over HTTP/2 a stalled stream
// holds only its flow-control window (4 MiB), which a short run does not
// fill, so it may stay open.
func TestProtocolsSlow(t *testing.T) {
	// One batch per protocol; the write timeout leaves a starved machine
	// a second before the server gives up on a client that does read.
	for _, pc := range protoCases {
		var cfgs []Config
		for _, tr := range pc.transports {
			rate := 200.0
			if pc.proto == "h1" && tr != "poll" {
				rate = 2000 // to fill the socket buffers within the run
			}
			cfg := protoConfig(t, pc, tr, server.Config{Transport: tr, WriteTimeout: time.Second,
				Feed: feed.Config{Seed: 1, Symbols: 16, Rate: rate, History: 1 << 14}})
			cfg.Clients, cfg.Slow, cfg.Duration = 20, 0.25, 3*time.Second
			if pc.proto == "h2" {
				cfg.H2Conns = 2
			}
			cfgs = append(cfgs, cfg)
		}
		for i, res := range runAll(t, cfgs) {
			tr := cfgs[i].Transport
			t.Run(pc.name+"/"+tr, func(t *testing.T) {
				clean(t, res)
				checkProto(t, pc, res)
				sl := res.Slow
				if res.SlowClients != 5 || sl.Stalled != 5 {
					t.Errorf("slow clients %d, stalled %d, want 5 and 5", res.SlowClients, sl.Stalled)
				}
				if res.Counts.Stalled != 0 || len(res.Failures) != 0 {
					t.Errorf("stalled subscriptions %d, failures %v %v", res.Counts.Stalled, res.Failures, res.FailureSamples)
				}
				if sl.Dropped+sl.Open != 5 || sl.BacklogBytes == 0 {
					t.Errorf("dropped %d, open %d, backlog %d bytes: want 5 in all, some backlog", sl.Dropped, sl.Open, sl.BacklogBytes)
				}
				if pc.proto == "h1" && tr != "poll" && sl.Dropped != 5 {
					t.Errorf("%d of 5 stalled clients dropped by the server (open %d)", sl.Dropped, sl.Open)
				}
				// The server answers the pending long poll and holds the
				// connection: over h2 too, the end of that answer is not a
				// drop.
				if pc.proto == "h2" && tr == "poll" && sl.Open != 5 {
					t.Errorf("%d of 5 stalled long polls open (dropped %d)", sl.Open, sl.Dropped)
				}
			})
		}
	}
}

// TestUntrustedCertificate: without -ca or -insecure the server's
// self-signed certificate is refused in one line, at once; with -insecure
// the run works; without the preflight every failure is counted as
// tls_cert rather than as timeouts.
func TestUntrustedCertificate(t *testing.T) {
	for _, pc := range protoCases[:2] { // tls, h2
		base, _ := servertest.Serve(t, server.Config{Transport: "all", Feed: feedAt(100)}, pc.server)
		for _, tr := range []string{"sse", "poll", "shortpoll", "storm-sse"} {
			cfg := testConfig(t, tr, base)
			cfg.Proto = pc.proto
			start := time.Now()
			_, err := Run(context.Background(), cfg)
			var pe *PreflightError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), "certificate is not trusted") ||
				!strings.Contains(err.Error(), "-insecure") || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s/%s: %v, want one line saying the certificate is not trusted", pc.name, tr, err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("%s/%s: took %s to refuse the certificate", pc.name, tr, d)
			}

			cfg = testConfig(t, tr, base)
			cfg.Proto, cfg.NoPreflight, cfg.Clients, cfg.Duration, cfg.Drain = pc.proto, true, 5, 300*time.Millisecond, 100*time.Millisecond
			cfg.ConnectTimeout = time.Second // the run waits that long for clients that cannot connect
			res := mustRun(t, cfg)
			if res.Failures["tls_cert"] == 0 || len(res.Failures) != 1 || res.Counts.Received != 0 {
				t.Errorf("%s/%s without preflight: failures %v, received %d: want tls_cert only", pc.name, tr, res.Failures, res.Counts.Received)
			}

			cfg = testConfig(t, tr, base)
			cfg.Proto, cfg.Insecure, cfg.Clients, cfg.Duration = pc.proto, true, 5, 500*time.Millisecond
			cfg.Rate, cfg.Interval = 20, 100*time.Millisecond
			if res := mustRun(t, cfg); len(res.Failures) != 0 || res.Counts.Received == 0 {
				t.Errorf("%s/%s with -insecure: failures %v %v, received %d", pc.name, tr, res.Failures, res.FailureSamples, res.Counts.Received)
			}
		}
	}
}

// TestPlaintextToTLS: an https URL for a server that does not speak TLS
// is one line too.
func TestPlaintextToTLS(t *testing.T) {
	base := startServer(t, "sse", 100)
	cfg := testConfig(t, "sse", strings.Replace(base, "http://", "https://", 1))
	cfg.Insecure = true
	_, err := Run(context.Background(), cfg)
	var pe *PreflightError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "started with -tls") || strings.Contains(err.Error(), "\n") {
		t.Errorf("got %v, want one line asking whether the server speaks TLS", err)
	}
}

// TestNoGoroutineLeakProtocols checks that runs over TLS, h2 and h2c end
// every goroutine they started: HTTP/2 connections' readers included.
func TestNoGoroutineLeakProtocols(t *testing.T) {
	type target struct {
		pc   protoCase
		base string
		ca   string
	}
	var targets []target
	for _, pc := range protoCases {
		base, ca := servertest.Serve(t, server.Config{Transport: "all", Feed: feedAt(100)}, pc.server)
		targets = append(targets, target{pc, base, ca})
	}
	before := runtime.NumGoroutine()
	for _, tg := range targets {
		modes := []string{"shortpoll", "slow-sse"}
		for _, tr := range tg.pc.transports {
			modes = append(modes, tr, "storm-"+tr)
		}
		for _, m := range modes {
			slow := strings.HasPrefix(m, "slow-")
			cfg := testConfig(t, strings.TrimPrefix(m, "slow-"), tg.base)
			cfg.Proto, cfg.CAFile = tg.pc.proto, tg.ca
			cfg.Clients, cfg.Duration, cfg.Interval, cfg.Rate = 10, 300*time.Millisecond, 50*time.Millisecond, 20
			if slow {
				cfg.Slow = 0.5
			}
			mustRun(t, cfg)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 { // the servers' connection goroutines wind down
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
