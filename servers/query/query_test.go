package query

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushbench/pushbench/servers/feed"
)

func TestSeq(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true}, {"42", 42, true}, {"18446744073709551615", 1<<64 - 1, true},
		{"18446744073709551616", 0, false}, {"", 0, false}, {"-1", 0, false}, {"+1", 0, false},
		{" 1", 0, false}, {"0x10", 0, false}, {"1.5", 0, false}, {"abc", 0, false},
	} {
		got, err := Seq("since", tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("Seq(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func symbolIndex(names []string) map[string]int {
	m := make(map[string]int, len(names))
	for i, n := range names {
		m[n] = i
	}
	return m
}

func TestSymbols(t *testing.T) {
	names := feed.SymbolNames(40)
	idx := symbolIndex(names)
	f, err := Symbols("AAPL,S0040,AAPL", names, idx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range names {
		if want := i == 0 || i == 39; f.Match(i) != want {
			t.Errorf("Match(%d) = %v, want %v", i, !want, want)
		}
	}
	for _, bad := range []string{"", "AAPL,", ",AAPL", "aapl", "NOPE", "AAPL,,MSFT", strings.Repeat("AAPL,", 1000)} {
		if _, err := Symbols(bad, names, idx); err == nil {
			t.Errorf("Symbols(%.30q) accepted", bad)
		}
	}
}

func TestDurationAndInt(t *testing.T) {
	if d, err := Duration("timeout", "0", time.Minute); err != nil || d != 0 {
		t.Errorf("Duration(0) = %v, %v", d, err)
	}
	if d, err := Duration("timeout", "10m", time.Minute); err != nil || d != time.Minute {
		t.Errorf("Duration(10m) = %v, %v; want capped at 1m", d, err)
	}
	for _, bad := range []string{"", "-1s", "5", "abc", "1h" + strings.Repeat("0", 50)} {
		if _, err := Duration("timeout", bad, time.Minute); err == nil {
			t.Errorf("Duration(%q) accepted", bad)
		}
	}
	if n, err := Int("max", "512", 1000); err != nil || n != 512 {
		t.Errorf("Int(512) = %d, %v", n, err)
	}
	for _, bad := range []string{"", "0", "1001", "-5", "x"} {
		if _, err := Int("max", bad, 1000); err == nil {
			t.Errorf("Int(%q) accepted", bad)
		}
	}
}

func FuzzSeq(f *testing.F) {
	for _, s := range []string{"0", "42", "18446744073709551615", "18446744073709551616", "-1", " 7", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Seq("id", s)
		if err != nil {
			if len(err.Error()) > 200 {
				t.Fatalf("error too long: %d bytes", len(err.Error()))
			}
			return
		}
		if strconv.FormatUint(v, 10) != strings.TrimLeft(s, "0") && !(v == 0 && strings.Trim(s, "0") == "") {
			t.Fatalf("Seq(%q) = %d does not round-trip", s, v)
		}
	})
}

func FuzzSymbols(f *testing.F) {
	names := feed.SymbolNames(40)
	idx := symbolIndex(names)
	for _, s := range []string{"AAPL", "AAPL,MSFT", "S0040", "", ",", "AAPL,,", "ZZZ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := Symbols(s, names, idx)
		if err != nil {
			return
		}
		// Every accepted list names only known symbols, and the filter
		// selects exactly those.
		want := map[int]bool{}
		for _, n := range strings.Split(s, ",") {
			i, ok := idx[n]
			if !ok {
				t.Fatalf("accepted unknown symbol %q in %q", n, s)
			}
			want[i] = true
		}
		for i := range names {
			if flt.Match(i) != want[i] {
				t.Fatalf("filter for %q: Match(%d) = %v", s, i, flt.Match(i))
			}
		}
	})
}

func FuzzDuration(f *testing.F) {
	for _, s := range []string{"0", "25s", "1m30s", "-1s", "9999999h", "1e3s", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Duration("timeout", s, time.Minute)
		if err == nil && (d < 0 || d > time.Minute) {
			t.Fatalf("Duration(%q) = %v outside [0, 1m]", s, d)
		}
	})
}

func FuzzInt(f *testing.F) {
	for _, s := range []string{"1", "512", "0", "99999999999999999999", "-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Int("max", s, 1000)
		if err == nil && (n < 1 || n > 1000) {
			t.Fatalf("Int(%q) = %d outside [1, 1000]", s, n)
		}
	})
}

// TestQuoteBound: an echoed value is cut after maxField escaped characters,
// between escapes, whatever its bytes (invalid UTF-8 escapes to four
// characters a byte, some runes to six or ten).
func TestQuoteBound(t *testing.T) {
	for _, s := range []string{"", "abc", strings.Repeat("x", 100), strings.Repeat("\xff", 41),
		strings.Repeat("\u2028", 30), strings.Repeat("\U000e0001", 20), "a\"b\\c\n"} {
		q := quote(s)
		if len(q) > maxField+len(`""...`) {
			t.Errorf("quote(%.20q) is %d bytes, want at most %d", s, len(q), maxField+5)
		}
		body, cut := strings.CutSuffix(strings.TrimSuffix(q, `"`), "...")
		u, err := strconv.Unquote(body + `"`)
		if err != nil {
			t.Errorf("quote(%.20q) = %s: not a quoted string: %v", s, q, err)
			continue
		}
		if !strings.HasPrefix(s, u) || cut == (u == s) {
			t.Errorf("quote(%.20q) = %s: not a prefix of the input, or cut wrongly marked", s, q)
		}
	}
}

func FuzzValues(f *testing.F) {
	for _, s := range []string{"since=5", "lastEventId=%zz", "cursor=5;timeout=0", "a=1&a=2", "%", "symbols=AAPL,MSFT&since=0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Values(s)
		if err != nil {
			if v != nil || len(err.Error()) > 200 {
				t.Fatalf("Values(%q): values %v with error %q", s, v, err)
			}
			return
		}
		if strings.Contains(s, ";") {
			t.Fatalf("Values(%q) accepted a semicolon", s)
		}
	})
}
