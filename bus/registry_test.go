package bus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// startJS starts a bus and returns its JetStream, with a context for the
// test's calls.
func startJS(t *testing.T) (jetstream.JetStream, context.Context) {
	t.Helper()
	_, nc := startBus(t, 0)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return js, ctx
}

// mustStart starts r or fails the test.
func mustStart(ctx context.Context, t *testing.T, r *Registry) *Registry {
	t.Helper()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestBucketSettingsMismatch: a node whose TTLs or replicas differ from the
// buckets' refuses to start, naming the key, and leaves the buckets as they were.
func TestBucketSettingsMismatch(t *testing.T) {
	t.Parallel()
	js, ctx := startJS(t)
	mustStart(ctx, t, &Registry{JS: js, LeaseTTL: 3 * time.Second, StateTTL: time.Hour})
	same := &Registry{JS: js, LeaseTTL: 5 * time.Second, StateTTL: time.Hour}
	if err := same.Start(ctx); err != nil {
		t.Fatalf("a node with the same bucket settings (lease_ttl is pacing only): %v", err)
	}
	other := &Registry{JS: js, StateTTL: 2 * time.Hour}
	if err := other.Start(ctx); !errors.Is(err, ErrBucketMismatch) || !strings.Contains(err.Error(), "bus.state_ttl") {
		t.Fatalf("state ttl: want ErrBucketMismatch naming bus.state_ttl, got %v", err)
	}
	// The buckets still hold the first node's settings: no TTL on the
	// records held by node liveness.
	for _, b := range []string{BucketStreams, BucketSources, BucketOwners} {
		kv, err := js.KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.TTL() != 0 {
			t.Fatalf("%s has TTL %s", b, st.TTL())
		}
	}
	// A replicas mismatch (R3 asked of a one-node bus's R1 buckets).
	r3 := &Registry{JS: js, Replicas: 3, StateTTL: time.Hour}
	if err := r3.Start(ctx); !errors.Is(err, ErrBucketMismatch) || !strings.Contains(err.Error(), "bus.replicas") {
		t.Fatalf("replicas: %v", err)
	}
}

// TestBucketsFromBeforeEdgeLiveness: stream records and camera leases had
// TTLs (bus.stream_ttl, bus.lease_ttl) before edge liveness held them; such
// buckets make a node refuse to start, naming the key, as docs/cluster.md's
// upgrade step says.
func TestBucketsFromBeforeEdgeLiveness(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		bucket string
		ttl    time.Duration
		key    string
	}{
		{BucketStreams, 10 * time.Second, "bus.stream_ttl"},
		{BucketSources, 3 * time.Second, "bus.lease_ttl"},
	} {
		t.Run(tc.bucket, func(t *testing.T) {
			js, ctx := startJS(t)
			if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: tc.bucket, History: 1, TTL: tc.ttl,
				LimitMarkerTTL: tc.ttl, Storage: jetstream.FileStorage}); err != nil {
				t.Fatal(err)
			}
			r := &Registry{JS: js, StateTTL: time.Hour}
			err := r.Start(ctx)
			if !errors.Is(err, ErrBucketMismatch) || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("want ErrBucketMismatch naming %s, got %v", tc.key, err)
			}
		})
	}
}

// TestStateExpires: playlist state of a path nobody writes any more goes
// away after StateTTL, so paths used once do not fill the store.
func TestStateExpires(t *testing.T) {
	t.Parallel()
	js, ctx := startJS(t)
	r := mustStart(ctx, t, &Registry{JS: js, StateTTL: time.Second})
	if err := r.PutState(ctx, "live/once", PlaylistState{NextMSN: 3, Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	if st, _, err := r.State(ctx, "live/once"); err != nil || st.NextMSN != 3 {
		t.Fatalf("state: %+v %v", st, err)
	}
	testkit.WaitFor(t, 15*time.Second, "the state to expire", func() bool {
		_, _, err := r.State(ctx, "live/once")
		return errors.Is(err, ErrNotFound)
	})
	// A returning stream starts a new record.
	if err := r.PutState(ctx, "live/once", PlaylistState{NextMSN: 1, Epoch: 9}); err != nil {
		t.Fatal(err)
	}
}

// TestStateBucketUpgrade: a sg_state bucket from before state TTLs (none)
// gets this node's TTL instead of refusing to start.
func TestStateBucketUpgrade(t *testing.T) {
	t.Parallel()
	js, ctx := startJS(t)
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: BucketState, History: 1, Replicas: 1, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	mustStart(ctx, t, &Registry{JS: js, StateTTL: 2 * time.Hour})
	kv, _ := js.KeyValue(ctx, BucketState)
	st, err := kv.Status(ctx)
	if err != nil || st.TTL() != 2*time.Hour {
		t.Fatalf("state TTL %v %v", st.TTL(), err)
	}
}

// TestRecoverOwner: a renewal applied whose reply was lost leaves the
// lease's revision stale; RecoverOwner refreshes it while the record still
// names the holder and its epoch, and refuses once another node holds it.
func TestRecoverOwner(t *testing.T) {
	r, ctx := startTestRegistry(t, 3*time.Second)
	l, err := r.AcquireOwner(ctx, "live/a", Owner{Node: "o1"})
	if err != nil {
		t.Fatal(err)
	}
	applied := *l // the registry applies this renewal; its reply never reaches l
	if err := r.RenewOwner(ctx, &applied); err != nil {
		t.Fatal(err)
	}
	if err := r.RenewOwner(ctx, l); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renewal with a stale revision: %v", err)
	}
	if err := r.RecoverOwner(ctx, l); err != nil {
		t.Fatalf("recover: %v", err)
	}
	if l.Rev != applied.Rev {
		t.Fatalf("revision %d after recovery, want %d", l.Rev, applied.Rev)
	}
	if err := r.RenewOwner(ctx, l); err != nil {
		t.Fatalf("renewal after recovery: %v", err)
	}

	// Released and taken by another node: not ours to recover.
	if err := r.ReleaseOwner(ctx, l); err != nil {
		t.Fatal(err)
	}
	if err := r.RecoverOwner(ctx, l); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("recover a released lease: %v", err)
	}
	if _, err := r.AcquireOwner(ctx, "live/a", Owner{Node: "o2"}); err != nil {
		t.Fatal(err)
	}
	if err := r.RecoverOwner(ctx, l); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("recover a lease another node holds: %v", err)
	}
}

// TestOwnerRecordOfAFailedAcquire: an acquire whose update (the one that
// writes the epoch) failed leaves a record with epoch 0. It reads as owned
// by its node with the create's revision as the epoch, in the watch and by
// OwnerOf, so that liveness decides for it and it can be taken over: taken
// for unannounced, nobody ever owned the stream again.
func TestOwnerRecordOfAFailedAcquire(t *testing.T) {
	t.Parallel()
	js, ctx := startJS(t)
	r := mustStart(ctx, t, &Registry{JS: js, LeaseTTL: time.Second})
	kv, err := js.KeyValue(ctx, BucketOwners)
	if err != nil {
		t.Fatal(err)
	}
	half := []byte(`{"node":"o1","instance":"i1","http":"127.0.0.1:1","epoch":0}`)
	rev, err := kv.Create(ctx, EncodePath("live/half"), half)
	if err != nil {
		t.Fatal(err)
	}
	events, err := r.WatchOwners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.Path != "live/half" || ev.Owner == nil || ev.Owner.Node != "o1" || ev.Owner.Epoch != rev || ev.Rev != rev {
			t.Fatalf("watch: %+v (owner %+v), want o1 with epoch %d", ev, ev.Owner, rev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch does not show the record")
	}
	if o, err := r.OwnerOf(ctx, "live/half"); err != nil || o.Epoch != rev {
		t.Fatalf("OwnerOf: %+v, %v", o, err)
	}
	if _, err := r.AcquireOwner(ctx, "live/half", Owner{Node: "o2", Instance: "i2"}); !errors.Is(err, ErrOwned) {
		t.Fatalf("acquire over it: %v", err)
	}
	prev, _ := r.OwnerOf(ctx, "live/half")
	l, err := r.TakeOverOwner(ctx, "live/half", *prev, rev, Owner{Node: "o2", Instance: "i2"})
	if err != nil || l.Owner.Epoch != rev+1 {
		t.Fatalf("take over: %+v, %v", l, err)
	}
	// The origin whose update failed recovers its lease the same way.
	rev2, err := kv.Create(ctx, EncodePath("live/half2"), half)
	if err != nil {
		t.Fatal(err)
	}
	mine := &Lease{Key: "live/half2", Owner: Owner{Node: "o1", Instance: "i1", Epoch: rev2}}
	if err := r.RecoverOwner(ctx, mine); err != nil || mine.Rev != rev2 {
		t.Fatalf("recover: %+v, %v", mine, err)
	}
}
