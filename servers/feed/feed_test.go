package feed

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

func TestGeneratorIsDeterministic(t *testing.T) {
	a, _ := NewGenerator(42, 20)
	b, _ := NewGenerator(42, 20)
	c, _ := NewGenerator(43, 20)
	same := 0
	for i := range 1000 {
		ta, tb, tc := a.Next(), b.Next(), c.Next()
		if ta != tb {
			t.Fatalf("tick %d differs for one seed: %+v vs %+v", i, ta, tb)
		}
		if ta.Seq != uint64(i+1) || ta.Price < 100 || ta.Sym < 0 || ta.Sym >= 20 {
			t.Fatalf("bad tick %+v", ta)
		}
		if ta == tc {
			same++
		}
	}
	if same > 100 {
		t.Errorf("seeds 42 and 43 agree on %d of 1000 ticks", same)
	}
}

func TestSymbolNames(t *testing.T) {
	n := SymbolNames(40)
	if n[0] != "AAPL" || n[32] != "S0033" || n[39] != "S0040" {
		t.Errorf("names %v", n)
	}
}

func TestFrameEncoding(t *testing.T) {
	tk := Tick{Seq: 42, Sym: 0, Price: 10105, TS: 1732400000123456789}
	f := NewFrame(tk, "AAPL")
	const wantJSON = `{"seq":42,"sym":"AAPL","price":101.05,"ts":1732400000123456789}`
	if string(f.JSON) != wantJSON {
		t.Errorf("JSON %s", f.JSON)
	}
	if string(f.SSE) != "id: 42\ndata: "+wantJSON+"\n\n" {
		t.Errorf("SSE %q", f.SSE)
	}
	var v map[string]any
	if err := json.Unmarshal(f.JSON, &v); err != nil || v["price"] != 101.05 {
		t.Errorf("JSON does not decode: %v %v", v, err)
	}
	if want := "\x81" + string(rune(len(wantJSON))) + wantJSON; string(f.WS) != want {
		t.Errorf("WS frame %q, want %q", f.WS, want)
	}
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		h := AppendWSHeader(nil, n)
		want := map[int]int{0: 2, 125: 2, 126: 4, 65535: 4, 65536: 10}[n]
		if len(h) != want || h[0] != 0x81 {
			t.Errorf("header for %d bytes: % x", n, h)
		}
	}
}

func frames(from, to uint64, syms int) []*Frame {
	var out []*Frame
	for s := from; s <= to; s++ {
		out = append(out, &Frame{Tick: Tick{Seq: s, Sym: int(s) % syms}})
	}
	return out
}

func TestRingReadGapAndFilter(t *testing.T) {
	r := NewRing(8)
	r.Publish(frames(1, 5, 2)...)
	got, gap, next := r.Read(0, nil, nil, 0)
	if len(got) != 5 || gap != nil || next != 5 {
		t.Fatalf("Read(0) = %d frames, gap %v, next %d", len(got), gap, next)
	}
	got, _, next = r.Read(2, NewFilter(2, []int{1}), nil, 0) // odd seqs
	if len(got) != 2 || got[0].Seq != 3 || got[1].Seq != 5 || next != 5 {
		t.Fatalf("filtered read: %v next %d", got, next)
	}
	got, _, next = r.Read(0, nil, nil, 2)
	if len(got) != 2 || next != 2 {
		t.Fatalf("max 2: %d frames next %d", len(got), next)
	}
	r.Publish(frames(6, 20, 2)...) // retains 13..20
	got, gap, next = r.Read(3, nil, nil, 0)
	if gap == nil || gap.From != 4 || gap.To != 13 || len(got) != 8 || got[0].Seq != 13 || next != 20 {
		t.Fatalf("read past history: gap %+v, %d frames, next %d", gap, len(got), next)
	}
	if got, gap, next = r.Read(25, nil, nil, 0); len(got) != 0 || gap != nil || next != 25 {
		t.Fatalf("read beyond newest: %d frames gap %v next %d", len(got), gap, next)
	}
}

func TestFeedRunSchedules(t *testing.T) {
	f, err := New(Config{Seed: 1, Symbols: 4, Rate: 1000, History: 100})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx) }()
	<-f.Ready()
	deadline := time.Now().Add(5 * time.Second)
	for f.Ring().Newest() < 50 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	frames, _, _ := f.Ring().Read(0, nil, nil, 0)
	if len(frames) < 50 {
		t.Fatalf("only %d ticks", len(frames))
	}
	for i, fr := range frames {
		if want := ScheduledAt(f.Start(), 1000, fr.Seq); fr.TS != want || fr.Seq != uint64(i+1) {
			t.Fatalf("tick %d: seq %d ts %d, want seq %d ts %d", i, fr.Seq, fr.TS, i+1, want)
		}
	}
	if !f.Ring().Closed() {
		t.Error("ring not closed after Run")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{Symbols: 0, Rate: 1, History: 1}, {Symbols: 1, Rate: 0, History: 1}, {Symbols: 1, Rate: 1, History: 0}, {Symbols: MaxSymbols + 1, Rate: 1, History: 1}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// BenchmarkEncodeTick: one tick encoded for every transport (JSON, SSE
// event, WebSocket prepared message), as the publisher does once per tick.
func BenchmarkEncodeTick(b *testing.B) {
	g, _ := NewGenerator(1, 16)
	names := SymbolNames(16)
	b.ReportAllocs()
	var bytes int
	for b.Loop() {
		t := g.Next()
		t.TS = 1732400000123456789
		f := NewFrame(t, names[t.Sym])
		bytes += len(f.SSE)
	}
	b.ReportMetric(float64(bytes)/float64(b.N), "sse-B/tick")
}

// BenchmarkRingRead: a subscriber reading a batch of 64 ticks through a filter.
func BenchmarkRingRead(b *testing.B) {
	r := NewRing(4096)
	r.Publish(frames(1, 4096, 16)...)
	flt := NewFilter(16, []int{1, 3, 5, 7})
	buf := make([]*Frame, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		got, _, _ := r.Read(4096-256, flt, buf[:0], 64)
		if len(got) != 64 {
			b.Fatalf("got %d", len(got))
		}
	}
}
