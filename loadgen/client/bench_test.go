package client

import (
	"bytes"
	"context"
	"net"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkParse measures what one core of the load generator can take in
// per transport: the client's whole receive path (HTTP framing, chunk or
// WebSocket frame decoding, SSE parsing, tick JSON decoding, arrival stamp)
// over an in-memory connection that replays what the server sends, so no
// kernel time is included. msgs/s is ticks handed to the caller per second
// of one goroutine.
func BenchmarkParse(b *testing.B) {
	fr := frames(b, 64)
	var sseLoop, wsLoop []byte
	for _, f := range fr {
		sseLoop = append(sseLoop, sseChunks(f.SSE)...) // one chunk per tick: one flush per tick
		wsLoop = append(wsLoop, wsFrame(f.JSON)...)
	}
	pollBody := func(n int) []byte {
		var ticks [][]byte
		for _, f := range fr[:n] {
			ticks = append(ticks, f.JSON)
		}
		return pollResponse(`{"cursor":64,"ticks":[`+string(bytes.Join(ticks, []byte(",")))+`]}`+"\n", "Cache-Control: no-cache\r\n")
	}
	cases := []struct {
		name, transport string
		mk              func() net.Conn
	}{
		{"sse", "sse", func() net.Conn {
			return &scriptConn{respond: func(string) []byte { return []byte(sseHead) }, loop: sseLoop, quiet: true}
		}},
		{"ws", "ws", func() net.Conn {
			return &scriptConn{respond: wsHandshake, loop: wsLoop, quiet: true}
		}},
		{"poll-1tick", "poll", func() net.Conn {
			resp := pollBody(1)
			return &scriptConn{respond: func(string) []byte { return resp }, quiet: true}
		}},
		{"poll-32ticks", "poll", func() net.Conn {
			resp := pollBody(32)
			return &scriptConn{respond: func(string) []byte { return resp }, quiet: true}
		}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			c, err := New(prepared(b, tc.transport), fakeDialer(tc.mk), nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Connect(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			n := 0
			for n < b.N {
				ev, err := c.Next()
				if err != nil {
					b.Fatal(err)
				}
				if ev.Kind == KindTick {
					n++
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// stubServer accepts connections on loopback and answers each request once
// from a single goroutine, then stays silent: the cheapest possible server,
// so that memory measured in this process is mostly the clients'.
type stubServer struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  chan struct{}
}

func newStubServer(b *testing.B, answer func(req string) []byte) *stubServer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &stubServer{l: l, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 4096)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(buf)
			if err != nil || !strings.Contains(string(buf[:n]), "\r\n\r\n") {
				c.Close()
				continue
			}
			if a := answer(string(buf[:n])); a != nil {
				_, _ = c.Write(a)
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *stubServer) close() {
	s.l.Close()
	<-s.done
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}

// BenchmarkIdleClient measures the memory one connected, idle client costs:
// heap and goroutine stacks, after GC, per client, with each client's
// goroutine blocked in Next as in a run. It opens a fixed number of clients
// whatever b.N is; run it with -benchtime=1x. The figure includes the stub
// server's side of each connection (a few hundred bytes).
func BenchmarkIdleClient(b *testing.B) { benchIdle(b, false) }

// benchIdle opens idle clients against a stub server that answers the
// handshake (and each poll's first answer) and then stays silent, and
// reports the memory each costs. With loop the clients are served by a
// Loop, without it each has a goroutine blocked in Next.
func benchIdle(b *testing.B, loop bool) {
	const clients = 1000
	answers := map[string]func(string) []byte{
		"sse":  func(string) []byte { return []byte(sseHead + "e\r\nretry: 2000\n\n\r\n") },
		"ws":   wsHandshake,
		"poll": func(req string) []byte { return pollResponse(`{"cursor":5,"ticks":[]}`, "") },
	}
	for _, tr := range Transports {
		b.Run(tr, func(b *testing.B) {
			for range b.N {
				srv := newStubServer(b, answers[tr])
				cfg, l := benchConfig(b, &url.URL{Scheme: "http", Host: srv.l.Addr().String()}, tr, loop)
				d := NewDialer(nil, 5*time.Second)
				counters := new(Counters)
				var entered atomic.Int64 // clients served: running Next, or handed to l
				before := memInUse()
				cs := make([]Client, clients)
				var wg sync.WaitGroup
				for i := range cs {
					c, err := New(cfg, d, counters)
					if err != nil {
						b.Fatal(err)
					}
					if err := c.Connect(context.Background()); err != nil {
						b.Fatalf("client %d: %v", i, err)
					}
					cs[i] = c
					if loop {
						if err := l.Serve(c, func(*Event) {}, func(error) {}); err != nil {
							b.Fatal(err)
						}
						entered.Add(1)
						continue
					}
					wg.Go(func() {
						entered.Add(1)
						for {
							if _, err := c.Next(); err != nil {
								return
							}
						}
					})
				}
				// Wait until every client is served, and every poll client
				// has sent its long poll (which the stub never answers).
				deadline := time.Now().Add(10 * time.Second)
				for entered.Load() < clients || (tr == "poll" && counters.Requests.Load() < 2*clients) {
					if time.Now().After(deadline) {
						b.Fatal("clients did not settle")
					}
					time.Sleep(10 * time.Millisecond)
				}
				after := memInUse()
				b.ReportMetric(float64(after-before)/clients, "B/client")
				for _, c := range cs {
					c.Close()
				}
				wg.Wait()
				if loop {
					l.Close()
				}
				srv.close()
			}
		})
	}
}

// memInUse returns heap plus stack memory in use after a full GC.
func memInUse() int64 {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}
