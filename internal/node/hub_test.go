package node

import (
	"context"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/internal/testmedia"
)

// TestAllInOneFeedsAnOriginElsewhere: the all-in-one's edge hands packets to
// its own origin in process, and still puts them on NATS for an origin of
// another node that owns the stream. The all-in-one's origin drains, the
// other origin claims the stream, fetches the GOP and packages every packet
// that follows it: a viewer of its playlists gets an unbroken stream.
//
// The all-in-one's embedded bus has role users (it connects as "run"
// itself) and the other origin joins as "origin".
func TestAllInOneFeedsAnOriginElsewhere(t *testing.T) {
	testkit.Slow(t)
	c := allInOneConfig(t)
	c.Bus.Server.Users = clusterUsers
	oc := roleConfig(t, "far-origin")
	c.Gossip.SecretKey = oc.Gossip.SecretKey
	aio := startNode(t, c, RoleRun)
	a := aio.Addrs()

	oc.Bus.Replicas = 1
	// The registry's settings are the cluster's: the same on every node.
	oc.Bus.LeaseTTL = c.Bus.LeaseTTL
	oc.Bus.Password = rolePassword(RoleOrigin)
	oc.Bus.URLs = []string{a.NATS}
	oc.Gossip.Seeds = []string{a.Gossip}
	if err := oc.Validate(); err != nil {
		t.Fatal(err)
	}
	far := startNode(t, oc, RoleOrigin)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cam := &testmedia.Camera{URL: "rtsp://" + a.RTSP + "/live/far", Transport: "tcp", StampSEI: true}
	if err := cam.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer cam.Close()

	// Whoever claimed it first, the all-in-one's origin hands it over.
	deadline := time.Now().Add(20 * time.Second)
	for len(far.origin.Streams()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the other origin never claimed the stream")
		}
		if len(aio.origin.Streams()) > 0 {
			dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
			aio.origin.Drain(dctx)
			dcancel()
		}
		time.Sleep(50 * time.Millisecond)
	}

	s := playChecked(t, ctx, "http://"+far.Addrs().Origin+"/live/far/index.m3u8", 75)
	if err := s.Err(); err != nil {
		t.Fatalf("playback through the other origin: %v", err)
	}
}
