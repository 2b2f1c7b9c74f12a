package client

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

type sseEv struct{ typ, data, id string }

// parseAll runs the parser over r and returns the events and the error that
// ended the stream.
func parseAll(r io.Reader, bufSize, maxLen int) ([]sseEv, *Parser, error) {
	p := NewParser(r, bufSize, maxLen)
	var evs []sseEv
	for {
		e, err := p.Next()
		if err != nil {
			return evs, p, err
		}
		evs = append(evs, sseEv{string(e.Type), string(e.Data), string(e.ID)})
	}
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n, len(c.b))
	copy(p, c.b[:k])
	c.b = c.b[k:]
	return k, nil
}

func TestParserWHATWG(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  []sseEv
		retry time.Duration
	}{
		{"lf", "data: a\n\n", []sseEv{{"", "a", ""}}, 0},
		{"crlf", "data: a\r\n\r\ndata: b\r\n\r\n", []sseEv{{"", "a", ""}, {"", "b", ""}}, 0},
		{"cr", "data: a\r\rdata: b\r\r", []sseEv{{"", "a", ""}, {"", "b", ""}}, 0},
		{"mixed ends", "data: a\r\n\rdata: b\n\r\n", []sseEv{{"", "a", ""}, {"", "b", ""}}, 0},
		{"multi-line data", "data: a\ndata: b\ndata\n\n", []sseEv{{"", "a\nb\n", ""}}, 0},
		{"one space dropped, only one", "data:a\n\ndata:  a\n\n", []sseEv{{"", "a", ""}, {"", " a", ""}}, 0},
		{"colon in value", "data: {\"a\":1}\n\n", []sseEv{{"", `{"a":1}`, ""}}, 0},
		{"comments", ": ping\n\n:\ndata: x\n: mid\n\n", []sseEv{{"", "x", ""}}, 0},
		{"event type", "event: gap\ndata: x\n\ndata: y\n\n", []sseEv{{"gap", "x", ""}, {"", "y", ""}}, 0},
		{"type without data resets", "event: gap\n\ndata: y\n\n", []sseEv{{"", "y", ""}}, 0},
		{"empty data dispatches", "data\n\ndata:\n\n", []sseEv{{"", "", ""}, {"", "", ""}}, 0},
		{"id persists", "id: 42\ndata: a\n\ndata: b\n\n", []sseEv{{"", "a", "42"}, {"", "b", "42"}}, 0},
		{"id without data sets it", "id: 7\n\ndata: a\n\n", []sseEv{{"", "a", "7"}}, 0},
		{"id with NUL ignored", "id: 1\n\nid: 2\x003\ndata: a\n\n", []sseEv{{"", "a", "1"}}, 0},
		{"empty id resets", "id: 5\ndata: a\n\nid\ndata: b\n\n", []sseEv{{"", "a", "5"}, {"", "b", ""}}, 0},
		{"retry digits", "retry: 2000\n\ndata: a\n\n", []sseEv{{"", "a", ""}}, 2 * time.Second},
		{"retry not digits ignored", "retry: 2s\nretry: -1\nretry\n\n", nil, 0},
		{"unknown fields ignored", "foo: bar\nfoo\nDATA: x\n\n", nil, 0},
		{"cut off event dropped", "data: a\n\ndata: b\n", []sseEv{{"", "a", ""}}, 0},
		{"bom skipped", "\xef\xbb\xbfdata: a\n\n", []sseEv{{"", "a", ""}}, 0},
		{"bom only at start", "data: a\n\n\xef\xbb\xbfdata: b\n\n", []sseEv{{"", "a", ""}}, 0},
		{"tick", "retry: 2000\n\nid: 42\ndata: {\"seq\":42,\"sym\":\"AAPL\",\"price\":101.23,\"ts\":1}\n\n",
			[]sseEv{{"", `{"seq":42,"sym":"AAPL","price":101.23,"ts":1}`, "42"}}, 2 * time.Second},
	}
	readers := map[string]func(string) io.Reader{
		"whole":   func(s string) io.Reader { return strings.NewReader(s) },
		"1 byte":  func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"3 bytes": func(s string) io.Reader { return &chunkReader{[]byte(s), 3} },
	}
	for _, tt := range tests {
		for rn, mk := range readers {
			t.Run(tt.name+"/"+rn, func(t *testing.T) {
				got, p, err := parseAll(mk(tt.in), 64, 1024)
				if !errors.Is(err, io.EOF) {
					t.Fatalf("ended with %v, want EOF", err)
				}
				if len(got) != len(tt.want) {
					t.Fatalf("events %q, want %q", got, tt.want)
				}
				for i := range got {
					if got[i] != tt.want[i] {
						t.Errorf("event %d = %q, want %q", i, got[i], tt.want[i])
					}
				}
				if p.Retry() != tt.retry {
					t.Errorf("retry %v, want %v", p.Retry(), tt.retry)
				}
			})
		}
	}
}

func TestParserLimits(t *testing.T) {
	long := "data: " + strings.Repeat("x", 5000) + "\n\n"
	if _, _, err := parseAll(strings.NewReader(long), 64, 1024); !errors.Is(err, ErrTooLong) {
		t.Errorf("long line: %v, want ErrTooLong", err)
	}
	// Many data lines each under the line limit, together over it.
	many := strings.Repeat("data: "+strings.Repeat("y", 100)+"\n", 20) + "\n"
	if _, _, err := parseAll(strings.NewReader(many), 64, 1024); !errors.Is(err, ErrTooLong) {
		t.Errorf("long event: %v, want ErrTooLong", err)
	}
	// A long line that fits after growing.
	ok := "data: " + strings.Repeat("z", 900) + "\n\n"
	evs, _, err := parseAll(strings.NewReader(ok), 64, 1024)
	if !errors.Is(err, io.EOF) || len(evs) != 1 || len(evs[0].data) != 900 {
		t.Errorf("900-byte event: %d events, %v", len(evs), err)
	}
	// A reader that returns (0, nil) forever must not hang the parser.
	if _, _, err := parseAll(iotest.ErrReader(nil), 64, 1024); err == nil {
		t.Error("no error from a reader that never progresses")
	}
}

// TestParserCutBeforeDispatch: a connection cut between an event's id line
// and its blank line must resume before that event, not after it.
func TestParserCutBeforeDispatch(t *testing.T) {
	p := NewParser(strings.NewReader("id: 41\ndata: a\n\nid: 42\ndata: b\n"), 64, 1024)
	if _, err := p.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("got %v, want EOF", err)
	}
	if string(p.LastEventID()) != "41" {
		t.Errorf("resume from %q, want 41 (event 42 never arrived whole)", p.LastEventID())
	}
	p.Reset(strings.NewReader("data: c\n\n"))
	if e, err := p.Next(); err != nil || string(e.ID) != "41" {
		t.Errorf("after reset: id %q, %v; want 41", e.ID, err)
	}
}

func TestParserResetKeepsLastID(t *testing.T) {
	p := NewParser(strings.NewReader("id: 9\ndata: a\n\n"), 64, 1024)
	if _, err := p.Next(); err != nil {
		t.Fatal(err)
	}
	p.Reset(strings.NewReader("data: b\n\n"))
	e, err := p.Next()
	if err != nil || string(e.ID) != "9" || string(e.Data) != "b" {
		t.Errorf("after reset: %q %q %v, want id 9 data b", e.ID, e.Data, err)
	}
}

// refParse is a plain reading of the WHATWG algorithm on a whole string,
// written for clarity rather than speed, to check Parser against.
func refParse(in string) (evs []sseEv, retry time.Duration) {
	in = strings.TrimPrefix(in, "\xef\xbb\xbf")
	var lines []string
	for {
		i := strings.IndexAny(in, "\r\n")
		if i < 0 {
			break // an unterminated last line is never processed
		}
		lines = append(lines, in[:i])
		if in[i] == '\r' && i+1 < len(in) && in[i+1] == '\n' {
			i++
		}
		in = in[i+1:]
	}
	var data, typ, lastID string
	hasData := false
	for _, l := range lines {
		if l == "" {
			if hasData {
				evs = append(evs, sseEv{typ, strings.TrimSuffix(data, "\n"), lastID})
			}
			data, typ, hasData = "", "", false
			continue
		}
		if l[0] == ':' {
			continue
		}
		name, value, _ := strings.Cut(l, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "data":
			data += value + "\n"
			hasData = true
		case "event":
			typ = value
		case "id":
			if !strings.Contains(value, "\x00") {
				lastID = value
			}
		case "retry":
			if ms, ok := parseUint([]byte(value)); ok && ms < 1<<40 {
				retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
	return evs, retry
}

// FuzzSSEParser checks the streaming parser against the plain reference on
// any input, read whole and in chunks of any size: same events, same retry,
// never a panic.
func FuzzSSEParser(f *testing.F) {
	for _, s := range []string{
		"data: a\n\n", "data: a\r\n\r\n", "data: a\r\rdata: b\r\r", "id: 1\ndata: x\n\n: c\n\n",
		"event: gap\ndata: {\"from\":1,\"to\":5}\n\n", "retry: 10\n\n", "\xef\xbb\xbfdata:x\n\n",
		"id: 1\x00\ndata\n\ndata:\r\n\r", "data: a\r", "\r\n\r\n\n\r",
	} {
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		wantEvs, wantRetry := refParse(string(in))
		for _, r := range []io.Reader{bytes.NewReader(in), &chunkReader{in, int(chunk%16) + 1}} {
			got, p, err := parseAll(r, 64, 1<<20)
			if !errors.Is(err, io.EOF) {
				t.Fatalf("ended with %v", err)
			}
			if len(got) != len(wantEvs) {
				t.Fatalf("%q: %d events %q, reference %d %q", in, len(got), got, len(wantEvs), wantEvs)
			}
			for i := range got {
				if got[i] != wantEvs[i] {
					t.Fatalf("%q: event %d = %q, reference %q", in, i, got[i], wantEvs[i])
				}
			}
			if p.Retry() != wantRetry {
				t.Fatalf("%q: retry %v, reference %v", in, p.Retry(), wantRetry)
			}
		}
	})
}

// TestFastEventServerFrames: the server's tick events take Feed's fast
// path whole and come out as the line-by-line reading gives them.
func TestFastEventServerFrames(t *testing.T) {
	p := NewParser(nil, 64, DefaultMaxEvent)
	p.bomDone = true
	for _, f := range frames(t, 20) {
		var got []SSEEvent
		n := p.fastEvent(f.SSE, func(e SSEEvent) { got = append(got, e) })
		if n != len(f.SSE) || len(got) != 1 {
			t.Fatalf("%q: fastEvent took %d of %d bytes, %d events", f.SSE, n, len(f.SSE), len(got))
		}
		if id := strconv.FormatUint(f.Seq, 10); !bytes.Equal(got[0].Data, f.JSON) || string(got[0].ID) != id || string(p.LastEventID()) != id || len(got[0].Type) != 0 {
			t.Fatalf("%q: event %q/%q/%q", f.SSE, got[0].Type, got[0].Data, got[0].ID)
		}
	}
}
