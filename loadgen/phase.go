package loadgen

import "time"

// phase is where a stream run (sse, ws, poll) is. The phases follow each
// other in this order; a phase of zero length is skipped.
type phase int

const (
	phaseRamp    phase = iota // the clients are being opened, spread over -ramp
	phaseConnect              // the ramp is over; waiting for every client to connect
	phaseWarm                 // -warmup: ticks are checked but not recorded
	phaseMeasure              // the measured window, -duration
	phaseDrain                // waiting up to -drain for the ticks scheduled before the end
	phaseDone
)

// String is the name the progress line shows.
func (p phase) String() string {
	switch p {
	case phaseRamp:
		return "ramp"
	case phaseConnect:
		return "connect"
	case phaseWarm:
		return "warm"
	case phaseMeasure:
		return "run"
	case phaseDrain:
		return "drain"
	}
	return "done"
}

// plan times the phases of a stream run. Like vegeta's Pacer, it is a pure
// function of the elapsed time and of what the run observed, so that the
// run loop only has to look, ask and sleep, and the timing can be tested
// without a clock.
type plan struct {
	ramp, connectTimeout, warmup, duration, drain time.Duration
}

// observed is what the run saw that moves the phases besides the clock.
type observed struct {
	// allIn is the elapsed time when the run first saw every client
	// connected; negative: not yet.
	allIn time.Duration
	// caughtUp: in the drain, every subscription has what was scheduled
	// up to the end of the window.
	caughtUp bool
}

func newPlan(cfg *Config, connectTimeout time.Duration) plan {
	return plan{ramp: cfg.Ramp, connectTimeout: connectTimeout, warmup: cfg.Warmup, duration: cfg.Duration, drain: cfg.Drain}
}

// windowStart is when the warm-up (or, without one, the measured window)
// starts: once the ramp is over and every client has connected, or
// ConnectTimeout after the ramp when some cannot (their failures are
// counted), so that neither a slow ramp nor a slow connect storm dilutes
// the figures or ends the run before it began.
func (p plan) windowStart(allIn time.Duration) time.Duration {
	limit := p.ramp + p.connectTimeout
	if allIn < 0 || allIn >= limit {
		return limit
	}
	return max(allIn, p.ramp)
}

// at returns the phase at elapsed and how long it lasts from there unless
// obs changes (0 in phaseDone). While the phase waits for an observation
// (connect, drain), the caller must look again sooner than that.
func (p plan) at(elapsed time.Duration, obs observed) (phase, time.Duration) {
	if elapsed < p.ramp {
		return phaseRamp, p.ramp - elapsed
	}
	win := p.windowStart(obs.allIn)
	if elapsed < win {
		return phaseConnect, win - elapsed
	}
	measure := win + p.warmup
	if elapsed < measure {
		return phaseWarm, measure - elapsed
	}
	end := measure + p.duration
	if elapsed < end {
		return phaseMeasure, end - elapsed
	}
	if drained := end + p.drain; elapsed < drained && !obs.caughtUp {
		return phaseDrain, drained - elapsed
	}
	return phaseDone, 0
}
