package matrix

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pushbench/pushbench/bench/report"
)

// Table is one curated table: a matrix of its own (scenarios × transports
// × the values of each dimension × clients) with its own rates and
// durations. A dimension given one value is a condition of the whole table
// (said in its caption); one given several is a column.
type Table struct {
	Name  string // in file names and -tables
	Title string
	About string // what the table answers, one or two sentences
	// Default: part of `make bench`; every table is part of `make
	// bench-full`.
	Default bool

	Scenarios  []string
	Transports []string
	Clients    []int
	// Values of each dimension by report.DimNames key; a missing key is
	// the dimension's default.
	Dims map[string][]string

	Rate     float64 // feed ticks/s
	Duration time.Duration
	Warmup   time.Duration
	Repeat   int

	// Columns are the metric keys shown (report.Table.Columns); nil: the
	// scenario's defaults.
	Columns       []string
	ClientsHeader string
	// XDim charts the table against that dimension's values (Value.X),
	// with XLabel on the axis, instead of against the clients.
	XDim, XLabel string
}

// Values lists the table's values of dimension dim (its default if unset).
func (t *Table) Values(dim string) []string {
	if v := t.Dims[dim]; len(v) > 0 {
		return v
	}
	d, _ := DimensionNamed(dim)
	return []string{d.Default}
}

// Vary lists the dimensions with more than one value.
func (t *Table) Vary() []string {
	var out []string
	for _, d := range report.DimNames {
		if len(t.Values(d)) > 1 {
			out = append(out, d)
		}
	}
	return out
}

// Scale is what the table functions size their matrices by.
type Scale struct {
	Full bool // make bench-full: longer runs, more clients and values
	// MaxClients is the most one server process can hold under the
	// open-files limit (runner.ServerCapacity).
	MaxClients int
}

// All lists every table, in report order, sized by sc.
func All(sc Scale) []Table {
	return []Table{Transports(sc), ProtocolsTable(sc), NetworksTable(sc), NetworkStormTable(sc), ImplsTable(sc), AnswerTable(sc)}
}

// Lookup returns the table named name from All.
func Lookup(name string, sc Scale) (Table, error) {
	var names []string
	for _, t := range All(sc) {
		if t.Name == name {
			return t, nil
		}
		names = append(names, t.Name)
	}
	return Table{}, fmt.Errorf("unknown table %q (want %s)", name, strings.Join(names, ", "))
}

// Check validates a table: every value known, every list non-empty.
func (t *Table) Check() error {
	switch {
	case len(t.Scenarios) == 0 || len(t.Transports) == 0 || len(t.Clients) == 0:
		return fmt.Errorf("table %s: empty matrix", t.Name)
	case t.Repeat < 1:
		return fmt.Errorf("table %s: repeat must be at least 1", t.Name)
	case t.Rate <= 0 || t.Duration <= 0:
		return fmt.Errorf("table %s: rate and duration must be positive", t.Name)
	}
	for _, d := range Dimensions() {
		for _, v := range t.Values(d.Name) {
			if _, err := d.Lookup(v); err != nil {
				return fmt.Errorf("table %s: %w", t.Name, err)
			}
		}
	}
	return nil
}

// Cell is one planned cell of a table (the runner adds the repeat).
type Cell struct {
	Scenario, Transport string
	Dims                report.Dims
	Clients             int
}

// Cells lists the table's cells in order: scenario, transport, the
// dimensions in report.DimNames order, clients. A value that does not
// apply to a transport (HTTP/2 for WebSocket) or a scenario, and a
// scenario the transport does not take part in (applies) are left out.
func (t *Table) Cells(applies func(scenario, transport string) bool) []Cell {
	var out []Cell
	for _, sc := range t.Scenarios {
		for _, tr := range t.Transports {
			if !applies(sc, tr) {
				continue
			}
			for _, d := range t.dimsFor(sc, tr) {
				for _, n := range t.Clients {
					out = append(out, Cell{Scenario: sc, Transport: tr, Dims: d, Clients: n})
				}
			}
		}
	}
	return out
}

// dimsFor is the cross product of the table's values that apply to tr
// in scenario sc.
func (t *Table) dimsFor(sc, tr string) []report.Dims {
	out := []report.Dims{{}}
	for _, d := range Dimensions() {
		var next []report.Dims
		for _, base := range out {
			for _, name := range t.Values(d.Name) {
				if v, err := d.Lookup(name); err != nil || !v.Applies(tr) || !v.InScenario(sc) {
					continue
				}
				nd := base
				switch d.Name {
				case report.DimProtocol:
					nd.Protocol = name
				case report.DimNetwork:
					nd.Network = name
				case report.DimImpl:
					nd.Impl = name
				case report.DimWorkload:
					nd.Workload = name
				}
				next = append(next, nd)
			}
		}
		out = next
	}
	return out
}

// Report describes the table for the results: its matrix, its fixed
// conditions in one sentence, and what each varied value means.
func (t *Table) Report() report.Table {
	rt := report.Table{Name: t.Name, Title: t.Title, About: t.About, Vary: t.Vary(), Scenarios: t.Scenarios,
		Transports: t.Transports, Clients: t.Clients, ClientsHeader: t.ClientsHeader, Columns: t.Columns,
		Rate: t.Rate, Duration: report.Duration(t.Duration), Warmup: report.Duration(t.Warmup), Repeat: t.Repeat,
		XDim: t.XDim, XLabel: t.XLabel}
	var fixed []string
	for _, d := range Dimensions() {
		names := t.Values(d.Name)
		if len(names) == 1 {
			v, _ := d.Lookup(names[0])
			about := v.About
			if left := others(t.Transports, v.Transports); v.Transports != nil && len(left) > 0 && v.Unsupported != "" {
				about += " (" + strings.Join(left, ", ") + " left out: " + v.Unsupported + ")"
			}
			fixed = append(fixed, fmt.Sprintf("%s %s: %s", d.Name, v.Name, about))
			continue
		}
		if rt.DimValues == nil {
			rt.DimValues, rt.Values = map[string][]string{}, map[string]string{}
		}
		rt.DimValues[d.Name] = names
		for _, n := range names {
			v, _ := d.Lookup(n)
			about := v.About
			if v.Transports != nil && v.Unsupported != "" {
				about += "; not for " + strings.Join(others(t.Transports, v.Transports), ", ") + ": " + v.Unsupported
			}
			rt.Values[n] = about
			if d.Name == t.XDim {
				if rt.DimX == nil {
					rt.DimX = map[string]float64{}
				}
				rt.DimX[n] = v.X
			}
		}
	}
	slices.Reverse(fixed) // network, protocol, implementation, workload reads best
	rt.Conditions = strings.Join(fixed, "; ")
	return rt
}

// others lists the transports of all not in some.
func others(all, some []string) []string {
	var out []string
	for _, x := range all {
		if !slices.Contains(some, x) {
			out = append(out, x)
		}
	}
	return out
}
