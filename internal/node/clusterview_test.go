package node

import (
	"encoding/json"
	"testing"
	"time"
)

// TestClusterView: a stream published at one node is listed, with the
// figures only other nodes know, by every node's /v1/streams. An all-in-one
// node and a cache node share one bus: the cache node's API shows the
// stream's bit rate in (measured at the all-in-one's edge), and the
// all-in-one's API shows the viewer watching at the cache node.
func TestClusterView(t *testing.T) {
	ac := allInOneConfig(t)
	c := roleConfig(t, "cache9")
	// Secured as a cluster runs: role users on the all-in-one's bus, one gossip key.
	ac.Bus.Server.Users = clusterUsers
	ac.Gossip.SecretKey = c.Gossip.SecretKey
	aio := startNode(t, ac, RoleRun)
	a := aio.Addrs()
	c.Bus.Replicas = 1
	c.Bus.LeaseTTL = ac.Bus.LeaseTTL // the registry's settings are the cluster's
	c.Bus.Password = rolePassword(RoleCache)
	c.Bus.URLs = []string{a.NATS}
	c.Gossip.Seeds = []string{a.Gossip}
	cache := startNode(t, c, RoleCache)
	ca := cache.Addrs()
	startCamera(t, "rtsp://"+a.RTSP+"/live/cv")

	record := func(api string) (streamRecord, bool) {
		code, body := httpGet(t, "http://"+api+"/v1/streams/live/cv")
		var r streamRecord
		return r, code == 200 && json.Unmarshal([]byte(body), &r) == nil
	}
	var r streamRecord
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		// A viewer at the cache node keeps asking for the playlist.
		httpGet(t, "http://"+ca.Cache+"/live/cv/index.m3u8")
		var ok bool
		if r, ok = record(ca.API); ok && r.BitrateIn > 0 && r.Origin == "aio" && r.Edge == "aio" && len(r.Play) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache node's view of live/cv: %+v", r)
		}
	}
	t.Logf("cache node sees live/cv: %.0f bit/s in, %.1f fps, origin %s, play %v", r.BitrateIn, r.FPS, r.Origin, r.Play)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		httpGet(t, "http://"+ca.Cache+"/live/cv/index.m3u8")
		var ok bool
		if r, ok = record(a.API); ok && r.Viewers == 1 && r.Requests > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the all-in-one's view of live/cv lacks the cache node's viewer: %+v", r)
		}
	}
	var nodes []nodeView
	_, body := httpGet(t, "http://"+a.API+"/v1/nodes")
	if err := json.Unmarshal([]byte(body), &nodes); err != nil || len(nodes) != 2 || nodes[1].Cache != ca.Cache || nodes[1].Version == "" {
		t.Fatalf("/v1/nodes: %v %s", err, body)
	}
}

// TestClusterViewOwnersOnDemand: the API watches the owner records only
// while it is asked for them (an origin node's API nobody asks costs no
// delivery at a take-over): no watch before the first request, which
// waits for the watch's picture and shows the stream's origin; none again
// ownersIdle after the last request; the next request opens it again.
func TestClusterViewOwnersOnDemand(t *testing.T) {
	defer func(d time.Duration) { ownersIdle = d }(ownersIdle)
	ownersIdle = 400 * time.Millisecond
	aio := startNode(t, allInOneConfig(t), RoleRun)
	a := aio.Addrs()
	v := &aio.api.cluster
	open := func() bool {
		v.omu.Lock()
		defer v.omu.Unlock()
		return v.ownersReady != nil
	}
	startCamera(t, "rtsp://"+a.RTSP+"/live/od")
	// The stream is listed (the stream watch is always open) before any
	// request asked for owners.
	for deadline := time.Now().Add(20 * time.Second); !v.has("live/od"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stream was never listed")
		}
	}
	if open() {
		t.Fatal("the owner watch is open before any request")
	}
	origin := func() string {
		code, body := httpGet(t, "http://"+a.API+"/v1/streams/live/od")
		var r streamRecord
		if code != 200 || json.Unmarshal([]byte(body), &r) != nil {
			t.Fatalf("GET /v1/streams/live/od: %d %s", code, body)
		}
		return r.Origin
	}
	for deadline := time.Now().Add(20 * time.Second); origin() != "aio"; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the record never showed its origin")
		}
	}
	if !open() {
		t.Fatal("the owner watch is not open after a request")
	}
	for deadline := time.Now().Add(5 * time.Second); open(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the owner watch stayed open without requests")
		}
	}
	if got := origin(); got != "aio" {
		t.Fatalf("the first answer after the watch reopened shows origin %q", got)
	}
}
