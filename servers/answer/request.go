package answer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Defaults of a request's fields (PROTOCOL.md: every field is optional).
const (
	DefaultTokens = 64
	DefaultRate   = 50.0 // chunks per second
	DefaultThink  = 200 * time.Millisecond
	DefaultSeed   = 1
)

// Defaults of Limits, doubling as the server's flag defaults.
const (
	DefaultMaxTokens = 10_000
	DefaultMaxRate   = 10_000.0 // chunks per second
	DefaultMaxThink  = time.Minute
	// DefaultMaxDuration bounds an answer's lifetime, think + (tokens-1)/rate:
	// a request for a few chunks an hour apart would hold its slot for days.
	DefaultMaxDuration = 5 * time.Minute
)

// MaxBody bounds a request: an HTTP body or a WebSocket message. The
// largest valid request is well under 200 bytes.
const MaxBody = 4 << 10

// MaxReq bounds a WebSocket request id, in bytes.
const MaxReq = 64

// Request is what one answer is asked for.
type Request struct {
	Tokens int           // N, the number of chunks
	Rate   float64       // chunks per second
	Think  time.Duration // before the first chunk
	Seed   uint64        // picks the text
}

// Limits bound a request; zero fields take the defaults above.
type Limits struct {
	MaxTokens   int
	MaxRate     float64
	MaxThink    time.Duration
	MaxDuration time.Duration
}

// WithDefaults returns l with every zero field set to its default.
func (l Limits) WithDefaults() Limits {
	if l.MaxTokens == 0 {
		l.MaxTokens = DefaultMaxTokens
	}
	if l.MaxRate == 0 {
		l.MaxRate = DefaultMaxRate
	}
	if l.MaxThink == 0 {
		l.MaxThink = DefaultMaxThink
	}
	if l.MaxDuration == 0 {
		l.MaxDuration = DefaultMaxDuration
	}
	return l
}

// Validate reports the first limit that is out of range, after defaults.
func (l Limits) Validate() error {
	l = l.WithDefaults()
	switch {
	case l.MaxTokens < 1:
		return fmt.Errorf("answer: max tokens must be >= 1, got %d", l.MaxTokens)
	case !(l.MaxRate > 0):
		return fmt.Errorf("answer: max rate must be > 0, got %g", l.MaxRate)
	case l.MaxThink < 0:
		return fmt.Errorf("answer: max think must be >= 0, got %v", l.MaxThink)
	case l.MaxDuration <= 0:
		return fmt.Errorf("answer: max duration must be > 0, got %v", l.MaxDuration)
	}
	return nil
}

// Duration is how long after its arrival the answer's last chunk is due.
func (r Request) Duration() time.Duration {
	return r.Think + time.Duration(float64(r.Tokens-1)*float64(time.Second)/r.Rate)
}

// wire is a request as JSON; absent fields stay nil.
type wire struct {
	Req    *string  `json:"req"`
	Tokens *int     `json:"tokens"`
	Rate   *float64 `json:"rate"`
	Think  *string  `json:"think"`
	Seed   *uint64  `json:"seed"`
}

// Parse reads an HTTP request body: a JSON object with the optional fields
// tokens, rate, think (a Go duration string) and seed. An empty body asks
// for every default. Unknown fields, trailing data and values out of lim
// are errors whose text is fit for a 400 response.
func Parse(body []byte, lim Limits) (Request, error) {
	w, err := decode(body, true)
	if err != nil {
		return Request{}, err
	}
	if w.Req != nil {
		return Request{}, errors.New(`"req" belongs to WebSocket request messages only`)
	}
	return w.request(lim)
}

// ParseMessage reads a WebSocket request message: the fields of Parse plus
// "req", the client's id for the answer (1..MaxReq bytes), which it returns
// whenever it could read one, also with an error, so that the error can be
// sent tagged with it.
func ParseMessage(msg []byte, lim Limits) (req string, r Request, err error) {
	w, err := decode(msg, false)
	if err != nil {
		// Tag the error with the req if the message has one at all: the
		// strict decode stops at the first bad field, this one reads on.
		var tag struct {
			Req string `json:"req"`
		}
		_ = json.Unmarshal(msg, &tag)
		if len(tag.Req) > MaxReq {
			tag.Req = ""
		}
		return tag.Req, Request{}, err
	}
	if w.Req == nil || *w.Req == "" {
		return "", Request{}, errors.New(`"req" is required: the id the chunks of this answer will carry`)
	}
	if len(*w.Req) > MaxReq {
		return "", Request{}, fmt.Errorf(`"req" is longer than %d bytes`, MaxReq)
	}
	r, err = w.request(lim)
	return *w.Req, r, err
}

func decode(data []byte, emptyOK bool) (wire, error) {
	var w wire
	if len(data) > MaxBody {
		return w, fmt.Errorf("request larger than %d bytes", MaxBody)
	}
	if emptyOK && len(bytes.TrimSpace(data)) == 0 {
		return w, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return w, fmt.Errorf("malformed request: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return w, errors.New("malformed request: data after the JSON object")
	}
	return w, nil
}

func (w wire) request(lim Limits) (Request, error) {
	lim = lim.WithDefaults()
	r := Request{Tokens: DefaultTokens, Rate: DefaultRate, Think: DefaultThink, Seed: DefaultSeed}
	if w.Tokens != nil {
		r.Tokens = *w.Tokens
	}
	if w.Rate != nil {
		r.Rate = *w.Rate
	}
	if w.Think != nil {
		if len(*w.Think) > 40 {
			return r, errors.New("think: value too long")
		}
		d, err := time.ParseDuration(*w.Think)
		if err != nil {
			return r, fmt.Errorf(`think must be a duration like "300ms", got %q`, *w.Think)
		}
		r.Think = d
	}
	if w.Seed != nil {
		r.Seed = *w.Seed
	}
	switch {
	case r.Tokens < 1 || r.Tokens > lim.MaxTokens:
		return r, fmt.Errorf("tokens must be 1..%d, got %d", lim.MaxTokens, r.Tokens)
	case !(r.Rate > 0 && r.Rate <= lim.MaxRate):
		return r, fmt.Errorf("rate must be > 0 and <= %g chunks/s, got %g", lim.MaxRate, r.Rate)
	case r.Think < 0 || r.Think > lim.MaxThink:
		return r, fmt.Errorf("think must be 0..%v, got %v", lim.MaxThink, r.Think)
	case r.Think.Seconds()+float64(r.Tokens-1)/r.Rate > lim.MaxDuration.Seconds(): // in floats: a tiny rate overflows a Duration
		return r, fmt.Errorf("the answer would last more than %v: think + (tokens-1)/rate", lim.MaxDuration)
	}
	return r, nil
}
