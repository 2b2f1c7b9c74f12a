package query

import (
	"fmt"
	"net/url"
)

// Values parses a request's raw query strictly. url.URL.Query drops a
// malformed pair (lastEventId=%zz, or cursor=5;timeout=0, whose semicolon is
// no longer a separator) without a word, so a client's resume point would
// vanish and it would lose ticks with no gap signal; every transport
// answers 400 on this error instead.
func Values(rawQuery string) (url.Values, error) {
	v, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, fmt.Errorf("malformed query: %w", err)
	}
	return v, nil
}
