package edge

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/gortsplib/v5"
	"github.com/prometheus/client_golang/prometheus"

	sgauth "github.com/streamgrid/streamgrid/internal/auth"
	"github.com/streamgrid/streamgrid/internal/auth/authconf"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

func startAuth(t *testing.T, users ...authconf.AuthUser) *sgauth.Authenticator {
	t.Helper()
	// Users only, no external authorizer: its keys (timeouts, fallback) do not apply.
	a := &sgauth.Authenticator{Config: authconf.Auth{Users: users}, Node: "edge-1", Role: "edge"}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// recordRTSP announces and records clip at u (credentials in u) and sends it.
func recordRTSP(t *testing.T, u string, c *clip) error {
	t.Helper()
	desc := clipDesc(c, "")
	client := &gortsplib.Client{Protocol: new(gortsplib.ProtocolTCP), WriteQueueSize: 4096}
	if err := client.StartRecording(u, desc); err != nil {
		return err
	}
	t.Cleanup(client.Close)
	w := &rtpWriter{c: c, desc: desc, write: client.WritePacketRTP, base: 1}
	return w.send()
}

// TestRTSPAuth: a Basic-only edge checks a hashed password with the
// gortsplib client; refusals are 401 (missing or wrong) and 403 (no
// permission on the path).
func TestRTSPAuth(t *testing.T) {
	b, e := startBusEdge(t, func(e *Edge) {
		e.Auth = startAuth(t, authconf.AuthUser{User: "cam", Pass: sgauth.HashSHA256("campw"),
			Permissions: []authconf.AuthPermission{{Action: "publish", Path: "live/*"}}})
		e.RTSPAuthMethods = []string{RTSPAuthBasic}
	})
	c := loadClip(t, "h264_aac.ts")
	addr := e.RTSPAddr().String()
	for _, tc := range []struct{ url, want string }{
		{"rtsp://" + addr + "/live/a", "401"},
		{"rtsp://cam:nope@" + addr + "/live/a", "401"},
		{"rtsp://cam:campw@" + addr + "/other/a", "403"},
	} {
		err := recordRTSP(t, tc.url, c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %s", tc.url, err, tc.want)
		}
	}
	col := collect(t, b.nc, "live/a")
	if err := recordRTSP(t, "rtsp://cam:campw@"+addr+"/live/a", c); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "packets on the bus", func() bool { return videoCount(col.packets()) > 0 })
	if n := rejected(t, e, "rtsp", "unauthorized"); n < 2 {
		t.Errorf("unauthorized refusals counted: %v", n)
	}
	if n := rejected(t, e, "rtsp", "forbidden"); n != 1 {
		t.Errorf("forbidden refusals counted: %v", n)
	}
}

// TestRTMPAuth: credentials in the stream name's query; the query is not
// part of the stream path.
func TestRTMPAuth(t *testing.T) {
	b, e := startBusEdge(t, func(e *Edge) {
		e.Auth = startAuth(t, authconf.AuthUser{User: "cam", Pass: "campw",
			Permissions: []authconf.AuthPermission{{Action: "publish", Path: "live/*"}}})
	})
	c := loadClip(t, "h264_aac.ts")
	for _, path := range []string{"live/r", "live/r?user=cam&pass=x", "other/r?user=cam&pass=campw"} {
		if _, err := publishRTMP(t, e.RTMPAddr(), path, c); err == nil {
			// The refusal may arrive after the client's last write: the
			// connection must be gone and nothing published.
			testkit.WaitFor(t, 5*time.Second, "refusal counted", func() bool {
				return testkit.MetricSum(t, e.Metrics.(prometheus.Gatherer), "streamgrid_edge_rejected_total",
					map[string]string{"protocol": "rtmp"}) > 0
			})
		}
	}
	if len(e.Streams()) != 0 {
		t.Fatalf("refused publishers are live: %+v", e.Streams())
	}
	col := collect(t, b.nc, "live/r")
	if _, err := publishRTMP(t, e.RTMPAddr(), "live/r?user=cam&pass=campw", c); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "packets on the bus", func() bool { return videoCount(col.packets()) > 0 })
	if st := e.Streams(); len(st) != 1 || st[0].Path != "live/r" {
		t.Fatalf("streams: %+v", st)
	}
}

// TestMaxPublishers: beyond edge.max_publishers a publisher is refused
// (RTSP 503, RTMP error), counted; the live one is untouched.
func TestMaxPublishers(t *testing.T) {
	_, e := startBusEdge(t, func(e *Edge) { e.MaxPublishers = 1 })
	c := loadClip(t, "h264_aac.ts")
	if _, err := publishRTSP(t, e.RTSPAddr(), "live/one", gortsplib.ProtocolTCP, c, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := publishRTSP(t, e.RTSPAddr(), "live/two", gortsplib.ProtocolTCP, c, ""); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("second RTSP publisher: %v, want 503", err)
	}
	_, _ = publishRTMP(t, e.RTMPAddr(), "live/three", c)
	testkit.WaitFor(t, 5*time.Second, "limit refusals counted", func() bool {
		return rejected(t, e, "rtsp", "limit") == 1 &&
			rejected(t, e, "rtmp", "limit") == 1
	})
	if st := e.Streams(); len(st) != 1 || st[0].Path != "live/one" {
		t.Fatalf("streams: %+v", st)
	}
}

// TestNoMediaDropped: a publisher that records but sends no media is
// dropped after MediaTimeout, though its connection stays alive.
func TestNoMediaDropped(t *testing.T) {
	b, e := startBusEdge(t, func(e *Edge) { e.MediaTimeout = 300 * time.Millisecond })
	c := loadClip(t, "h264_aac.ts")
	client := &gortsplib.Client{Protocol: new(gortsplib.ProtocolTCP)}
	if err := client.StartRecording("rtsp://"+e.RTSPAddr().String()+"/live/idle", clipDesc(c, "")); err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	testkit.WaitFor(t, 10*time.Second, "the idle publisher dropped", func() bool { return len(e.Streams()) == 0 })
	testkit.WaitFor(t, 5*time.Second, "its record removed", recordGone(b, "live/idle"))
	if n := rejected(t, e, "rtsp", "no_media"); n != 1 {
		t.Fatalf("no_media count %v", n)
	}
}

// TestRTSPHandshakeDeadline: a connection that keeps talking but never
// records is closed after ReadTimeout.
func TestRTSPHandshakeDeadline(t *testing.T) {
	_, e := startBusEdge(t, func(e *Edge) { e.ReadTimeout = 500 * time.Millisecond })
	conn, err := net.Dial("tcp", e.RTSPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := conn.Read(buf); err != nil {
				close(closed)
				return
			}
		}
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for seq := 1; ; seq++ {
		select {
		case <-closed:
			if n := rejected(t, e, "rtsp", "handshake_timeout"); n != 1 {
				t.Fatalf("handshake_timeout count %v", n)
			}
			return
		case <-tick.C:
		}
		if seq > 100 {
			t.Fatal("a connection sending only OPTIONS was kept for 10 s")
		}
		_, _ = conn.Write([]byte("OPTIONS rtsp://x/ RTSP/1.0\r\nCSeq: " + strconv.Itoa(seq) + "\r\n\r\n"))
	}
}

// TestRTMPSetupBytesCapped: a publisher that sends megabytes of media that
// never reveal the tracks is cut off at the allowance.
func TestRTMPSetupBytesCapped(t *testing.T) {
	_, e := startBusEdge(t, func(e *Edge) {
		e.ReadTimeout = 30 * time.Second // the byte cap must act, not a deadline
	})
	cl, err := dialRTMP(t, "rtmp://"+e.RTMPAddr().String()+"/live/flood", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var sent atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		au := make([]byte, 1<<20)
		for sent.Load() < 4*rtmpSetupBytes {
			// Non-keyframe AUs without a config record: no track is ever found,
			// and a constant DTS keeps the analysis going.
			err := cl.Write(&message.Video{ChunkStreamID: 6, MessageStreamID: 0x1000000,
				Codec: message.CodecH264, Type: message.VideoTypeAU, AU: au})
			if err != nil {
				return
			}
			sent.Add(int64(len(au)))
		}
	}()
	testkit.WaitFor(t, 20*time.Second, "the flood cut off", func() bool {
		return rejected(t, e, "rtmp", "setup_too_large") == 1
	})
	cl.Close()
	<-done
	if n := sent.Load(); n >= 4*rtmpSetupBytes {
		t.Fatalf("the edge read %d bytes without tracks", n)
	}
}

// TestSDPMediaBound: an ANNOUNCE with more media sections than a camera
// has is refused with 400.
func TestSDPMediaBound(t *testing.T) {
	_, e := startBusEdge(t, nil)
	var sdp strings.Builder
	sdp.WriteString("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n")
	for i := range maxSDPMedias + 1 {
		sdp.WriteString("m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=" + strconv.Itoa(i) + "\r\n")
	}
	conn, err := net.Dial("tcp", e.RTSPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "ANNOUNCE rtsp://" + e.RTSPAddr().String() + "/live/many RTSP/1.0\r\nCSeq: 1\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(sdp.Len()) + "\r\n\r\n" + sdp.String()
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, _ := conn.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "RTSP/1.0 400") {
		t.Fatalf("response %q, want 400", buf[:n])
	}
}

func TestRedactQueryPass(t *testing.T) {
	err := redactQueryPass(errors.New(`parse "rtmp://h/live/x?user=a&pass=s3cret%zz": invalid URL escape "%zz"`))
	if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "user=a&pass=xxxxx") {
		t.Fatalf("%v", err)
	}
	if e := errors.New("plain"); redactQueryPass(e) != e {
		t.Fatal("an error without a password was rewrapped")
	}
}
