package node

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/internal/testmedia"
)

// cluster is a whole streamgrid cluster in one process, every node on its own
// loopback ports: three clustered NATS nodes (registry buckets R3), two edges,
// two origins, two caches, joined by gossip. It runs secured as the compose
// cluster does: every role connects as its own bus user (so each does its
// work within its subject permissions), routes authenticate, gossip is
// encrypted.

type cluster struct {
	buses, edges, origins, caches []*Node
	byName                        map[string]*Node
}

func roleConfig(t *testing.T, name string) *config.Config {
	c := config.Default()
	c.Node.Name = name
	c.API.Address = "127.0.0.1:0"
	c.Gossip.Bind = "127.0.0.1:0"
	c.Edge.RTSPAddress = "127.0.0.1:0"
	c.Edge.RTPAddress, c.Edge.RTCPAddress = "", ""
	c.Edge.RTMPAddress = "127.0.0.1:0"
	c.Origin.HTTPAddress = "127.0.0.1:0"
	c.Cache.HTTPAddress = "127.0.0.1:0"
	c.Bus.Replicas = 3
	c.Bus.LeaseTTL = 2 * time.Second
	c.Bus.Server.Users = clusterUsers
	c.Bus.Server.ClusterPassword = "route-test-password"
	c.Gossip.SecretKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	if os.Getenv("SG_TEST_STANDBY_OFF") != "" {
		c.Origin.Standby = nil // the measurement's "before" (docs/cluster.md)
	}
	return c
}

var clusterUsers = config.BusUsers{Edge: "edge-test-pw", Origin: "origin-test-pw", Cache: "cache-test-pw", Run: "run-test-pw"}

// rolePassword is the bus password of a role's user.
func rolePassword(role string) string {
	return map[string]string{RoleEdge: clusterUsers.Edge, RoleOrigin: clusterUsers.Origin,
		RoleCache: clusterUsers.Cache, RoleRun: clusterUsers.Run}[role]
}

func startCluster(t *testing.T, sources []config.Source) *cluster {
	t.Helper()
	cl := &cluster{byName: map[string]*Node{}}
	add := func(n *Node) {
		cl.byName[n.Name()] = n
	}
	// A JetStream cluster needs its routes up front: pick the cluster ports first.
	var clusterAddrs, routes []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		clusterAddrs = append(clusterAddrs, ln.Addr().String())
		routes = append(routes, "nats://"+ln.Addr().String())
		ln.Close()
	}
	var wg sync.WaitGroup
	cl.buses = make([]*Node, 3)
	for i := range 3 {
		c := roleConfig(t, fmt.Sprintf("bus%d", i+1))
		c.Bus.Server.Listen = "127.0.0.1:0"
		c.Bus.Server.ClusterListen = clusterAddrs[i]
		c.Bus.Server.StoreDir = t.TempDir()
		c.Bus.Server.Routes = routes
		wg.Add(1)
		go func() { // the nodes wait for each other's routes: start them together
			defer wg.Done()
			n := &Node{Config: c, Role: RoleBus, Log: testkit.Logger(t)}
			if err := n.Start(); err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(n.Close)
			cl.buses[i] = n
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, n := range cl.buses {
		add(n)
	}
	var urls []string
	for _, b := range cl.buses {
		urls = append(urls, b.Addrs().NATS)
	}
	var seeds []string
	start := func(name, role string) *Node {
		c := roleConfig(t, name)
		c.Bus.URLs = urls
		c.Bus.Password = rolePassword(role) // the user is the role's
		c.Gossip.Seeds = seeds
		if role == RoleEdge {
			c.Sources = sources
		}
		n := startNode(t, c, role)
		if len(seeds) == 0 {
			seeds = []string{n.Addrs().Gossip}
		}
		add(n)
		return n
	}
	cl.origins = []*Node{start("origin1", RoleOrigin), start("origin2", RoleOrigin)}
	cl.caches = []*Node{start("cache1", RoleCache), start("cache2", RoleCache)}
	cl.edges = []*Node{start("edge1", RoleEdge), start("edge2", RoleEdge)}
	// Every node sees every gossiping node.
	deadline := time.Now().Add(15 * time.Second)
	for _, n := range append(append(append([]*Node{}, cl.origins...), cl.caches...), cl.edges...) {
		for len(n.gossip.Members()) < 6 {
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %d gossip members", n.Name(), len(n.gossip.Members()))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return cl
}

// msnWatch polls a media playlist and records how long it stood still at
// most, and whether it ever went backwards.
type msnWatch struct {
	mu        sync.Mutex
	last      int
	lastMove  time.Time
	tail      string    // the playlist's last part or segment URI
	tailMove  time.Time // when tail last changed: a new part (LL-HLS) or segment
	maxStill  time.Duration
	backwards []string
	errors    int
}

func watchMSN(ctx context.Context, url string) *msnWatch {
	w := &msnWatch{last: -1, lastMove: time.Now()}
	go func() {
		for ctx.Err() == nil {
			m, tail, err := playlistTail(url)
			w.mu.Lock()
			switch {
			case err != nil:
				w.errors++
			case m < w.last:
				w.backwards = append(w.backwards, fmt.Sprintf("%d after %d", m, w.last))
			case m > w.last:
				w.last, w.lastMove = m, time.Now()
			}
			if err == nil && tail != w.tail {
				w.tail, w.tailMove = tail, time.Now()
			}
			w.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *msnWatch) current() (int, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last, w.lastMove
}

func (w *msnWatch) currentTail() (string, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tail, w.tailMove
}

// playlistTail fetches a media playlist and returns its EXT-X-MEDIA-SEQUENCE
// and its last part's or segment's URI (a cache's stale copy is an error:
// it is not progress).
func playlistTail(url string) (msn int, tail string, err error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache") == "STALE" {
		return 0, "", fmt.Errorf("%s: %s %s", url, resp.Status, resp.Header.Get("X-Cache"))
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"):
			msn, _ = strconv.Atoi(strings.TrimPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"))
		case strings.HasPrefix(line, "#EXT-X-PART:"):
			if _, uri, ok := strings.Cut(line, `URI="`); ok {
				tail, _, _ = strings.Cut(uri, `"`)
			}
		case line != "" && !strings.HasPrefix(line, "#"):
			tail = line
		}
	}
	return msn, tail, sc.Err()
}

// stallAround runs fault, then measures how long the playlist at url stood
// still: from its last advance before the fault to its first advance after.
func stallAround(t *testing.T, w *msnWatch, what string, fault func(), limit time.Duration) time.Duration {
	t.Helper()
	// Start from a fresh advance so the measurement is not inflated by luck.
	before, _ := w.current()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if m, _ := w.current(); m > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: playlist not advancing before the fault", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fault()
	faultAt := time.Now()
	m0, moved0 := w.current() // the last advance before the fault was complete
	tail0, tailMoved0 := w.currentTail()
	var partStill time.Duration // until the first new part or segment after the fault
	for deadline := time.Now().Add(limit); ; {
		if tail, moved := w.currentTail(); partStill == 0 && tail != tail0 {
			partStill = moved.Sub(tailMoved0)
		}
		m, moved := w.current()
		if m > m0 && partStill != 0 {
			stall := moved.Sub(moved0)
			t.Logf("%s: playlist stood still %v (fault %v after its last advance); media sequence %d → %d; "+
				"at the part level (every playlist change, polled every 50 ms) %v",
				what, stall.Round(10*time.Millisecond), faultAt.Sub(moved0).Round(10*time.Millisecond), m0, m,
				partStill.Round(10*time.Millisecond))
			return stall
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: media sequence stuck at %d for %v", what, m0, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func owner(t *testing.T, cl *cluster, path string) *Node {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, c := range cl.caches {
			if c.cache == nil {
				continue
			}
			if r, ok := c.cache.Routes()[path]; ok && r.Alive {
				if n := cl.byName[r.Node]; n != nil && n.origin != nil {
					return n
				}
			}
		}
	}
	t.Fatalf("no owner for %s", path)
	return nil
}

// TestClusterFailover publishes to edge2, plays from both caches, then kills
// the owning origin, a bus node and a cache: the playlists advance again, the
// media sequence never goes backwards, and frames keep arriving.
func TestClusterFailover(t *testing.T) {
	testkit.Slow(t) // a five-node cluster, nodes killed in turn
	cl := startCluster(t, nil)
	edge2 := cl.byName["edge2"]
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cam := &testmedia.Camera{URL: "rtsp://" + edge2.Addrs().RTSP + "/live/cl1", StampSEI: true}
	if err := cam.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer cam.Close()

	base1 := "http://" + cl.byName["cache1"].Addrs().Cache + "/live/cl1"
	base2 := "http://" + cl.byName["cache2"].Addrs().Cache + "/live/cl1"
	var media1, media2 string
	for deadline := time.Now().Add(20 * time.Second); media1 == "" || media2 == ""; time.Sleep(100 * time.Millisecond) {
		media1, _ = mediaPlaylistURL(base1)
		media2, _ = mediaPlaylistURL(base2)
		if time.Now().After(deadline) {
			t.Fatal("stream not playable at both caches")
		}
	}
	w1 := watchMSN(ctx, media1)
	w2 := watchMSN(ctx, media2)

	check := &testmedia.Check{MaxGaps: 100}
	rec1 := newHTTPRecord()
	rec1.dumpOnFailure(t, "the first viewer at cache1")
	r := &testmedia.Reader{URL: base1 + "/index.m3u8", HTTPClient: rec1.client(), OnVideo: rec1.frames(check.Video), RetryInterval: 200 * time.Millisecond, Log: testkit.Logger(t)}
	rdone := make(chan error, 1)
	rctx, rcancel := context.WithCancel(ctx)
	go func() { rdone <- r.Run(rctx) }()
	if err := check.WaitFrames(ctx, 25); err != nil {
		t.Fatal(err)
	}

	// Viewers arriving during the faults must never be told the stream is gone.
	statuses := pollStatuses(ctx, base1+"/index.m3u8", media1)

	// 1. Kill the origin that owns the stream.
	first := owner(t, cl, "live/cl1")
	stall := stallAround(t, w1, "kill owning origin "+first.Name(), first.Crash, 15*time.Second)
	if stall > 5*time.Second {
		t.Errorf("origin failover stalled the playlist %v, over 5 s", stall)
	}
	second := owner(t, cl, "live/cl1")
	if second == first {
		t.Fatal("the dead origin still owns the stream")
	}
	// 2. Kill a bus node.
	stallAround(t, w1, "kill bus node bus2", cl.byName["bus2"].Crash, 15*time.Second)
	// 3. Kill cache2: cache1 is untouched.
	stallAround(t, w1, "kill cache2 (cache1 watched)", cl.byName["cache2"].Crash, 10*time.Second)

	// A fresh viewer at the surviving cache plays the stream from its new owner.
	// (The first viewer is gohlslib's client, which does not follow a
	// discontinuity with a new init section; players do.)
	rcancel()
	if err := <-rdone; err != nil {
		t.Logf("first viewer ended: %v", err)
	}
	after := &testmedia.Check{MaxGaps: 3}
	rec2 := newHTTPRecord()
	rec2.dumpOnFailure(t, "the viewer after the faults")
	r2 := &testmedia.Reader{URL: base1 + "/index.m3u8", HTTPClient: rec2.client(), OnVideo: rec2.frames(after.Video), RetryInterval: 200 * time.Millisecond, Log: testkit.Logger(t)}
	r2ctx, r2cancel := context.WithTimeout(ctx, 30*time.Second)
	defer r2cancel()
	if err := playFrames(r2ctx, r2, after, 50); err != nil {
		t.Fatalf("frames after the faults: %v", err)
	}
	if err := after.Summary().Err(); err != nil {
		t.Errorf("playback after the faults: %v", err)
	}
	for _, w := range []*msnWatch{w1, w2} {
		w.mu.Lock()
		if len(w.backwards) > 0 {
			t.Errorf("media sequence went backwards: %v", w.backwards)
		}
		w.mu.Unlock()
	}
	statuses.mu.Lock()
	t.Logf("playlist answers at cache1 during the faults: %v", statuses.counts)
	for code, n := range statuses.counts {
		if code == 404 || code >= 500 && code != 503 {
			t.Errorf("cache1 answered %d %d times during the faults", code, n)
		}
	}
	statuses.mu.Unlock()
	s := check.Summary()
	t.Logf("viewer at cache1: %d frames, %d gaps, max gap %v, %d backwards", s.Frames, s.Gaps, s.MaxGap, s.Backwards)
	if s.Backwards > 0 {
		t.Errorf("the viewer saw frames go backwards: %+v", s)
	}
}

// TestClusterPullMoves: a camera pulled by one edge moves to the other when
// that edge dies, and the stream plays again at the cache.
func TestClusterPullMoves(t *testing.T) {
	testkit.Slow(t) // a five-node cluster, nodes killed in turn
	cam := &testmedia.CameraServer{Address: "127.0.0.1:0", Path: "stream1", User: "admin", Pass: "s3cret"}
	if err := cam.Start(); err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	cl := startCluster(t, []config.Source{{Name: "cams/door", URL: cam.URL(), Transport: "tcp", BackoffMin: 200 * time.Millisecond, BackoffMax: 2 * time.Second}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	holder := func() *Node {
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			for _, e := range cl.edges {
				if e.edge == nil {
					continue
				}
				for _, p := range e.edge.Pulls() {
					if p.Held && p.Pulling {
						return e
					}
				}
			}
		}
		t.Fatal("no edge pulls the camera")
		return nil
	}
	base := "http://" + cl.byName["cache1"].Addrs().Cache + "/cams/door"
	var media string
	for deadline := time.Now().Add(20 * time.Second); media == ""; time.Sleep(100 * time.Millisecond) {
		media, _ = mediaPlaylistURL(base)
		if time.Now().After(deadline) {
			t.Fatal("pulled camera not playable")
		}
	}
	w := watchMSN(ctx, media)
	first := holder()
	stall := stallAround(t, w, "kill edge "+first.Name()+" pulling the camera", first.Crash, 20*time.Second)
	next := holder()
	if next == first {
		t.Fatal("the dead edge still holds the camera")
	}
	t.Logf("camera moved from %s to %s; playlist stood still %v", first.Name(), next.Name(), stall.Round(10*time.Millisecond))
}

type statusCounts struct {
	mu     sync.Mutex
	counts map[int]int
}

// pollStatuses requests the given URLs every 50 ms and counts the answers by status.
func pollStatuses(ctx context.Context, urls ...string) *statusCounts {
	sc := &statusCounts{counts: map[int]int{}}
	client := &http.Client{Timeout: 10 * time.Second}
	go func() {
		for ctx.Err() == nil {
			for _, u := range urls {
				code := 0
				if resp, err := client.Get(u); err == nil {
					code = resp.StatusCode
					resp.Body.Close()
				}
				sc.mu.Lock()
				sc.counts[code]++
				sc.mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return sc
}
