package transcode

import (
	"testing"
	"time"
)

// TestRestartBackoffSequence pins the pauses before restart attempts 1, 2,
// 3, ...: BackoffMin doubling up to BackoffMax, without jitter, the same
// from the policy itself and from Transcoder.backoff.
func TestRestartBackoffSequence(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		lo, hi time.Duration
		want   []time.Duration
	}{
		{DefaultBackoffMin, DefaultBackoffMax, []time.Duration{250 * ms, 500 * ms, 1000 * ms, 2000 * ms, 4000 * ms, 5000 * ms, 5000 * ms, 5000 * ms}},
		{20 * ms, 80 * ms, []time.Duration{20 * ms, 40 * ms, 80 * ms, 80 * ms}},
		{300 * ms, time.Second, []time.Duration{300 * ms, 600 * ms, 1000 * ms, 1000 * ms}},
		{time.Second, time.Second, []time.Duration{time.Second, time.Second, time.Second}},
	} {
		b := newRestartBackoff(tc.lo, tc.hi)
		tr := &Transcoder{BackoffMin: tc.lo, BackoffMax: tc.hi}
		for i, w := range tc.want {
			if got := b.NextBackOff(); got != w {
				t.Errorf("lo %v hi %v: pause %d = %v, want %v", tc.lo, tc.hi, i, got, w)
			}
			if got := tr.backoff(i + 1); got != w {
				t.Errorf("lo %v hi %v: backoff(%d) = %v, want %v", tc.lo, tc.hi, i+1, got, w)
			}
		}
		if got := tr.backoff(1000); got != tc.hi {
			t.Errorf("lo %v hi %v: backoff(1000) = %v, want the ceiling", tc.lo, tc.hi, got)
		}
	}
}
