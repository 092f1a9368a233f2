package hlscache

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/gossip"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// An owner that stalls (a paused process, a host gone without closing its
// connections) leaves a blocking reload unanswered; when the owner watch
// names the origin that took the stream over, the request is asked again
// of it at once instead of waiting out the upstream deadline (here 10 s).
func TestStalledOwnerRequestMovesToNewOwner(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Cache) { c.UpstreamTimeout, c.BlockingHold = 5*time.Second, 5*time.Second })
	const playlist = "/live/cam1/video1_stream.m3u8"
	e.origin.set(playlist, []byte(llPlaylist))
	l := e.own("live/cam1")
	if r := e.get(playlist); r.status != 200 {
		t.Fatalf("first owner: %d", r.status)
	}

	o2 := newFakeOrigin(t, "origin2")
	o2.set(playlist, []byte(llPlaylist+"#new-owner\n"))
	g2 := &gossip.Node{Name: "origin2", BindAddr: "127.0.0.1", Seeds: []string{e.originGossip.Addr()},
		Meta: gossip.Meta{Role: "origin", HTTP: o2.addr()}, Log: quiet}
	if err := g2.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g2.Shutdown)
	testkit.WaitFor(t, 10*time.Second, "cache gossip sees origin2", func() bool {
		_, ok := e.cacheGossip.Member("origin2")
		return ok
	})

	release := e.origin.holdAll() // the owner stalls: connections open, no answer
	defer close(release)
	held := make(chan response, 1)
	e.getAsync(playlist+"?_HLS_msn=8", held)
	testkit.WaitFor(t, 5*time.Second, "the reload reached the stalled owner", func() bool { return e.origin.count(playlist) == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	moved := time.Now()
	if _, err := e.reg.TakeOverOwner(ctx, "live/cam1", l.Owner, l.Rev, bus.Owner{Node: "origin2", HTTP: o2.addr()}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-held:
		took := time.Since(moved)
		t.Logf("answered %v after the take-over", took.Round(time.Millisecond))
		if r.status != 200 || !strings.HasSuffix(r.body, "#new-owner\n") {
			t.Fatalf("held reload: %d %q", r.status, r.body)
		}
		if took > 2*time.Second {
			t.Fatalf("answered %v after the take-over", took)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("the reload still waits for the stalled owner 4 s after the take-over")
	}
	if got := metricValue(e.cache.m.rerouted); got != 1 {
		t.Errorf("rerouted %v, want 1", got)
	}
	if got := o2.count(playlist); got == 0 {
		t.Error("the new owner was never asked")
	}
}
