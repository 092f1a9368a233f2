package origin

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/internal/testkit/testbus"
)

// TestDeadEdgesRecordIsGone: a stream record is held by its edge's
// liveness, never renewed. While the edge's heartbeats go on the origin
// claims the stream; once they stop, the record counts as gone: the origin
// (the only one, so first-ranked) removes it by compare-and-set, and does
// not claim a record of the dead instance written after. A record of a live
// edge stays however long nobody rewrites it.
func TestDeadEdgesRecordIsGone(t *testing.T) {
	testkit.Slow(t) // waits out several node TTLs twice (~3 s)
	b := startBus(t, time.Second)
	edgeLive := &bus.Liveness{NC: testbus.Connect(t, b.srv), Node: "edge-x", Roles: []string{bus.RoleEdge},
		TTL: 300 * time.Millisecond, Log: slog.New(slog.DiscardHandler)}
	if err := edgeLive.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(edgeLive.Close)
	o := b.origin("o1", func(o *Origin) { o.NodeTTL = 300 * time.Millisecond })
	_, reg := b.client()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	info := &bus.StreamInfo{Path: camPath, Generation: 1, Edge: "edge-x", Instance: edgeLive.Instance(),
		Tracks: []bus.TrackInfo{{ID: 0, Codec: media.CodecH264, ClockRate: 90000}}}
	if _, err := reg.ClaimStream(ctx, info, nil); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "the live edge's stream claimed", serving(o, camPath))
	time.Sleep(time.Second) // several node TTLs: the record is not renewed, and holds
	if _, err := reg.Stream(ctx, camPath); err != nil {
		t.Fatalf("a live edge's record went: %v", err)
	}

	// A record naming an older instance of the same, live edge (it redrew
	// its instance after its bus connection dropped, and is about to write
	// its records again) is not removed while the edge lives.
	const redrawn = "live/redrawn"
	stale := *info
	stale.Path, stale.Instance = redrawn, "an-older-instance"
	if _, err := reg.ClaimStream(ctx, &stale, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := reg.Stream(ctx, redrawn); err != nil {
		t.Fatalf("the record of a live edge's older instance went: %v", err)
	}

	edgeLive.Close() // the edge dies
	testkit.WaitFor(t, 10*time.Second, "the older instance's record removed once the edge died", func() bool {
		_, err := reg.Stream(ctx, redrawn)
		return errors.Is(err, bus.ErrNotFound)
	})
	testkit.WaitFor(t, 10*time.Second, "the dead edge's record removed", func() bool {
		_, err := reg.Stream(ctx, camPath)
		return errors.Is(err, bus.ErrNotFound)
	})

	// A record naming the dead instance (written late, say) is not claimed.
	const other = "live/other"
	late := *info
	late.Path = other
	if _, err := reg.ClaimStream(ctx, &late, nil); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "the late dead record removed", func() bool {
		_, err := reg.Stream(ctx, other)
		return errors.Is(err, bus.ErrNotFound)
	})
	if _, err := reg.OwnerOf(ctx, other); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("a dead edge's stream was claimed: %v", err)
	}
}
