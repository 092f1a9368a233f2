package bus

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// nextEvent reads a watch's next event, or fails after 10 s.
func nextEvent[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatalf("%s: the watch ended", what)
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no event in 10 s", what)
	}
	var zero T
	return zero
}

// nextStream is nextEvent of a stream watch.
func nextStream(t *testing.T, ch <-chan StreamEvent, what string) StreamEvent {
	t.Helper()
	return nextEvent(t, ch, what)
}

// TestWatchFollowsRepublished: a watch of a bucket that republishes gives
// the records there were, then every change, and switches from its
// consumer to the republished subject; a republished record lost on the
// way still arrives, whether a later record shows the hole or nothing
// follows it (the tail check).
func TestWatchFollowsRepublished(t *testing.T) {
	var switched atomic.Int64
	var dropKey atomic.Value
	dropKey.Store("")
	republishTests.switched = func(b string) {
		if b == BucketStreams {
			switched.Add(1)
		}
	}
	republishTests.drop = func(m *nats.Msg) bool {
		k := dropKey.Load().(string)
		return k != "" && m.Header.Get(jetstream.SubjectHeader) == "$KV."+BucketStreams+"."+EncodePath(k)
	}
	republishTests.check = 100 * time.Millisecond
	t.Cleanup(func() {
		republishTests.switched, republishTests.drop, republishTests.check = nil, nil, 0
		republishTests.failGets.Store(0)
	})
	r, ctx := startTestRegistry(t, time.Second)
	if !r.republish[BucketStreams] || !r.republish[BucketOwners] || !r.republish[BucketSources] || r.republish[BucketState] {
		t.Fatalf("buckets republishing: %v", r.republish)
	}
	claim := func(path string) uint64 {
		t.Helper()
		rev, err := r.ClaimStream(ctx, &StreamInfo{Path: path, Generation: 1, Edge: "e1"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	claim("live/a")
	revB := claim("live/b")
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := r.WatchStreams(wctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"live/a", "live/b"} {
		if ev := nextStream(t, ch, "current records"); ev.Path != want || ev.Info == nil {
			t.Fatalf("current records: got %+v, want %s", ev, want)
		}
	}
	// Changes: a create, an update and a delete.
	claim("live/c")
	if _, err := r.UpdateStream(ctx, &StreamInfo{Path: "live/a", Generation: 2, Edge: "e1"}, 1); err != nil {
		t.Fatal(err)
	}
	if err := r.ReleaseStream(ctx, "live/b", revB); err != nil {
		t.Fatal(err)
	}
	if ev := nextStream(t, ch, "create"); ev.Path != "live/c" || ev.Info == nil {
		t.Fatalf("create: %+v", ev)
	}
	if ev := nextStream(t, ch, "update"); ev.Path != "live/a" || ev.Info == nil || ev.Info.Generation != 2 {
		t.Fatalf("update: %+v", ev)
	}
	if ev := nextStream(t, ch, "delete"); ev.Path != "live/b" || ev.Info != nil {
		t.Fatalf("delete: %+v", ev)
	}
	if switched.Load() != 1 {
		t.Fatalf("the watch switched to the republished subject %d times, want 1", switched.Load())
	}

	// A lost record shown by the next one's sequence, while the bucket's
	// leader does not answer at first (a bus node gone, its successor
	// elected a moment later).
	republishTests.failGets.Store(2)
	dropKey.Store("live/d")
	claim("live/d")
	dropKey.Store("")
	claim("live/e")
	for _, want := range []string{"live/d", "live/e"} {
		if ev := nextStream(t, ch, "after a loss"); ev.Path != want || ev.Info == nil {
			t.Fatalf("after a loss: got %+v, want %s", ev, want)
		}
	}
	if n := republishTests.failGets.Load(); n > 0 {
		t.Fatalf("%d failing gets left: the loss was not mended through the leader", n)
	}
	// A lost record that nothing follows: the tail check finds it.
	dropKey.Store("live/f")
	claim("live/f")
	if ev := nextStream(t, ch, "a lost last record"); ev.Path != "live/f" || ev.Info == nil {
		t.Fatalf("a lost last record: %+v", ev)
	}
	select {
	case ev := <-ch:
		t.Fatalf("an event more: %+v", ev)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestWatchOfABucketFromBefore: a bucket created without republishing (by
// an older build) is watched through a consumer, as before.
func TestWatchOfABucketFromBefore(t *testing.T) {
	t.Parallel()
	js, ctx := startJS(t)
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: BucketStreams, History: 1, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	r := mustStart(ctx, t, &Registry{JS: js})
	if r.republish[BucketStreams] || !r.republish[BucketOwners] {
		t.Fatalf("buckets republishing: %v", r.republish)
	}
	ch, err := r.WatchStreams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ClaimStream(ctx, &StreamInfo{Path: "live/a", Generation: 1, Edge: "e1"}, nil); err != nil {
		t.Fatal(err)
	}
	if ev := nextStream(t, ch, "create"); ev.Path != "live/a" || ev.Info == nil {
		t.Fatalf("create: %+v", ev)
	}
}
