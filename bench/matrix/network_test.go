package matrix

import (
	"slices"
	"strings"
	"testing"
)

// TestNetworkValues: every named profile is a value; loopback runs no
// proxy, the others run bin/netshape with their profile, sit on the chart
// at their RTT and say how they are shaped; a custom profile parses, and a
// bad one is refused with the reason.
func TestNetworkValues(t *testing.T) {
	d := Networks()
	for name, rtt := range map[string]float64{"loopback": 0, "lan": 1, "wan": 60, "mobile": 150, "rtt=80ms,jitter=10ms,down=5mbit,up=1mbit": 80} {
		v, err := d.Lookup(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if v.X != rtt {
			t.Errorf("%s: X %v, want its RTT %v", name, v.X, rtt)
		}
		if name == "loopback" {
			if v.Proxy != nil {
				t.Errorf("loopback runs a proxy: %q", v.Proxy)
			}
			continue
		}
		if !slices.Equal(v.Proxy, []string{"-profile", name}) || !strings.Contains(v.About, "toxiproxy v2.5.0") || !strings.Contains(v.About, "RTT") {
			t.Errorf("%s: proxy %q, about %q", name, v.Proxy, v.About)
		}
	}
	if _, err := d.Lookup("rtt=80"); err == nil || !strings.Contains(err.Error(), "not a duration") {
		t.Errorf("bad custom profile: %v", err)
	}
}
