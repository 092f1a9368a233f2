package origin

import (
	"context"
	"fmt"
	"testing"
	"time"

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
