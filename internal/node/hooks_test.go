package node

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/hooks"
	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/internal/testmedia"
)

// hookReceiver records webhook events.
type hookReceiver struct {
	mu     sync.Mutex
	events []hooks.Event
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var ev hooks.Event
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.events = append(h.events, ev)
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookReceiver) find(kind, path string) *hooks.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range h.events {
		if h.events[i].Event == kind && h.events[i].Path == path {
			ev := h.events[i]
			return &ev
		}
	}
	return nil
}

// TestHooks: a receiver that never answers does not hold up media; after a
// reload points the hooks at a working receiver, a real publisher's ready,
// a second publisher's refusal and the end (gone) arrive there.
func TestHooks(t *testing.T) {
	testkit.Slow(t)
	unstick := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-unstick:
		}
	}))
	t.Cleanup(stuck.Close) // after the node's Close (cleanups run last in, first out)
	defer close(unstick)
	good := &hookReceiver{}
	goodSrv := httptest.NewServer(good)
	defer goodSrv.Close()

	c := allInOneConfig(t)
	c.Hooks.URL = stuck.URL
	c.Hooks.Timeout = time.Second
	c.Hooks.Retries = 0
	n := startNode(t, c, RoleRun)
	a := n.Addrs()

	// Media goes on while the receiver hangs.
	publishAndPlay(t, n, "rtsp://"+a.RTSP+"/live/stuck", "tcp", "live/stuck")

	next := *c
	next.Hooks.URL = goodSrv.URL
	if err := n.Reload(&next); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := &testmedia.Camera{URL: "rtmp://" + a.RTMP + "/live/hk"}
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 15*time.Second, "the ready event", func() bool { return good.find("ready", "live/hk") != nil })
	ready := good.find("ready", "live/hk")
	if ready.Protocol != "rtmp" || ready.Node != "aio" || ready.Tracks == "" || ready.Generation == 0 {
		t.Errorf("ready event: %+v", ready)
	}

	second := &testmedia.Camera{URL: "rtsp://" + a.RTSP + "/live/hk"}
	if err := second.Start(ctx); err == nil {
		second.Close()
		t.Error("a second publisher on a live path was accepted")
	}
	testkit.WaitFor(t, 15*time.Second, "the refused event", func() bool { return good.find("refused", "live/hk") != nil })
	if ev := good.find("refused", "live/hk"); ev.Reason != "busy" || ev.Protocol != "rtsp" {
		t.Errorf("refused event: %+v", ev)
	}

	pub.Close()
	testkit.WaitFor(t, 15*time.Second, "the gone event", func() bool { return good.find("gone", "live/hk") != nil })
	if ev := good.find("gone", "live/hk"); ev.Duration <= 0 {
		t.Errorf("gone event: %+v", ev)
	}
}

// TestFailoverHook: when the origin owning a stream dies, the origin that
// takes it over sends one failover event naming both.
func TestFailoverHook(t *testing.T) {
	testkit.Slow(t)
	recv := &hookReceiver{}
	srv := httptest.NewServer(recv)
	defer srv.Close()

	bc := roleConfig(t, "bus1")
	bc.Bus.Replicas = 1
	bc.Bus.Server.Listen = "127.0.0.1:0"
	bc.Bus.Server.StoreDir = t.TempDir()
	b := startNode(t, bc, RoleBus)
	var seeds []string
	start := func(name, role string) *Node {
		c := roleConfig(t, name)
		c.Bus.Replicas = 1
		c.Bus.Password = rolePassword(role) // the bus has role users (roleConfig)
		c.Bus.URLs = []string{b.Addrs().NATS}
		c.Gossip.Seeds = seeds
		c.Hooks.URL = srv.URL
		c.Hooks.Events = []string{"failover"}
		n := startNode(t, c, role)
		if seeds == nil {
			seeds = []string{n.Addrs().Gossip}
		}
		return n
	}
	origins := map[string]*Node{"origin1": start("origin1", RoleOrigin), "origin2": start("origin2", RoleOrigin)}
	e := start("edge1", RoleEdge)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cam := &testmedia.Camera{URL: "rtsp://" + e.Addrs().RTSP + "/live/fo"}
	if err := cam.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	var owner string
	testkit.WaitFor(t, 20*time.Second, "an origin to own the stream", func() bool {
		o, err := e.registry.OwnerOf(ctx, "live/fo")
		if err == nil {
			owner = o.Node
		}
		return err == nil
	})
	origins[owner].Crash()
	testkit.WaitFor(t, 30*time.Second, "the failover event", func() bool { return recv.find("failover", "live/fo") != nil })
	ev := recv.find("failover", "live/fo")
	if ev.PreviousOrigin != owner || ev.Origin == owner || ev.Origin != ev.Node || ev.Epoch == 0 {
		t.Fatalf("failover event %+v (the crashed owner was %s)", ev, owner)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if len(recv.events) != 1 {
		t.Errorf("%d events, want one failover: %+v", len(recv.events), recv.events)
	}
}
