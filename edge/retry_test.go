package edge

import (
	"testing"
	"time"
)

func TestAcceptBackoffDoublesTo1s(t *testing.T) {
	b := newAcceptBackoff()
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i, w := range want {
		if got := b.NextBackOff(); got != w*time.Millisecond {
			t.Fatalf("pause %d = %v, want %v", i, got, w*time.Millisecond)
		}
	}
}

// TestPullBackoffFullJitter: before attempt n the wait is a draw in
// [0, min(hi, lo·2^n)] that reaches the upper half of that range, and
// Reset starts over.
func TestPullBackoffFullJitter(t *testing.T) {
	for _, tc := range []struct{ lo, hi time.Duration }{
		{time.Second, 30 * time.Second},
		{20 * time.Millisecond, 200 * time.Millisecond},
		{100 * time.Millisecond, 100 * time.Millisecond},
		{3 * time.Millisecond, 7 * time.Millisecond}, // odd: halving rounds down
	} {
		const attempts, runs = 8, 300
		ceiling := make([]time.Duration, attempts)
		for n := range ceiling {
			ceiling[n] = min(tc.lo<<n, tc.hi)
		}
		highest := make([]time.Duration, attempts)
		b := newPullBackoff(tc.lo, tc.hi)
		for range runs {
			b.Reset()
			for n := range attempts {
				d := b.NextBackOff()
				if d < 0 || d > ceiling[n] {
					t.Fatalf("lo %v hi %v: wait before attempt %d = %v, want within [0, %v]", tc.lo, tc.hi, n, d, ceiling[n])
				}
				highest[n] = max(highest[n], d)
			}
		}
		for n := range attempts {
			// Each of the 300 draws misses the upper half with probability ½.
			if highest[n] < ceiling[n]/2 {
				t.Errorf("lo %v hi %v: attempt %d: highest of %d waits %v, want some above %v", tc.lo, tc.hi, n, runs, highest[n], ceiling[n]/2)
			}
		}
	}
}
