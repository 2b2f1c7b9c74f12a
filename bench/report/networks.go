package report

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/pushbench/pushbench/network"
)

// The names of the "latency vs RTT" and "connecting vs RTT" tables
// (bench/matrix).
const (
	NetworksTable     = "networks"
	NetworkStormTable = "network-storm"
)

// ProxyShareTarget is the share of its core the network proxy should stay
// under in every default cell, so that the proxy never decides the result.
const ProxyShareTarget = 0.3

// networkFindings checks the latency-vs-RTT table against the shape the
// physics predict, per shaped profile, from each transport's figures on
// that profile minus its figures on loopback (what the distance added):
//   - SSE and WebSocket: the median grows by the one-way delay (within 10%
//     or 2 ms, whichever is larger);
//   - long polling: after each answer its next request travels a round
//     trip before the server can hold it, so its p99 grows about one RTT
//     more than streaming's;
//   - short polling: the median is near interval/2 plus the one-way delay;
//   - storm: the first tick comes a round trip or two later (two with a
//     kernel-shaped network, TCP handshake then request; one through the
//     user-space proxy, which does not delay the handshake).
//
// It says when the data holds and when it does not, and how much of its
// core the proxy used.
func networkFindings(r *Report, sec Section) []string {
	clients := 0
	for _, c := range sec.Cells {
		clients = max(clients, c.Clients)
	}
	// cell[transport][network] at the largest client count.
	cell := map[string]map[string]*Cell{}
	var nets []string
	for _, c := range sec.Cells {
		if c.Clients != clients {
			continue
		}
		if cell[c.Transport] == nil {
			cell[c.Transport] = map[string]*Cell{}
		}
		cell[c.Transport][c.Dims.Network] = c
		if !slices.Contains(nets, c.Dims.Network) {
			nets = append(nets, c.Dims.Network)
		}
	}
	prefix := fmt.Sprintf("%s, %s, %d clients", sec.Table.Title, sec.Scenario, clients)
	// added is what network n added to metric m for transport tr over
	// loopback; NA when either is missing.
	added := func(tr, n string, m Metric) (Num, Num) {
		shaped, base := cell[tr][n], cell[tr]["loopback"]
		if shaped == nil || base == nil {
			return NA, NA
		}
		v, b := shaped.Summary.Stat(m).Median, base.Summary.Stat(m).Median
		if !v.Valid() || !b.Valid() {
			return NA, NA
		}
		return v - b, v
	}
	// flagged says which of a transport's two cells (the profile's and
	// loopback's) carry a flag, since a saturated side explains a
	// departure from the expected shape better than the network does.
	flagged := func(tr, n string) string {
		var f []string
		for _, net := range []string{n, "loopback"} {
			if c := cell[tr][net]; c != nil {
				if fl := Flags(&c.Summary); fl != "" {
					f = append(f, net+" "+fl)
				}
			}
		}
		if len(f) == 0 {
			return ""
		}
		return " (flagged: " + strings.Join(f, ", ") + ")"
	}
	var out []string
	for _, n := range nets {
		p, err := network.Parse(n)
		if err != nil || p.RTT == 0 {
			continue
		}
		rtt := float64(p.RTT) / float64(time.Millisecond)
		oneWay := float64(p.OneWay()) / float64(time.Millisecond)
		tol := math.Max(0.1*oneWay, 2)
		where := fmt.Sprintf("%s through %s (RTT %v)", prefix, n, p.RTT)
		if sec.Scenario == Storm {
			for _, tr := range sec.Table.Transports {
				d, v := added(tr, n, MetricFT50)
				if !d.Valid() {
					continue
				}
				rtts := float64(d) / rtt
				verdict := "within the 1 to 2 expected (the HTTP request and answer, and for long polling the poll that waits for the tick; " +
					"this proxy does not delay the TCP handshake, which a kernel-shaped network adds)"
				if rtts < 0.75 || rtts > 2.5 {
					verdict = "NOT the 1 to 2 round trips expected"
				}
				out = append(out, fmt.Sprintf("%s: %s's median time to first tick is %s, %s more than on loopback: %.1f round trips, %s%s.",
					where, tr, value(MetricFT50, v), value(MetricFT50, d), rtts, verdict, flagged(tr, n)))
			}
			continue
		}
		var streamP99 []float64
		for _, tr := range []string{"sse", "ws"} {
			d, v := added(tr, n, MetricP50)
			if !d.Valid() {
				continue
			}
			verdict := fmt.Sprintf("the one-way delay (%.1f ms ± %.1f), as expected", oneWay, tol)
			if math.Abs(float64(d)-oneWay) > tol {
				verdict = fmt.Sprintf("NOT the one-way delay (%.1f ms ± %.1f) the profile should add, but %s off", oneWay, tol, value(MetricP50, Num(float64(d)-oneWay)))
			}
			out = append(out, fmt.Sprintf("%s: %s's median latency is %s, %s over loopback: %s%s.", where, tr, value(MetricP50, v), value(MetricP50, d), verdict, flagged(tr, n)))
			if d99, _ := added(tr, n, MetricP99); d99.Valid() {
				streamP99 = append(streamP99, float64(d99))
			}
		}
		if d99, v99 := added("poll", n, MetricP99); d99.Valid() && len(streamP99) > 0 {
			stream := 0.0
			for _, x := range streamP99 {
				stream += x
			}
			stream /= float64(len(streamP99))
			extra := (float64(d99) - stream) / rtt
			verdict := "about one round trip more, as expected (each answer is followed by a request that must cross the network before the next tick can be held)"
			if extra < 0.5 || extra > 1.5 {
				verdict = "NOT the one extra round trip expected (0.5 to 1.5 counted as one)"
			}
			out = append(out, fmt.Sprintf("%s: long polling's p99 latency is %s, it grew %s over loopback against %s for streaming: %.1f round trips more, %s%s.",
				where, value(MetricP99, v99), value(MetricP99, d99), value(MetricP99, Num(stream)), extra, verdict, flagged("poll", n)))
		}
		if interval := time.Duration(r.Config.PollInterval); interval > 0 {
			if c := cell["shortpoll"][n]; c != nil {
				if v := c.Summary.Stat(MetricP50).Median; v.Valid() {
					want := float64(interval)/float64(time.Millisecond)/2 + oneWay
					tolSP := math.Max(0.1*want, 2)
					verdict := "as expected"
					if math.Abs(float64(v)-want) > tolSP {
						verdict = fmt.Sprintf("NOT within %.0f ms of it", tolSP)
					}
					out = append(out, fmt.Sprintf("%s: short polling's median latency is %s, against half its %v interval plus the one-way delay, %.0f ms: %s%s.",
						where, value(MetricP50, v), interval, want, verdict, flagged("shortpoll", n)))
				}
			}
		}
	}
	// The proxy's own cost, over every shaped cell of the section.
	most, mostAt := NA, ""
	var per1k []float64
	for _, c := range sec.Cells {
		if s := c.Summary.Stat(MetricSideShare).Median; s.Valid() && (!most.Valid() || s > most) {
			most, mostAt = s, fmt.Sprintf("%s %s at %d clients", c.Transport, c.Dims.Network, c.Clients)
		}
		if v := c.Summary.Stat(MetricSideCPU).Median; v.Valid() {
			per1k = append(per1k, float64(v))
		}
	}
	if most.Valid() {
		line := fmt.Sprintf("%s: the network proxy used at most %s of its core (%s)", sec.Table.Title+", "+sec.Scenario, value(MetricSideShare, most), mostAt)
		if slices.Sort(per1k); len(per1k) > 0 && sec.Scenario != Storm {
			line += fmt.Sprintf(" and %s to %s of CPU per 1,000 delivered ticks", value(MetricSideCPU, Num(per1k[0])), value(MetricSideCPU, Num(per1k[len(per1k)-1])))
		}
		if float64(most) < ProxyShareTarget {
			line += fmt.Sprintf(": under the %.0f%% target in every cell, so the network, not the proxy, set these latencies.", ProxyShareTarget*100)
		} else {
			line += fmt.Sprintf(": OVER the %.0f%% target, so the proxy's own queueing is part of those cells' latency.", ProxyShareTarget*100)
		}
		out = append(out, line)
	}
	// Correctness through the shaped path.
	shaped, clean := 0, 0
	for _, c := range sec.Cells {
		if p, err := network.Parse(c.Dims.Network); err != nil || !p.Shaped() || c.Summary.OK == 0 {
			continue
		}
		shaped++
		if c.Summary.Incorrect == 0 {
			clean++
		}
	}
	if shaped > 0 {
		if clean == shaped {
			out = append(out, fmt.Sprintf("%s: nothing was lost or duplicated through the shaped networks, in any of their %d cells.", sec.Table.Title+", "+sec.Scenario, shaped))
		} else {
			out = append(out, fmt.Sprintf("%s: delivery was INCORRECT through the shaped networks in %d of %d cells.", sec.Table.Title+", "+sec.Scenario, shaped-clean, shaped))
		}
	}
	return out
}
