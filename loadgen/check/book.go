package check

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/pushbench/pushbench/servers/feed"
)

// chunkSize is how many seqs one book chunk holds. A chunk is filled once and
// never changes afterwards, which is what lets readers go without a lock.
const chunkSize = 4096

// Limits on how far the book replays the generator for one lookup. Replaying
// costs about 30 ns per tick: the first positioning (a server that has run
// for hours) may replay up to maxFirst ticks, later growth up to maxAhead
// past what is stored. A seq beyond that cannot be verified: it is not a tick
// this run could plausibly have seen, and replaying up to it could take
// minutes (a faulty server can send any number).
const (
	maxFirst = 200_000_000
	maxAhead = 20_000_000
)

type chunk struct {
	sym   [chunkSize]uint16 // symbol index (feed.MaxSymbols fits)
	price [chunkSize]int64  // cents
}

// snapshot is an immutable view of the stored chunks: chunks[i] holds seqs
// (first+i)*chunkSize .. (first+i+1)*chunkSize-1 (seq 0 does not exist).
type snapshot struct {
	first  uint64
	chunks []*chunk
}

func (s *snapshot) get(seq uint64) (int, int64, bool) {
	ci := seq / chunkSize
	if s == nil || ci < s.first || ci-s.first >= uint64(len(s.chunks)) {
		return 0, 0, false
	}
	c := s.chunks[ci-s.first]
	o := seq % chunkSize
	return int(c.sym[o]), c.price[o], true
}

// Book knows which (sym, price) the deterministic feed publishes at every
// seq, by replaying feed.Generator with the server's seed and symbol count.
// One Book serves every client of a process: it is safe for concurrent use,
// and a lookup of a seq already stored takes no lock (the chunk list is
// published through an atomic pointer and chunks never change once stored).
//
// Memory grows with the span of seqs looked up: 10 bytes per tick, so a run
// of 10 minutes at 10,000 ticks/s costs 60 MB.
type Book struct {
	seed    uint64
	names   []string
	index   map[string]int
	snap    atomic.Pointer[snapshot]
	mu      sync.Mutex // serialises growth
	gen     *feed.Generator
	genNext uint64 // the seq gen.Next returns next
}

// NewBook returns the book of the feed with this seed and symbol count.
func NewBook(seed uint64, symbols int) (*Book, error) {
	if symbols < 1 || symbols > feed.MaxSymbols {
		return nil, fmt.Errorf("book: symbols %d out of range 1..%d", symbols, feed.MaxSymbols)
	}
	names := feed.SymbolNames(symbols)
	index := make(map[string]int, len(names))
	for i, n := range names {
		index[n] = i
	}
	return &Book{seed: seed, names: names, index: index}, nil
}

// Names returns the feed's symbol names, indexed like symbol indices. Do not modify.
func (b *Book) Names() []string { return b.names }

// Index returns the index of a symbol name. string(name) in a map index
// does not allocate.
func (b *Book) Index(name []byte) (int, bool) {
	i, ok := b.index[string(name)]
	return i, ok
}

// right returns the symbol index of the tick at seq when the feed
// publishes sym (its name as sent) at price (cents) there; ok is false
// otherwise, and for a nil Book. It spares the checker the name-to-index
// map lookup for the ticks that are right, nearly all of them: names are
// unique, so a name equal to the name of seq's symbol has that index.
func (b *Book) right(seq uint64, sym []byte, price int64) (idx int, ok bool) {
	if b == nil {
		return 0, false
	}
	bsym, bprice, ok := b.Lookup(seq)
	if !ok || bprice != price || b.names[bsym] != string(sym) {
		return 0, false
	}
	return bsym, true
}

// Filter builds the filter of a subscription to these symbol names; an empty
// list is the nil filter (all symbols).
func (b *Book) Filter(symbols []string) (feed.Filter, error) {
	if len(symbols) == 0 {
		return nil, nil
	}
	sel := make([]int, 0, len(symbols))
	for _, s := range symbols {
		i, ok := b.index[s]
		if !ok {
			return nil, fmt.Errorf("unknown symbol %q (the feed has %d symbols: %s ... %s)", s, len(b.names), b.names[0], b.names[len(b.names)-1])
		}
		sel = append(sel, i)
	}
	return feed.NewFilter(len(b.names), sel), nil
}

// Lookup returns the symbol index and price (cents) the feed publishes at
// seq. ok is false for seq 0 and for a seq too far from anything seen to be
// replayed (see maxAhead).
func (b *Book) Lookup(seq uint64) (sym int, price int64, ok bool) {
	if seq == 0 {
		return 0, 0, false
	}
	if sym, price, ok = b.snap.Load().get(seq); ok {
		return sym, price, true
	}
	if !b.grow(seq) {
		return 0, 0, false
	}
	return b.snap.Load().get(seq)
}

// grow stores the chunk holding seq, replaying the generator from wherever
// it stands (or from seq 1 when seq lies before everything stored).
func (b *Book) grow(seq uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.snap.Load()
	if _, _, ok := s.get(seq); ok {
		return true // another goroutine grew it meanwhile
	}
	ci := seq / chunkSize
	switch {
	case s == nil:
		if seq > maxFirst {
			return false
		}
		b.position(ci * chunkSize)
		s = &snapshot{first: ci}
	case ci < s.first:
		// Before everything stored: rebuild the missing prefix from seq 1.
		// Rare (a client whose first tick precedes every other client's).
		if s.first*chunkSize-ci*chunkSize > maxAhead {
			return false
		}
		saveGen, saveNext := b.gen, b.genNext
		b.position(ci * chunkSize)
		prefix := make([]*chunk, 0, s.first-ci+uint64(len(s.chunks)))
		for c := ci; c < s.first; c++ {
			prefix = append(prefix, b.fill())
		}
		b.gen, b.genNext = saveGen, saveNext
		s = &snapshot{first: ci, chunks: append(prefix, s.chunks...)}
		b.snap.Store(s)
		return true
	default:
		if (ci-s.first-uint64(len(s.chunks)))*chunkSize > maxAhead {
			return false
		}
	}
	chunks := s.chunks
	for s.first+uint64(len(chunks)) <= ci {
		chunks = append(chunks, b.fill())
	}
	b.snap.Store(&snapshot{first: s.first, chunks: chunks})
	return true
}

// position makes gen.Next return seq max(next, 1), replaying a fresh
// generator from seq 1 when the current one is already past it.
func (b *Book) position(next uint64) {
	if b.gen == nil || b.genNext > next {
		g, err := feed.NewGenerator(b.seed, len(b.names))
		if err != nil {
			panic(err) // symbols were validated in NewBook
		}
		b.gen, b.genNext = g, 1
	}
	for b.genNext < next {
		b.gen.Next()
		b.genNext++
	}
}

// fill generates the chunk that starts at genNext (a multiple of chunkSize;
// slot 0 of chunk 0 is seq 0, which does not exist and stays zero).
func (b *Book) fill() *chunk {
	c := new(chunk)
	for o := b.genNext % chunkSize; o < chunkSize; o++ {
		t := b.gen.Next()
		c.sym[o], c.price[o] = uint16(t.Sym), t.Price
		b.genNext++
	}
	return c
}

// Count returns how many seqs in [from, to] carry a symbol that filter
// selects (every seq when filter is nil). ok is false when part of the range
// cannot be replayed.
func (b *Book) Count(from, to uint64, filter feed.Filter) (n int64, ok bool) {
	if from == 0 {
		from = 1
	}
	if to < from {
		return 0, true
	}
	if filter == nil {
		return int64(to - from + 1), true
	}
	for seq := from; seq <= to; {
		if _, _, ok := b.Lookup(seq); !ok {
			return n, false
		}
		s := b.snap.Load()
		c := s.chunks[seq/chunkSize-s.first]
		end := min(to, (seq/chunkSize+1)*chunkSize-1)
		for o, last := seq%chunkSize, end%chunkSize; o <= last; o++ {
			if filter.Match(int(c.sym[o])) {
				n++
			}
		}
		seq = end + 1
	}
	return n, true
}
