package result

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// numbered returns Counts whose fields hold k, k+1, k+2, ... in order, so
// that a field Add forgets, or adds into another, shows.
func numbered(k int64) Counts {
	var c Counts
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		v.Field(i).SetInt(k + int64(i))
	}
	return c
}

func TestCountsAdd(t *testing.T) {
	c := numbered(1)
	c.Add(numbered(100))
	v := reflect.ValueOf(c)
	for i := range v.NumField() {
		if got, want := v.Field(i).Int(), int64(101+2*i); got != want {
			t.Errorf("%s = %d, want %d", v.Type().Field(i).Name, got, want)
		}
	}
}

func TestSlowAdd(t *testing.T) {
	s := Slow{Stalled: 1, Dropped: 2, Open: 3, BacklogBytes: 4, BytesSent: 5, BytesReceived: 6}
	s.Add(s)
	if want := (Slow{Stalled: 2, Dropped: 4, Open: 6, BacklogBytes: 8, BytesSent: 10, BytesReceived: 12}); s != want {
		t.Errorf("got %+v, want %+v", s, want)
	}
}

func TestFaults(t *testing.T) {
	for _, tc := range []struct {
		c    Counts
		want []string
	}{
		{Counts{Expected: 10, Received: 10, Gaps: 2, GapTicks: 5, Reconnects: 3}, nil},
		{Counts{Missing: 2, Duplicates: 1}, []string{"2 missing", "1 duplicates"}},
		{Counts{OutOfOrder: 1, WrongSymbol: 2, WrongContent: 3, Stalled: 4, Malformed: 5},
			[]string{"1 out of order", "2 wrong symbol", "3 wrong content", "4 stalled subscriptions", "5 malformed messages"}},
	} {
		if got := tc.c.Faults(); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: got %q, want %q", tc.c, got, tc.want)
		}
	}
}

func TestAddFailures(t *testing.T) {
	var m map[string]int64
	m = AddFailures(m, nil)
	if m != nil {
		t.Errorf("nothing added: got %v, want nil (omitted from the JSON)", m)
	}
	m = AddFailures(m, map[string]int64{"refused": 2})
	m = AddFailures(m, map[string]int64{"refused": 1, "reset": 4})
	if want := map[string]int64{"refused": 3, "reset": 4}; !reflect.DeepEqual(m, want) {
		t.Errorf("got %v, want %v", m, want)
	}
}

// dists records values (µs) into fresh histograms and encodes them.
func dists(t *testing.T, lat, conn, first []int64) Dists {
	t.Helper()
	h := NewHists()
	for _, p := range []struct {
		h  interface{ RecordValue(int64) error }
		vs []int64
	}{{h.Latency, lat}, {h.Connect, conn}, {h.FirstTick, first}} {
		for _, v := range p.vs {
			if err := p.h.RecordValue(v); err != nil {
				t.Fatal(err)
			}
		}
	}
	d, err := h.Dists()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestHistsMergeExactly(t *testing.T) {
	a := dists(t, []int64{1000, 2000}, []int64{500}, []int64{3000})
	b := dists(t, []int64{4000}, nil, []int64{6000, 9000})
	all := dists(t, []int64{1000, 2000, 4000}, []int64{500}, []int64{3000, 6000, 9000})
	h := NewHists()
	for _, d := range []*Dists{&a, &b} {
		if err := h.AddDists(d); err != nil {
			t.Fatal(err)
		}
	}
	got, err := h.Dists()
	if err != nil {
		t.Fatal(err)
	}
	if got.Latency != all.Latency || got.Connect != all.Connect || got.FirstTick != all.FirstTick {
		t.Errorf("merged %+v, want %+v", got, all)
	}
	if got.Latency.Count != 3 || got.Latency.Max < 4 || got.Latency.Max > 4.01 {
		t.Errorf("latency %+v: want 3 values, max 4 ms (to HDR precision)", got.Latency)
	}
	if err := h.AddDists(&Dists{HistConnect: "not a histogram"}); err == nil || !strings.Contains(err.Error(), "connect") {
		t.Errorf("a bad histogram: got %v, want an error naming it", err)
	}
}

func TestMerge(t *testing.T) {
	a := &Result{SchemaVersion: SchemaVersion, Transport: "sse", Clients: 10, SlowClients: 2, Duration: 2, Messages: 400,
		Counts: numbered(1), Bytes: Bytes{Sent: 10, Received: 1000}, Failures: map[string]int64{"reset": 1},
		Slow: Slow{Stalled: 2}, Dists: dists(t, []int64{1000}, []int64{10}, []int64{100})}
	b := &Result{SchemaVersion: SchemaVersion, Transport: "sse", Clients: 10, Duration: 4, Messages: 400,
		Counts: numbered(100), Bytes: Bytes{Sent: 5, Received: 3000},
		Dists: dists(t, []int64{3000}, []int64{20}, []int64{200})}
	m, err := Merge(a, b)
	if err != nil {
		t.Fatal(err)
	}
	want := numbered(1)
	want.Add(numbered(100))
	if m.Counts != want || m.Clients != 20 || m.SlowClients != 2 || m.Slow.Stalled != 2 || m.Failures["reset"] != 1 {
		t.Errorf("merged %+v", m)
	}
	// 800 messages over the longest duration, 4 s; per client over the 18
	// that did not stall; bytes per tick received.
	if m.MsgsPerSec != 200 || m.PerClient != 200.0/18 || m.Bytes.PerTick != 4000/float64(want.Received) {
		t.Errorf("rates %v msgs/s, %v per client, %v B/tick", m.MsgsPerSec, m.PerClient, m.Bytes.PerTick)
	}
	if m.Latency.Count != 2 || m.Connect.Count != 2 || m.FirstTick.Count != 2 || m.Latency.Max < 3 || m.Latency.Max > 3.01 {
		t.Errorf("dists %+v", m.Dists)
	}
	if _, err := Merge(a, &Result{Transport: "ws"}); err == nil {
		t.Error("merged sse with ws")
	}
}

// TestJSONLayout checks that the histograms stay flat in the JSON, where
// bench and older files have them.
func TestJSONLayout(t *testing.T) {
	r := &Result{SchemaVersion: SchemaVersion, Transport: "sse", Dists: dists(t, []int64{1000}, nil, nil)}
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(r); err != nil {
		t.Fatal(err)
	}
	var flat map[string]json.RawMessage
	if err := json.Unmarshal(b.Bytes(), &flat); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"latency", "connect", "first_tick", "hist_latency", "hist_connect", "hist_first_tick"} {
		if _, ok := flat[k]; !ok {
			t.Errorf("no top-level %q in %s", k, b.String())
		}
	}
	back, err := Read(&b)
	if err != nil {
		t.Fatal(err)
	}
	if back.Latency.Count != 1 || back.HistLatency != r.HistLatency {
		t.Errorf("read back %+v", back.Dists)
	}
}

// TestMergeReader: a merge keeps the reader its parts share and says
// "mixed" when they differ.
func TestMergeReader(t *testing.T) {
	r := func(reader string) *Result {
		return &Result{SchemaVersion: SchemaVersion, Transport: "sse", Clients: 1, Reader: reader}
	}
	for _, c := range []struct {
		a, b, want string
	}{{"epoll", "epoll", "epoll"}, {"goroutine", "goroutine", "goroutine"}, {"epoll", "goroutine", "mixed"}, {"goroutine", "epoll", "mixed"}} {
		m, err := Merge(r(c.a), r(c.b))
		if err != nil {
			t.Fatal(err)
		}
		if m.Reader != c.want {
			t.Errorf("merge of %s and %s: reader %q, want %q", c.a, c.b, m.Reader, c.want)
		}
	}
}

// TestMergeTLSBytes: a merge adds the bytes above TLS, derives TLS's own
// bytes per tick from the sums, keeps the protocol its parts share and
// refuses parts of different protocols.
func TestMergeTLSBytes(t *testing.T) {
	r := func(proto string, recv, plain, ticks int64) *Result {
		return &Result{SchemaVersion: SchemaVersion, Transport: "sse", Clients: 1, Protocol: proto,
			Counts: Counts{Received: ticks}, Bytes: Bytes{Received: recv, PlainReceived: plain, PlainSent: 7}}
	}
	m, err := Merge(r("tls", 1000, 800, 10), r("tls", 3000, 2200, 30))
	if err != nil {
		t.Fatal(err)
	}
	if m.Protocol != "tls" || m.Bytes.PlainReceived != 3000 || m.Bytes.PlainSent != 14 || m.Bytes.TLSOverheadPerTick != 25 {
		t.Errorf("merged %q, bytes %+v: want tls, 3000 and 14 plain bytes, (4000-3000)/40 = 25 B/tick", m.Protocol, m.Bytes)
	}
	m, err = Merge(r("h1", 1000, 0, 10), r("h1", 1000, 0, 10))
	if err != nil || m.Bytes.TLSOverheadPerTick != 0 {
		t.Errorf("plaintext merge: %v, bytes %+v: want no TLS overhead", err, m.Bytes)
	}
	if _, err := Merge(r("tls", 1000, 800, 10), r("h2", 1000, 900, 10)); err == nil {
		t.Error("merged results of tls and h2")
	}
}
