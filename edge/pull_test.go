package edge

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/internal/testkit/testbus"
	"github.com/streamgrid/streamgrid/internal/testmedia"
)

const camUser, camPass = "admin", "s3cretpass"

// startCamera starts a simulated IP camera (testmedia.CameraServer) on addr,
// behind camUser and camPass, serving rtsp://addr/stream. It retries a while:
// a camera restarting on the address of the previous one may find the port
// still held for a moment.
func startCamera(t *testing.T, addr string) *testmedia.CameraServer {
	t.Helper()
	var err error
	for range 50 {
		cam := &testmedia.CameraServer{Address: addr, Path: "stream", User: camUser, Pass: camPass}
		if err = cam.Start(); err == nil {
			return cam
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal(err)
	return nil
}

func TestCameraPull(t *testing.T) {
	testkit.Slow(t)
	b := startBus(t)
	cam := startCamera(t, "127.0.0.1:0")
	camAddr := cam.Addr().String()
	defer func() { cam.Close() }()

	var logs testkit.Buffer
	src := Source{
		Name:       "cams/door",
		URL:        "rtsp://" + camUser + ":" + camPass + "@" + camAddr + "/stream",
		BackoffMin: 20 * time.Millisecond,
		BackoffMax: 200 * time.Millisecond,
	}
	edges := map[string]*Edge{}
	for _, node := range []string{"edge-a", "edge-b"} {
		e := newEdge(t, b, node, &logs)
		e.RTSPAddress, e.UDPRTPAddress, e.UDPRTCPAddress, e.RTMPAddress = "", "", "", ""
		e.Sources = []Source{src}
		startEdge(t, e)
		edges[node] = e
	}
	col := collect(t, b.nc, src.Name)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})

	// waitGeneration waits for 30 video packets of a generation newer than
	// prev and returns it with the edge that registered it.
	waitGeneration := func(prev uint64) (uint64, string) {
		var gen uint64
		testkit.WaitFor(t, 15*time.Second, "a new generation on the bus", func() bool {
			n := 0
			for _, p := range col.packets() {
				if p.Generation > prev && p.Generation > gen {
					gen, n = p.Generation, 0
				}
				if p.Generation == gen && p.Codec == media.CodecH264 {
					n++
				}
			}
			return n >= 30
		})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var info *bus.StreamInfo
		testkit.WaitFor(t, 5*time.Second, "the registry record of the new generation", func() bool {
			var err error
			info, err = b.reg.Stream(ctx, src.Name)
			// A later reconnection may already have replaced it.
			return err == nil && info.Generation >= gen
		})
		if info.Protocol != ProtocolPull {
			t.Fatalf("protocol %q", info.Protocol)
		}
		var gp []*media.Packet
		for _, p := range col.packets() {
			if p.Generation == gen {
				gp = append(gp, p)
			}
		}
		checkPackets(t, gp, media.CodecH264, 0)
		return gen, info.Edge
	}

	gen1, holder := waitGeneration(0)
	other := "edge-a"
	if holder == "edge-a" {
		other = "edge-b"
	}
	if st := edges[holder].Pulls(); len(st) != 1 || !st[0].Held || !st[0].Pulling || strings.Contains(st[0].URL, camPass) {
		t.Fatalf("holder status %+v", st)
	}
	if st := edges[other].Pulls(); st[0].Held || len(edges[other].Streams()) != 0 {
		t.Fatalf("both edges pull: %+v", st)
	}

	// The camera restarts: the holder reconnects with a new generation.
	cam.Close()
	testkit.WaitFor(t, 10*time.Second, "a failed reconnection", func() bool { return edges[holder].Pulls()[0].Reconnects > 0 })
	cam = startCamera(t, camAddr)
	gen2, holder2 := waitGeneration(gen1)
	if holder2 != holder {
		t.Fatalf("camera moved from %s to %s on a camera restart", holder, holder2)
	}

	// The holding edge goes away: the other one takes the camera over.
	edges[holder].Close()
	_, holder3 := waitGeneration(gen2)
	if holder3 != other {
		t.Fatalf("camera taken over by %s, want %s", holder3, other)
	}

	if strings.Contains(logs.String(), camPass) {
		t.Fatal("the camera password reached the logs")
	}
	if !strings.Contains(logs.String(), "camera pull failed") {
		t.Fatal("pull failure not logged")
	}
}

func TestRedact(t *testing.T) {
	u, err := base.ParseURL("rtsp://admin:hunter2@cam.local:554/live?x=1")
	if err != nil {
		t.Fatal(err)
	}
	if got := redactURL(u); got != "rtsp://cam.local:554/live?x=1" {
		t.Fatalf("redactURL = %q", got)
	}
	inner := errors.New("dial rtsp://admin:hunter2@cam.local:554/live: refused")
	err = redact(inner, u)
	if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "admin:") {
		t.Fatalf("redact = %q", err)
	}
	if !errors.Is(err, inner) {
		t.Fatal("redact lost the error chain")
	}
	if redact(nil, u) != nil {
		t.Fatal("redact(nil) != nil")
	}
}

func TestSourceValidation(t *testing.T) {
	b := startBus(t)
	tests := []struct {
		name string
		src  Source
		want string
	}{
		{"bad name", Source{Name: "cams/../x", URL: "rtsp://h/s"}, "Name"},
		{"not rtsp", Source{Name: "cams/x", URL: "http://u:secret@h/s"}, "URL"},
		{"bad transport", Source{Name: "cams/x", URL: "rtsp://h/s", Transport: "sctp"}, "Transport"},
		{"backoff order", Source{Name: "cams/x", URL: "rtsp://h/s", BackoffMin: time.Second, BackoffMax: time.Millisecond}, "Backoff"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEdge(t, b, "edge-1", nil)
			e.Sources = []Source{tc.src}
			err := testkit.StartRefused(t, e.Start, e.Close)
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret") {
				t.Fatalf("error %q", err)
			}
		})
	}
}

// TestPullRedirectPinned: a camera answering DESCRIBE with a redirect to
// another host does not get the edge to connect there (with the camera's
// credentials); the refusal is counted and the pull keeps retrying.
func TestPullRedirectPinned(t *testing.T) {
	elsewhere, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no second loopback address: %v", err)
	}
	defer elsewhere.Close()
	var dialed atomic.Int64
	go func() {
		for {
			c, err := elsewhere.Accept()
			if err != nil {
				return
			}
			dialed.Add(1)
			c.Close()
		}
	}()
	cam, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	go func() {
		for {
			c, err := cam.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req := base.Request{}
					if err := req.Unmarshal(br); err != nil {
						return
					}
					res := base.Response{StatusCode: base.StatusOK, Header: base.Header{"CSeq": req.Header["CSeq"]}}
					switch req.Method {
					case base.Options:
						res.Header["Public"] = base.HeaderValue{"DESCRIBE, SETUP, PLAY, TEARDOWN"}
					case base.Describe:
						res.StatusCode = base.StatusFound
						res.Header["Location"] = base.HeaderValue{"rtsp://" + elsewhere.Addr().String() + "/stream"}
					}
					b, _ := res.Marshal()
					if _, err := c.Write(b); err != nil {
						return
					}
				}
			}()
		}
	}()

	b := startBus(t)
	e := newEdge(t, b, "edge-a", nil)
	e.RTSPAddress, e.UDPRTPAddress, e.UDPRTCPAddress, e.RTMPAddress = "", "", "", ""
	e.Sources = []Source{{Name: "cams/door", URL: "rtsp://" + camUser + ":" + camPass + "@" + cam.Addr().String() + "/stream",
		BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond}}
	startEdge(t, e)
	testkit.WaitFor(t, 10*time.Second, "redirects refused", func() bool {
		return rejected(t, e, "pull", "redirect") >= 2
	})
	if n := dialed.Load(); n != 0 {
		t.Fatalf("the edge connected %d times to the host the camera redirected to", n)
	}
	if st := e.Pulls(); !strings.Contains(st[0].LastError, "redirected to another host") {
		t.Fatalf("pull status: %+v", st[0])
	}
}

// A standby edge takes a camera whose lease ends at once (the lease watch
// wakes it), not at its next periodic attempt: every ~LeaseTTL/2, 15–45 s
// with this registry's one-minute lease TTL.
func TestStandbyTakesVacatedCamera(t *testing.T) {
	const name = "cams/door"
	b, _, other := startHeldCamera(t, name, "edge-other")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := newEdge(t, b, "edge-1", nil)
	e.RTSPAddress, e.UDPRTPAddress, e.UDPRTCPAddress, e.RTMPAddress = "", "", "", ""
	e.Sources = []Source{{Name: name, URL: "rtsp://127.0.0.1:1/stream", BackoffMin: time.Second, BackoffMax: time.Second}}
	startEdge(t, e)
	// Its first attempt is refused (the camera is held by a live edge); it
	// stands by, listed on the lease.
	testkit.WaitFor(t, 10*time.Second, "edge-1 to stand by on the lease", func() bool {
		cur, _, err := b.reg.Source(ctx, name)
		return err == nil && slices.Contains(cur.Standby, "edge-1")
	})
	if st := e.Pulls()[0]; st.Held || st.State != SourceStandby {
		t.Fatalf("edge-1 took a held camera: %+v", st)
	}
	if err := b.reg.ReleaseSource(ctx, other); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "the standby edge to take the released camera", func() bool {
		return e.Pulls()[0].Held
	})
}

// startHeldCamera starts a bus whose registry paces attempts by a
// one-minute LeaseTTL (the watches, not the periodic attempts, must wake
// standby edges), and the liveness of an edge named node holding the
// camera's lease.
func startHeldCamera(t *testing.T, camera, node string) (*testBus, *bus.Liveness, *bus.Lease) {
	t.Helper()
	s := testbus.StartServer(t, nil)
	nc := testbus.Connect(t, s)
	b := &testBus{srv: s, nc: nc, reg: testbus.StartRegistry(t, nc, time.Minute)}
	holder := startHolder(t, s, node)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lease, err := b.reg.AcquireSource(ctx, camera, bus.Owner{Node: node, Instance: holder.Instance()})
	if err != nil {
		t.Fatal(err)
	}
	return b, holder, lease
}

// startHolder runs the liveness of an edge named node on a connection of
// its own (stopped at cleanup, or earlier by Close: the edge dies).
func startHolder(t *testing.T, s *bus.Server, node string) *bus.Liveness {
	t.Helper()
	l := &bus.Liveness{NC: testbus.Connect(t, s), Node: node, Roles: []string{bus.RoleEdge}, TTL: 300 * time.Millisecond,
		Log: slog.New(slog.DiscardHandler)}
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// When the edge holding a camera dies (its heartbeats stop), the standby
// edge the camera ranks first takes the lease over at once, by
// compare-and-set with the next epoch: not when a lease TTL runs out
// (camera leases have none; the registry's one-minute LeaseTTL paces only
// the periodic attempts). The other standby edge leaves it the camera.
func TestStandbyTakesDeadEdgesCamera(t *testing.T) {
	const name = "cams/yard"
	b, holder, lease := startHeldCamera(t, name, "edge-dead")
	s := b.srv
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var edges []*Edge
	for _, node := range []string{"edge-a", "edge-b"} {
		e := newEdge(t, &testBus{srv: s, nc: testbus.Connect(t, s), reg: b.reg}, node, nil)
		e.RTSPAddress, e.UDPRTPAddress, e.UDPRTCPAddress, e.RTMPAddress = "", "", "", ""
		e.NodeTTL = 300 * time.Millisecond
		e.Sources = []Source{{Name: name, URL: "rtsp://127.0.0.1:1/stream", BackoffMin: time.Second, BackoffMax: time.Second}}
		startEdge(t, e)
		edges = append(edges, e)
	}
	testkit.WaitFor(t, 10*time.Second, "both edges to stand by on the lease", func() bool {
		cur, _, err := b.reg.Source(ctx, name)
		return err == nil && slices.Contains(cur.Standby, "edge-a") && slices.Contains(cur.Standby, "edge-b")
	})
	// Each edge ranks the standby edges it knows alive: one that has not
	// seen the other yet would rank itself first.
	testkit.WaitFor(t, 10*time.Second, "both edges to know each other alive", func() bool {
		return slices.Contains(edges[0].live.NodesWith(bus.RoleEdge), "edge-b") &&
			slices.Contains(edges[1].live.NodesWith(bus.RoleEdge), "edge-a")
	})
	holder.Close() // the holding edge dies
	testkit.WaitFor(t, 10*time.Second, "a standby edge to take the dead edge's camera over", func() bool {
		return edges[0].Pulls()[0].Held || edges[1].Pulls()[0].Held
	})
	cur, _, err := b.reg.Source(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	want := "edge-a"
	if bus.Rank("edge-b", name) > bus.Rank("edge-a", name) {
		want = "edge-b"
	}
	if cur.Node != want || cur.Epoch != lease.Owner.Epoch+1 {
		t.Fatalf("lease after the take-over: %+v; want %s at epoch %d", cur, want, lease.Owner.Epoch+1)
	}
	if edges[0].Pulls()[0].Held && edges[1].Pulls()[0].Held {
		t.Fatal("both standby edges hold the camera")
	}
}
