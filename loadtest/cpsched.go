package loadtest

import (
	"runtime/metrics"
	"slices"
)

// What the Go scheduler did to the simulated nodes: every node is a
// goroutine of this process, so a heartbeat's echo waits in the run queue
// behind everything else runnable. The report gives the scheduling latency
// (how long goroutines waited, runnable, for a CPU) so that a run whose
// nodes lapse says whether they were starved.

const (
	schedLatencyMetric = "/sched/latencies:seconds"
	gcCPUMetric        = "/cpu/classes/gc/total:cpu-seconds"
	totalCPUMetric     = "/cpu/classes/total:cpu-seconds"
)

// schedSample is one reading of the scheduler's histogram and the GC's CPU.
type schedSample struct {
	counts   []uint64
	buckets  []float64
	gcCPU    float64
	totalCPU float64
}

func readSched() schedSample {
	ms := []metrics.Sample{{Name: schedLatencyMetric}, {Name: gcCPUMetric}, {Name: totalCPUMetric}}
	metrics.Read(ms)
	var s schedSample
	if ms[0].Value.Kind() == metrics.KindFloat64Histogram {
		h := ms[0].Value.Float64Histogram()
		s.counts, s.buckets = slices.Clone(h.Counts), h.Buckets
	}
	if ms[1].Value.Kind() == metrics.KindFloat64 {
		s.gcCPU = ms[1].Value.Float64()
	}
	if ms[2].Value.Kind() == metrics.KindFloat64 {
		s.totalCPU = ms[2].Value.Float64()
	}
	return s
}

// SchedLatency is the scheduling latency of the simulator's goroutines, in
// milliseconds: quantiles of the histogram's buckets (their upper bounds),
// and the worst p99 of any sampling interval (cpSampleEvery).
type SchedLatency struct {
	P50MS         float64 `json:"p50_ms"`
	P99MS         float64 `json:"p99_ms"`
	P999MS        float64 `json:"p999_ms"`
	WorstP99MS    float64 `json:"worst_interval_p99_ms"`
	GCCPUFraction float64 `json:"gc_cpu_fraction"`
	// IntervalP99MS is each sampling interval's p99, in order: when the
	// simulator starved.
	IntervalP99MS []float64 `json:"interval_p99_ms"`
}

// quantile is the upper bound of the bucket holding quantile q of the
// counts from a to b (b later), in milliseconds.
func schedQuantile(a, b schedSample, q float64) float64 {
	if len(b.counts) == 0 || len(a.counts) != len(b.counts) {
		return 0
	}
	var total uint64
	for i := range b.counts {
		total += b.counts[i] - a.counts[i]
	}
	if total == 0 {
		return 0
	}
	want := uint64(q * float64(total))
	var n uint64
	for i := range b.counts {
		n += b.counts[i] - a.counts[i]
		if n > want {
			hi := b.buckets[i+1]
			if hi > 1e9 { // the last bucket is open: its lower bound
				hi = b.buckets[i]
			}
			return round3(hi * 1000)
		}
	}
	return 0
}

// schedLatency sums up samples (in order) from a to b.
func schedLatency(all []schedSample) SchedLatency {
	if len(all) < 2 {
		return SchedLatency{}
	}
	a, b := all[0], all[len(all)-1]
	l := SchedLatency{P50MS: schedQuantile(a, b, 0.5), P99MS: schedQuantile(a, b, 0.99), P999MS: schedQuantile(a, b, 0.999)}
	for i := 1; i < len(all); i++ {
		q := schedQuantile(all[i-1], all[i], 0.99)
		l.IntervalP99MS = append(l.IntervalP99MS, q)
		l.WorstP99MS = max(l.WorstP99MS, q)
	}
	if d := b.totalCPU - a.totalCPU; d > 0 {
		l.GCCPUFraction = round3((b.gcCPU - a.gcCPU) / d)
	}
	return l
}
