package hlscache

import (
	"sync"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/gossip"
)

// fakeMembers is a hand-set gossip membership.
type fakeMembers struct {
	mu sync.Mutex
	m  map[string]gossip.Member
}

func (f *fakeMembers) Member(name string) (gossip.Member, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.m[name]
	return m, ok
}

func (f *fakeMembers) set(m gossip.Member, alive bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if alive {
		f.m[m.Name] = m
	} else {
		delete(f.m, m.Name)
	}
}

func TestUpstreamAddr(t *testing.T) {
	t.Parallel()
	members := &fakeMembers{m: map[string]gossip.Member{}}
	rt := newRouteTable(members, time.Second, quiet)
	for _, tc := range []struct {
		meta, lease, want string
	}{
		{"10.0.0.5:8889", "", "10.0.0.5:8889"},
		{":8889", "", "10.0.0.9:8889"},
		{"0.0.0.0:8889", "", "10.0.0.9:8889"},
		{"[::]:8889", "", "10.0.0.9:8889"},
		{"origin-a:8889", "", "origin-a:8889"},
		{"", "10.0.0.7:8889", "10.0.0.7:8889"},
		{"", "", ""},
		{"garbage", "", ""},
	} {
		members.set(gossip.Member{Name: "o", Addr: "10.0.0.9:7946", Meta: gossip.Meta{HTTP: tc.meta}}, true)
		if got := rt.upstreamAddr(&bus.Owner{Node: "o", HTTP: tc.lease}); got != tc.want {
			t.Errorf("meta %q lease %q: %q, want %q", tc.meta, tc.lease, got, tc.want)
		}
	}
	if got := rt.upstreamAddr(&bus.Owner{Node: "dead", HTTP: "10.0.0.7:8889"}); got != "" {
		t.Errorf("a node not alive in gossip routed to %q", got)
	}
}

func TestRouteTableFailoverWindow(t *testing.T) {
	t.Parallel()
	members := &fakeMembers{m: map[string]gossip.Member{}}
	origin := gossip.Member{Name: "o1", Addr: "127.0.0.1:7946", Meta: gossip.Meta{HTTP: "127.0.0.1:8889"}}
	members.set(origin, true)
	rt := newRouteTable(members, 10*time.Second, quiet)
	t0 := time.Now()

	if _, _, st, _ := rt.resolve("s", t0); st != routeUnknown {
		t.Fatalf("unknown stream: %v", st)
	}
	rt.setOwner("s", &bus.Owner{Node: "o1", Epoch: 5}, t0)
	r, _, st, changed := rt.resolve("s", t0)
	if st != routeOK || r != (route{node: "o1", epoch: 5, addr: "127.0.0.1:8889"}) {
		t.Fatalf("owned stream: %v %+v", st, r)
	}
	// A renewal changes nothing and wakes nobody.
	rt.setOwner("s", &bus.Owner{Node: "o1", Epoch: 5}, t0.Add(time.Second))
	select {
	case <-changed:
		t.Fatal("renewal signalled a change")
	default:
	}

	// The owner dies in gossip: failover, with the old owner as prev.
	members.set(origin, false)
	rt.refresh(t0.Add(2 * time.Second))
	select {
	case <-changed:
	default:
		t.Fatal("owner death not signalled")
	}
	_, prev, st, _ := rt.resolve("s", t0.Add(3*time.Second))
	if st != routeFailover || prev.node != "o1" || prev.epoch != 5 {
		t.Fatalf("dead owner: %v %+v", st, prev)
	}
	// The lease ends too; the stream stays in failover until the window,
	// counted from when the owner was last seen routable, passes.
	rt.setOwner("s", nil, t0.Add(4*time.Second))
	if _, _, st, _ := rt.resolve("s", t0.Add(9*time.Second)); st != routeFailover {
		t.Fatalf("within the window: %v", st)
	}
	if _, _, st, _ := rt.resolve("s", t0.Add(13*time.Second)); st != routeUnknown {
		t.Fatalf("after the window: %v", st)
	}
	rt.refresh(t0.Add(15 * time.Second))
	if len(rt.streams) != 0 {
		t.Errorf("expired entry kept")
	}
}

func TestRouteTableResync(t *testing.T) {
	t.Parallel()
	members := &fakeMembers{m: map[string]gossip.Member{}}
	members.set(gossip.Member{Name: "o1", Addr: "127.0.0.1:7946", Meta: gossip.Meta{HTTP: "127.0.0.1:8889"}}, true)
	rt := newRouteTable(members, time.Second, quiet)
	t0 := time.Now()
	rt.setOwner("gone", &bus.Owner{Node: "o1", Epoch: 1}, t0)
	rt.setOwner("kept", &bus.Owner{Node: "o1", Epoch: 2}, t0)
	rt.markResync(t0.Add(time.Second))
	rt.setOwner("kept", &bus.Owner{Node: "o1", Epoch: 2}, t0.Add(2*time.Second)) // re-announced by the new watch
	rt.refresh(t0.Add(time.Second + resyncGrace))
	routes := rt.routes()
	if _, ok := routes["gone"]; ok {
		t.Error("an owner missed while the watch was down was kept")
	}
	if _, ok := routes["kept"]; !ok {
		t.Error("a re-announced owner was dropped")
	}
}

func TestStalePlaylistsBounded(t *testing.T) {
	t.Parallel()
	members := &fakeMembers{m: map[string]gossip.Member{}}
	rt := newRouteTable(members, time.Minute, quiet)
	t0 := time.Now()
	rt.setOwner("s", &bus.Owner{Node: "o1", Epoch: 1}, t0)
	for i := range maxStalePlaylists + 5 {
		rt.storePlaylist("s", string(rune('a'+i))+".m3u8", &object{fetched: t0.Add(time.Duration(i) * time.Millisecond)})
	}
	if n := len(rt.streams["s"].playlists); n != maxStalePlaylists {
		t.Errorf("%d stale playlists kept", n)
	}
	if rt.stalePlaylist("s", "a.m3u8", t0) != nil {
		t.Error("the oldest stale playlist was kept")
	}
	// An older copy never replaces a newer one.
	newer := rt.stalePlaylist("s", "z.m3u8", t0)
	rt.storePlaylist("s", "z.m3u8", &object{fetched: t0})
	if rt.stalePlaylist("s", "z.m3u8", t0) != newer {
		t.Error("an older copy replaced a newer one")
	}
}
