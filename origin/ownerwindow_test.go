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
	testkit.Slow(t) // liveness grace of six origins and a crash (~11 s)
	checkLeaks(t)
	b := startBus(t, time.Minute)
	// A node TTL of 400 ms failed this test 3 times in 10 on a 2-core
	// machine under -race with three busy loops beside it (and once in CI):
	// the first-ranked origin, starved, did not claim within the TTL that
	// separates it from the second, which then claimed, as it should, or a
	// starved origin's heartbeat lapsed. With a second, 10 in 10 passed.
	const ttl = time.Second
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
	// The first two of the partition share its paths (bus.OwnerShare).
	first := bus.OwnerOrder(names, path)[0]
	testkit.WaitFor(t, 5*time.Second, first+" claims", serving(byName[first], path))
	// The origins outside the window never try: after three node TTLs
	// per rank the last one would have, as TestClaimFallsBackInRankOrder shows.
	time.Sleep(time.Duration(len(names)) * ttl)
	for _, n := range names {
		if c := testutil.ToFloat64(byName[n].m.claimConflicts); c != 0 {
			t.Errorf("%s (rank %d) tried to claim a stream owned already: %v conflicts", n, slices.Index(names, n), c)
		}
	}
	byName[first].shutdown(stopAbandon)
	taker := bus.OwnerOrder(slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == first }), path)[0]
	testkit.WaitFor(t, 10*time.Second, taker+" takes over", serving(byName[taker], path))
	testkit.WaitFor(t, 5*time.Second, names[bus.OwnerWindow]+" joins the window", func() bool {
		return follows(names[bus.OwnerWindow]) && !follows(names[bus.OwnerWindow+1])
	})
	own, err := reg.OwnerOf(ctx, path)
	if err != nil || own.Node != taker {
		t.Fatalf("owner record %+v, %v", own, err)
	}
}

// TestOnFailover: an origin that takes a dead origin's stream over reports
// it (OnFailover) with the dead one's name and the new epoch; one that
// claims a stream another origin released just before (a drain: a
// hand-over) reports it too; a fresh claim reports nothing.
func TestOnFailover(t *testing.T) {
	testkit.Slow(t) // liveness grace, a crash and a drain (~4 s)
	checkLeaks(t)
	b := startBus(t, time.Second)
	type failover struct {
		node, path, previous string
		epoch                uint64
	}
	got := make(chan failover, 10)
	report := func(node string) func(*Origin) {
		return func(o *Origin) {
			o.NodeTTL = 400 * time.Millisecond
			o.OnFailover = func(path, previous string, epoch uint64) { got <- failover{node, path, previous, epoch} }
		}
	}
	first := b.origin("f1", report("f1"))
	claimServed(t, b, first)
	select {
	case f := <-got:
		t.Fatalf("a fresh claim reported a failover: %+v", f)
	default:
	}
	second := b.origin("f2", report("f2"))
	time.Sleep(time.Second) // past f2's grace: it knows f1
	first.shutdown(stopAbandon)
	testkit.WaitFor(t, 10*time.Second, "f2 takes over", serving(second, camPath))
	next := func(what string) failover {
		select {
		case f := <-got:
			return f
		case <-time.After(5 * time.Second):
			t.Fatalf("no failover reported for the %s", what)
		}
		return failover{}
	}
	f := next("take-over")
	if f.node != "f2" || f.path != camPath || f.previous != "f1" || f.epoch == 0 {
		t.Fatalf("take-over reported as %+v", f)
	}
	third := b.origin("f3", report("f3"))
	time.Sleep(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := second.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "f3 claims the released stream", serving(third, camPath))
	f2 := next("hand-over")
	if f2.node != "f3" || f2.previous != "f2" || f2.epoch <= f.epoch {
		t.Fatalf("hand-over reported as %+v (the take-over's epoch %d)", f2, f.epoch)
	}
}
