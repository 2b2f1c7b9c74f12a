package answer

import (
	"math"
	"math/rand/v2"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// PoissonPacer paces arrivals as a Poisson process of Freq arrivals per
// second: the gaps between them are independent exponential draws from a
// generator seeded with Seed, so the same seed gives the same arrival
// times on every run. Users of a chat service do not arrive on a metronome;
// a constant pacer would hide the bursts that make requests queue.
//
// Like vegeta's pacers it is a function of (elapsed, hits), but the
// arrival times are drawn one after the other, so it keeps the draws made
// so far and must be used by one goroutine, with hits never decreasing
// (as vegeta's Attacker and Run call it).
type PoissonPacer struct {
	Freq float64 // arrivals per second
	Seed uint64

	rng  *rand.Rand
	hits uint64        // arrivals drawn so far
	at   time.Duration // the time of arrival number hits (0-based), once drawn
}

var _ vegeta.Pacer = (*PoissonPacer)(nil)

// At returns the time of arrival n (0-based) from the start: when it is
// meant to be sent, from which it is timed however late it leaves.
func (p *PoissonPacer) At(n uint64) time.Duration {
	if p.rng == nil {
		p.rng = rand.New(rand.NewPCG(p.Seed, 0x9e3779b97f4a7c15))
		p.at = p.gap()
	}
	for p.hits < n {
		p.at += p.gap()
		p.hits++
	}
	return p.at
}

// gap draws one exponential inter-arrival time.
func (p *PoissonPacer) gap() time.Duration {
	return time.Duration(p.rng.ExpFloat64() / p.Freq * float64(time.Second))
}

// Pace returns how long to wait from elapsed until arrival number hits
// (hits arrivals were sent already). It never stops by itself: the caller
// bounds the run's duration. A zero or negative Freq stops at once.
func (p *PoissonPacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	if !(p.Freq > 0) || math.IsInf(p.Freq, 0) {
		return 0, true
	}
	return max(0, p.At(hits)-elapsed), false
}

// Rate returns the mean rate, Freq: a Poisson process's intensity is
// constant.
func (p *PoissonPacer) Rate(time.Duration) float64 { return p.Freq }
