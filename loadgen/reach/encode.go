package reach

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// The encoding, before base64 (standard, padded):
//
//	'R' 1                          magic and version
//	uvarint lo, uvarint hi-lo+1    the window (0 0: empty)
//	uvarint dropped
//	per seq with something owed, in seq order:
//	  uvarint seq-prev-1           prev starts at lo-1
//	  uvarint owed, uvarint n
//	  if n > 0: uvarint max (µs), uvarint buckets,
//	            per bucket uvarint index-prevIndex-1 (prevIndex starts at -1), uvarint count
//
// About 2 bytes per bucket: a run of 200 seqs with 50 buckets each is 20 KB.
const (
	magic   = 'R'
	version = 1
	// maxOwed bounds one seq's owed count in a decoded set, so that merging
	// up to 256 sets cannot overflow the uint32 counters.
	maxOwed = 1 << 24
)

var errTrunc = errors.New("truncated")

// Encode returns the set in the compact text form a result file carries.
func (s *Set) Encode() string {
	b := []byte{magic, version}
	lo, hi, ok := s.Window()
	if !ok {
		b = binary.AppendUvarint(b, 0)
		b = binary.AppendUvarint(b, 0)
	} else {
		b = binary.AppendUvarint(b, lo)
		b = binary.AppendUvarint(b, hi-lo+1)
	}
	b = binary.AppendUvarint(b, uint64(s.dropped))
	prev := lo - 1
	for i := range s.entries {
		e := &s.entries[i]
		b = binary.AppendUvarint(b, e.seq-prev-1)
		prev = e.seq
		b = binary.AppendUvarint(b, uint64(e.owed))
		b = binary.AppendUvarint(b, uint64(e.n))
		if e.n == 0 {
			continue
		}
		b = binary.AppendUvarint(b, uint64(e.max))
		// Entries that repeat an index (overflowed counts) are summed.
		var idx []uint32
		var cnt []uint64
		for _, p := range e.b {
			if k := len(idx); k > 0 && idx[k-1] == p>>countBits {
				cnt[k-1] += uint64(p & countMask)
				continue
			}
			idx, cnt = append(idx, p>>countBits), append(cnt, uint64(p&countMask))
		}
		b = binary.AppendUvarint(b, uint64(len(idx)))
		pi := int64(-1)
		for j := range idx {
			b = binary.AppendUvarint(b, uint64(int64(idx[j])-pi-1))
			b = binary.AppendUvarint(b, cnt[j])
			pi = int64(idx[j])
		}
	}
	return base64.StdEncoding.EncodeToString(b)
}

// Decode reads a set written by Encode. It checks everything a merge and
// the figures rely on (seqs inside the window and increasing, bucket
// indices increasing and in range, counts adding up to the arrivals, the
// maximum inside the last bucket, no more arrivals than owed) and refuses
// anything else: result files are outside input.
func Decode(text string) (*Set, error) {
	raw, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("decode reach: %w", err)
	}
	s, err := decode(raw)
	if err != nil {
		return nil, fmt.Errorf("decode reach: %w", err)
	}
	return s, nil
}

func decode(raw []byte) (*Set, error) {
	if len(raw) < 2 || raw[0] != magic {
		return nil, errors.New("not reach data")
	}
	if raw[1] != version {
		return nil, fmt.Errorf("version %d, want %d", raw[1], version)
	}
	d := decoder{b: raw[2:]}
	lo, n := d.uvarint(), d.uvarint()
	s := &Set{dropped: int64(d.limit(1<<62, "dropped"))}
	if d.err != nil {
		return nil, d.err
	}
	switch {
	case n == 0:
		if lo != 0 {
			return nil, errors.New("empty window with a start")
		}
	case n > MaxSeqs:
		return nil, fmt.Errorf("window of %d seqs, at most %d", n, MaxSeqs)
	case lo == 0 || lo > ^uint64(0)-n:
		return nil, errors.New("window out of range")
	default:
		s.lo, s.hi = lo, lo+n-1
	}
	prev := lo - 1
	for len(d.b) > 0 && d.err == nil {
		if n == 0 {
			return nil, errors.New("seqs in an empty window")
		}
		skip := d.uvarint()
		if d.err == nil && (prev >= s.hi || skip > s.hi-prev-1) {
			return nil, errors.New("seq outside the window")
		}
		var e entry
		e.seq = prev + skip + 1
		prev = e.seq
		e.owed = uint32(d.limit(maxOwed, "owed"))
		e.n = uint32(d.limit(uint64(e.owed), "arrivals (more than owed)"))
		if d.err == nil && e.owed == 0 {
			return nil, fmt.Errorf("seq %d owes nothing", e.seq)
		}
		if e.n > 0 {
			e.max = uint32(d.limit(1<<32-1, "max"))
			nb := d.limit(uint64(e.n), "buckets")
			if d.err == nil && nb == 0 {
				return nil, fmt.Errorf("seq %d: arrivals without buckets", e.seq)
			}
			idx, sum := int64(-1), uint64(0)
			for range nb {
				if d.err != nil {
					break
				}
				step := d.limit(numBuckets, "bucket")
				c := d.limit(uint64(e.n), "bucket count")
				idx += int64(step) + 1
				if d.err == nil && (idx >= numBuckets || c == 0) {
					return nil, fmt.Errorf("seq %d: bad bucket", e.seq)
				}
				sum += c
				if d.err == nil {
					e.add(uint32(idx), uint32(c))
				}
			}
			if d.err == nil && sum != uint64(e.n) {
				return nil, fmt.Errorf("seq %d: bucket counts add up to %d, not %d", e.seq, sum, e.n)
			}
			if d.err == nil && bucketOf(uint64(e.max)) != uint32(idx) {
				return nil, fmt.Errorf("seq %d: maximum %d µs outside the last bucket", e.seq, e.max)
			}
		}
		if d.err == nil {
			s.entries = append(s.entries, e)
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	return s, nil
}

// decoder reads uvarints, keeping the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errTrunc
		return 0
	}
	d.b = d.b[n:]
	return v
}

// limit reads a uvarint that must not exceed most.
func (d *decoder) limit(most uint64, what string) uint64 {
	v := d.uvarint()
	if d.err == nil && v > most {
		d.err = fmt.Errorf("%s %d exceeds %d", what, v, most)
	}
	return v
}
