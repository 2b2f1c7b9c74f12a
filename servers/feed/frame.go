package feed

import (
	"strconv"

	"github.com/gorilla/websocket"
)

// Frame is one tick encoded once for every transport. Frames are immutable
// after publication and shared by all subscribers: never modify one.
type Frame struct {
	Tick
	// JSON is the compact tick JSON, identical on every transport.
	JSON []byte
	// SSE is the complete event: "id: N\ndata: JSON\n\n".
	SSE []byte
	// WS is the WebSocket text message, framed lazily once per option set by
	// gorilla; nil unless the feed was built with Config.WebSocket.
	WS *websocket.PreparedMessage
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

// NewFrame encodes t once. The JSON and the SSE event share one allocation.
func NewFrame(t Tick, sym string, withWS bool) (*Frame, error) {
	buf := make([]byte, 0, 128)
	buf = append(buf, "id: "...)
	buf = strconv.AppendUint(buf, t.Seq, 10)
	buf = append(buf, "\ndata: "...)
	jsonStart := len(buf)
	buf = AppendJSON(buf, t, sym)
	jsonEnd := len(buf)
	buf = append(buf, "\n\n"...)
	f := &Frame{Tick: t, SSE: buf, JSON: buf[jsonStart:jsonEnd:jsonEnd]}
	if withWS {
		pm, err := websocket.NewPreparedMessage(websocket.TextMessage, f.JSON)
		if err != nil {
			return nil, err
		}
		f.WS = pm
	}
	return f, nil
}
