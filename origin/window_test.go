package origin

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// heldBytes sums the seconds of its span up to its newest add, so a muxer
// no longer fed still counts what it holds.
func TestHeldBytes(t *testing.T) {
	var h heldBytes
	t0 := time.Unix(1_000_000, 0)
	for s := range 20 {
		h.add(t0.Add(time.Duration(s)*time.Second), 100)
		h.add(t0.Add(time.Duration(s)*time.Second+500*time.Millisecond), 50)
	}
	for _, c := range []struct {
		span int64
		want int64
	}{{1, 150}, {9, 9 * 150}, {20, 20 * 150}, {30, 20 * 150}, {1000, 20 * 150}} {
		if got := h.sum(c.span); got != c.want {
			t.Errorf("sum(%d) = %d, want %d", c.span, got, c.want)
		}
	}
	// 100 s later a slot is reused: the old second's bytes are gone.
	h.add(t0.Add(100*time.Second), 7)
	if got := h.sum(9); got != 7 {
		t.Errorf("after a pause, sum(9) = %d, want 7", got)
	}
}

// An origin whose windows hold its memory budget claims no further stream,
// counts it, and serves what it has.
func TestMemoryBudgetStopsClaims(t *testing.T) {
	checkLeaks(t)
	c := loadClip(t)
	b := startBus(t, 3*time.Second)
	o := b.origin("o1", func(o *Origin) { o.MemoryBudget = 64 << 10 })
	startLive(t, b, o, c, 30*time.Second)
	testkit.WaitFor(t, 10*time.Second, "the window to hold its budget", func() bool {
		over, _ := o.overBudget()
		return over
	})
	if v := testutil.ToFloat64(o.windowGauge()); v < 64<<10 { // the builtin muxer: no overhead
		t.Fatalf("streamgrid_origin_window_bytes %v with a full window", v)
	}
	_, reg := b.client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	claimVideo(t, ctx, reg, "live/other")
	testkit.WaitFor(t, 5*time.Second, "a claim refused for the budget", func() bool {
		return testutil.ToFloat64(o.m.overBudget) > 0
	})
	if st, ok := streamStatus(o, "live/other"); ok {
		t.Fatalf("claimed a stream over the budget: %+v", st)
	}
	if _, ok := streamStatus(o, camPath); !ok {
		t.Fatal("the stream it had is gone")
	}
}

// TestHousekeepInterval: a stream housekeeps every tenth of its idle
// timeout, within 100 ms and 1 s (the default 10 s gives 1 s: a ticker at
// 100 ms per owned stream was 10 wake-ups a second each).
func TestHousekeepInterval(t *testing.T) {
	for _, c := range []struct{ idle, want time.Duration }{
		{10 * time.Second, time.Second},
		{2 * time.Minute, time.Second},
		{5 * time.Second, 500 * time.Millisecond},
		{time.Second, 100 * time.Millisecond},
		{300 * time.Millisecond, 100 * time.Millisecond},
	} {
		if got := housekeepInterval(c.idle); got != c.want {
			t.Errorf("idle_timeout %v: housekeeping every %v, want %v", c.idle, got, c.want)
		}
	}
}
