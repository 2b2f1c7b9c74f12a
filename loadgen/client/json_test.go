package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/pushbench/pushbench/servers/feed"
)

func TestParseTick(t *testing.T) {
	good := []struct {
		in   string
		want Tick
	}{
		{`{"seq":42,"sym":"AAPL","price":101.23,"ts":1732400000123456789}`, Tick{42, []byte("AAPL"), 10123, 1732400000123456789}},
		{` { "ts" : -5 , "price" : 7 , "sym" : "X" , "seq" : 1 , "extra" : [1, {"a": null}, "\u00e9"] } `, Tick{1, []byte("X"), 700, -5}},
		{`{"seq":1,"sym":"A","price":0.5,"ts":0}`, Tick{1, []byte("A"), 50, 0}},
		{`{"seq":18446744073709551615,"sym":"A","price":1.05,"ts":9223372036854775807}`, Tick{math.MaxUint64, []byte("A"), 105, math.MaxInt64}},
	}
	for _, g := range good {
		var got Tick
		if err := ParseTick([]byte(g.in), &got); err != nil {
			t.Errorf("%s: %v", g.in, err)
			continue
		}
		if got.Seq != g.want.Seq || !bytes.Equal(got.Sym, g.want.Sym) || got.Price != g.want.Price || got.TS != g.want.TS {
			t.Errorf("%s: got %+v, want %+v", g.in, got, g.want)
		}
	}
	bad := []string{
		``, `{}`, `{"seq":1,"sym":"A","price":1}`, `{"seq":1,"sym":"A","price":1.234,"ts":0}`,
		`{"seq":-1,"sym":"A","price":1,"ts":0}`, `{"seq":01,"sym":"A","price":1,"ts":0}`,
		`{"seq":1e3,"sym":"A","price":1,"ts":0}`, `{"seq":1,"sym":"A\"B","price":1,"ts":0}`,
		`{"seq":1,"sym":"A","price":1,"ts":0}x`, `{"seq":18446744073709551616,"sym":"A","price":1,"ts":0}`,
		`{"seq":1,"sym":"A","price":1.,"ts":0}`, `{"seq":1,"sym":"A","price":1,"ts":0,}`,
		`{"seq":1,"sym":"A","price":1,"ts":0,"x":tru}`, `{"seq":1 "sym":"A","price":1,"ts":0}`,
		`[1]`, `{"seq":1,"sym":"A","price":-1,"ts":0}`,
	}
	for _, b := range bad {
		var tk Tick
		if err := ParseTick([]byte(b), &tk); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", b, err)
		}
	}
}

func TestParseMessageAndGap(t *testing.T) {
	var tk Tick
	var g feed.Gap
	isGap, err := ParseMessage([]byte(`{"gap":{"from":5,"to":9}}`), &tk, &g)
	if err != nil || !isGap || g != (feed.Gap{From: 5, To: 9}) {
		t.Errorf("gap message: %v %v %+v", isGap, err, g)
	}
	isGap, err = ParseMessage([]byte(`{"seq":3,"sym":"A","price":1.5,"ts":7}`), &tk, &g)
	if err != nil || isGap || tk.Seq != 3 {
		t.Errorf("tick message: %v %v %+v", isGap, err, tk)
	}
	if _, err := ParseMessage([]byte(`{"gap":{"from":5}}`), &tk, &g); err == nil {
		t.Error("gap without to accepted")
	}
	if err := ParseGap([]byte(`{"from":1,"to":2}`), &g); err != nil || g != (feed.Gap{From: 1, To: 2}) {
		t.Errorf("ParseGap: %v %+v", err, g)
	}
}

func TestDecodePoll(t *testing.T) {
	var a PollAnswer
	body := `{"cursor":44,"ticks":[{"seq":43,"sym":"AAPL","price":1.00,"ts":1},{"seq":44,"sym":"MSFT","price":2.5,"ts":2}],"gap":{"from":10,"to":43}}` + "\n"
	if err := DecodePoll([]byte(body), &a); err != nil {
		t.Fatal(err)
	}
	if a.Cursor != 44 || len(a.Ticks) != 2 || a.Ticks[1].Price != 250 || string(a.Ticks[0].Sym) != "AAPL" || !a.HasGap || a.Gap.To != 43 {
		t.Errorf("decoded %+v", a)
	}
	if err := DecodePoll([]byte(`{"cursor":7,"ticks":[]}`), &a); err != nil || a.Cursor != 7 || len(a.Ticks) != 0 || a.HasGap {
		t.Errorf("empty answer: %v %+v", err, a)
	}
	for _, b := range []string{`{"ticks":[]}`, `{"cursor":1}`, `{"cursor":1,"ticks":{}}`, `{"cursor":1,"ticks":[1]}`, `{"error":"bad"}`} {
		if err := DecodePoll([]byte(b), &a); err == nil {
			t.Errorf("%s accepted", b)
		}
	}
}

// refPoll decodes a poll answer with encoding/json, matching keys exactly
// like DecodePoll does, for the fuzz comparison. ok is false when
// encoding/json rejects the document.
func refPoll(b []byte) (a PollAnswer, ok bool) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return a, false
	}
	if err := json.Unmarshal(top["cursor"], &a.Cursor); err != nil {
		return a, false
	}
	var ticks []map[string]json.RawMessage
	if err := json.Unmarshal(top["ticks"], &ticks); err != nil {
		return a, false
	}
	for _, m := range ticks {
		var t Tick
		var sym string
		var price json.Number
		if json.Unmarshal(m["seq"], &t.Seq) != nil || json.Unmarshal(m["sym"], &sym) != nil ||
			json.Unmarshal(m["price"], &price) != nil || json.Unmarshal(m["ts"], &t.TS) != nil {
			return a, false
		}
		t.Sym = []byte(sym)
		whole, frac, _ := strings.Cut(string(price), ".")
		w, err := strconv.ParseInt(whole, 10, 64)
		if err != nil || len(frac) > 2 || strings.ContainsAny(frac, "eE") {
			return a, false
		}
		frac += strings.Repeat("0", 2-len(frac))
		f, _ := strconv.ParseInt(frac, 10, 64)
		t.Price = w*100 + f
		a.Ticks = append(a.Ticks, t)
	}
	if g, has := top["gap"]; has {
		var gm map[string]json.RawMessage
		if json.Unmarshal(g, &gm) != nil || json.Unmarshal(gm["from"], &a.Gap.From) != nil || json.Unmarshal(gm["to"], &a.Gap.To) != nil {
			return a, false
		}
		a.HasGap = true
	}
	return a, true
}

// FuzzDecodePoll checks the in-place decoder against encoding/json: it must
// never panic, and whatever it accepts encoding/json must accept and read
// the same way.
func FuzzDecodePoll(f *testing.F) {
	seeds := []string{
		`{"cursor":44,"ticks":[{"seq":43,"sym":"AAPL","price":101.23,"ts":1732400000123456789}]}`,
		`{"cursor":0,"ticks":[],"gap":{"from":1,"to":5}}`,
		`{"ticks":[],"cursor":3,"x":{"y":[true,false,null,-1.5e3,"\u0041\n"]}}`,
		`{"cursor":1,"ticks":[{"seq":1,"sym":"A","price":1.5,"ts":-1,"seq":2}]}`,
		`{"error":"cursor must be an unsigned integer"}`,
		"{\"cursor\":1,\"ticks\":[]}\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var a PollAnswer
		err := DecodePoll(b, &a)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		ref, ok := refPoll(b)
		if !ok {
			t.Fatalf("DecodePoll accepted %q, encoding/json did not", b)
		}
		if fmt.Sprint(a.Cursor, a.HasGap, a.Gap, len(a.Ticks)) != fmt.Sprint(ref.Cursor, ref.HasGap, ref.Gap, len(ref.Ticks)) {
			t.Fatalf("%q: got %+v, encoding/json %+v", b, a, ref)
		}
		for i := range a.Ticks {
			x, y := a.Ticks[i], ref.Ticks[i]
			if x.Seq != y.Seq || !bytes.Equal(x.Sym, y.Sym) || x.Price != y.Price || x.TS != y.TS {
				t.Fatalf("%q: tick %d = %+v, encoding/json %+v", b, i, x, y)
			}
		}
	})
}

// FuzzPollRoundTrip encodes ticks exactly as the server does and decodes them.
func FuzzPollRoundTrip(f *testing.F) {
	f.Add(uint64(44), uint64(43), int64(10123), int64(1732400000123456789), uint16(0))
	f.Add(uint64(0), uint64(1), int64(0), int64(-1), uint16(9999))
	f.Fuzz(func(t *testing.T, cursor, seq uint64, price, ts int64, sym uint16) {
		if price < 0 || price > math.MaxInt64/1000 {
			return
		}
		names := feed.SymbolNames(int(sym%feed.MaxSymbols) + 1)
		tk := feed.Tick{Seq: seq, Sym: len(names) - 1, Price: price, TS: ts}
		b := fmt.Appendf(nil, `{"cursor":%d,"ticks":[`, cursor)
		b = feed.AppendJSON(b, tk, names[tk.Sym])
		b = append(b, ',')
		b = feed.AppendJSON(b, tk, names[0])
		b = append(b, "]}\n"...)
		var a PollAnswer
		if err := DecodePoll(b, &a); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		got := a.Ticks[0]
		if a.Cursor != cursor || len(a.Ticks) != 2 || got.Seq != seq || got.Price != price || got.TS != ts || string(got.Sym) != names[tk.Sym] {
			t.Fatalf("%s: decoded %+v", b, a)
		}
	})
}

// FuzzFastTick: whatever fastTick decodes, the general scanner decodes the
// same way and ends at the same byte; what it declines, ParseTick leaves to
// the general scanner, so the two never disagree on any input.
func FuzzFastTick(f *testing.F) {
	for _, s := range []string{
		`{"seq":42,"sym":"AAPL","price":101.23,"ts":1732400000123456789}`,
		`{"seq":1,"sym":"A","price":0.05,"ts":0}`,
		`{"seq":9999999999999999999,"sym":"A","price":999999999999999.99,"ts":9223372036854775807}`,
		`{"seq":1,"sym":"A","price":1.00,"ts":9223372036854775808}`,
		`{"seq":01,"sym":"A","price":1.00,"ts":1}`,
		`{"seq":1,"sym":"A","price":00.10,"ts":1}`,
		`{"seq":1,"sym":"A\"","price":1.00,"ts":1}`,
		`{"seq":1,"sym":"A","price":1.0,"ts":1}`,
		`{"seq":1,"sym":"A","price":1.001,"ts":1}`,
		`{"seq":1,"sym":"A","price":1.00,"ts":-1}`,
		`{"seq":1,"sym":"A","price":1.00,"ts":1} `,
		`{"seq":1,"sym":"A","price":1.00,"ts":1},{"seq":2`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast, gen Tick
		n := fastTick(b, &fast)
		if n == 0 {
			return
		}
		s := scanner{b: b}
		if err := s.anyTick(&gen); err != nil {
			t.Fatalf("%q: fastTick took %d bytes, the scanner failed: %v", b, n, err)
		}
		if s.i != n || fast.Seq != gen.Seq || !bytes.Equal(fast.Sym, gen.Sym) || fast.Price != gen.Price || fast.TS != gen.TS {
			t.Fatalf("%q: fastTick %+v (%d bytes), scanner %+v (%d bytes)", b, fast, n, gen, s.i)
		}
	})
}

// FuzzFastTickServer: every tick the server can write (a price below 10^15
// whole units, a ts not before 1970) takes the fast path whole.
func FuzzFastTickServer(f *testing.F) {
	f.Add(uint64(42), int64(10123), int64(1732400000123456789), uint16(3))
	f.Add(uint64(math.MaxUint64), int64(0), int64(0), uint16(0))
	f.Add(uint64(1), int64(99999999999999999), int64(math.MaxInt64), uint16(9999))
	f.Fuzz(func(t *testing.T, seq uint64, price, ts int64, sym uint16) {
		if price < 0 || price >= 1e17 || ts < 0 {
			return
		}
		names := feed.SymbolNames(int(sym%feed.MaxSymbols) + 1)
		name := names[len(names)-1]
		b := feed.AppendJSON(nil, feed.Tick{Seq: seq, Price: price, TS: ts}, name)
		var got Tick
		if n := fastTick(b, &got); n != len(b) {
			t.Fatalf("%s: fastTick took %d of %d bytes", b, n, len(b))
		}
		if got.Seq != seq || got.Price != price || got.TS != ts || string(got.Sym) != name {
			t.Fatalf("%s: decoded %+v", b, got)
		}
	})
}

// BenchmarkTickJSON: decoding one server tick, the way every message is
// decoded (fast) and with the general scanner it falls back to (general).
func BenchmarkTickJSON(b *testing.B) {
	js := frames(b, 1)[0].JSON
	var tk Tick
	b.Run("fast", func(b *testing.B) {
		for range b.N {
			if err := ParseTick(js, &tk); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("general", func(b *testing.B) {
		for range b.N {
			s := scanner{b: js}
			if err := s.anyTick(&tk); err != nil {
				b.Fatal(err)
			}
		}
	})
}
