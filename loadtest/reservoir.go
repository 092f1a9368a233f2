package loadtest

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
)

// reservoir keeps a uniform random sample of at most size values out of any
// number offered (Vitter's algorithm R), so percentiles over a long run need
// bounded memory. It is safe for concurrent use.
type reservoir struct {
	mu      sync.Mutex
	size    int
	seen    uint64
	samples []float64
	max     float64
	rng     *rand.Rand
}

func newReservoir(size int, seed uint64) *reservoir {
	return &reservoir{
		size:    size,
		samples: make([]float64, 0, min(size, 1024)),
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
}

// add offers one value.
func (r *reservoir) add(v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen++
	if r.seen == 1 || v > r.max {
		r.max = v // the true maximum, even when the sample misses it
	}
	if len(r.samples) < r.size {
		r.samples = append(r.samples, v)
		return
	}
	if j := r.rng.Uint64N(r.seen); j < uint64(r.size) {
		r.samples[j] = v
	}
}

// percentiles summarises the values offered so far.
func (r *reservoir) percentiles() Percentiles {
	r.mu.Lock()
	samples := slices.Clone(r.samples)
	seen, maxV := r.seen, r.max
	r.mu.Unlock()
	p := computePercentiles(samples)
	p.Count = seen
	if seen > 0 {
		p.Max = round3(maxV)
	}
	return p
}

// reset empties the reservoir (for per-interval progress figures).
func (r *reservoir) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = 0
	r.max = 0
	r.samples = r.samples[:0]
}

// computePercentiles returns the nearest-rank p50, p95, p99 and the maximum of
// values (which it sorts); Count is len(values).
func computePercentiles(values []float64) Percentiles {
	if len(values) == 0 {
		return Percentiles{}
	}
	slices.Sort(values)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(values)))) - 1
		return round3(values[max(0, min(i, len(values)-1))])
	}
	return Percentiles{
		P50:   rank(50),
		P95:   rank(95),
		P99:   rank(99),
		Max:   round3(values[len(values)-1]),
		Count: uint64(len(values)),
	}
}

// round3 keeps three decimals (microseconds when the unit is milliseconds):
// more is noise in a report.
func round3(v float64) float64 {
	return math.Round(v*1000) / 1000
}
