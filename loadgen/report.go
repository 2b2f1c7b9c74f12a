package loadgen

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/pushbench/pushbench/loadgen/answer"
	"github.com/pushbench/pushbench/loadgen/result"
)

// WriteSummary writes the human summary of a result.
func WriteSummary(w io.Writer, r *result.Result) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	if r.Answer != nil {
		p("loadgen answer %s %s  %d in flight (cap %d)  %.1fs", r.Transport, r.URL, r.Clients, r.Answer.Concurrency, r.Duration)
		if r.Warmup > 0 {
			p(" after %.1fs warm-up", r.Warmup)
		}
	} else {
		p("loadgen %s %s  %d clients  %.1fs", r.Transport, r.URL, r.Clients, r.Duration)
	}
	if r.Protocol != "" && r.Protocol != "h1" {
		p("  protocol %s", r.Protocol)
	}
	if r.Warmup > 0 && r.Answer == nil {
		p(" after %.1fs warm-up", r.Warmup)
	}
	if len(r.Symbols) > 0 {
		p("  symbols %s", strings.Join(r.Symbols, ","))
	}
	if r.FeedRate > 0 {
		p("  feed %.0f ticks/s", r.FeedRate)
	}
	p("\n")

	c := r.Counts
	switch {
	case r.Answer != nil:
		a := r.Answer
		p("answers      offered %.1f/s: %s arrivals, %d not sent (cap); %s sent: %s completed, %d failed, %d unfinished\n",
			a.Rate, group(a.Answers.Arrivals), a.Answers.NotSentCap,
			group(a.Answers.Sent), group(a.Answers.Completed), a.Answers.Failed, a.Answers.Unfinished)
		p("             %d tokens at %g/s after %g ms think; measured: %.1f arrivals/s, %.1f answers/s completed, chunks %s/s of %s/s offered\n",
			a.Tokens, a.TokenRate, a.ThinkMs, a.ArrivalsPerSec, a.AnswersPerSec, si(a.ChunksPerSec), si(a.OfferedChunksPerSec))
		p("connections  %s opened (-conn %s", group(a.ConnectionsOpened), a.Conn)
		switch {
		case a.Conn == answer.ConnH2:
			p(", %d connections", a.Conns)
		case a.Conns > 0:
			p(", %d sessions", a.Conns)
		}
		p(")")
	case strings.HasPrefix(r.Transport, "storm-"):
		p("connections  %d reached their first tick", r.Connected)
	case r.Transport == "shortpoll":
		p("pollers      %d/%d answered", r.Connected, r.Clients)
	default:
		p("connections  %d/%d connected at the end, %d reconnects", r.Connected, r.Clients, c.Reconnects)
	}
	if len(r.Failures) == 0 {
		p("; failures: none\n")
	} else {
		p("; failures:")
		for _, k := range slices.Sorted(maps.Keys(r.Failures)) {
			p(" %s %d", k, r.Failures[k])
		}
		p("\n")
		for _, k := range slices.Sorted(maps.Keys(r.FailureSamples)) {
			p("  %-11s %s\n", k+":", r.FailureSamples[k])
		}
	}
	if r.SlowClients > 0 {
		sl := r.Slow
		p("slow         %d of %d clients stalled on purpose (%d connected, then read nothing); latency, messages, delivery and bytes below are the other %d's\n",
			r.SlowClients, r.Clients, sl.Stalled, r.Clients-r.SlowClients)
		p("             read again at the end: %d dropped by the server, %d still open; %s backlog\n", sl.Dropped, sl.Open, bytesIEC(sl.BacklogBytes))
	}
	pct := func(name string, q result.Percentiles, note string) {
		if q.Count == 0 {
			p("%-12s none\n", name)
			return
		}
		p("%-12s p50 %s  p90 %s  p99 %s  p99.9 %s  max %s ms  (n=%d%s)\n", name,
			ms(q.P50), ms(q.P90), ms(q.P99), ms(q.P999), ms(q.Max), q.Count, note)
	}
	if a := r.Answer; a != nil {
		pct("TTFT", a.TTFT, "; from the intended send time")
		if a.ToServer.Count > 0 {
			pct("  to server", a.ToServer, "; server's arrival stamp - intended send")
		}
		pct("ITL", a.ITL, "; between chunks")
		pct("end to end", a.E2E, "; to done")
		pct("chunk lat.", a.ChunkLatency, "; arrival - scheduled ts")
		k := a.Chunks
		p("delivery     expected %s  received %s  lost %d  duplicated %d  reordered %d  wrong %d  malformed %d  stray %d  unfinished answers %d\n",
			group(k.Expected), group(k.Received), k.Lost, k.Duplicated, k.Reordered, k.Wrong, k.Malformed, k.Stray, a.Answers.Unfinished)
		if f := a.Faults(); len(f) > 0 {
			p("             FAULTS: %s\n", strings.Join(f, ", "))
		} else if k.Received > 0 {
			p("             ok: every answer sent ended with every chunk once, in order, with the seed's text\n")
		}
		p("bytes        in %s (%.1f B/chunk)  out %s  requests %s\n", bytesIEC(r.Bytes.Received), a.BytesPerChunk, bytesIEC(r.Bytes.Sent), group(r.Requests))
		selfLines(&b, r)
		_, err := io.WriteString(w, b.String())
		return err
	}
	p("messages     %s received  %s/s  (%.2f/s per client)\n", group(r.Messages), si(r.MsgsPerSec), r.PerClient)
	pct("latency", r.Latency, "; arrival - scheduled ts")
	pct("connect", r.Connect, "")
	pct("first tick", r.FirstTick, "")
	b.WriteString(reachLine(r.Reach))
	p("delivery     expected %s  received %s  missing %d  duplicates %d  out of order %d  gaps %d (%d ticks)\n",
		group(c.Expected), group(c.Received), c.Missing, c.Duplicates, c.OutOfOrder, c.Gaps, c.GapTicks)
	p("             wrong symbol %d  wrong content %d  stalled %d  malformed %d\n",
		c.WrongSymbol, c.WrongContent, c.Stalled, c.Malformed)
	if f := c.Faults(); len(f) > 0 {
		p("             FAULTS: %s\n", strings.Join(f, ", "))
	} else if c.Received > 0 {
		p("             ok: every expected tick arrived once, in order, with the right content\n")
	}
	p("bytes        in %s (%.1f B/tick)  out %s", bytesIEC(r.Bytes.Received), r.Bytes.PerTick, bytesIEC(r.Bytes.Sent))
	if r.Requests > 0 {
		p("  requests %s", group(r.Requests))
	}
	if r.Bytes.PlainReceived > 0 {
		p("\n             TLS: %s in above it; its own %.1f B/tick (records, tags, handshakes)",
			bytesIEC(r.Bytes.PlainReceived), r.Bytes.TLSOverheadPerTick)
	}
	p("\n")
	selfLines(&b, r)
	_, err := io.WriteString(w, b.String())
	return err
}

// selfLines writes the load generator's own cost and the warnings.
func selfLines(b *strings.Builder, r *result.Result) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	s := r.Self
	p("self         %.2f cores (GOMAXPROCS %d), cpu %.1fs, max RSS %s", s.CPUCores, s.GOMAXPROCS, s.CPUSeconds, bytesIEC(s.MaxRSSBytes))
	if r.Reader != "" {
		p(", reader %s", r.Reader)
	}
	if s.RSSBytes > 0 && r.Clients > 0 {
		p(", RSS at the end %s (%s/client)", bytesIEC(s.RSSBytes), bytesIEC(s.RSSBytes/int64(r.Clients)))
	}
	p(", timer lag p99 %.1f ms\n", s.LagP99Ms)
	for _, wn := range r.Warnings {
		p("WARNING: %s\n", wn)
	}
}

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// group writes an integer with thousands separators.
func group(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return s
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func bytesIEC(n int64) string {
	v := float64(n)
	switch {
	case v >= 1<<30:
		return fmt.Sprintf("%.2f GiB", v/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
