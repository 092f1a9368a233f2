package origin

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// TestTakeOverOnLivenessChange: a dead origin's streams are taken over on
// the liveness change itself (the records naming its instance), not on the
// next full scan: the scan here comes only every minute (lease TTL).
func TestTakeOverOnLivenessChange(t *testing.T) {
	checkLeaks(t)
	b := startBus(t, time.Minute)
	ttl := func(o *Origin) { o.NodeTTL = 300 * time.Millisecond }
	a := b.origin("a", ttl)
	_, reg := b.client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	paths := []string{"live/t1", "live/t2", "live/t3"}
	for _, p := range paths {
		claimVideo(t, ctx, reg, p)
	}
	for _, p := range paths {
		testkit.WaitFor(t, 5*time.Second, "a serves "+p, serving(a, p))
	}
	bo := b.origin("b", ttl)
	time.Sleep(time.Second) // past b's grace: it has heard a
	a.shutdown(stopAbandon) // a crash: no release
	for _, p := range paths {
		testkit.WaitFor(t, 5*time.Second, "b takes "+p+" over", serving(bo, p))
	}
}

// TestClaimsBeyondTheInFlightBound: more streams at once than an origin
// claims at a time are all claimed, the rest as claims under way finish.
func TestClaimsBeyondTheInFlightBound(t *testing.T) {
	checkLeaks(t)
	b := startBus(t, time.Minute)
	o := b.origin("o1", nil)
	_, reg := b.client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 2*maxClaimsInFlight + 5
	for i := range n {
		claimVideo(t, ctx, reg, fmt.Sprintf("live/many%03d", i))
	}
	testkit.WaitFor(t, 20*time.Second, "every stream claimed", func() bool { return len(o.Streams()) == n })
}

// TestClaimFallsBackInRankOrder: when the origins a path ranks first do
// not claim it (here they drain), the others try in rank order a node TTL
// apart, not all at once: the third-ranked origin claims two TTLs after
// the stream appeared, not one. (Every origin trying one TTL after the
// first was a claim per origin per stream when the bus was slower than a
// TTL to show the first's claim: docs/cluster.md.)
func TestClaimFallsBackInRankOrder(t *testing.T) {
	checkLeaks(t)
	b := startBus(t, time.Minute)
	const ttl = 400 * time.Millisecond
	const path = "live/ranked"
	names := bus.OwnerOrder([]string{"r1", "r2", "r3"}, path)
	var origins []*Origin
	for _, n := range names {
		origins = append(origins, b.origin(n, func(o *Origin) { o.NodeTTL = ttl }))
	}
	time.Sleep(3 * ttl) // past every origin's grace: each has heard the others
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, o := range origins[:2] {
		if err := o.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	_, reg := b.client()
	start := time.Now()
	claimVideo(t, ctx, reg, path)
	testkit.WaitFor(t, 10*time.Second, names[2]+" claims "+path, serving(origins[2], path))
	if took := time.Since(start); took < 2*ttl {
		t.Fatalf("the third-ranked origin claimed %v after the stream appeared: before the second-ranked one's turn ended (%v)", took, 2*ttl)
	}
}

// TestClaimSlotsShareTheCluster: an origin's claims under way are its share
// of the cluster's bound, within [minClaimsInFlight, maxClaimsInFlight].
func TestClaimSlotsShareTheCluster(t *testing.T) {
	for _, tc := range []struct{ others, want int }{{0, maxClaimsInFlight}, {9, 32}, {39, 8}, {99, minClaimsInFlight}, {999, minClaimsInFlight}} {
		c := &claimer{peers: make([]rankedPeer, tc.others), peersAt: time.Now().Add(time.Hour)}
		if got := c.claimSlots(); got != tc.want {
			t.Errorf("%d other origins: %d claims at a time, want %d", tc.others, got, tc.want)
		}
	}
}

// TestFullScansSpread: origins' full scans fall on different resyncs, so
// that origins started together do not all scan every record at once.
func TestFullScansSpread(t *testing.T) {
	seen := map[int]int{}
	for i := range 100 {
		p := fullScanPhase(fmt.Sprintf("sim-origin%04d", i+1))
		if p < 0 || p >= fullScanEvery {
			t.Fatalf("phase %d", p)
		}
		seen[p]++
	}
	for p, n := range seen {
		if n > 25 {
			t.Errorf("%d of 100 origins scan fully on resync %d of every %d", n, p, fullScanEvery)
		}
	}
	if len(seen) < fullScanEvery/2 {
		t.Errorf("100 origins' full scans fall on %d of %d resyncs", len(seen), fullScanEvery)
	}
}

// TestScanSeesADeathFirst: a scan that runs after the liveness learned of
// a death but before its event reached the claimer (a resync tick in
// between) schedules the dead node's streams itself. It used to note the
// instance dead and look at the open paths only, so the event then found
// nothing changed and the streams waited for the next full scan: the
// 3-5 s tail of the 10 000-stream re-own in docs/cluster.md.
func TestScanSeesADeathFirst(t *testing.T) {
	o := &Origin{Node: "b", Log: slog.New(slog.DiscardHandler), Registry: &bus.Registry{LeaseTTL: 3 * time.Second},
		streams: map[string]*stream{}}
	// Never started: every other node counts as dead, as a killed one does
	// once its heartbeats stop.
	o.live = &bus.Liveness{Node: "b", TTL: time.Second}
	c := &claimer{o: o}
	c.init()
	const path = "live/orphan"
	dead := bus.Owner{Node: "a", Instance: "i1"}
	c.live[path] = &bus.StreamInfo{Path: path, Edge: "e"} // no instance: holds
	c.owner[path] = ownerRecord{owner: dead, rev: 7}
	// Indexed while a was alive; held by a, so not open.
	c.index(c.byOwner, func(instanceKey) bool { return true }, instanceKey{dead.Node, dead.Instance}, path)

	c.scan(false)
	c.liveChanged("change")
	if _, ok := c.pending[path]; !ok {
		t.Fatalf("the dead origin's stream is not scheduled (pending %v)", c.pending)
	}
}
