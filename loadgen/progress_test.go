package loadgen

import (
	"testing"
	"time"
)

// TestStopLagEndsTheProbe checks that the lag probe stops sampling at
// stopLag, so that what follows the drain (closing the clients, writing the
// result) is not counted, and that stop returns the same histogram.
func TestStopLagEndsTheProbe(t *testing.T) {
	a := newAux(&run{cfg: &Config{}})
	time.Sleep(6 * lagPeriod)
	lag := a.stopLag()
	n := lag.TotalCount()
	if n == 0 {
		t.Fatalf("the probe took no samples in %v", 6*lagPeriod)
	}
	time.Sleep(4 * lagPeriod)
	if again := a.stopLag(); again != lag || again.TotalCount() != n {
		t.Errorf("second stopLag: %p with %d samples; want the first, %p with %d", again, again.TotalCount(), lag, n)
	}
	if got := a.stop(); got != lag || got.TotalCount() != n {
		t.Errorf("stop after stopLag: %d samples; want the %d taken before stopLag", got.TotalCount(), n)
	}
}
