package feed

import (
	"strconv"
)

// Frame is one tick encoded once for every transport. Frames are immutable
// after publication and shared by all subscribers: never modify one.
type Frame struct {
	Tick
	// JSON is the compact tick JSON, identical on every transport.
	JSON []byte
	// SSE is the complete event: "id: N\ndata: JSON\n\n".
	SSE []byte
	// WS is the complete WebSocket frame a server sends (RFC 6455: FIN and
	// text opcode, unmasked length, then the JSON), built once so that a
	// connection writes a batch of ticks with one writev. It does the job of
	// gorilla's PreparedMessage, which frames lazily per option set and costs
	// about 6 KB of garbage per tick to prepare.
	WS []byte
}

// AppendJSON appends the tick's wire JSON to dst, for example
// {"seq":42,"sym":"AAPL","price":101.23,"ts":1732400000123456789}.
// Symbol names are plain ASCII letters and digits, so no escaping is needed.
func AppendJSON(dst []byte, t Tick, sym string) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, t.Seq, 10)
	dst = append(dst, `,"sym":"`...)
	dst = append(dst, sym...)
	dst = append(dst, `","price":`...)
	dst = strconv.AppendInt(dst, t.Price/100, 10)
	cents := t.Price % 100
	dst = append(dst, '.', byte('0'+cents/10), byte('0'+cents%10))
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, t.TS, 10)
	return append(dst, '}')
}

// NewFrame encodes t once: the SSE event and the WebSocket frame share one
// allocation, and JSON points into the latter.
func NewFrame(t Tick, sym string) *Frame {
	var jsonBuf [96]byte
	js := AppendJSON(jsonBuf[:0], t, sym)
	buf := make([]byte, 0, len(js)*2+48)
	buf = append(buf, "id: "...)
	buf = strconv.AppendUint(buf, t.Seq, 10)
	buf = append(buf, "\ndata: "...)
	buf = append(buf, js...)
	buf = append(buf, "\n\n"...)
	sseEnd := len(buf)
	buf = AppendWSHeader(buf, len(js))
	jsonStart := len(buf)
	buf = append(buf, js...)
	return &Frame{Tick: t, SSE: buf[:sseEnd:sseEnd], WS: buf[sseEnd:], JSON: buf[jsonStart:]}
}

// AppendWSHeader appends the header of an unmasked final text frame whose
// payload is n bytes long.
func AppendWSHeader(dst []byte, n int) []byte {
	const finText = 0x81
	switch {
	case n <= 125:
		return append(dst, finText, byte(n))
	case n <= 0xffff:
		return append(dst, finText, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, finText, 127)
		for shift := 56; shift >= 0; shift -= 8 {
			dst = append(dst, byte(uint64(n)>>shift))
		}
		return dst
	}
}
