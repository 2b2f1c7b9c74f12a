package loadgen

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pushbench/pushbench/loadgen/answer"
	"github.com/pushbench/pushbench/loadgen/client"
	"github.com/pushbench/pushbench/loadgen/result"
)

// runAnswers performs an answer run (package answer) and wraps what it
// measured into a Result, with the load generator's own cost measured
// as for the feed. cfg is validated.
func runAnswers(ctx context.Context, cfg Config) (*result.Result, error) {
	a := cfg.Answer
	if err := fitFiles(a.Concurrency + a.Conns); err != nil {
		return nil, err
	}
	ips, err := chooseSourceIPs(cfg.SourceIPs, cfg.URL.Hostname(), a.Concurrency)
	if err != nil {
		return nil, err
	}
	var src = client.NewDialer(nil, a.ConnectTimeout)
	if len(ips) > 0 {
		// Answers in flight rarely need more than one source address's
		// ports; the first given one is used.
		src = client.NewDialer(ips[0], a.ConnectTimeout)
	}
	if !cfg.NoPreflight {
		if err := answerPreflight(ctx, cfg, src); err != nil {
			return nil, err
		}
	}
	r := &run{cfg: &cfg}
	r.cfg.Progress = nil // the feed's progress line has nothing to say here
	aux := newAux(r)
	start, cpu0 := time.Now(), cpuTime()
	o, err := answer.Run(ctx, a, src)
	if err != nil {
		aux.stop()
		return nil, err
	}
	res := r.result(start, cpu0, aux)
	res.Workload = WorkloadAnswer
	res.Clients = a.InFlight
	res.Start, res.Duration, res.Warmup = o.Start, o.Duration.Seconds(), o.Warmup.Seconds()
	res.Answer = o.Answer
	res.Bytes.Sent, res.Bytes.Received, res.Requests = o.BytesSent, o.BytesReceived, o.Requests
	res.Bytes.PlainSent, res.Bytes.PlainReceived = o.PlainSent, o.PlainReceived
	res.Failures, res.FailureSamples = o.Failures, o.Samples
	if len(res.Failures) == 0 {
		res.Failures, res.FailureSamples = nil, nil
	}
	res.Connected = o.Answer.InFlightAtEnd // as a stream run's clients connected at the end
	res.Counts = answerCounts(o.Answer)
	res.Messages = o.Answer.Window.Chunks
	res.SetRates()
	if o.Answer.Answers.Sent == 0 {
		res.Warnings = append(res.Warnings, "no answer was sent")
	} else if o.Answer.Answers.Completed == 0 {
		res.Warnings = append(res.Warnings, "no answer completed")
	}
	if o.Answer.Answers.NotSentCap > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d arrivals found -concurrency %d answers in flight and were not sent",
			o.Answer.Answers.NotSentCap, a.Concurrency))
	}
	if res.Self.Warning != "" {
		res.Warnings = append(res.Warnings, res.Self.Warning)
	}
	return res, nil
}

// answerPreflight turns a server that is down or does not serve answers
// over the transport into one clear error before the run.
func answerPreflight(ctx context.Context, cfg Config, src *client.Dialer) error {
	err := answer.Preflight(ctx, cfg.Answer, src)
	if err == nil {
		return nil
	}
	u, tr := cfg.URL.String(), cfg.Transport
	var se *client.StatusError
	switch cause := client.Cause(err); {
	case cause == "refused":
		return &PreflightError{fmt.Sprintf("cannot connect to %s: connection refused (is the server running?)", u), err}
	case errors.As(err, &se) && se.Code == 404:
		return &PreflightError{fmt.Sprintf("%s answers 404 on /answer: it does not serve answers over %s (was it started with another -transport?)", u, tr), err}
	case cause == "timeout":
		return &PreflightError{fmt.Sprintf("no answer from %s within %s", u, cfg.Answer.ConnectTimeout), err}
	default:
		return &PreflightError{fmt.Sprintf("trial %s answer from %s failed: %v", tr, u, err), err}
	}
}

// answerCounts mirrors an answer run's chunk checks in the feed's delivery
// counts, chunk for tick, so that what reads those (bench's correctness
// column and flags, -strict) sees the answers' faults too: lost chunks are
// missing, stray messages malformed, unfinished answers stalled.
func answerCounts(a *result.Answer) result.Counts {
	k := a.Chunks
	return result.Counts{Expected: k.Expected, Received: k.Received, Duplicates: k.Duplicated, OutOfOrder: k.Reordered,
		Missing: k.Lost, WrongContent: k.Wrong, Malformed: k.Malformed + k.Stray, Stalled: a.Answers.Unfinished}
}
