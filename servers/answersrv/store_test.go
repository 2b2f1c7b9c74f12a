package answersrv

import (
	"testing"
)

// FuzzParseID: an answer id comes from the URL path of every resume and
// poll (GET /answer/{id}). parseID accepts exactly the ids newID writes, 16
// lowercase hex digits, and what it accepts reads back the same; anything
// else (upper case, signs, spaces, other lengths) names no answer.
func FuzzParseID(f *testing.F) {
	for _, seed := range []string{"", "0", "0000000000000000", "7fffffffffffffff", "8000000000000000", "ffffffffffffffff", "FFFFFFFFFFFFFFFF",
		"+000000000000000", "8000000000000000 ", "80000000000000000", "0x80000000000000", newID().String()} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := parseID(s)
		if !ok {
			return
		}
		if got := id.String(); got != s {
			t.Fatalf("parseID(%q) = %x, written back as %q", s, uint64(id), got)
		}
		if got := string(id.appendJSON(nil)); got != `"`+s+`"` || len(got) != idJSONLen {
			t.Fatalf("id %q as JSON: %s", s, got)
		}
	})
}

// TestNewIDsParse: every id the store makes is found again by its string.
func TestNewIDsParse(t *testing.T) {
	for range 1000 {
		id := newID()
		got, ok := parseID(id.String())
		if !ok || got != id {
			t.Fatalf("newID %x: parseID(%q) = %x, %v", uint64(id), id.String(), uint64(got), ok)
		}
	}
}
