package node

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/edge"
	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/internal/testmedia"
)

// onDemandCamera starts a camera server and returns it with an on-demand
// source for it, cams/od, that closes its pull 2 s after the last request.
func onDemandCamera(t *testing.T) (*testmedia.CameraServer, config.Source) {
	t.Helper()
	cam := startCameraServer(t, "od")
	src := source("cams/od", cam.URL())
	src.OnDemand = true
	src.CloseAfter = 2 * time.Second
	return cam, src
}

// TestOnDemandCamera: an on-demand camera is not pulled before a viewer asks
// for it; the first request waits and answers a playlist; the stream plays;
// the pull stops close_after after the last request.
func TestOnDemandCamera(t *testing.T) {
	testkit.Slow(t)
	cam, src := onDemandCamera(t)
	c := allInOneConfig(t)
	c.Sources = append(c.Sources, src)
	n := startNode(t, c, RoleRun)
	cacheURL := "http://" + n.Addrs().Cache

	state := func() string { return sourceStates(t, n)["cams/od"] }
	if st := state(); st != edge.SourceIdle {
		t.Fatalf("source state before any viewer: %q, want idle", st)
	}
	// Nothing pulls it: a lease period passes (the edge would have taken the
	// lease and connected within one) and the camera hears nothing.
	time.Sleep(c.Bus.LeaseTTL)
	if d := cam.Describes(); d != 0 {
		t.Fatalf("the camera got %d DESCRIBEs before any viewer asked", d)
	}
	// A path nobody pulls on demand still answers 404 at once.
	if code, _, err := fetch(cacheURL + "/cams/nobody/index.m3u8"); err != nil || code != http.StatusNotFound {
		t.Fatalf("unknown path: %d %v, want 404", code, err)
	}

	// The first request waits and answers a playlist.
	began := time.Now()
	code, body, err := fetch(cacheURL + "/cams/od/index.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusOK || !strings.HasPrefix(body, "#EXTM3U") {
		t.Fatalf("first request: %d %q", code, body)
	}
	t.Logf("first request answered 200 after %v", time.Since(began).Round(time.Millisecond))
	if cam.Describes() == 0 {
		t.Fatal("playable but the camera was never asked")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := playChecked(t, ctx, cacheURL+"/cams/od/index.m3u8", 50)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if st := state(); st != edge.SourcePulling {
		t.Errorf("source state while watched: %q, want pulling", st)
	}
	if v := testkit.MetricSum(t, n.metrics, "streamgrid_edge_demand_pulls_total", nil); v != 1 {
		t.Errorf("on-demand pulls counted: %v, want 1", v)
	}
	if v := testkit.MetricSum(t, n.metrics, "streamgrid_cache_demand_waits_total", nil); v < 1 {
		t.Errorf("requests that waited for the camera: %v, want at least 1", v)
	}

	// No more requests: the pull stops after close_after.
	stopped := time.Now()
	testkit.WaitFor(t, src.CloseAfter+15*time.Second, "the camera session to close", func() bool { return cam.Sessions() == 0 })
	t.Logf("camera session closed %v after the last request (close_after %v)", time.Since(stopped).Round(time.Millisecond), src.CloseAfter)
	testkit.WaitFor(t, 5*time.Second, "the source to be idle", func() bool { return state() == edge.SourceIdle })
}

// TestOnDemandAtAnotherCache: a viewer at a cache of another node starts an
// on-demand camera of the all-in-one node, and keeps it pulled for longer
// than close_after while watching there.
func TestOnDemandAtAnotherCache(t *testing.T) {
	testkit.Slow(t)
	cam, src := onDemandCamera(t)
	c := allInOneConfig(t)
	c.Sources = []config.Source{src}
	cc := roleConfig(t, "cache2")
	// Secured as a cluster runs: role users on the all-in-one's bus (the
	// cache's demand goes through its user's permissions), one gossip key.
	c.Bus.Server.Users = clusterUsers
	c.Gossip.SecretKey = cc.Gossip.SecretKey
	a := startNode(t, c, RoleRun)

	cc.Bus.Replicas = 1
	cc.Bus.LeaseTTL = c.Bus.LeaseTTL // the registry's settings are the cluster's
	cc.Bus.Password = rolePassword(RoleCache)
	cc.Bus.URLs = []string{a.Addrs().NATS}
	cc.Gossip.Seeds = []string{a.Addrs().Gossip}
	b := startNode(t, cc, RoleCache)
	testkit.WaitFor(t, 10*time.Second, "gossip between the nodes", func() bool { return len(b.gossip.Members()) >= 2 })

	url := "http://" + b.Addrs().Cache + "/cams/od/index.m3u8"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first request at the other cache: %s", resp.Status)
	}
	// Watch for about twice close_after at the other cache only: the pull
	// must not stop (no second DESCRIBE, the session stays).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := playChecked(t, ctx, url, 110)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if d := cam.Describes(); d != 1 {
		t.Errorf("the camera got %d DESCRIBEs while watched at the other cache; want 1 (the pull stopped and restarted)", d)
	}
	if v := testkit.MetricSum(t, b.metrics, "streamgrid_cache_demand_signals_total", nil); v < 2 {
		t.Errorf("the other cache signalled demand %v times, want repeats while watched", v)
	}
	testkit.WaitFor(t, src.CloseAfter+15*time.Second, "the camera session to close", func() bool { return cam.Sessions() == 0 })
}

// sourceStates reads GET /v1/sources.
func sourceStates(t *testing.T, n *Node) map[string]string {
	t.Helper()
	resp, err := http.Get("http://" + n.Addrs().API + "/v1/sources")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []edge.SourceStatus
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range list {
		out[s.Name] = s.State
	}
	return out
}
