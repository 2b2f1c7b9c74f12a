package feed

import (
	"fmt"
	"math/rand/v2"
)

// knownSymbols are used first, in this order; larger feeds add synthetic
// names (S0033, S0034, ...) so that any -symbols count is deterministic.
var knownSymbols = [...]string{
	"AAPL", "MSFT", "GOOG", "AMZN", "META", "NVDA", "TSLA", "NFLX",
	"AMD", "INTC", "ORCL", "IBM", "CSCO", "ADBE", "CRM", "QCOM",
	"TXN", "AVGO", "PYPL", "UBER", "SHOP", "SNOW", "PLTR", "ABNB",
	"JPM", "BAC", "GS", "MS", "V", "MA", "KO", "PEP",
}

// MaxSymbols bounds -symbols so that a filter bitset and the price table stay small.
const MaxSymbols = 10000

// SymbolNames returns the n symbol names of a feed with n symbols.
func SymbolNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		if i < len(knownSymbols) {
			names[i] = knownSymbols[i]
		} else {
			names[i] = fmt.Sprintf("S%04d", i+1)
		}
	}
	return names
}

// Tick is one price update. Price is in cents so that it always has exactly
// two decimals on the wire. TS is the scheduled publish time in Unix
// nanoseconds (zero until a Feed stamps it).
type Tick struct {
	Seq   uint64
	Sym   int // index into the feed's symbol names
	Price int64
	TS    int64
}

// Generator produces the deterministic (seq, sym, price) sequence for a seed
// and a symbol count. The rate does not enter: it only sets TS, so a client
// can replay a generator to know which seq carries which symbol.
// A Generator is not safe for concurrent use.
type Generator struct {
	rng    *rand.Rand
	prices []int64
	seq    uint64
}

// NewGenerator returns a generator positioned before seq 1.
func NewGenerator(seed uint64, symbols int) (*Generator, error) {
	if symbols < 1 || symbols > MaxSymbols {
		return nil, fmt.Errorf("feed: symbols %d out of range 1..%d", symbols, MaxSymbols)
	}
	g := &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), prices: make([]int64, symbols)}
	for i := range g.prices {
		g.prices[i] = 5000 + g.rng.Int64N(45000) // 50.00 .. 499.99
	}
	return g, nil
}

// Next returns the next tick (TS left zero).
func (g *Generator) Next() Tick {
	g.seq++
	sym := g.rng.IntN(len(g.prices))
	p := g.prices[sym]
	// A random walk of at most ±0.5% per tick, at least one cent, floored at 1.00.
	step := int64(float64(p) * 0.005 * (2*g.rng.Float64() - 1))
	if step == 0 {
		step = 1 - 2*int64(g.rng.IntN(2))
	}
	p += step
	if p < 100 {
		p = 100
	}
	g.prices[sym] = p
	return Tick{Seq: g.seq, Sym: sym, Price: p}
}
