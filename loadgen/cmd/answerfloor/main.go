// Command answerfloor measures the floor of the answer workload's time to
// first token (TTFT) on a given machine: a bare TCP client and server that
// keep the answer workload's schedule and nothing else. No HTTP, no SSE,
// WebSocket or JSON, no checker: the server reads an 8-byte request,
// stamps its arrival and writes 24-byte chunks at arrival + think +
// k/rate (the first on the same timerfd alarm bin/server uses, the later
// ones on Go timers); the client sends requests at the load generator's
// seeded Poisson times over keep-alive connections, one answer at a time
// on each, and times the first chunk from the intended send time.
//
// What it reports is what the machine's kernel, scheduler and Go runtime
// add to TTFT when nothing else is in the way: every process wake-up on
// the path (the client's send, the server's read, the first chunk's timer,
// the client's read), split into the request's way to the server (send)
// and the first chunk's way back (deliver). Issue 13 asks TTFT p99 to be
// within 2 ms of think at 100 answers in flight; where this floor's p99 is
// not, no server reaches it on that machine. scripts/answer-floor.sh runs
// both ends pinned apart, as the bench runs bin/server and bin/loadgen.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/pushbench/pushbench/internal/alarm"
	"github.com/pushbench/pushbench/loadgen/answer"
	"github.com/pushbench/pushbench/loadgen/result"
)

const (
	requestSize = 8  // the answer's number
	chunkSize   = 24 // answer number, chunk index, scheduled time (Unix ns)
	// alarmLead is how long before the first chunk the server's wait
	// moves from a Go timer to the alarm clock, as bin/server's does.
	alarmLead = 2 * time.Millisecond
)

// shape is an answer's schedule, the same for every answer.
type shape struct {
	tokens int
	rate   float64
	think  time.Duration
}

// due is when chunk k of an answer that arrived at arrival is scheduled.
func (s shape) due(arrival int64, k int) int64 {
	return arrival + int64(s.think) + int64(float64(k)/s.rate*float64(time.Second))
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("answerfloor", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors in one line below; -h prints the flags
	serve := fs.Bool("serve", false, "run the server end (default: the client end)")
	addr := fs.String("addr", "127.0.0.1:8090", "host:port the server listens on and the client dials")
	inFlight := fs.Int("clients", answer.DefaultInFlight, "answers in flight on average (the client sets its Poisson rate from it, as bin/loadgen does)")
	tokens := fs.Int("tokens", answer.DefaultTokens, "chunks per answer")
	tokenRate := fs.Float64("token-rate", answer.DefaultTokenRate, "chunks per second within an answer")
	think := fs.Duration("think", answer.DefaultThink, "wait before an answer's first chunk")
	seed := fs.Uint64("seed", 1, "seed of the Poisson arrivals")
	warm := fs.Duration("warmup", 2*time.Second, "arrivals before the measured window (not timed)")
	dur := fs.Duration("duration", 8*time.Second, "the measured window of arrivals")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "Usage: answerfloor -serve [flags] | answerfloor [flags] (see scripts/answer-floor.sh)")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "answerfloor: %v\n", err)
		return 2
	}
	sh := shape{tokens: *tokens, rate: *tokenRate, think: *think}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "answerfloor: unexpected arguments %q\n", fs.Args())
		return 2
	case *inFlight < 1:
		fmt.Fprintf(stderr, "answerfloor: -clients must be at least 1, got %d\n", *inFlight)
		return 2
	case *tokens < 1 || !(*tokenRate > 0) || *think < 0:
		fmt.Fprintln(stderr, "answerfloor: -tokens and -token-rate must be positive and -think not negative")
		return 2
	case *dur <= 0 || *warm < 0:
		fmt.Fprintln(stderr, "answerfloor: -duration must be positive and -warmup not negative")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if *serve {
		var ln net.Listener
		if ln, err = net.Listen("tcp", *addr); err == nil {
			err = serveAnswers(ctx, ln, sh)
		}
	} else {
		var f floor
		f, err = measure(ctx, *addr, sh, *inFlight, *seed, *warm, *dur)
		if err == nil {
			f.print(stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "answerfloor: %v\n", err)
		return 1
	}
	return 0
}

// serveAnswers serves answers on ln until ctx ends, and closes ln: one
// goroutine per connection reads a request, writes its chunks on
// schedule, then reads the next.
func serveAnswers(ctx context.Context, ln net.Listener, sh shape) error {
	defer ln.Close()
	clock, stopClock, err := alarm.Start(ctx)
	if err != nil {
		return err
	}
	defer stopClock()
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	stopped := context.AfterFunc(ctx, func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			_ = c.Close()
		}
	})
	defer stopped()
	for {
		c, err := ln.Accept()
		if err != nil {
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Go(func() {
			serveConn(ctx, c, sh, clock.NewAlarm())
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			_ = c.Close()
		})
	}
}

// serveConn answers c's requests one after the other until it ends or
// ctx does.
func serveConn(ctx context.Context, c net.Conn, sh shape, wake *alarm.Alarm) {
	req, msg := make([]byte, requestSize), make([]byte, chunkSize)
	t := time.NewTimer(0)
	<-t.C
	// sleep waits on a Go timer, as bin/server's later chunks do.
	sleep := func(until int64) bool {
		t.Reset(time.Until(time.Unix(0, until)))
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			t.Stop()
			return false
		}
	}
	for {
		if _, err := io.ReadFull(c, req); err != nil {
			return
		}
		arrival := time.Now().UnixNano()
		copy(msg, req)
		for k := range sh.tokens {
			due := sh.due(arrival, k)
			if k == 0 {
				// The alarm clock ends with ctx and then fires at once.
				if !sleep(due - int64(alarmLead)) {
					return
				}
				wake.Set(due)
				<-wake.C
			} else if !sleep(due) {
				return
			}
			binary.LittleEndian.PutUint64(msg[8:], uint64(k))
			binary.LittleEndian.PutUint64(msg[16:], uint64(due))
			if _, err := c.Write(msg); err != nil {
				return
			}
		}
	}
}

// floor is what the client measured, in µs histograms.
type floor struct {
	inFlight, answers int
	rate              float64
	ttft              *hdrhistogram.Histogram // first chunk's arrival - intended send - think
	send              *hdrhistogram.Histogram // the server's arrival stamp - intended send
	deliver           *hdrhistogram.Histogram // first chunk's arrival - its scheduled time
}

func (f floor) print(w io.Writer) {
	line := func(name string, h *hdrhistogram.Histogram) {
		p := result.Summarize(h)
		fmt.Fprintf(w, "%-11s p50 %6.3f  p90 %6.3f  p99 %6.3f  max %6.3f ms\n", name, p.P50, p.P90, p.P99, p.Max)
	}
	fmt.Fprintf(w, "%d answers timed (%d in flight on average, %.1f arrivals/s)\n", f.answers, f.inFlight, f.rate)
	line("TTFT-think", f.ttft)
	line("send", f.send)
	line("deliver", f.deliver)
}

// measure runs the client end: arrivals for warm + dur, each answer on a
// keep-alive connection of its own while it lasts, and returns the
// histograms of the answers that arrived after warm.
func measure(ctx context.Context, addr string, sh shape, inFlight int, seed uint64, warm, dur time.Duration) (floor, error) {
	length := sh.think + time.Duration(float64(sh.tokens)/sh.rate*float64(time.Second))
	f := floor{inFlight: inFlight, rate: float64(inFlight) / length.Seconds(),
		ttft: result.NewHistogram(), send: result.NewHistogram(), deliver: result.NewHistogram()}
	idle := make(chan net.Conn, 2*inFlight+10) // as bin/loadgen's cap
	defer func() {
		close(idle)
		for c := range idle {
			_ = c.Close()
		}
	}()
	clock, stopClock, err := alarm.Start(ctx)
	if err != nil {
		return f, err
	}
	defer stopClock()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	record := func(due, arrival, at int64) {
		mu.Lock()
		defer mu.Unlock()
		_ = f.ttft.RecordValue(max(at-due-int64(sh.think), 1000) / 1000)
		_ = f.send.RecordValue(max(arrival-due, 1000) / 1000)
		_ = f.deliver.RecordValue(max(at-sh.due(arrival, 0), 1000) / 1000)
		f.answers++
	}
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = err
		}
	}
	p := &answer.PoissonPacer{Freq: f.rate, Seed: seed}
	start := time.Now()
	wake := clock.NewAlarm()
	for n := uint64(0); ; n++ {
		at := p.At(n)
		if at >= warm+dur || ctx.Err() != nil {
			break
		}
		due := start.Add(at).UnixNano()
		wake.Set(due)
		select {
		case <-ctx.Done():
		case <-wake.C:
		}
		timed := at >= warm
		wg.Go(func() {
			var c net.Conn
			select {
			case c = <-idle:
			default:
				var err error
				if c, err = net.DialTimeout("tcp", addr, 5*time.Second); err != nil {
					fail(fmt.Errorf("dial: %w", err))
					return
				}
			}
			arrival, at, err := ask(c, n, sh)
			if err != nil {
				_ = c.Close()
				fail(err)
				return
			}
			if timed {
				record(due, arrival, at)
			}
			select {
			case idle <- c:
			default: // more answers were in flight than the pool keeps
				_ = c.Close()
			}
		})
	}
	wg.Wait()
	return f, first
}

// ask sends request n on c and reads its answer; it returns the server's
// arrival stamp (from the first chunk's schedule) and when the first chunk
// was read.
func ask(c net.Conn, n uint64, sh shape) (arrival, firstAt int64, err error) {
	req, msg := make([]byte, requestSize), make([]byte, chunkSize)
	binary.LittleEndian.PutUint64(req, n)
	if _, err := c.Write(req); err != nil {
		return 0, 0, fmt.Errorf("send: %w", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(sh.think + time.Minute))
	for k := range sh.tokens {
		if _, err := io.ReadFull(c, msg); err != nil {
			return 0, 0, fmt.Errorf("read chunk %d of answer %d: %w", k, n, err)
		}
		if k == 0 {
			firstAt = time.Now().UnixNano()
			arrival = int64(binary.LittleEndian.Uint64(msg[16:])) - int64(sh.think)
		}
		if got := binary.LittleEndian.Uint64(msg); got != n || binary.LittleEndian.Uint64(msg[8:]) != uint64(k) {
			return 0, 0, fmt.Errorf("answer %d: chunk %d came as answer %d chunk %d", n, k, got, binary.LittleEndian.Uint64(msg[8:]))
		}
	}
	return arrival, firstAt, nil
}
