package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

// h2TestServer serves SSE over HTTP/2 (TLS or h2c): each stream gets one
// tick per 20 ms until it goes away. It counts the TCP connections it
// accepted and holds at most maxStreams streams per connection.
func h2TestServer(t *testing.T, tlsOn bool, maxStreams int) (base string, conns *atomic.Int64, roots *tls.Config) {
	t.Helper()
	conns = new(atomic.Int64)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "HTTP/2 only", http.StatusHTTPVersionNotSupported)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for seq := 1; ; seq++ {
			fmt.Fprintf(w, "id: %d\ndata: {\"seq\":%d,\"sym\":\"AAPL\",\"price\":1.5,\"ts\":%d}\n\n", seq, seq, time.Now().UnixNano())
			if rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-tk.C:
			}
		}
	}))
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	ts.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: maxStreams}
	if tlsOn {
		ts.EnableHTTP2 = true
		ts.StartTLS()
		roots = &tls.Config{RootCAs: ts.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	} else {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		ts.Config.Protocols = &p
		ts.Start()
	}
	t.Cleanup(ts.Close)
	return ts.URL, conns, roots
}

// TestH2PoolConnections: n clients over a pool of k connections open
// exactly k TCP connections, over TLS and h2c, even when the server's
// stream limit makes some streams wait; a dropped stream resumes on the
// same connection; over TLS the plaintext is counted apart from the
// ciphertext.
func TestH2PoolConnections(t *testing.T) {
	for _, tlsOn := range []bool{true, false} {
		t.Run(fmt.Sprintf("tls=%v", tlsOn), func(t *testing.T) {
			const clients, k = 24, 3
			// 24 streams on 3 connections, 7 at most each: 3 streams
			// wait for a slot until others end (dropped below).
			base, conns, roots := h2TestServer(t, tlsOn, 7)
			u, err := url.Parse(base)
			if err != nil {
				t.Fatal(err)
			}
			pool := NewH2Pool(k)
			defer pool.Close()
			cfg := &Config{Transport: "sse", Base: u, TLS: roots, Proto: ProtoH2, H2: pool, ConnectTimeout: 5 * time.Second}
			if err := cfg.Prepare(); err != nil {
				t.Fatal(err)
			}
			d := NewDialer(nil, time.Second)
			cs := make([]Client, clients)
			for i := range cs {
				if cs[i], err = New(cfg, d, nil); err != nil {
					t.Fatal(err)
				}
				defer cs[i].Close()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// 21 streams fit (7 a connection); each reads a tick.
			for _, c := range cs[:21] {
				if err := c.Connect(ctx); err != nil {
					t.Fatal(err)
				}
				if ev, err := c.Next(); err != nil || ev.Kind != KindTick {
					t.Fatalf("first event %+v, %v", ev, err)
				}
			}
			// The other three wait for a slot on their connection: drop
			// one stream of each connection (clients k..2k-1 are on
			// connections 0..k-1, as are clients 21..23).
			errs := make(chan error, 3)
			for _, c := range cs[21:] {
				go func() { errs <- c.Connect(ctx) }()
			}
			time.Sleep(100 * time.Millisecond) // they are waiting
			for _, c := range cs[k : 2*k] {
				c.Drop()
				n := 0 // events already buffered still come out
				for ; n < 100; n++ {
					if _, err := c.Next(); err != nil {
						break
					}
				}
				if n == 100 {
					t.Fatal("a dropped stream went on")
				}
			}
			for range 3 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range cs[21:] {
				if _, err := c.Next(); err != nil {
					t.Fatal(err)
				}
			}
			if got := conns.Load(); got != k || pool.Dials() != k {
				t.Errorf("server saw %d connections, pool dialed %d, want %d", got, pool.Dials(), k)
			}
			ct := pool.Counters()
			if tlsOn && (ct.PlainIn.Load() == 0 || ct.PlainIn.Load() >= ct.In.Load() || ct.PlainOut.Load() >= ct.Out.Load()) {
				t.Errorf("TLS: plaintext in %d out %d, ciphertext in %d out %d", ct.PlainIn.Load(), ct.PlainOut.Load(), ct.In.Load(), ct.Out.Load())
			}
			if !tlsOn && (ct.PlainIn.Load() != 0 || ct.In.Load() == 0) {
				t.Errorf("h2c: plaintext in %d, in %d", ct.PlainIn.Load(), ct.In.Load())
			}
		})
	}
}
