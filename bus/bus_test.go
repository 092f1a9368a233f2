package bus

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamgrid/streamgrid/internal/media"
)

func startBus(t *testing.T, maxPayload int32) (*Server, *nats.Conn) {
	t.Helper()
	s := &Server{Host: "127.0.0.1", Port: -1, MaxPayload: maxPayload, Log: slog.New(slog.DiscardHandler)}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	nc, err := Connect(ConnOptions{URLs: []string{s.ClientURL()}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return s, nc
}

func startRegistry(t *testing.T, nc *nats.Conn, ttl time.Duration) *Registry {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	r := &Registry{JS: js, LeaseTTL: ttl}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// startTestRegistry starts a bus and a registry on it with the given lease
// TTL, and returns the registry with a context for the test's calls (20 s,
// cancelled at cleanup).
func startTestRegistry(t *testing.T, ttl time.Duration) (*Registry, context.Context) {
	t.Helper()
	_, nc := startBus(t, 0)
	r := startRegistry(t, nc, ttl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return r, ctx
}

// mediaAcross subscribes to path through to and publishes on it through
// from until a packet arrives: interest crosses a route a moment after the
// subscription. After 20 s it fails, with detail() (a log) in the message.
func mediaAcross(t *testing.T, from, to *nats.Conn, path string, detail func() string) {
	t.Helper()
	got := make(chan *media.Packet, 1)
	sub, err := SubscribeMedia(to, path, func(p *media.Packet) {
		select {
		case got <- p:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	pub := NewPublisher(from, path)
	deadline := time.Now().Add(20 * time.Second)
	for seq := uint64(1); ; seq++ {
		if err := pub.Publish(&media.Packet{Codec: media.CodecH264, Seq: seq, Payload: []byte{1}}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no media on %s across the route; %s", path, detail())
		}
	}
}

func TestPublishChunkedOverNATS(t *testing.T) {
	t.Parallel()
	// A 1 KiB max payload forces a 100 KB keyframe into ~100 messages; every one must arrive whole.
	_, nc := startBus(t, 1024)
	got := make(chan *media.Packet, 16)
	sub, err := SubscribeMedia(nc, "live/cam.1", func(p *media.Packet) { got <- p })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	pub := NewPublisher(nc, "live/cam.1")
	payload := bytes.Repeat([]byte("keyframe"), 12500)
	for i := range 3 {
		if err := pub.Publish(&media.Packet{Codec: media.CodecH264, Flags: media.FlagKeyframe, Seq: uint64(i), PTS: int64(i) * 3600, Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		select {
		case p := <-got:
			if p.Seq != uint64(i) || !bytes.Equal(p.Payload, payload) {
				t.Fatalf("packet %d: seq %d, %d bytes", i, p.Seq, len(p.Payload))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("packet %d not received", i)
		}
	}
	if pub.Chunked.Load() != 3 || sub.Incomplete() != 0 {
		t.Fatalf("chunked %d incomplete %d", pub.Chunked.Load(), sub.Incomplete())
	}
}

func TestGOPRequest(t *testing.T) {
	t.Parallel()
	_, nc := startBus(t, 1024)
	gop := []*media.Packet{
		{Codec: media.CodecH264, Flags: media.FlagKeyframe, Seq: 10, Payload: bytes.Repeat([]byte{7}, 5000)},
		{Codec: media.CodecAAC, Track: 1, Seq: 11, Payload: []byte{1}},
		{Codec: media.CodecH264, Seq: 12, Payload: []byte{2}},
	}
	sub, err := ServeGOP(nc, "live/x", func() []*media.Packet { return gop })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	got, err := FetchGOP(ctx, nc, "live/x")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Seq != 10 || len(got[0].Payload) != 5000 || got[2].Seq != 12 {
		t.Fatalf("got %d packets", len(got))
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if _, err := FetchGOP(ctx2, nc, "live/none"); !errors.Is(err, ErrNoGOP) {
		t.Fatalf("unknown stream: %v", err)
	}
}

func TestStreamClaim(t *testing.T) {
	t.Parallel()
	r, ctx := startTestRegistry(t, 2*time.Second)
	info := &StreamInfo{Path: "live/cam1", Generation: 1, Edge: "e1", Tracks: []TrackInfo{{Codec: media.CodecH264, ClockRate: 90000, SPS: []byte{1}}}}
	rev, err := r.ClaimStream(ctx, info, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ClaimStream(ctx, info, nil); !errors.Is(err, ErrStreamBusy) {
		t.Fatalf("second claim: %v", err)
	}
	got, err := r.Stream(ctx, "live/cam1")
	if err != nil || got.Edge != "e1" || got.Tracks[0].ClockRate != 90000 {
		t.Fatalf("Stream: %+v %v", got, err)
	}
	if rev, err = r.UpdateStream(ctx, info, rev); err != nil {
		t.Fatal(err)
	}
	if err := r.ReleaseStream(ctx, "live/cam1", rev); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Stream(ctx, "live/cam1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after release: %v", err)
	}
	if _, err := r.ClaimStream(ctx, info, nil); err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	// A record whose edge instance is dead is no obstacle: the claim
	// removes it (compare-and-set) and creates its own; a live one is.
	next := *info
	next.Edge, next.Instance = "e2", "i2"
	alive := func(*StreamInfo) bool { return false }
	if _, err := r.ClaimStream(ctx, &next, alive); !errors.Is(err, ErrStreamBusy) {
		t.Fatalf("claim over a live edge's record: %v", err)
	}
	dead := func(i *StreamInfo) bool { return i.Edge == "e1" }
	if _, err := r.ClaimStream(ctx, &next, dead); err != nil {
		t.Fatalf("claim over a dead edge's record: %v", err)
	}
	if got, err := r.Stream(ctx, "live/cam1"); err != nil || got.Edge != "e2" || got.Instance != "i2" {
		t.Fatalf("after the claim over a dead record: %+v %v", got, err)
	}
}

// TestSourceTakeOver: a camera lease is not renewed; standby edges list
// themselves on it without changing its holder or epoch; a dead holder's
// lease is taken over by compare-and-set with its epoch + 1 (one of two
// standby edges with the same revision wins); the dead holder can no
// longer release it.
func TestSourceTakeOver(t *testing.T) {
	t.Parallel()
	r, ctx := startTestRegistry(t, time.Second)
	held, err := r.AcquireSource(ctx, "cams/a", Owner{Node: "e1", Instance: "i1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AcquireSource(ctx, "cams/a", Owner{Node: "e2", Instance: "i2"}); !errors.Is(err, ErrOwned) {
		t.Fatalf("second acquire: %v", err)
	}
	cur, rev, err := r.Source(ctx, "cams/a")
	if err != nil {
		t.Fatal(err)
	}
	if rev, err = r.StandBySource(ctx, "cams/a", *cur, rev, "e2"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.StandBySource(ctx, "cams/a", *cur, rev-1, "e3"); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("stand by at a stale revision: %v", err)
	}
	cur, rev, err = r.Source(ctx, "cams/a")
	if err != nil || cur.Node != "e1" || cur.Epoch != held.Owner.Epoch || !slices.Equal(cur.Standby, []string{"e2"}) {
		t.Fatalf("after stand-by: %+v %v", cur, err)
	}
	won, err := r.TakeOverSource(ctx, "cams/a", *cur, rev, Owner{Node: "e2", Instance: "i2"})
	if err != nil || won.Owner.Epoch != held.Owner.Epoch+1 {
		t.Fatalf("take-over: %+v %v", won, err)
	}
	if _, err := r.TakeOverSource(ctx, "cams/a", *cur, rev, Owner{Node: "e3", Instance: "i3"}); !errors.Is(err, ErrOwned) {
		t.Fatalf("second take-over with the same revision: %v", err)
	}
	if err := r.ReleaseSource(ctx, held); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("the dead holder's release: %v", err)
	}
	if err := r.ReleaseSource(ctx, won); err != nil {
		t.Fatalf("the new holder's release: %v", err)
	}
	if _, _, err := r.Source(ctx, "cams/a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after release: %v", err)
	}
}

// TestOwnerTakeOverAndFencing: owner records do not expire; a dead node's
// record is taken over by compare-and-set with its epoch + 1, a second
// survivor holding the same old revision loses, and the old owner waking
// up can neither rewrite the record nor write the playlist state.
func TestOwnerTakeOverAndFencing(t *testing.T) {
	t.Parallel()
	r, ctx := startTestRegistry(t, time.Second)
	events, err := r.WatchOwners(ctx)
	if err != nil {
		t.Fatal(err)
	}

	a, err := r.AcquireOwner(ctx, "live/cam1", Owner{Node: "origin-a", Instance: "i1", HTTP: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AcquireOwner(ctx, "live/cam1", Owner{Node: "origin-b"}); !errors.Is(err, ErrOwned) {
		t.Fatalf("second acquire: %v", err)
	}
	// One write per claim: the create, whose revision is the epoch.
	ev := <-events
	if ev.Owner == nil || ev.Owner.Node != "origin-a" || ev.Owner.Instance != "i1" || ev.Owner.Epoch != a.Owner.Epoch || ev.Rev != a.Rev || a.Owner.Epoch != a.Rev {
		t.Fatalf("event %+v (lease %+v)", ev, a)
	}
	select {
	case ev := <-events:
		t.Fatalf("a second write for one claim: %+v", ev)
	case <-time.After(100 * time.Millisecond):
	}
	if err := r.PutState(ctx, "live/cam1", PlaylistState{NextMSN: 20, Epoch: a.Owner.Epoch, Node: "origin-a"}); err != nil {
		t.Fatal(err)
	}
	// Owner records never expire: the bucket has no TTL.
	if kv, err := r.JS.KeyValue(ctx, BucketOwners); err != nil {
		t.Fatal(err)
	} else if st, err := kv.Status(ctx); err != nil || st.TTL() != 0 {
		t.Fatalf("owners bucket TTL: %v %v", st, err)
	}
	// origin-a is dead: two survivors race from the record they saw.
	b, err := r.TakeOverOwner(ctx, "live/cam1", *ev.Owner, ev.Rev, Owner{Node: "origin-b", Instance: "i2"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Owner.Epoch != a.Owner.Epoch+1 {
		t.Fatalf("take-over epoch %d after %d", b.Owner.Epoch, a.Owner.Epoch)
	}
	if _, err := r.TakeOverOwner(ctx, "live/cam1", *ev.Owner, ev.Rev, Owner{Node: "origin-c", Instance: "i3"}); !errors.Is(err, ErrOwned) {
		t.Fatalf("second take-over: %v", err)
	}
	if ev := <-events; ev.Owner == nil || ev.Owner.Node != "origin-b" || ev.Owner.Epoch != b.Owner.Epoch || ev.Rev != b.Rev {
		t.Fatalf("take-over event %+v", ev)
	}
	st, _, err := r.State(ctx, "live/cam1")
	if err != nil || st.NextMSN != 20 {
		t.Fatalf("state: %+v %v", st, err)
	}
	if err := r.PutState(ctx, "live/cam1", PlaylistState{NextMSN: 25, Discontinuity: 1, Epoch: b.Owner.Epoch, Node: "origin-b"}); err != nil {
		t.Fatal(err)
	}
	// The paused old owner wakes up: its record write and its state write must both be refused.
	if err := r.RenewOwner(ctx, a); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("stale rewrite: %v", err)
	}
	if err := r.ReleaseOwner(ctx, a); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("stale release: %v", err)
	}
	if err := r.PutState(ctx, "live/cam1", PlaylistState{NextMSN: 21, Epoch: a.Owner.Epoch, Node: "origin-a"}); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale state write: %v", err)
	}
	st, _, _ = r.State(ctx, "live/cam1")
	if st.NextMSN != 25 || st.Node != "origin-b" {
		t.Fatalf("state overwritten: %+v", st)
	}
	if err := r.ReleaseOwner(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := r.OwnerOf(ctx, "live/cam1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("owner after release: %v", err)
	}
	// A new claim after the release still gets a higher epoch.
	c, err := r.AcquireOwner(ctx, "live/cam1", Owner{Node: "origin-c", Instance: "i3"})
	if err != nil || c.Owner.Epoch <= b.Owner.Epoch {
		t.Fatalf("claim after release: %+v %v (take-over epoch %d)", c, err, b.Owner.Epoch)
	}
	// A dead node's record of an ended stream is dropped by revision.
	if err := r.DropOwner(ctx, "live/cam1", b.Rev); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("drop at a stale revision: %v", err)
	}
	if err := r.DropOwner(ctx, "live/cam1", c.Rev); err != nil {
		t.Fatal(err)
	}
}
