package sleep

import (
	"context"
	"testing"
	"time"
)

func TestFor(t *testing.T) {
	live := context.Background()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want bool
	}{
		{"zero, live", live, 0, true},
		{"negative, live", live, -time.Second, true},
		{"zero, ended", ended, 0, false},
		{"negative, ended", ended, -time.Second, false},
		{"positive, live", live, time.Millisecond, true},
		{"positive, ended", ended, time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := For(tc.ctx, tc.d); got != tc.want {
				t.Errorf("For(%v) = %v, want %v", tc.d, got, tc.want)
			}
		})
	}
}

// TestForCancelled checks that a cancellation ends a wait that is under way.
func TestForCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() { done <- For(ctx, time.Hour) }()
	cancel()
	if <-done {
		t.Fatal("For reported true after its context ended")
	}
}

func TestUntil(t *testing.T) {
	ctx := context.Background()
	if !Until(ctx, time.Now().Add(-time.Hour)) {
		t.Error("Until(past) = false with a live context")
	}
	start := time.Now()
	if !Until(ctx, start.Add(5*time.Millisecond)) {
		t.Error("Until(soon) = false with a live context")
	}
	if time.Since(start) < 5*time.Millisecond {
		t.Error("Until returned before its time")
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if Until(ended, time.Now().Add(time.Hour)) {
		t.Error("Until = true with an ended context")
	}
}
