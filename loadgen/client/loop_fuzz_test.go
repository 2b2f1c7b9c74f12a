package client

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

// FuzzChunkDecoder: the loop's chunk decoder and the goroutine reader's
// response body reader agree on every input (same body, both fail or both
// end), whatever the split.
func FuzzChunkDecoder(f *testing.F) {
	f.Add([]byte("3\r\nabc\r\nA;x=y\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nnext"), 5)
	f.Add([]byte("3 \t\nabc\n0\n\n"), 1)
	f.Add([]byte("zz\r\n"), 0)
	f.Add([]byte("3\r\nabcd\r\n"), 2)
	f.Fuzz(func(t *testing.T, in []byte, k int) {
		if len(in) > 4096 {
			return // line limits are checked differently past the bufio buffer
		}
		r := response{br: bufio.NewReaderSize(bytes.NewReader(append([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), in...)), 16)}
		if err := r.readHeader(); err != nil {
			t.Fatal(err)
		}
		want, werr := io.ReadAll(&r)
		k = min(max(k, 0), len(in))
		b := bytes.Clone(in)
		var d chunkDecoder
		n1, used1, done, err := d.decode(b[:k])
		got := bytes.Clone(b[:n1])
		if err == nil && !done {
			var n2 int
			n2, _, done, err = d.decode(b[k:])
			got = append(got, b[k:k+n2]...)
		} else if done && used1 > k {
			t.Fatalf("used %d of %d bytes", used1, k)
		}
		pushFailed := err != nil || !done
		if pushFailed != (werr != nil) {
			t.Fatalf("decoder: done %v, err %v; reader: %v", done, err, werr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("decoder body %q, reader body %q", got, want)
		}
	})
}

// sseEvents renders what Next or Feed made of a stream.
func sseEvents(evs []SSEEvent, p *Parser, err error) string {
	var s []string
	for _, e := range evs {
		s = append(s, fmt.Sprintf("%q/%q/%q", e.Type, e.Data, e.ID))
	}
	return fmt.Sprintf("%v id=%q retry=%v tooLong=%v", s, p.LastEventID(), p.Retry(), errors.Is(err, ErrTooLong))
}

// FuzzParserFeed: Feed, given a stream in two pieces (the incomplete rest
// of the first carried over, as the loop does), dispatches the same events
// as Next reading it, and fails the same way on a line over the limit.
func FuzzParserFeed(f *testing.F) {
	f.Add([]byte("\xef\xbb\xbfretry: 10\r\nid: 1\rdata: a\r\rdata: b\ndata:c\n\n: x\nevent: gap\ndata: {}\n\n"), 7)
	f.Add([]byte("data: "+string(bytes.Repeat([]byte("y"), 300))+"\n\n"), 100)
	f.Add([]byte("data: x\r"), 8)
	// The server's tick events, which Feed reads without splitting lines.
	f.Add([]byte("id: 1\ndata: {\"seq\":1}\n\nid: 2\ndata: b\n\nid: 3\ndata: \n\n"), 20)
	f.Add([]byte("event: gap\nid: 7\ndata: g\n\nid: 8\ndata: a\rb\n\nid: 9\r\ndata: c\n\n"), 0)
	f.Add([]byte("id: 1\ndata: "+string(bytes.Repeat([]byte("y"), 250))+"\n\nid: 2\ndata: z\n\n"), 0)
	f.Add([]byte("id: 1\ndata: x\nid: 2\ndata: y\n\n"), 14)
	f.Fuzz(func(t *testing.T, in []byte, k int) {
		pull := NewParser(bytes.NewReader(in), 64, 256)
		var want []SSEEvent
		var werr error
		for {
			e, err := pull.Next()
			if err != nil {
				werr = err
				break
			}
			want = append(want, SSEEvent{Type: bytes.Clone(e.Type), Data: bytes.Clone(e.Data), ID: bytes.Clone(e.ID)})
		}
		push := NewParser(nil, 64, 256)
		var got []SSEEvent
		emit := func(e SSEEvent) {
			got = append(got, SSEEvent{Type: bytes.Clone(e.Type), Data: bytes.Clone(e.Data), ID: bytes.Clone(e.ID)})
		}
		k = min(max(k, 0), len(in))
		used, err := push.Feed(in[:k], emit)
		if err == nil {
			rest := append(bytes.Clone(in[used:k]), in[k:]...)
			_, err = push.Feed(rest, emit)
		}
		if a, b := sseEvents(got, push, err), sseEvents(want, pull, werr); a != b {
			t.Fatalf("Feed: %s\nNext: %s", a, b)
		}
	})
}

// FuzzWSLoop: the loop's frame parser never panics, and gives the same
// events, end and writes however the bytes are split.
func FuzzWSLoop(f *testing.F) {
	f.Add([]byte{0x81, 3, 'a', 'b', 'c', 0x89, 1, 'p', 0x01, 1, '{', 0x80, 1, '}', 0x88, 2, 3, 0xe9}, 3)
	f.Add([]byte{0x81, 127, 0, 0, 0, 0, 0, 0, 1, 0}, 4)
	f.Fuzz(func(t *testing.T, in []byte, k int) {
		k = min(max(k, 0), len(in))
		cfg := prepared(t, "ws")
		cfg.Handoff, cfg.MaxEvent = true, 1024
		whole := loopHandoffWS(t, cfg, [][]byte{in})
		split := loopHandoffWS(t, cfg, [][]byte{in[:k], in[k:]})
		if whole.String() != split.String() {
			t.Fatalf("whole:\n%v\nsplit at %d:\n%v", whole, k, split)
		}
	})
}

// FuzzPollLoop: the loop's long-poll parser never panics, gives the same
// events, end and requests however the answers are split, and the same
// events as the goroutine reader.
func FuzzPollLoop(f *testing.F) {
	fr := frames(f, 2)
	f.Add(pollResponse(`{"cursor":9,"ticks":[`+string(fr[0].JSON)+`],"gap":{"from":4,"to":8}}`, ""), 20)
	f.Add(fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(fr[1].JSON)+22, `{"cursor":3,"ticks":[`+string(fr[1].JSON)+`]}`), 40)
	f.Add([]byte("HTTP/1.0 200 OK\r\n\r\n{\"cursor\":4}"), 3)
	f.Fuzz(func(t *testing.T, in []byte, k int) {
		k = min(max(k, 0), len(in))
		cfg := prepared(t, "poll")
		cfg.Handoff = true
		first := pollResponse(`{"cursor":7,"ticks":[]}`, "")
		whole := loopRead(t, cfg, first, [][]byte{in}, 50)
		split := loopRead(t, cfg, first, [][]byte{in[:k], in[k:]}, 50)
		if whole.String() != split.String() {
			t.Fatalf("whole:\n%v\nsplit at %d:\n%v", whole, k, split)
		}
		g := goroutineRead(t, cfg, [][]byte{first, in}, 50)
		if fmt.Sprint(g.events) != fmt.Sprint(whole.events) {
			t.Fatalf("goroutine:\n%v\nloop:\n%v", g, whole)
		}
	})
}
