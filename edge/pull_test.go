package edge

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// camera is an RTSP server that plays a clip in a loop, like an IP camera,
// behind a user name and password.
type camera struct {
	srv    *gortsplib.Server
	stream *gortsplib.ServerStream
	ready  atomic.Pointer[gortsplib.ServerStream] // stream, once it is initialised
	stop   chan struct{}
	wg     sync.WaitGroup
}

const camUser, camPass = "admin", "s3cretpass"

type cameraHandler struct{ cam *camera }

func (h cameraHandler) auth(sc *gortsplib.ServerConn, req *base.Request) (*base.Response, error) {
	if !sc.VerifyCredentials(req, camUser, camPass) {
		return &base.Response{StatusCode: base.StatusUnauthorized}, liberrors.ErrServerAuth{}
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (h cameraHandler) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return h.serve(ctx.Conn, ctx.Request)
}

func (h cameraHandler) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return h.serve(ctx.Conn, ctx.Request)
}

func (h cameraHandler) serve(sc *gortsplib.ServerConn, req *base.Request) (*base.Response, *gortsplib.ServerStream, error) {
	res, err := h.auth(sc, req)
	if err != nil {
		return res, nil, err
	}
	st := h.cam.ready.Load()
	if st == nil {
		return &base.Response{StatusCode: base.StatusServiceUnavailable}, nil, nil
	}
	return res, st, nil
}

func (h cameraHandler) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func startCamera(t *testing.T, addr string, c *clip) *camera {
	t.Helper()
	cam := &camera{stop: make(chan struct{})}
	cam.srv = &gortsplib.Server{Handler: cameraHandler{cam}, RTSPAddress: addr, WriteQueueSize: 4096}
	var err error
	for range 50 { // the previous camera's port may take a moment to free up
		if err = cam.srv.Start(); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	desc := clipDesc(c, audioAAC)
	cam.stream = &gortsplib.ServerStream{Server: cam.srv, Desc: desc}
	if err := cam.stream.Initialize(); err != nil {
		t.Fatal(err)
	}
	cam.ready.Store(cam.stream)
	// Play the clip in a loop, about four times faster than real time.
	errStopped := errors.New("camera stopped")
	cam.wg.Go(func() {
		clipLen := c.video[len(c.video)-1].dts + 3600
		for loop := int64(0); ; loop++ {
			w := &rtpWriter{c: c, desc: desc, base: loop * clipLen, write: func(m *description.Media, p *rtp.Packet) error {
				if p.Marker && m == desc.Medias[0] {
					select {
					case <-cam.stop:
						return errStopped
					case <-time.After(10 * time.Millisecond):
					}
				}
				_ = cam.stream.WritePacketRTP(m, p) // fails only when the stream is closed
				return nil
			}}
			if w.send() != nil {
				return
			}
		}
	})
	return cam
}

func (cam *camera) close() {
	close(cam.stop)
	cam.wg.Wait()
	cam.stream.Close()
	cam.srv.Close()
}

func TestCameraPull(t *testing.T) {
	c := loadClip(t, "h264_aac.ts")
	b := startBus(t)
	cam := startCamera(t, "127.0.0.1:0", c)
	camAddr := cam.srv.NetListener().Addr().String()
	defer func() { cam.close() }()

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
	cam.close()
	testkit.WaitFor(t, 10*time.Second, "a failed reconnection", func() bool { return edges[holder].Pulls()[0].Reconnects > 0 })
	cam = startCamera(t, camAddr, c)
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
			err := e.Start()
			if err == nil {
				e.Close()
				t.Fatal("Start accepted the source")
			}
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
	g := e.Metrics.(prometheus.Gatherer)
	testkit.WaitFor(t, 10*time.Second, "redirects refused", func() bool {
		return metricValue(t, g, "streamgrid_edge_rejected_total", map[string]string{"protocol": "pull", "reason": "redirect"}) >= 2
	})
	if n := dialed.Load(); n != 0 {
		t.Fatalf("the edge connected %d times to the host the camera redirected to", n)
	}
	if st := e.Pulls(); !strings.Contains(st[0].LastError, "redirected to another host") {
		t.Fatalf("pull status: %+v", st[0])
	}
}
