// Package query parses what clients send: the query string itself, resume
// points (Last-Event-ID, since, cursor), symbol lists, poll timeouts and
// batch sizes. Every parser
// here handles outside input, so each one bounds its work and its result and
// is fuzzed; errors are short sentences fit for a 400 response body.
package query

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pushbench/pushbench/servers/feed"
)

// ErrEmpty is returned for a parameter that is present but empty.
var ErrEmpty = errors.New("empty value")

// maxField bounds how much of a bad value is echoed back in an error: the
// escaped text between the quotes, not the raw bytes, because escaping can
// make a byte four characters long (\xff), so a bound on the input alone
// lets an invalid value quadruple the error.
const maxField = 40

// quote returns s quoted as Go would, cut after at most maxField escaped
// characters, with "..." before the closing quote when cut. The cut falls
// between two escapes, never inside one.
func quote(s string) string {
	b := make([]byte, 0, maxField+5)
	b = append(b, '"')
	for i := 0; i < len(s); {
		_, w := utf8.DecodeRuneInString(s[i:])
		esc := strconv.Quote(s[i : i+w])
		esc = esc[1 : len(esc)-1]
		if len(b)-1+len(esc) > maxField {
			b = append(b, "..."...)
			break
		}
		b = append(b, esc...)
		i += w
	}
	return string(append(b, '"'))
}

// Seq parses a resume point: an unsigned decimal integer, the last seq the
// client has. Signs, spaces, hex and values past uint64 are refused.
func Seq(name, s string) (uint64, error) {
	if s == "" {
		return 0, fmt.Errorf("%s: %w", name, ErrEmpty)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%s must be an unsigned integer, got %s", name, quote(s))
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s out of range: %s", name, quote(s))
	}
	return v, nil
}

// Symbols parses a comma-separated list of symbol names against the feed's
// names and returns a filter. Every name must be known; duplicates are
// harmless. The list is bounded by the number of names times the longest
// name, so a huge value is refused before it is split.
func Symbols(s string, names []string, index map[string]int) (feed.Filter, error) {
	if s == "" {
		return nil, fmt.Errorf("symbols: %w", ErrEmpty)
	}
	if maxLen := len(names) * 16; len(s) > maxLen {
		return nil, fmt.Errorf("symbols: list longer than %d bytes", maxLen)
	}
	var selected []int
	for {
		name, rest, more := strings.Cut(s, ",")
		i, ok := index[name]
		if !ok {
			return nil, fmt.Errorf("symbols: unknown symbol %s", quote(name))
		}
		selected = append(selected, i)
		if !more {
			break
		}
		s = rest
	}
	return feed.NewFilter(len(names), selected), nil
}

// Duration parses a Go duration such as 25s or 0 for the poll timeout and
// caps it at max. Negative values are refused.
func Duration(name, s string, max time.Duration) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("%s: %w", name, ErrEmpty)
	}
	if len(s) > maxField {
		return 0, fmt.Errorf("%s: value too long", name)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s must be a duration like 25s or 0, got %s", name, quote(s))
	}
	if d < 0 {
		return 0, fmt.Errorf("%s must not be negative, got %s", name, quote(s))
	}
	return min(d, max), nil
}

// Int parses a positive integer no larger than max.
func Int(name, s string, max int) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("%s: %w", name, ErrEmpty)
	}
	v, err := Seq(name, s)
	if err != nil {
		return 0, err
	}
	if v < 1 || v > uint64(max) {
		return 0, fmt.Errorf("%s must be 1..%d, got %s", name, max, quote(s))
	}
	return int(v), nil
}
