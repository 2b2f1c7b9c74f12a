// Package feed is the single source of ticks for every transport.
//
// A Generator turns (seed, symbols) into a deterministic sequence of
// (seq, sym, price); a Feed stamps tick seq with its scheduled time
// start + seq/rate and publishes it into a Ring, a bounded history shared by
// every subscriber. Each tick is encoded once into a Frame that carries the
// exact bytes every transport sends (the JSON, the SSE event, the WebSocket
// prepared message), so the comparison measures transports, not encoders.
//
// Concurrency: one goroutine (Feed.Run) publishes; any number of goroutines
// read the Ring through their own cursor with Ring.Read and wait for news with
// Ring.WaitFor. Publishing never waits for a reader: a reader that falls behind
// the oldest retained tick gets a Gap, never an unbounded queue. A publish
// wakes only the readers it concerns (their cursor and their symbols), so a
// subscriber that waits for ticks far ahead or for symbols not being
// published costs the publisher nothing.
package feed
