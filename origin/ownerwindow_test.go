package origin

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// TestOwnerWindow: with more live origins than bus.OwnerWindow, an
// origin follows the owner records of the partitions it ranks among the
// first OwnerWindow for: the first-ranked claims a new stream and the
// origins outside the window neither follow its record nor try to claim
// it. When the owner dies the next-ranked takes the stream over, and the
// next origin in rank order joins the window: it reads the record (it
// would take the stream over should the ones before it die too).
func TestOwnerWindow(t *testing.T) {
	testkit.Slow(t) // liveness grace of six origins and a crash (~5 s)
	checkLeaks(t)
	b := startBus(t, time.Minute)
	const ttl = 400 * time.Millisecond
	const path = "live/windowed"
	part := bus.OwnerPart(path)
	names := make([]string, bus.OwnerWindow+2)
	for i := range names {
		names[i] = fmt.Sprintf("w%d", i+1)
	}
	slices.SortFunc(names, func(x, y string) int { return cmp.Compare(bus.OwnerRank(y, path), bus.OwnerRank(x, path)) })
	byName := map[string]*Origin{}
	for _, n := range names {
		byName[n] = b.origin(n, func(o *Origin) { o.NodeTTL = ttl })
	}
	follows := func(n string) bool { return byName[n].follow.Load().Follows(part) }
	testkit.WaitFor(t, 10*time.Second, "the windows narrowed", func() bool {
		for i, n := range names {
			if follows(n) != (i < bus.OwnerWindow) {
				return false
			}
		}
		return true
	})
	_, reg := b.client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	claimVideo(t, ctx, reg, path)
	testkit.WaitFor(t, 5*time.Second, names[0]+" claims", serving(byName[names[0]], path))
	// The origins outside the window never try: after three node TTLs
	// per rank the last one would have, as TestClaimFallsBackInRankOrder shows.
	time.Sleep(time.Duration(len(names)) * ttl)
	for _, n := range names {
		if c := testutil.ToFloat64(byName[n].m.claimConflicts); c != 0 {
			t.Errorf("%s (rank %d) tried to claim a stream owned already: %v conflicts", n, slices.Index(names, n), c)
		}
	}
	byName[names[0]].shutdown(stopAbandon)
	testkit.WaitFor(t, 10*time.Second, names[1]+" takes over", serving(byName[names[1]], path))
	testkit.WaitFor(t, 5*time.Second, names[bus.OwnerWindow]+" joins the window", func() bool {
		return follows(names[bus.OwnerWindow]) && !follows(names[bus.OwnerWindow+1])
	})
	own, err := reg.OwnerOf(ctx, path)
	if err != nil || own.Node != names[1] {
		t.Fatalf("owner record %+v, %v", own, err)
	}
}
