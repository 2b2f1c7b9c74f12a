// Package network holds every network profile pushbench measures through
// (round-trip time, jitter, bandwidth) and shapes the path between clients
// and a server to one of them, in user space with toxiproxy's proxy and
// toxics: the kernel here has no netem qdisc.
//
// A Profile is plain data, parsed from a name (loopback, lan, wan, mobile)
// or the custom form rtt=80ms,jitter=10ms,down=5mbit,up=1mbit. A Proxy
// (proxy.go) applies one between a loopback listener and an upstream
// address; bin/netshape (cmd/netshape) runs one as its own process, which
// is how bench uses it.
//
// Delay applies in both directions, half the round trip each way, so
// requests, polls, handshakes and pongs pay it as much as the ticks do.
package network

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Names lists the named profiles, in order of distance.
var Names = []string{"loopback", "lan", "wan", "mobile"}

// Limits of the custom form: beyond them a value is a typo, not a network.
const (
	MaxRTT  = time.Minute
	MaxRate = 100_000_000_000 // bits/s (100 Gbit/s)
	// rateQuantum is toxiproxy's bandwidth resolution: its rate is whole
	// KB/s (1000 bytes), so a rate must be a multiple of 8000 bits/s to
	// be applied as written.
	rateQuantum = 8000
)

// Profile is a network between clients and a server. The zero value, and
// any profile with no RTT and no bandwidth limit, is loopback: nothing to
// shape.
type Profile struct {
	// Name is the profile's name (loopback, lan, wan, mobile) or, for a
	// custom profile, its canonical custom form (Spec), so that it both
	// tells profiles apart and parses back into the same profile.
	Name string
	// RTT is the round-trip time added to the path. It is split over the
	// two directions, half each way (see Delays for odd milliseconds).
	RTT time.Duration
	// Jitter spreads each direction's delay uniformly over ±Jitter, per
	// chunk of bytes read; a TCP stream still arrives in order, so a chunk
	// delayed more holds back those behind it.
	Jitter time.Duration
	// Down and Up are the bandwidths server to client and client to
	// server, in bits/s; 0 is unlimited.
	Down, Up int64
}

// Parse returns the profile a string names: loopback, lan (1 ms RTT), wan
// (60 ms RTT, 5 ms jitter), mobile (150 ms RTT, 30 ms jitter, 2 Mbit/s
// down, 1 Mbit/s up), or the custom form, comma-separated key=value pairs
// of rtt, jitter (durations, whole milliseconds), down and up (rates:
// a number and bit, kbit, mbit or gbit, decimal units, a multiple of
// 8 kbit), each at most once, e.g. rtt=80ms,jitter=10ms,down=5mbit,up=1mbit.
// Its errors are one line that says what is wrong.
func Parse(s string) (Profile, error) {
	switch s {
	case "loopback":
		return Profile{Name: s}, nil
	case "lan":
		return Profile{Name: s, RTT: time.Millisecond}, nil
	case "wan":
		return Profile{Name: s, RTT: 60 * time.Millisecond, Jitter: 5 * time.Millisecond}, nil
	case "mobile":
		return Profile{Name: s, RTT: 150 * time.Millisecond, Jitter: 30 * time.Millisecond, Down: 2_000_000, Up: 1_000_000}, nil
	case "":
		return Profile{}, fmt.Errorf("empty network profile: want one of %s, or rtt=80ms,jitter=10ms,down=5mbit,up=1mbit", strings.Join(Names, ", "))
	}
	if !strings.Contains(s, "=") {
		return Profile{}, fmt.Errorf("unknown network profile %q: want one of %s, or rtt=80ms,jitter=10ms,down=5mbit,up=1mbit", s, strings.Join(Names, ", "))
	}
	var p Profile
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		key, val, ok := strings.Cut(part, "=")
		if !ok || val == "" {
			return Profile{}, fmt.Errorf("network profile %q: %q is not key=value", s, part)
		}
		if seen[key] {
			return Profile{}, fmt.Errorf("network profile %q: %s given twice", s, key)
		}
		seen[key] = true
		var err error
		switch key {
		case "rtt":
			p.RTT, err = parseDelay(val)
		case "jitter":
			p.Jitter, err = parseDelay(val)
		case "down":
			p.Down, err = parseRate(val)
		case "up":
			p.Up, err = parseRate(val)
		default:
			return Profile{}, fmt.Errorf("network profile %q: unknown key %q (want rtt, jitter, down, up)", s, key)
		}
		if err != nil {
			return Profile{}, fmt.Errorf("network profile %q: %s: %w", s, key, err)
		}
	}
	if up, _ := p.Delays(); p.Jitter > up {
		return Profile{}, fmt.Errorf("network profile %q: jitter %v exceeds the one-way delay %v (a delay cannot go below zero)", s, p.Jitter, up)
	}
	p.Name = p.Spec()
	return p, nil
}

// ParseList parses a comma-separated list of profiles, such as the value
// of bench's -networks (see SplitList).
func ParseList(s string) ([]Profile, error) {
	specs := SplitList(s)
	out := make([]Profile, 0, len(specs))
	for _, spec := range specs {
		p, err := Parse(spec)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// SplitList splits a comma-separated list of profiles into their strings.
// The custom form has commas of its own, so a key=value item joins the
// custom profile before it unless that profile already has the key:
// "wan,rtt=80ms,up=1mbit,rtt=20ms" is wan, then rtt=80ms,up=1mbit, then
// rtt=20ms.
func SplitList(s string) []string {
	var specs []string
	var keys map[string]bool // keys of the custom profile being read; nil after a name
	for item := range strings.SplitSeq(s, ",") {
		key, _, custom := strings.Cut(item, "=")
		switch {
		case !custom:
			specs, keys = append(specs, item), nil
		case keys != nil && !keys[key]:
			specs[len(specs)-1] += "," + item
			keys[key] = true
		default:
			specs, keys = append(specs, item), map[string]bool{key: true}
		}
	}
	return specs
}

// parseDelay parses a duration of whole milliseconds (toxiproxy's
// resolution) between 0 and MaxRTT.
func parseDelay(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 60ms", s)
	}
	if d < 0 || d > MaxRTT {
		return 0, fmt.Errorf("%v is outside 0..%v", d, MaxRTT)
	}
	if d%time.Millisecond != 0 {
		return 0, fmt.Errorf("%v is not whole milliseconds (the proxy's resolution)", d)
	}
	return d, nil
}

// rateUnits are the rate suffixes, longest first so that "kbit" is not
// read as "bit".
var rateUnits = []struct {
	suffix, caption string
	bits            float64
}{{"gbit", "Gbit/s", 1e9}, {"mbit", "Mbit/s", 1e6}, {"kbit", "kbit/s", 1e3}, {"bit", "bit/s", 1}}

// parseRate parses a rate such as 5mbit or 512kbit into bits/s: positive,
// at most MaxRate, and a multiple of 8 kbit.
func parseRate(s string) (int64, error) {
	lower := strings.ToLower(s)
	for _, u := range rateUnits {
		num, ok := strings.CutSuffix(lower, u.suffix)
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("%q is not a rate such as 5mbit", s)
		}
		bits := f * u.bits
		if bits <= 0 || bits > MaxRate {
			return 0, fmt.Errorf("%s is outside (0, 100gbit] (leave the key out for no limit)", s)
		}
		r := int64(math.Round(bits))
		if r%rateQuantum != 0 || math.Abs(bits-float64(r)) > 1e-6*bits {
			return 0, fmt.Errorf("%s is not a multiple of 8kbit (the proxy's rate is whole KB/s)", s)
		}
		return r, nil
	}
	return 0, errors.New("rate needs a unit: bit, kbit, mbit or gbit (e.g. 5mbit)")
}

// Shaped reports whether the profile changes anything, that is whether a
// proxy is needed at all.
func (p Profile) Shaped() bool { return p.RTT > 0 || p.Down > 0 || p.Up > 0 }

// OneWay is the delay a tick pays from server to client on top of the
// path, half the RTT: latency minus OneWay is what the transport adds.
func (p Profile) OneWay() time.Duration { return p.RTT / 2 }

// Delays returns the delay applied to each direction: half the RTT each,
// in whole milliseconds (toxiproxy's resolution). An odd number of
// milliseconds puts the extra one downstream (server to client), so that
// the round trip stays exact and a tick never arrives sooner than
// OneWay: lan's 1 ms is 0 ms up and 1 ms down.
func (p Profile) Delays() (up, down time.Duration) {
	down = (p.RTT/2 + time.Millisecond - 1).Truncate(time.Millisecond)
	return p.RTT - down, down
}

// Spec is the profile's parameters in the custom form, which Parse reads
// back: rtt=60ms,jitter=5ms for wan.
func (p Profile) Spec() string {
	var parts []string
	if p.RTT > 0 || !p.Shaped() {
		parts = append(parts, "rtt="+p.RTT.String())
	}
	if p.Jitter > 0 {
		parts = append(parts, "jitter="+p.Jitter.String())
	}
	if p.Down > 0 {
		parts = append(parts, "down="+formatRate(p.Down))
	}
	if p.Up > 0 {
		parts = append(parts, "up="+formatRate(p.Up))
	}
	return strings.Join(parts, ",")
}

// formatRate writes bits/s in the largest unit that keeps it whole.
func formatRate(bits int64) string {
	for _, u := range rateUnits {
		if n := int64(u.bits); bits%n == 0 {
			return strconv.FormatInt(bits/n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(bits, 10) + "bit"
}

// humanRate writes bits/s for a caption: 2 Mbit/s, 1.5 Mbit/s, 512 kbit/s.
func humanRate(bits int64) string {
	for _, u := range rateUnits {
		if float64(bits) >= u.bits {
			return strconv.FormatFloat(float64(bits)/u.bits, 'f', -1, 64) + " " + u.caption
		}
	}
	return strconv.FormatInt(bits, 10) + " bit/s"
}

// String is the profile's caption for tables: its name, then every
// parameter, e.g. "wan: RTT 60ms (30ms each way), jitter ±5ms each way,
// bandwidth unlimited". A custom profile is captioned "custom".
func (p Profile) String() string {
	label := p.Name
	if strings.Contains(label, "=") || label == "" {
		label = "custom"
	}
	if !p.Shaped() {
		return label + ": no shaping (loopback)"
	}
	var parts []string
	if p.RTT > 0 {
		rtt := "RTT " + p.RTT.String()
		if up, down := p.Delays(); up == down {
			rtt += fmt.Sprintf(" (%v each way)", up)
		} else {
			rtt += fmt.Sprintf(" (%v down, %v up)", down, up)
		}
		parts = append(parts, rtt)
	}
	if p.Jitter > 0 {
		parts = append(parts, fmt.Sprintf("jitter ±%v each way", p.Jitter))
	}
	if p.Down == 0 && p.Up == 0 {
		parts = append(parts, "bandwidth unlimited")
	}
	if p.Down > 0 {
		parts = append(parts, "down "+humanRate(p.Down))
	}
	if p.Up > 0 {
		parts = append(parts, "up "+humanRate(p.Up))
	}
	return label + ": " + strings.Join(parts, ", ")
}
