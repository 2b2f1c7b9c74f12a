package feed

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Defaults double as the server's flag defaults.
const (
	DefaultSeed    = 1
	DefaultSymbols = 16
	DefaultRate    = 100.0 // ticks per second for the whole feed
	MaxRate        = 1_000_000.0
)

// Config describes a feed. The same Seed and Symbols give the same
// (seq, sym, price) sequence; Rate sets only the scheduled times.
type Config struct {
	Seed    uint64
	Symbols int
	Rate    float64 // ticks per second
	History int     // ticks retained for resume
}

// Validate reports the first thing wrong with c.
func (c Config) Validate() error {
	switch {
	case c.Symbols < 1 || c.Symbols > MaxSymbols:
		return fmt.Errorf("symbols must be 1..%d, got %d", MaxSymbols, c.Symbols)
	case !(c.Rate > 0 && c.Rate <= MaxRate):
		return fmt.Errorf("rate must be > 0 and <= %g ticks/s, got %g", MaxRate, c.Rate)
	case c.History < 1 || c.History > 10_000_000:
		return fmt.Errorf("history must be 1..10000000, got %d", c.History)
	}
	return nil
}

// Feed publishes ticks into its Ring on schedule.
type Feed struct {
	cfg   Config
	names []string
	gen   *Generator
	ring  *Ring
	start time.Time
	ready chan struct{}
}

// New builds a feed; Run starts publishing.
func New(cfg Config) (*Feed, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("feed: %w", err)
	}
	gen, err := NewGenerator(cfg.Seed, cfg.Symbols)
	if err != nil {
		return nil, err
	}
	return &Feed{cfg: cfg, names: SymbolNames(cfg.Symbols), gen: gen, ring: NewRing(cfg.History), ready: make(chan struct{})}, nil
}

// Ring is the feed's shared history.
func (f *Feed) Ring() *Ring { return f.ring }

// Symbols returns the symbol names, indexed like Tick.Sym. Do not modify.
func (f *Feed) Symbols() []string { return f.names }

// Config returns the feed's configuration.
func (f *Feed) Config() Config { return f.cfg }

// Ready is closed once Run has fixed the start time.
func (f *Feed) Ready() <-chan struct{} { return f.ready }

// Start is the time of seq 0; seq n is scheduled at Start + n/Rate.
// Valid once Ready is closed.
func (f *Feed) Start() time.Time { return f.start }

// ScheduledAt returns the scheduled time of seq in Unix nanoseconds.
func ScheduledAt(start time.Time, rate float64, seq uint64) int64 {
	return start.UnixNano() + int64(float64(seq)*1e9/rate)
}

// Step publishes the next n ticks at once, scheduled now, instead of Run:
// benchmarks use it to drive the feed tick by tick. Step and Run must not
// both be used on one feed.
func (f *Feed) Step(n int) {
	select {
	case <-f.ready:
	default:
		f.start = time.Now()
		close(f.ready)
	}
	now := time.Now().UnixNano()
	batch := make([]*Frame, 0, n)
	for range n {
		t := f.gen.Next()
		t.TS = now
		batch = append(batch, NewFrame(t, f.names[t.Sym]))
	}
	f.ring.Publish(batch...)
}

// Run publishes every tick at its scheduled time until ctx is done, then
// closes the ring so that waiting readers wake up. When it falls behind (a
// paused process, a busy CPU) it publishes every overdue tick at once with
// its original scheduled ts, so lateness shows up as latency.
func (f *Feed) Run(ctx context.Context) error {
	defer f.ring.Close()
	f.start = time.Now()
	close(f.ready)
	timer := time.NewTimer(0)
	defer timer.Stop()
	var batch []*Frame
	period := float64(time.Second) / f.cfg.Rate
	var published uint64
	for {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil
			}
			return ctx.Err()
		case <-timer.C:
		}
		due := uint64(float64(time.Since(f.start)) / period)
		batch = batch[:0]
		for published < due {
			t := f.gen.Next()
			t.TS = ScheduledAt(f.start, f.cfg.Rate, t.Seq)
			batch = append(batch, NewFrame(t, f.names[t.Sym]))
			published = t.Seq
			if len(batch) == f.ring.Cap() { // never hold more than the ring keeps
				f.ring.Publish(batch...)
				batch = batch[:0]
			}
		}
		f.ring.Publish(batch...)
		clear(batch)
		nextAt := f.start.Add(time.Duration(float64(published+1) * period))
		timer.Reset(time.Until(nextAt))
	}
}
