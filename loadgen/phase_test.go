package loadgen

import (
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	const s = time.Second
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	// Ramp 2s, connect timeout 10s, warm-up 3s, duration 4s, drain 5s.
	full := plan{ramp: 2 * s, connectTimeout: 10 * s, warmup: 3 * s, duration: 4 * s, drain: 5 * s}
	bare := plan{connectTimeout: 10 * s, duration: 4 * s, drain: 5 * s}
	notYet := observed{allIn: -1}
	in := func(at time.Duration) observed { return observed{allIn: at} }
	for _, tc := range []struct {
		name    string
		p       plan
		elapsed time.Duration
		obs     observed
		want    phase
		wait    time.Duration
	}{
		{"start", full, 0, notYet, phaseRamp, 2 * s},
		{"all in during the ramp: still the ramp", full, ms(1500), in(ms(1200)), phaseRamp, ms(500)},
		{"ramp over, not all in", full, ms(2500), notYet, phaseConnect, ms(9500)},
		{"all in during the ramp: warm-up from the ramp's end", full, ms(2500), in(ms(1200)), phaseWarm, ms(2500)},
		{"all in after the ramp: warm-up from then", full, 4 * s, in(3 * s), phaseWarm, 2 * s},
		{"never all in: window at ramp + connect timeout", full, 12 * s, notYet, phaseWarm, 3 * s},
		{"all in too late counts as never", full, 13 * s, in(12 * s), phaseWarm, 2 * s},
		{"measure", full, 7 * s, in(3 * s), phaseMeasure, 3 * s},
		{"end of the window", full, 8 * s, in(3 * s), phaseMeasure, 2 * s},
		{"drain", full, 10 * s, in(3 * s), phaseDrain, 5 * s},
		{"drain ends when caught up", full, 10 * s, observed{allIn: 3 * s, caughtUp: true}, phaseDone, 0},
		{"drain ends at -drain", full, 15 * s, in(3 * s), phaseDone, 0},
		{"no ramp, no warm-up: measure as soon as all are in", bare, ms(300), in(ms(300)), phaseMeasure, 4 * s},
		{"no ramp, waiting", bare, ms(300), notYet, phaseConnect, ms(9700)},
		{"no ramp, all in at once", bare, 0, in(0), phaseMeasure, 4 * s},
		{"no ramp, end of window", bare, ms(4300), in(ms(300)), phaseDrain, 5 * s},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, wait := tc.p.at(tc.elapsed, tc.obs)
			if got != tc.want || wait != tc.wait {
				t.Errorf("at(%s, %+v) = %s, %s; want %s, %s", tc.elapsed, tc.obs, got, wait, tc.want, tc.wait)
			}
		})
	}
}

// TestPlanOrder walks a plan on a fine clock: the phases never go back,
// and each one's wait ends where the next begins.
func TestPlanOrder(t *testing.T) {
	p := plan{ramp: 20, connectTimeout: 100, warmup: 30, duration: 40, drain: 50}
	obs := observed{allIn: -1}
	last := phase(-1)
	var changeAt time.Duration
	for el := time.Duration(0); el < 300; el++ {
		if el == 35 {
			obs.allIn = el
		}
		ph, wait := p.at(el, obs)
		if ph < last {
			t.Fatalf("at %d: %s after %s", el, ph, last)
		}
		if ph != last && last >= 0 && el != changeAt && last != phaseConnect {
			t.Errorf("at %d: %s began, but %s said it lasted until %d", el, ph, last, changeAt)
		}
		last, changeAt = ph, el+wait
	}
	if last != phaseDone {
		t.Errorf("ended in %s", last)
	}
}
