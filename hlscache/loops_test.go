package hlscache

import (
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// The pauses between failed owner watches: after watchRetryFirst before the
// first try, they double up to watchRetryMax, exactly (no jitter).
func TestWatchBackOff(t *testing.T) {
	t.Parallel()
	b := watchBackOff()
	b.Reset()
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i, w := range want {
		if got := b.NextBackOff(); got != w {
			t.Fatalf("pause %d: %v, want %v", i+1, got, w)
		}
	}
}

func TestHandlerGate(t *testing.T) {
	t.Parallel()
	var g handlerGate
	if !g.enter() {
		t.Fatal("enter refused on an open gate")
	}
	ran := make(chan struct{})
	if !g.spawn(func() { close(ran) }) {
		t.Fatal("spawn refused on an open gate")
	}
	<-ran
	closed := make(chan struct{})
	go func() {
		g.close()
		close(closed)
	}()
	testkit.WaitFor(t, 5*time.Second, "close to begin", func() bool {
		g.mu.RLock()
		defer g.mu.RUnlock()
		return g.closed
	})
	select {
	case <-closed:
		t.Fatal("close returned while a request was in")
	default:
	}
	g.leave()
	<-closed
	if g.enter() {
		t.Fatal("enter accepted after close")
	}
	if g.spawn(func() { t.Error("task ran after close") }) {
		t.Fatal("spawn accepted after close")
	}
}

func TestWarnLimiter(t *testing.T) {
	t.Parallel()
	var l warnLimiter
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		at         time.Duration
		ok         bool
		suppressed int64
	}{
		{0, true, 0},
		{100 * time.Millisecond, false, 0},
		{900 * time.Millisecond, false, 0},
		{time.Second, true, 2},
		{time.Second, false, 0},
		{3 * time.Second, true, 1},
	} {
		n, ok := l.allow(t0.Add(tc.at))
		if ok != tc.ok || n != tc.suppressed {
			t.Errorf("at %v: allow = %d, %v; want %d, %v", tc.at, n, ok, tc.suppressed, tc.ok)
		}
	}
}
