package bus

import (
	"hash/fnv"
	"slices"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// TestLiveness: two nodes hear each other; a node that stops is dead for
// the other (its records no longer hold, Changed is poked), and a record
// naming another instance of a live node does not hold.
func TestLiveness(t *testing.T) {
	t.Parallel()
	_, nc := startBus(t, 0)
	a := &Liveness{NC: nc, Node: "a", TTL: 300 * time.Millisecond}
	b := &Liveness{NC: nc, Node: "b", TTL: 300 * time.Millisecond}
	for _, l := range []*Liveness{a, b} {
		if err := l.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
	}
	if !a.Alive() || !b.Alive() {
		t.Fatal("not alive after Start")
	}
	recB := Owner{Node: "b", Instance: b.Instance()}
	testkit.WaitFor(t, 5*time.Second, "a hears b", func() bool { return slices.Contains(a.Nodes(), "b") && a.Holds(recB) })
	if a.Holds(Owner{Node: "b", Instance: "former"}) {
		t.Fatal("a record of another instance of b holds")
	}
	if !a.Holds(Owner{Node: "a", Instance: a.Instance()}) || a.Holds(Owner{Node: "a", Instance: "former"}) {
		t.Fatal("a's own records")
	}
	seesDeath(t, a, recB, b.Close, 5*time.Second)
	b.Close() // twice is harmless
}

// seesDeath runs kill and fails unless l signals a change within d
// (signals from before are drained) after which rec no longer holds and its
// node is not listed.
func seesDeath(t *testing.T, l *Liveness, rec Owner, kill func(), d time.Duration) {
	t.Helper()
	for len(l.Changed()) > 0 {
		<-l.Changed()
	}
	kill()
	select {
	case <-l.Changed():
	case <-time.After(d):
		t.Fatalf("%s's death not signalled in %v", rec.Node, d)
	}
	if l.Holds(rec) || slices.Contains(l.Nodes(), rec.Node) {
		t.Fatalf("%s's record still holds after its death", rec.Node)
	}
}

func FuzzParseHeartbeat(f *testing.F) {
	fuzzRoundTrip(f, parseHeartbeat, heartbeat.marshal,
		"750 0123456789abcdef 123456 - origin 1",
		"750 0123456789abcdef.0a1b2c3d4e5f6071 123456 0a1b2c3d4e5f6071 origin,edge node one",
		"0 x y", "")
}

// fuzzRoundTrip fuzzes a wire-format parser: what parse accepts must come
// back the same through marshal and parse again.
func fuzzRoundTrip[T comparable](f *testing.F, parse func([]byte) (T, bool), marshal func(T) []byte, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, ok := parse(b)
		if !ok {
			return
		}
		if again, ok := parse(marshal(v)); !ok || again != v {
			t.Fatalf("%q: %+v does not round-trip: %+v %v", b, v, again, ok)
		}
	})
}

// TestLivenessRoles: one Liveness per process announces all its roles;
// NodesWith lists only the live nodes of a role (origins rank only live
// origins), and Watch gives every role of the process a change channel of
// its own, its own lapse hooks too.
func TestLivenessRoles(t *testing.T) {
	t.Parallel()
	_, nc := startBus(t, 0)
	aio := &Liveness{NC: nc, Node: "aio", Roles: []string{RoleOrigin, RoleEdge}, TTL: 300 * time.Millisecond}
	edge := &Liveness{NC: nc, Node: "e1", Roles: []string{RoleEdge}, TTL: 300 * time.Millisecond}
	origin := &Liveness{NC: nc, Node: "o1", TTL: 300 * time.Millisecond} // default: origin
	for _, l := range []*Liveness{aio, edge, origin} {
		if err := l.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
	}
	testkit.WaitFor(t, 5*time.Second, "everyone heard", func() bool { return len(origin.Nodes()) == 3 && len(aio.Nodes()) == 3 })
	sorted := func(s []string) []string { slices.Sort(s); return s }
	if got := sorted(origin.NodesWith(RoleOrigin)); !slices.Equal(got, []string{"aio", "o1"}) {
		t.Fatalf("origins seen by o1: %v", got)
	}
	if got := sorted(aio.NodesWith(RoleEdge)); !slices.Equal(got, []string{"aio", "e1"}) {
		t.Fatalf("edges seen by aio: %v", got)
	}
	w1, w2 := aio.Watch(), aio.Watch()
	info := &StreamInfo{Path: "p", Edge: "e1", Instance: edge.Instance()}
	if !aio.HoldsStream(info) || aio.HoldsStream(&StreamInfo{Path: "p", Edge: "e1", Instance: "former"}) {
		t.Fatal("stream records of e1")
	}
	edge.Close()
	for _, w := range []<-chan struct{}{w1, w2} {
		select {
		case <-w:
		case <-time.After(5 * time.Second):
			t.Fatal("a watcher missed e1's death")
		}
	}
	testkit.WaitFor(t, 5*time.Second, "e1 dead", func() bool { return !aio.HoldsStream(info) })
	if got := aio.NodesWith(RoleEdge); !slices.Equal(got, []string{"aio"}) {
		t.Fatalf("edges after e1 died: %v", got)
	}
}

func TestNextMultiple(t *testing.T) {
	at := time.Unix(100, 123_000_000)
	if got := nextMultiple(at, 250*time.Millisecond); !got.Equal(time.Unix(100, 250_000_000)) {
		t.Fatalf("next multiple of 250ms after 100.123s: %v", got)
	}
	if got := nextMultiple(time.Unix(100, 0), time.Second); !got.Equal(time.Unix(101, 0)) {
		t.Fatalf("a multiple itself: %v", got)
	}
}

// TestRankUnchanged: Rank through HashName gives what FNV-1a from
// hash/fnv gave before, so nodes of two versions rank alike.
func TestRankUnchanged(t *testing.T) {
	for _, tc := range []struct{ node, path string }{{"origin1", "live/cam1"}, {"", ""}, {"sim-origin0042", "sim/ab12/s000123"}} {
		hn, hp := fnv.New64a(), fnv.New64a()
		hn.Write([]byte(tc.node))
		hp.Write([]byte(tc.path))
		if got, want := Rank(tc.node, tc.path), RankHashed(hn.Sum64(), hp.Sum64()); got != want || HashName(tc.node) != hn.Sum64() {
			t.Errorf("Rank(%q, %q) = %x, want %x", tc.node, tc.path, got, want)
		}
	}
}

// TestEchoWithoutTheLock: a node's own heartbeats keep it alive while the
// lock over the other nodes' liveness is held (the claimer reads it many
// times a second, and a reader preempted under it on a starved machine
// holds it long): the echo no longer waits for it.
func TestEchoWithoutTheLock(t *testing.T) {
	t.Parallel()
	_, nc := startBus(t, 0)
	l := &Liveness{NC: nc, Node: "a", TTL: 300 * time.Millisecond}
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	l.mu.Lock()
	for end := time.Now().Add(4 * l.TTL); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if !l.Alive() {
			l.mu.Unlock()
			t.Fatal("the node lapsed while the others' liveness was locked")
		}
	}
	l.mu.Unlock()
}

// TestLivenessCloseAfterFailedStart: Close after a Start that failed (the
// connection was closed) returns at once instead of waiting for a run
// loop that never started.
func TestLivenessCloseAfterFailedStart(t *testing.T) {
	t.Parallel()
	_, nc := startBus(t, 0)
	nc.Close()
	l := &Liveness{NC: nc, Node: "a", TTL: 300 * time.Millisecond}
	if err := l.Start(); err == nil {
		t.Fatal("Start on a closed connection succeeded")
	}
	closed := make(chan struct{})
	go func() {
		l.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close after a failed Start did not return")
	}
}
