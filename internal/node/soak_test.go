package node

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/loadtest"
)

// TestSoakAllInOne runs an all-in-one node under a steady load of synthetic
// cameras and viewers (the loadtest package, over real RTSP and LL-HLS) for
// about 75 s, sampling the process's goroutines and open file descriptors
// every 2 s. It fails when either keeps growing once the load is steady,
// and when the node does not give back what the load held after it ended:
// goroutines and descriptors back near their level before the load, and the
// cache's LRU empty once its objects can no longer be requested. Nothing is
// judged on time. Skipped with -short.
func TestSoakAllInOne(t *testing.T) {
	testkit.Slow(t) // soak: 75 s of load
	c := allInOneConfig(t)
	n := startNode(t, c, RoleRun)
	a := n.Addrs()

	type sample struct {
		at         time.Duration
		goroutines int
		fds        int
	}
	take := func(began time.Time) sample {
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("no /proc/self/fd: %v", err)
		}
		return sample{time.Since(began), runtime.NumGoroutine(), len(fds)}
	}
	before := take(time.Now())

	const duration = 75 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		rep *loadtest.Report
		err error
	}
	done := make(chan result, 1)
	began := time.Now()
	go func() {
		rep, err := loadtest.Run(ctx, loadtest.Config{
			Publish: "rtsp://" + a.RTSP + "/soak", Play: []string{"http://" + a.Cache + "/soak"},
			Cameras: 3, Viewers: 6, Duration: duration, Ramp: 5 * time.Second,
		})
		done <- result{rep, err}
	}()
	var samples []sample
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var res result
loop:
	for {
		select {
		case res = <-done:
			break loop
		case <-tick.C:
			samples = append(samples, take(began))
		}
	}
	if res.err != nil {
		t.Fatalf("load: %v", res.err)
	}
	rep := res.rep
	t.Logf("load: %d/%d cameras and %d/%d viewers ok, %d errors %v, latency p50 %.0f ms",
		rep.CamerasOK, rep.Cameras, rep.ViewersOK, rep.Viewers, rep.Errors, rep.ErrorSamples, rep.LatencyMS.P50)
	if rep.CamerasOK != rep.Cameras || rep.ViewersOK != rep.Viewers {
		t.Errorf("not every camera and viewer ran through: %+v", rep)
	}

	// Steady state: from 25 s (ramp 5 s, viewers 3 s after their camera,
	// first segments and playlists cached) to the end of the load. The
	// last samples may not be above the first ones by more than a few
	// connections' worth.
	var steady []sample
	for _, s := range samples {
		if s.at >= 25*time.Second && s.at < duration-2*time.Second {
			steady = append(steady, s)
		}
	}
	if len(steady) < 8 {
		t.Fatalf("only %d steady samples", len(steady))
	}
	median := func(ss []sample, f func(sample) int) int {
		v := make([]int, len(ss))
		for i, s := range ss {
			v[i] = f(s)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	gr := func(s sample) int { return s.goroutines }
	fd := func(s sample) int { return s.fds }
	head, tail := steady[:4], steady[len(steady)-4:]
	g0, g1 := median(head, gr), median(tail, gr)
	f0, f1 := median(head, fd), median(tail, fd)
	t.Logf("before the load: %d goroutines, %d fds; steady: %d → %d goroutines, %d → %d fds (%d samples)",
		before.goroutines, before.fds, g0, g1, f0, f1, len(steady))
	if g1 > g0+g0/10+10 {
		t.Errorf("goroutines grew under a steady load: %d → %d", g0, g1)
	}
	if f1 > f0+f0/10+6 {
		t.Errorf("open files grew under a steady load: %d → %d", f0, f1)
	}

	// After the load: streams end, their objects expire, the LRU empties.
	testkit.WaitFor(t, 90*time.Second, "the cache's LRU empty after the streams ended", func() bool {
		return testkit.MetricSum(t, n.metrics, "streamgrid_cache_lru_objects", nil) == 0 && testkit.MetricSum(t, n.metrics, "streamgrid_cache_lru_bytes", nil) == 0
	})
	// The cache's keep-alive connections to the origin are pooled for 90 s
	// after their last use (IdleConnTimeout); close them now instead of
	// waiting for that: anything left after it is held by something else.
	n.cache.Client.CloseIdleConnections()
	var after sample
	ok := false
	for range 60 {
		if after = take(began); after.goroutines <= before.goroutines+10 && after.fds <= before.fds+4 {
			ok = true
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("after the load: %d goroutines, %d fds", after.goroutines, after.fds)
	if !ok {
		var b strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Errorf("goroutines or open files not back near their level before the load (%d, %d) after a minute:\n%s",
			before.goroutines, before.fds, b.String())
	}
}
