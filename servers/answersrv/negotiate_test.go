package answersrv

import "testing"

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		accept []string
		want   string
		ok     bool
	}{
		{nil, "sse", true},
		{[]string{"text/event-stream"}, "sse", true},
		{[]string{"application/json"}, "poll", true},
		{[]string{"*/*"}, "sse", true},
		{[]string{"application/json, text/event-stream"}, "sse", true},
		{[]string{"application/json", "text/event-stream"}, "sse", true},
		{[]string{"application/json;q=0.5, */*;q=0.1"}, "poll", true},
		{[]string{"Application/JSON"}, "poll", true},
		{[]string{"text/event-stream;q=0, application/json"}, "poll", true},
		{[]string{"text/event-stream;q=0"}, "", false},
		{[]string{"text/html"}, "", false},
		{[]string{"text/*"}, "", false},
		{[]string{"garbage;;;"}, "", false},
	} {
		got, ok := negotiate(tc.accept)
		if got != tc.want || ok != tc.ok {
			t.Errorf("negotiate(%q) = %q, %v; want %q, %v", tc.accept, got, ok, tc.want, tc.ok)
		}
	}
}
