package loadtest

import (
	"math"
	"testing"
)

// TestSchedLatency: quantiles are read from the buckets' upper bounds of
// the counts between two samples, and each interval gets its own p99.
func TestSchedLatency(t *testing.T) {
	buckets := []float64{0, 0.001, 0.01, 0.1, 1, math.Inf(1)}
	s := func(c ...uint64) schedSample {
		return schedSample{counts: c, buckets: buckets, gcCPU: float64(c[0]), totalCPU: 10 * float64(c[0])}
	}
	all := []schedSample{
		s(0, 0, 0, 0, 0),
		s(99, 0, 1, 0, 0),  // 100 waits: 99 under 1 ms, one under 100 ms
		s(99, 0, 1, 0, 50), // 50 more, every one a second or more
	}
	l := schedLatency(all)
	if l.P50MS != 1 || l.P99MS != 1000 || l.WorstP99MS != 1000 || len(l.IntervalP99MS) != 2 || l.IntervalP99MS[0] != 100 {
		t.Fatalf("%+v", l)
	}
	if l.GCCPUFraction != 0.1 {
		t.Fatalf("GC fraction %v", l.GCCPUFraction)
	}
	if got := schedLatency(all[:1]); got.P99MS != 0 || got.IntervalP99MS != nil {
		t.Fatalf("one sample: %+v", got)
	}
}
