package answer

import (
	"math"
	"testing"
	"time"
)

// The arrivals are a Poisson process: over many draws the mean gap is
// 1/Freq and the gaps' coefficient of variation is 1 (a constant pacer
// would give 0); the same seed gives the same times, another seed others.
func TestPoissonPacerIsPoisson(t *testing.T) {
	const n, freq = 200_000, 250.0
	p := &PoissonPacer{Freq: freq, Seed: 7}
	var sum, sumSq float64
	prev := time.Duration(0)
	for i := range uint64(n) {
		at := p.At(i)
		if at < prev {
			t.Fatalf("arrival %d at %s before arrival %d at %s", i, at, i-1, prev)
		}
		g := (at - prev).Seconds()
		sum, sumSq, prev = sum+g, sumSq+g*g, at
	}
	mean := sum / n
	cv := math.Sqrt(sumSq/n-mean*mean) / mean
	if math.Abs(mean*freq-1) > 0.02 {
		t.Errorf("mean gap %.6fs, want 1/%g s within 2%%", mean, freq)
	}
	if math.Abs(cv-1) > 0.02 {
		t.Errorf("coefficient of variation of the gaps %.3f, want 1 (exponential)", cv)
	}

	same, other := &PoissonPacer{Freq: freq, Seed: 7}, &PoissonPacer{Freq: freq, Seed: 8}
	if a, b := same.At(1000), (&PoissonPacer{Freq: freq, Seed: 7}).At(1000); a != b {
		t.Errorf("seed 7 gave arrival 1000 at %s and at %s", a, b)
	}
	if same.At(1001) == other.At(1001) {
		t.Error("seeds 7 and 8 gave the same arrival 1001")
	}
}

// Pace waits until the next arrival's time, never less than zero when
// late, and stops only for a rate that is not positive.
func TestPoissonPacerPace(t *testing.T) {
	p := &PoissonPacer{Freq: 100, Seed: 1}
	at5 := (&PoissonPacer{Freq: 100, Seed: 1}).At(5)
	if w, stop := p.Pace(at5-time.Millisecond, 5); stop || w != time.Millisecond {
		t.Errorf("Pace 1ms before arrival 5: wait %s stop %v, want 1ms false", w, stop)
	}
	if w, stop := p.Pace(at5+time.Second, 5); stop || w != 0 {
		t.Errorf("Pace 1s after arrival 5: wait %s stop %v, want 0 false", w, stop)
	}
	if p.Rate(time.Hour) != 100 {
		t.Errorf("Rate %g, want 100", p.Rate(time.Hour))
	}
	for _, f := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		if _, stop := (&PoissonPacer{Freq: f}).Pace(0, 0); !stop {
			t.Errorf("Freq %g: Pace did not stop", f)
		}
	}
}
