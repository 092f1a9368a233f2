package hlscache

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeDemander answers from a set of on-demand paths and counts the asks.
type fakeDemander struct {
	mu       sync.Mutex
	onDemand map[string]bool
	asks     map[string]int
}

func (f *fakeDemander) Demand(_ context.Context, path string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asks[path]++
	return f.onDemand[path], nil
}

func (f *fakeDemander) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asks[path]
}

func TestDemandTableRateLimits(t *testing.T) {
	t.Parallel()
	f := &fakeDemander{onDemand: map[string]bool{"cams/od": true}, asks: map[string]int{}}
	now := time.Unix(1000, 0)
	tb := newDemandTable(f, context.Background(), "c1", func(fn func()) bool { fn(); return true })
	tb.now = func() time.Time { return now }

	steps := []struct {
		name    string
		advance time.Duration
		call    func() bool
		path    string
		want    bool // unknown's answer
		asks    int  // asks of path so far
	}{
		{"first request of an on-demand path asks", 0, nil, "cams/od", true, 1},
		{"within a second: the last answer, no ask", 300 * time.Millisecond, nil, "cams/od", true, 1},
		{"a second later: asks again", time.Second, nil, "cams/od", true, 2},
		{"unknown path: asked, not on demand", 0, nil, "live/x", false, 1},
		{"unknown path again at once: 404 without asking", 100 * time.Millisecond, nil, "live/x", false, 1},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		if got := tb.unknown(context.Background(), s.path); got != s.want {
			t.Errorf("%s: unknown = %v, want %v", s.name, got, s.want)
		}
		if n := f.count(s.path); n != s.asks {
			t.Errorf("%s: %d asks, want %d", s.name, n, s.asks)
		}
	}

	// A routed on-demand stream: repeated at most once a second while viewed.
	for range 10 {
		now = now.Add(100 * time.Millisecond)
		tb.seen("cams/od")
	}
	if n := f.count("cams/od"); n != 3 {
		t.Errorf("on-demand stream viewed for 1 s: %d asks in all, want 3", n)
	}
	// A routed ordinary stream: asked once, then every demandRecheck.
	for range 10 {
		now = now.Add(time.Second)
		tb.seen("live/plain")
	}
	if n := f.count("live/plain"); n != 1 {
		t.Errorf("ordinary stream: %d asks in 10 s, want 1", n)
	}
	now = now.Add(demandRecheck)
	tb.seen("live/plain")
	if n := f.count("live/plain"); n != 2 {
		t.Errorf("ordinary stream after the recheck interval: %d asks, want 2", n)
	}
}
