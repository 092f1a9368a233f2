package bus

import (
	"slices"
	"testing"
	"time"
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
	waitFor(t, "a hears b", func() bool { return slices.Contains(a.Nodes(), "b") && a.Holds(recB) })
	if a.Holds(Owner{Node: "b", Instance: "former"}) {
		t.Fatal("a record of another instance of b holds")
	}
	if !a.Holds(Owner{Node: "a", Instance: a.Instance()}) || a.Holds(Owner{Node: "a", Instance: "former"}) {
		t.Fatal("a's own records")
	}
	for len(a.Changed()) > 0 {
		<-a.Changed()
	}
	b.Close()
	select {
	case <-a.Changed():
	case <-time.After(5 * time.Second):
		t.Fatal("b's death not signalled")
	}
	if a.Holds(recB) || slices.Contains(a.Nodes(), "b") {
		t.Fatal("b's record still holds after b stopped")
	}
	b.Close() // twice is harmless
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func FuzzParseHeartbeat(f *testing.F) {
	f.Add([]byte("750 0123456789abcdef 123456 origin 1"))
	f.Add([]byte("0 x y"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		hb, ok := parseHeartbeat(b)
		if !ok {
			return
		}
		if again, ok := parseHeartbeat(hb.marshal()); !ok || again != hb {
			t.Fatalf("%q: %+v does not round-trip: %+v %v", b, hb, again, ok)
		}
	})
}
