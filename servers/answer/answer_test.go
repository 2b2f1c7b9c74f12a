package answer

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestTextIsDeterministicShortAndPlain(t *testing.T) {
	lengths := map[int]int{}
	for seed := uint64(0); seed < 20; seed++ {
		for k := range 500 {
			s := Text(seed, k)
			if s != string(AppendText([]byte("x"), seed, k)[1:]) {
				t.Fatalf("Text and AppendText disagree on seed %d chunk %d", seed, k)
			}
			if len(s) < 2 || len(s) > 32 || s[0] != ' ' {
				t.Fatalf("Text(%d, %d) = %q: want 2..32 bytes after a space", seed, k, s)
			}
			if strings.ContainsAny(s, "\"\\\n") {
				t.Fatalf("Text(%d, %d) = %q needs JSON escaping", seed, k, s)
			}
			lengths[len(s)]++
		}
	}
	if len(lengths) < 8 {
		t.Errorf("only %d distinct chunk lengths: %v", len(lengths), lengths)
	}
	if Text(1, 0) == Text(2, 0) && Text(1, 1) == Text(2, 1) && Text(1, 2) == Text(2, 2) {
		t.Errorf("seeds 1 and 2 start alike: %q %q %q", Text(1, 0), Text(1, 1), Text(1, 2))
	}
}

func TestChunkJSONDecodes(t *testing.T) {
	id, _ := json.Marshal(`r"1\`)
	b := AppendChunkJSON(nil, id, 7, 3, 1732400000123456789)
	var c struct {
		ID   string `json:"id"`
		I    int    `json:"i"`
		Text string `json:"text"`
		TS   int64  `json:"ts"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if c.ID != `r"1\` || c.I != 3 || c.Text != Text(7, 3) || c.TS != 1732400000123456789 {
		t.Errorf("decoded %+v from %s", c, b)
	}
	var d map[string]any
	if err := json.Unmarshal(AppendDoneJSON(nil, id, 64, true), &d); err != nil || d["done"] != true || d["chunks"] != 64.0 || len(d) != 3 {
		t.Errorf("ws done = %v, %v", d, err)
	}
}

// TestDueByAgreesWithDue checks the count of due chunks against the
// schedule itself around every boundary, for random requests.
func TestDueByAgreesWithDue(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const arrival = int64(1_732_400_000_000_000_000)
	for range 200 {
		r := Request{Tokens: 1 + rng.IntN(300), Rate: 0.5 + rng.Float64()*5000, Think: time.Duration(rng.Int64N(int64(time.Second)))}
		if r.DueBy(arrival, arrival+int64(r.Think)-1) != 0 {
			t.Fatalf("%+v: a chunk due before think", r)
		}
		for k := range r.Tokens {
			at := r.Due(arrival, k)
			if got := r.DueBy(arrival, at); got != k+1 {
				t.Fatalf("%+v: DueBy(Due(%d)) = %d, want %d", r, k, got, k+1)
			}
			if got := r.DueBy(arrival, at-1); got != k && r.Due(arrival, k-1) != at {
				t.Fatalf("%+v: DueBy(Due(%d)-1) = %d, want %d", r, k, got, k)
			}
		}
		if got := r.DueBy(arrival, arrival+int64(time.Hour)); got != r.Tokens {
			t.Fatalf("%+v: DueBy long after = %d", r, got)
		}
	}
}

func TestParse(t *testing.T) {
	lim := Limits{MaxTokens: 1000, MaxRate: 500, MaxThink: 10 * time.Second, MaxDuration: time.Minute}
	def := Request{Tokens: DefaultTokens, Rate: DefaultRate, Think: DefaultThink, Seed: DefaultSeed}
	for _, tc := range []struct {
		body string
		want Request
		ok   bool
	}{
		{``, def, true},
		{` {} `, def, true},
		{`{"tokens":200,"rate":50,"think":"300ms","seed":7}`, Request{200, 50, 300 * time.Millisecond, 7}, true},
		{`{"tokens":1,"think":"0"}`, Request{1, DefaultRate, 0, DefaultSeed}, true},
		{`{"seed":18446744073709551615}`, Request{DefaultTokens, DefaultRate, DefaultThink, 1<<64 - 1}, true},
		{`{"tokens":0}`, Request{}, false},
		{`{"tokens":1001}`, Request{}, false},
		{`{"tokens":1.5}`, Request{}, false},
		{`{"tokens":"5"}`, Request{}, false},
		{`{"rate":0}`, Request{}, false},
		{`{"rate":-1}`, Request{}, false},
		{`{"rate":501}`, Request{}, false},
		{`{"rate":1e-300}`, Request{}, false}, // would overflow a Duration
		{`{"think":"-1s"}`, Request{}, false},
		{`{"think":"11s"}`, Request{}, false},
		{`{"think":300}`, Request{}, false},
		{`{"think":"soon"}`, Request{}, false},
		{`{"tokens":1000,"rate":10}`, Request{}, false}, // lasts 100 s > 1 min
		{`{"seed":-1}`, Request{}, false},
		{`{"colour":"red"}`, Request{}, false},
		{`{"req":"r1"}`, Request{}, false},
		{`{} {}`, Request{}, false},
		{`{"tokens":5`, Request{}, false},
		{`[]`, Request{}, false},
		{`null x`, Request{}, false},
		{strings.Repeat(" ", MaxBody+1), Request{}, false},
	} {
		got, err := Parse([]byte(tc.body), lim)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("Parse(%.40q) = %+v, %v; want %+v ok=%v", tc.body, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseMessage(t *testing.T) {
	req, r, err := ParseMessage([]byte(`{"req":"r1","tokens":3}`), Limits{})
	if err != nil || req != "r1" || r.Tokens != 3 || r.Rate != DefaultRate {
		t.Errorf("got %q %+v %v", req, r, err)
	}
	if req, _, err := ParseMessage([]byte(`{"req":"r2","tokens":-3}`), Limits{}); err == nil || req != "r2" {
		t.Errorf("bad tokens: req %q err %v; want the req back with an error", req, err)
	}
	for _, bad := range []string{`{"req":"r3","seed":-1}`, `{"req":"r4","nope":1}`, `{"seed":"x","req":"r5"}`} {
		if req, _, err := ParseMessage([]byte(bad), Limits{}); err == nil || req == "" {
			t.Errorf("ParseMessage(%s): req %q err %v; want the req back with an error", bad, req, err)
		}
	}
	for _, bad := range []string{`{"tokens":3}`, `{"req":""}`, `{"req":"` + strings.Repeat("x", MaxReq+1) + `"}`, ``, `{"req":1}`} {
		if _, _, err := ParseMessage([]byte(bad), Limits{}); err == nil {
			t.Errorf("ParseMessage(%.40q) accepted", bad)
		}
	}
}

// FuzzParse: no input panics, an accepted request is within the limits,
// and encoding it again parses to the same request.
func FuzzParse(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"tokens":200,"rate":50,"think":"300ms","seed":7}`, `{"rate":1e-300}`,
		`{"think":"1h"}`, `{"tokens":5,"tokens":6}`, `{"req":"x"}`, `{"seed":1e3}`} {
		f.Add([]byte(s))
	}
	lim := Limits{MaxTokens: 5000, MaxRate: 1000, MaxThink: time.Minute, MaxDuration: 10 * time.Minute}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := Parse(body, lim)
		if err != nil {
			return
		}
		if r.Tokens < 1 || r.Tokens > lim.MaxTokens || !(r.Rate > 0 && r.Rate <= lim.MaxRate) ||
			r.Think < 0 || r.Think > lim.MaxThink || r.Duration() > lim.MaxDuration || r.Duration() < 0 {
			t.Fatalf("Parse(%q) accepted %+v, out of %+v", body, r, lim)
		}
		again, err := json.Marshal(map[string]any{"tokens": r.Tokens, "rate": r.Rate, "think": r.Think.String(), "seed": r.Seed})
		if err != nil {
			t.Fatal(err)
		}
		r2, err := Parse(again, lim)
		if err != nil || r2 != r {
			t.Fatalf("round trip of %+v via %s: %+v, %v", r, again, r2, err)
		}
	})
}

// FuzzParseMessage: no WebSocket message panics, a req handed back is
// within MaxReq, and an accepted request is within the limits.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{`{"req":"r1"}`, `{"req":"r1","tokens":-1}`, `{"req":"\u00e9","seed":"x"}`, `{"req":5}`, `{}`} {
		f.Add([]byte(s))
	}
	lim := Limits{}.WithDefaults()
	f.Fuzz(func(t *testing.T, msg []byte) {
		req, r, err := ParseMessage(msg, lim)
		if len(req) > MaxReq {
			t.Fatalf("ParseMessage(%q) handed back a req of %d bytes", msg, len(req))
		}
		if err == nil && (req == "" || r.Tokens < 1 || r.Tokens > lim.MaxTokens || !(r.Rate > 0 && r.Rate <= lim.MaxRate) ||
			r.Think < 0 || r.Think > lim.MaxThink) {
			t.Fatalf("ParseMessage(%q) accepted %q %+v", msg, req, r)
		}
	})
}
