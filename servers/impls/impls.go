// Package impls is the registry of server implementations, the library
// dimension of the comparison: per transport, this project's own server
// (Default) and the popular Go libraries, each built the way its own
// documentation teaches, in a package of its own under this folder
// (sse/..., ws/..., poll/...), fed by the same feed. Each entry says which
// library and version it runs, which parts of PROTOCOL.md it supports and
// whether the server can count its deliveries; -h, README and bench print
// these from here.
package impls

import (
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/pushbench/pushbench/servers/impls/host"
	pollhttp "github.com/pushbench/pushbench/servers/impls/poll/nethttp"
	"github.com/pushbench/pushbench/servers/impls/sse/gosse"
	ssehttp "github.com/pushbench/pushbench/servers/impls/sse/nethttp"
	"github.com/pushbench/pushbench/servers/impls/sse/r3labs"
	"github.com/pushbench/pushbench/servers/impls/ws/coder"
	"github.com/pushbench/pushbench/servers/impls/ws/gorillahub"
	"github.com/pushbench/pushbench/servers/impls/ws/nbio"
)

// Default is this project's own implementation of every transport.
const Default = "pushbench"

// How the server counts pushbench_deliveries_total for an implementation.
const (
	CountWritten = "written"     // ticks whose write to the socket succeeded
	CountQueued  = "queued"      // ticks the library accepted into its write queue
	CountNone    = "not visible" // the library writes; use the load generator's received count
)

// Impl is one implementation of one transport.
type Impl struct {
	Name      string
	Transport string // sse, ws or poll
	Library   string // Go module path; "" for net/http alone
	Pattern   string // how it is built, in a few words
	Supports  []host.Feature
	// Deliveries says how pushbench_deliveries_total counts (Count...).
	Deliveries string
	// New builds the endpoint; nil for Default (the server's own handlers).
	New func(host.Env) (host.Service, error)
	// NewEngine, when set, serves the whole process in place of net/http:
	// the library's endpoint works only under its own engine.
	NewEngine func(h http.Handler, lim host.EngineLimits) host.Engine
}

// Has reports whether the implementation supports f.
func (i Impl) Has(f host.Feature) bool { return slices.Contains(i.Supports, f) }

// Version is the library's module version in this binary ("go" + the Go
// version for net/http alone, "" for the project's own).
func (i Impl) Version() string {
	bi, ok := debug.ReadBuildInfo()
	if i.Library == "" {
		if !ok {
			return ""
		}
		return bi.GoVersion
	}
	if ok {
		for _, d := range bi.Deps {
			if d.Path == i.Library {
				return d.Version
			}
		}
	}
	return "unknown"
}

// SupportsString lists the supported features, "-" for none.
func (i Impl) SupportsString() string {
	if len(i.Supports) == 0 {
		return "-"
	}
	s := make([]string, len(i.Supports))
	for k, f := range i.Supports {
		s[k] = string(f)
	}
	return strings.Join(s, ",")
}

func service[S host.Service](f func(host.Env) (S, error)) func(host.Env) (host.Service, error) {
	return func(env host.Env) (host.Service, error) { return f(env) }
}

var all = []host.Feature{host.Resume, host.Gap, host.Filters, host.Heartbeat, host.SlowDrop}

// List returns every implementation, by transport then name, Default first.
func List() []Impl {
	return []Impl{
		{Name: Default, Transport: "sse", Pattern: "cursor into the shared ring, one writer per connection, writev", Supports: all, Deliveries: CountWritten},
		{Name: "nethttp", Transport: "sse", Pattern: "textbook: broadcaster, 256-tick channel per client, Write+Flush per event",
			Supports: []host.Feature{host.Filters, host.Heartbeat, host.SlowDrop}, Deliveries: CountWritten, New: service(ssehttp.New)},
		{Name: "go-sse", Transport: "sse", Library: "github.com/tmaxmax/go-sse", Pattern: "sse.Server, Joe, FiniteReplayer(-history), topics",
			Supports: []host.Feature{host.Resume, host.Filters}, Deliveries: CountNone, New: service(gosse.New)},
		{Name: "r3labs", Transport: "sse", Library: "github.com/r3labs/sse/v2", Pattern: "sse.New() defaults: AutoReplay, one stream",
			Deliveries: CountNone, New: service(r3labs.New)},
		{Name: Default, Transport: "ws", Library: "github.com/gorilla/websocket", Pattern: "cursor into the shared ring, one writer per connection, pre-framed writev", Supports: all, Deliveries: CountWritten},
		{Name: "gorilla-hub", Transport: "ws", Library: "github.com/gorilla/websocket", Pattern: "chat example: hub goroutine, 256-message send channel, WriteMessage per tick",
			Supports: []host.Feature{host.Heartbeat, host.SlowDrop}, Deliveries: CountWritten, New: service(gorillahub.New)},
		{Name: "coder", Transport: "ws", Library: "github.com/coder/websocket", Pattern: "chat example: 16-message channel, close slow with 1008, Write with timeout",
			Supports: []host.Feature{host.SlowDrop}, Deliveries: CountWritten, New: service(coder.New)},
		{Name: "nbio", Transport: "ws", Library: "github.com/lesismal/nbio", Pattern: "nbhttp event loop, no goroutine per connection, bounded write queue",
			Supports: []host.Feature{host.SlowDrop}, Deliveries: CountQueued, New: service(nbio.New), NewEngine: nbio.NewEngine},
		{Name: Default, Transport: "poll", Pattern: "cursor into the shared ring, held on the ring's wake-up", Supports: []host.Feature{host.Resume, host.Gap, host.Filters}, Deliveries: CountWritten},
		{Name: "nethttp", Transport: "poll", Pattern: "textbook: held request waits on a channel registered with a broadcaster",
			Deliveries: CountWritten, New: service(pollhttp.New)},
	}
}

// Lookup finds the implementation name of transport. An unknown name, or
// one that serves another transport, is an error that says which exist.
func Lookup(name, transport string) (Impl, error) {
	var names, serves []string
	for _, i := range List() {
		if i.Name == name {
			if i.Transport == transport {
				return i, nil
			}
			serves = append(serves, i.Transport)
		}
		if i.Transport == transport {
			names = append(names, i.Name)
		}
	}
	if len(serves) > 0 {
		return Impl{}, fmt.Errorf("impl %q serves -transport %s, not %q", name, strings.Join(serves, ", "), transport)
	}
	if len(names) == 0 {
		return Impl{}, fmt.Errorf("impl %q needs -transport sse, ws or poll, got %q", name, transport)
	}
	return Impl{}, fmt.Errorf("impl must be one of %s for -transport %s, got %q", strings.Join(names, ", "), transport, name)
}

// Names lists the names that serve transport.
func Names(transport string) []string {
	var out []string
	for _, i := range List() {
		if i.Transport == transport {
			out = append(out, i.Name)
		}
	}
	return out
}
