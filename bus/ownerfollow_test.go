package bus

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// pathsIn returns n paths whose owner records fall in partition p, and
// n whose records do not.
func pathsIn(p, n int) (in, out []string) {
	for i := 0; len(in) < n || len(out) < n; i++ {
		path := fmt.Sprintf("live/cam%d", i)
		if OwnerPart(path) == p {
			if len(in) < n {
				in = append(in, path)
			}
		} else if len(out) < n {
			out = append(out, path)
		}
	}
	return in, out
}

// nextOwner is nextEvent of an owner watch.
func nextOwner(t *testing.T, ch <-chan OwnerEvent, what string) OwnerEvent {
	t.Helper()
	return nextEvent(t, ch, what)
}

// noOwner checks that no owner event comes for a while.
func noOwner(t *testing.T, ch <-chan OwnerEvent, what string) {
	t.Helper()
	select {
	case ev := <-ch:
		t.Fatalf("%s: unexpected event %+v", what, ev)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestOwnerPartMatchesTheBus: the bus republishes an owner record on the
// partition OwnerPart computes (the server's partition transform), for
// every path a test of 300 gives.
func TestOwnerPartMatchesTheBus(t *testing.T) {
	t.Parallel()
	js, ctx := startJS(t)
	r := mustStart(ctx, t, &Registry{JS: js})
	if !r.ownerParts {
		t.Fatal("a new owners bucket does not republish by partition")
	}
	got := make(chan *nats.Msg, 1000)
	sub, err := js.Conn().ChanSubscribe(RepublishPrefix+BucketOwners+".*.*", got)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		path := fmt.Sprintf("cams/site %d/cam-%d", i%7, i)
		if _, err := r.AcquireOwner(ctx, path, Owner{Node: "o1", Instance: "i1"}); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			want := RepublishPrefix + BucketOwners + "." + strconv.Itoa(OwnerPart(path)) + "." + EncodePath(path)
			if m.Subject != want {
				t.Fatalf("%q republished on %s, OwnerPart says %s", path, m.Subject, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q: nothing republished", path)
		}
	}
}

// TestOwnerFollowPartitions: following one partition passes on its
// records only; a partition joined is read on request; a partition left
// sends nothing more; following every partition again replays the rest.
func TestOwnerFollowPartitions(t *testing.T) {
	t.Parallel()
	js, ctx := startJS(t)
	r := mustStart(ctx, t, &Registry{JS: js})
	const p1, p2 = 17, 2048
	in1, out1 := pathsIn(p1, 2)
	in2, _ := pathsIn(p2, 1)
	o := Owner{Node: "o1", Instance: "i1"}
	// A record before the watch: the full watch's replay has it.
	if _, err := r.AcquireOwner(ctx, in1[0], o); err != nil {
		t.Fatal(err)
	}
	f, err := r.FollowOwners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev := nextOwner(t, f.Events(), "replay"); ev.Path != in1[0] || ev.Owner == nil || ev.Rev == 0 {
		t.Fatalf("replay: %+v", ev)
	}
	want := make([]bool, OwnerParts)
	want[p1] = true
	if added, err := f.Follow(want); err != nil || len(added) != 0 {
		t.Fatalf("narrowing from every partition: added %v, %v (want none: all known)", added, err)
	}
	if f.FollowsAll() || !f.Follows(p1) || f.Follows(p2) {
		t.Fatal("Follows disagrees with the set")
	}
	// A record outside: nothing. Inside: passed on.
	if _, err := r.AcquireOwner(ctx, out1[0], o); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AcquireOwner(ctx, in2[0], o); err != nil {
		t.Fatal(err)
	}
	noOwner(t, f.Events(), "records of other partitions")
	l, err := r.AcquireOwner(ctx, in1[1], o)
	if err != nil {
		t.Fatal(err)
	}
	if ev := nextOwner(t, f.Events(), "followed"); ev.Path != in1[1] || ev.Owner == nil || ev.Rev != l.Rev {
		t.Fatalf("followed: %+v (rev %d)", ev, l.Rev)
	}
	// Join p2: reported as added; Read brings its record, and a path
	// without a record an event without an Owner.
	want2 := append([]bool(nil), want...)
	want2[p2] = true
	added, err := f.Follow(want2)
	if err != nil || len(added) != 1 || added[0] != p2 {
		t.Fatalf("joining %d: added %v, %v", p2, added, err)
	}
	none, _ := pathsIn(p2, 2)
	f.Read([]string{in2[0], none[1]})
	if ev := nextOwner(t, f.Events(), "read"); ev.Path != in2[0] || ev.Owner == nil {
		t.Fatalf("read: %+v", ev)
	}
	if ev := nextOwner(t, f.Events(), "read of none"); ev.Path != none[1] || ev.Owner != nil {
		t.Fatalf("read of none: %+v", ev)
	}
	// A read of a record passed on already comes again (its reader may
	// have forgotten it), once.
	f.Read([]string{in2[0]})
	if ev := nextOwner(t, f.Events(), "read again"); ev.Path != in2[0] || ev.Owner == nil {
		t.Fatalf("read again: %+v", ev)
	}
	// Leave p1: its changes stop.
	if _, err := f.Follow(want[:0:0]); err != nil { // wrong length: ignored, stays as it is
		t.Fatal(err)
	}
	only2 := make([]bool, OwnerParts)
	only2[p2] = true
	if _, err := f.Follow(only2); err != nil {
		t.Fatal(err)
	}
	late := pathsFirst(p1, in1)
	if _, err := r.AcquireOwner(ctx, late, o); err != nil {
		t.Fatal(err)
	}
	noOwner(t, f.Events(), "a partition left")
	// Every partition again: the full watch replays every record not
	// passed on already (in2[0]'s was).
	if _, err := f.Follow(nil); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 4 {
		ev := nextOwner(t, f.Events(), "replay of every record")
		t.Logf("replayed %s", ev.Path)
		seen[ev.Path] = true
	}
	noOwner(t, f.Events(), "a record passed on twice")
	for _, p := range []string{in1[0], in1[1], out1[0], late} {
		if !seen[p] {
			t.Fatalf("replay lacks %s: %v", p, seen)
		}
	}
}

// pathsFirst is a path of partition p other than the ones given.
func pathsFirst(p int, not []string) string {
	in, _ := pathsIn(p, len(not)+1)
	return in[len(not)]
}

// TestOwnerFollowResyncAfterADrop: a message dropped on the way (a full
// queue counts a drop on its subscription) makes the watch read the bucket
// again, and the lost record comes; a record it passed on already does not
// come twice.
func TestOwnerFollowResyncAfterADrop(t *testing.T) {
	js, ctx := startJS(t)
	r := mustStart(ctx, t, &Registry{JS: js})
	const p = 99
	in, _ := pathsIn(p, 2)
	f, err := r.FollowOwners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]bool, OwnerParts)
	want[p] = true
	if _, err := f.Follow(want); err != nil {
		t.Fatal(err)
	}
	o := Owner{Node: "o1", Instance: "i1"}
	if _, err := r.AcquireOwner(ctx, in[0], o); err != nil {
		t.Fatal(err)
	}
	if ev := nextOwner(t, f.Events(), "first record"); ev.Path != in[0] {
		t.Fatalf("first record: %+v", ev)
	}
	drop := func(m *nats.Msg) bool {
		if m.Header.Get(jetstream.SubjectHeader) != "$KV."+BucketOwners+"."+EncodePath(in[1]) {
			return false
		}
		f.mu.Lock()
		f.dropped++ // as nats.go counts a message its full queue dropped
		f.mu.Unlock()
		return true
	}
	ownerFollowTests.drop.Store(&drop)
	defer ownerFollowTests.drop.Store(nil)
	if _, err := r.AcquireOwner(ctx, in[1], o); err != nil {
		t.Fatal(err)
	}
	ev := nextOwner(t, f.Events(), "the lost record, read again")
	if ev.Path != in[1] || ev.Owner == nil {
		t.Fatalf("after the drop: %+v", ev)
	}
	noOwner(t, f.Events(), "the resync's copy of a record passed on")
}

// OwnerPart hashes the encoded key as keyPart does, for paths that keep
// their bytes and paths that are escaped.
func TestOwnerPartOfEncodedKey(t *testing.T) {
	for _, p := range []string{"live/cam1", "a", "", "cams/site 3/é", "x.y~z", "UPPER-lower_09"} {
		if got, want := OwnerPart(p), keyPart(EncodePath(p)); got != want {
			t.Errorf("OwnerPart(%q) = %d, keyPart(EncodePath) = %d", p, got, want)
		}
	}
}

// TestOwnerPlaceMatchesOwnerOrder: the place an origin computes for itself
// from hashes is its index in OwnerOrder, for every origin of clusters of
// 1 to 12 and many paths; and the first two of a partition share its
// paths, the others keep the partition's order.
func TestOwnerPlaceMatchesOwnerOrder(t *testing.T) {
	var names []string
	var hashes []uint64
	for i := range 12 {
		names = append(names, fmt.Sprintf("origin-%d", i))
		hashes = append(hashes, HashName(names[i]))
	}
	for n := 1; n <= len(names); n++ {
		for k := range 400 {
			path := fmt.Sprintf("cam/%d", k)
			order := OwnerOrder(names[:n], path)
			for i, name := range names[:n] {
				others := slices.Delete(slices.Clone(hashes[:n]), i, i+1)
				if got, want := OwnerPlace(hashes[i], others, path), slices.Index(order, name); got != want {
					t.Fatalf("%d origins, %s: %s places itself %d, OwnerOrder %d (%v)", n, path, name, got, want, order)
				}
			}
		}
	}
	in, _ := pathsIn(7, 40)
	byPart := slices.Clone(names)
	slices.SortFunc(byPart, func(a, b string) int { return cmp.Compare(OwnerRank(b, in[0]), OwnerRank(a, in[0])) })
	first := map[string]int{}
	for _, path := range in {
		order := OwnerOrder(names, path)
		first[order[0]]++
		if !slices.Equal(order[OwnerShare:], byPart[OwnerShare:]) || !slices.Contains(byPart[:OwnerShare], order[0]) {
			t.Fatalf("%s: order %v, the partition's %v", path, order, byPart)
		}
	}
	if len(first) != OwnerShare {
		t.Errorf("the partition's %d paths went first to %v, not to both of its first two %v", len(in), first, byPart[:2])
	}
}
