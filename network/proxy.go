package network

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Proxy shapes every TCP connection from its loopback listener to an
// upstream address to one Profile, with toxiproxy v2 run in process: for
// each accepted client it dials the upstream and copies both directions
// through a chain of toxics.
//
// Only the toxics the profile needs are configured, because each one costs
// a goroutine and a channel hop per direction per connection: a latency
// toxic per direction with a delay (Profile.Delays) and the jitter, then a
// bandwidth toxic per limited direction. Latency comes first so that a
// chunk's time queued behind the bandwidth limit adds to its delay rather
// than being counted in it.
//
// What a user-space proxy cannot shape: the TCP handshake (the kernel
// completes a client's connect at loopback speed; only bytes are delayed),
// so a new connection pays its HTTP round trips but not the TCP one, and
// no loss or reordering. The proxy also bounds nothing itself: toxiproxy
// keeps up to 1024 chunks (of up to 32 KiB) in flight per toxic and
// direction, with back pressure past that.
//
// Ownership: toxiproxy's accept loop and per-connection goroutines belong
// to the Proxy; Close stops accepting and closes every connection, after
// which they end (a chunk held by a latency toxic is dropped with its
// connection).
type Proxy struct {
	prof      Profile
	addr      string
	tp        *toxiproxy.Proxy
	closeOnce sync.Once
}

// toxic is the JSON toxiproxy takes to add a toxic (its only way in).
type toxic struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Stream     string         `json:"stream"`
	Attributes map[string]any `json:"attributes"`
}

// toxics returns the toxics that shape a path to p, in chain order.
func (p Profile) toxics() []toxic {
	var out []toxic
	up, down := p.Delays()
	jitter := p.Jitter.Milliseconds()
	for _, d := range []struct {
		stream string
		delay  time.Duration
	}{{"upstream", up}, {"downstream", down}} {
		if d.delay > 0 {
			out = append(out, toxic{Name: "latency_" + d.stream, Type: "latency", Stream: d.stream,
				Attributes: map[string]any{"latency": d.delay.Milliseconds(), "jitter": jitter}})
		}
	}
	for _, b := range []struct {
		stream string
		bits   int64
	}{{"upstream", p.Up}, {"downstream", p.Down}} {
		if b.bits > 0 {
			// rate is KB/s of 1000 bytes; Parse keeps bits a multiple of 8000.
			out = append(out, toxic{Name: "bandwidth_" + b.stream, Type: "bandwidth", Stream: b.stream,
				Attributes: map[string]any{"rate": b.bits / rateQuantum}})
		}
	}
	return out
}

// Listen starts a proxy from listen (host:port; port 0 picks a free one)
// to upstream (host:port), shaped to prof; listen must be a loopback
// address (CheckListen). A profile that shapes nothing
// gives a plain proxy, which measures the proxy's own cost.
func Listen(listen, upstream string, prof Profile) (*Proxy, error) {
	if err := CheckListen(listen); err != nil {
		return nil, err
	}
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	tp := toxiproxy.NewProxy(srv, "netshape", listen, upstream)
	for _, tx := range prof.toxics() {
		js, err := json.Marshal(tx)
		if err != nil {
			return nil, fmt.Errorf("encode toxic %s: %w", tx.Name, err)
		}
		if _, err := tp.Toxics.AddToxicJson(strings.NewReader(string(js))); err != nil {
			return nil, fmt.Errorf("add toxic %s: %w", js, err)
		}
	}
	if err := tp.Start(); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", listen, err)
	}
	// Start returns once the listener is bound and Listen holds its address.
	return &Proxy{prof: prof, addr: tp.Listen, tp: tp}, nil
}

// Addr is the address clients connect to, host:port.
func (p *Proxy) Addr() string { return p.addr }

// Profile is the profile the proxy applies.
func (p *Proxy) Profile() Profile { return p.prof }

// Close stops accepting and closes every proxied connection. It may be
// called more than once.
func (p *Proxy) Close() {
	p.closeOnce.Do(p.tp.Stop)
}

// CheckListen checks that addr is host:port with a loopback IP host:
// pushbench shapes the path on one machine and never listens beyond it.
func CheckListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address (127.0.0.1:PORT)", addr)
	}
	return nil
}
