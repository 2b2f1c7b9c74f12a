package network

import (
	"strings"
	"testing"
	"time"
)

const ms = time.Millisecond

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Profile
	}{
		{"loopback", Profile{Name: "loopback"}},
		{"lan", Profile{Name: "lan", RTT: ms}},
		{"wan", Profile{Name: "wan", RTT: 60 * ms, Jitter: 5 * ms}},
		{"mobile", Profile{Name: "mobile", RTT: 150 * ms, Jitter: 30 * ms, Down: 2_000_000, Up: 1_000_000}},
		{"rtt=80ms,jitter=10ms,down=5mbit,up=1mbit", Profile{Name: "rtt=80ms,jitter=10ms,down=5mbit,up=1mbit", RTT: 80 * ms, Jitter: 10 * ms, Down: 5_000_000, Up: 1_000_000}},
		// Order and unit spelling are free; the name is the canonical form.
		{"up=512kbit,rtt=0.2s", Profile{Name: "rtt=200ms,up=512kbit", RTT: 200 * ms, Up: 512_000}},
		{"down=1.6Mbit", Profile{Name: "down=1600kbit", Down: 1_600_000}},
		{"down=1gbit", Profile{Name: "down=1gbit", Down: 1_000_000_000}},
		{"rtt=0ms", Profile{Name: "rtt=0s"}},
	} {
		got, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, says string }{
		{"", "empty network profile"},
		{"satellite", `unknown network profile "satellite"`},
		{"WAN", "unknown network profile"},
		{"rtt=80", "not a duration"},
		{"rtt=-5ms", "outside 0..1m0s"},
		{"rtt=2m", "outside"},
		{"rtt=1500us", "not whole milliseconds"},
		{"rtt=80ms,rtt=90ms", "rtt given twice"},
		{"rtt=80ms,loss=1%", `unknown key "loss"`},
		{"rtt=80ms,", `"" is not key=value`},
		{"rtt=", `"rtt=" is not key=value`},
		{"rtt=80ms jitter=5ms", "not a duration"},
		{"down=5", "rate needs a unit"},
		{"down=5mbps", "rate needs a unit"},
		{"down=0mbit", "outside (0, 100gbit]"},
		{"down=-1mbit", "outside"},
		{"down=1000gbit", "outside"},
		{"up=12kbit", "not a multiple of 8kbit"},
		{"up=xkbit", "not a rate"},
		{"up=NaNkbit", "not a rate"},
		{"jitter=5ms", "jitter 5ms exceeds the one-way delay 0s"},
		{"rtt=20ms,jitter=11ms", "jitter 11ms exceeds the one-way delay 10ms"},
	} {
		_, err := Parse(tc.in)
		if err == nil {
			t.Errorf("Parse(%q): no error, want one saying %q", tc.in, tc.says)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.says) || strings.Contains(msg, "\n") {
			t.Errorf("Parse(%q) error %q: want one line containing %q", tc.in, msg, tc.says)
		}
	}
}

func TestParseList(t *testing.T) {
	got, err := ParseList("loopback,wan,rtt=80ms,up=1mbit,rtt=20ms,jitter=2ms,mobile,down=8kbit")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, p.Name)
	}
	want := []string{"loopback", "wan", "rtt=80ms,up=1mbit", "rtt=20ms,jitter=2ms", "mobile", "down=8kbit"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("ParseList names %q, want %q", names, want)
	}
	for _, bad := range []string{"", "wan,", "wan,,lan", "wan,jitter=5ms"} {
		if _, err := ParseList(bad); err == nil {
			t.Errorf("ParseList(%q): no error", bad)
		}
	}
}

func TestDelays(t *testing.T) {
	for _, tc := range []struct {
		rtt, up, down time.Duration
	}{{0, 0, 0}, {ms, 0, ms}, {2 * ms, ms, ms}, {61 * ms, 30 * ms, 31 * ms}, {150 * ms, 75 * ms, 75 * ms}} {
		p := Profile{RTT: tc.rtt}
		up, down := p.Delays()
		if up != tc.up || down != tc.down {
			t.Errorf("RTT %v: delays up %v down %v, want %v %v", tc.rtt, up, down, tc.up, tc.down)
		}
		if down < p.OneWay() {
			t.Errorf("RTT %v: downstream delay %v below OneWay %v", tc.rtt, down, p.OneWay())
		}
	}
}

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"loopback":     "loopback: no shaping (loopback)",
		"lan":          "lan: RTT 1ms (1ms down, 0s up), bandwidth unlimited",
		"wan":          "wan: RTT 60ms (30ms each way), jitter ±5ms each way, bandwidth unlimited",
		"mobile":       "mobile: RTT 150ms (75ms each way), jitter ±30ms each way, down 2 Mbit/s, up 1 Mbit/s",
		"down=1.6mbit": "custom: down 1.6 Mbit/s",
		"rtt=80ms,jitter=10ms,down=5mbit,up=1mbit": "custom: RTT 80ms (40ms each way), jitter ±10ms each way, down 5 Mbit/s, up 1 Mbit/s",
	} {
		p, err := Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.String(); got != want {
			t.Errorf("%s: String() = %q, want %q", in, got, want)
		}
	}
}

// FuzzParse: Parse never panics, its errors are one line, and a profile it
// accepts is consistent and parses back from its Spec (and, when custom,
// from its Name) into the same parameters.
func FuzzParse(f *testing.F) {
	for _, s := range append(Names, "rtt=80ms,jitter=10ms,down=5mbit,up=1mbit", "down=1.6Mbit", "down=1.5mbit", "rtt=1ms", "up=8kbit,rtt=2s",
		"rtt=80ms,rtt=1ms", "jitter=1ms", "down=1e3kbit", "rtt=1h", "=", ",,", "rtt=80ms,", "down=0.008mbit") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("Parse(%q) error has several lines: %q", s, err)
			}
			return
		}
		if p.RTT < 0 || p.RTT > MaxRTT || p.Jitter < 0 || p.Down < 0 || p.Up < 0 || p.Down > MaxRate || p.Up > MaxRate {
			t.Fatalf("Parse(%q) = %+v: out of range", s, p)
		}
		up, down := p.Delays()
		if up+down != p.RTT || up > down || down-up > time.Millisecond || p.Jitter > up {
			t.Fatalf("Parse(%q) = %+v: delays up %v down %v", s, p, up, down)
		}
		if p.Down%rateQuantum != 0 || p.Up%rateQuantum != 0 {
			t.Fatalf("Parse(%q) = %+v: rates not whole KB/s", s, p)
		}
		q, err := Parse(p.Spec())
		if err != nil {
			t.Fatalf("Parse(%q) ok, but its spec %q: %v", s, p.Spec(), err)
		}
		if q.RTT != p.RTT || q.Jitter != p.Jitter || q.Down != p.Down || q.Up != p.Up {
			t.Fatalf("Parse(%q) = %+v, Parse(spec %q) = %+v", s, p, p.Spec(), q)
		}
		if strings.Contains(p.Name, "=") && q != p {
			t.Fatalf("custom Parse(%q) = %+v does not parse back from its name: %+v", s, p, q)
		}
		if c := p.String(); c == "" || strings.Contains(c, "\n") {
			t.Fatalf("Parse(%q): caption %q", s, c)
		}
	})
}
