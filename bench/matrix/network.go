package matrix

import (
	"time"

	"github.com/pushbench/pushbench/bench/report"
	"github.com/pushbench/pushbench/network"
)

// Networks is the network dimension: the path between the load generators
// and the server. loopback is the machine's own, with no proxy; every other
// profile (package network) runs bin/netshape in front of the server.
func Networks() Dimension {
	d := Dimension{Name: report.DimNetwork, Default: report.DefaultDims.Network, Parse: networkValue}
	for _, name := range network.Names {
		v, err := networkValue(name)
		if err != nil {
			panic(err) // network.Names are the names network.Parse knows
		}
		d.Values = append(d.Values, v)
	}
	return d
}

// shapedAbout is what every shaped profile's caption adds: how the shaping
// is done and what it leaves out.
const shapedAbout = "; shaped in user space by bin/netshape (toxiproxy v2.5.0: latency toxic each way, bandwidth toxics), " +
	"pinned with the load generators; the TCP handshake itself is not delayed"

// networkValue is the dimension value of a profile name or custom form.
func networkValue(name string) (Value, error) {
	p, err := network.Parse(name)
	if err != nil {
		return Value{}, err
	}
	v := Value{Name: name, About: p.String(), X: float64(p.RTT) / float64(time.Millisecond)}
	if p.Name == "loopback" {
		v.About = "loopback, no shaping (round trips of microseconds)"
		return v, nil
	}
	v.About += shapedAbout
	v.Proxy = []string{"-profile", name}
	return v, nil
}
