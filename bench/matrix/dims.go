// Package matrix is where bench's dimensions and tables are defined: what
// each value of a dimension (a protocol, a network profile, a server
// implementation, a workload) means for the processes of a run, and the
// curated tables that `make bench` and `make bench-full` run.
//
// A dimension value is data, not code: server flags, load-generator flags,
// a URL scheme and, where needed, a side process (the network-shaping
// proxy). The runner applies whatever a run's values say the same way for
// every value, so adding a value never adds a code path through bench.
// Each dimension's values live in one file of this package (protocol.go,
// network.go, impl.go, workload.go), each table in the file of the
// dimension it is about.
package matrix

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pushbench/pushbench/bench/report"
)

// Value is one value of a dimension and what it means for a run.
type Value struct {
	Name string
	// About describes the value for table captions: what it is, with the
	// library and version where there is one.
	About   string
	Server  []string // bin/server flags
	Loadgen []string // bin/loadgen flags
	// Scheme is the load generators' URL scheme ("https"); empty: http.
	Scheme string
	// Proxy, if set, puts a side process between the load generators and
	// the server: bin/netshape with these flags, plus -upstream (the
	// server's address) and -listen. The load generators dial the address
	// it prints.
	Proxy []string
	// Transports lists the bench transports the value applies to; nil:
	// every one. A run of another transport with this value is not planned.
	Transports []string
	// Unsupported says, for the transports left out, why (a caption line).
	Unsupported string
	// X is the value's position on a chart's x axis when a table charts
	// against its dimension (a network profile's RTT in ms).
	X float64
}

// Applies reports whether the value takes part in runs of transport.
func (v Value) Applies(transport string) bool {
	return v.Transports == nil || slices.Contains(v.Transports, transport)
}

// Dimension is one axis of the comparison and its known values.
type Dimension struct {
	Name    string // report.DimProtocol, ...
	Default string // the idealised setting (report.DefaultDims)
	Values  []Value
	// Parse, if set, makes a value from a free-form name (a custom network
	// profile such as "rtt=80ms,jitter=10ms"); nil: only Values exist.
	Parse func(name string) (Value, error)
}

// Lookup finds a value by name, or parses it; the error is one line that
// lists the known values.
func (d Dimension) Lookup(name string) (Value, error) {
	for _, v := range d.Values {
		if v.Name == name {
			return v, nil
		}
	}
	if d.Parse != nil {
		v, err := d.Parse(name)
		if err != nil {
			return Value{}, fmt.Errorf("%s %q: %w", d.Name, name, err)
		}
		return v, nil
	}
	return Value{}, fmt.Errorf("unknown %s %q (want %s)", d.Name, name, strings.Join(d.Names(), ", "))
}

// Names lists the known values' names.
func (d Dimension) Names() []string {
	out := make([]string, len(d.Values))
	for i, v := range d.Values {
		out[i] = v.Name
	}
	return out
}

// Dimensions lists every dimension, in report.DimNames order.
func Dimensions() []Dimension {
	return []Dimension{Workloads(), Impls(), Protocols(), Networks()}
}

// DimensionNamed returns the dimension called name.
func DimensionNamed(name string) (Dimension, bool) {
	for _, d := range Dimensions() {
		if d.Name == name {
			return d, true
		}
	}
	return Dimension{}, false
}

// Setup is what a run's dimension values add up to for its processes.
type Setup struct {
	Server, Loadgen []string
	Scheme          string   // "" for http
	Proxy           []string // nil: no side process
	ProxyName       string   // the network value that asked for it
}

// Resolve adds up the values of dims for a run of transport. It fails on
// an unknown value or one that does not apply to the transport.
func Resolve(dims report.Dims, transport string) (Setup, error) {
	var s Setup
	for _, d := range Dimensions() {
		name := dims.Get(d.Name)
		if name == "" {
			name = d.Default
		}
		v, err := d.Lookup(name)
		if err != nil {
			return Setup{}, err
		}
		if !v.Applies(transport) {
			return Setup{}, fmt.Errorf("%s %s does not apply to %s", d.Name, name, transport)
		}
		s.Server = append(s.Server, v.Server...)
		s.Loadgen = append(s.Loadgen, v.Loadgen...)
		if v.Scheme != "" {
			if s.Scheme != "" && s.Scheme != v.Scheme {
				return Setup{}, fmt.Errorf("%s %s wants scheme %s, another value %s", d.Name, name, v.Scheme, s.Scheme)
			}
			s.Scheme = v.Scheme
		}
		if v.Proxy != nil {
			if s.Proxy != nil {
				return Setup{}, fmt.Errorf("%s %s: a run has at most one proxy", d.Name, name)
			}
			s.Proxy, s.ProxyName = v.Proxy, name
		}
	}
	return s, nil
}
