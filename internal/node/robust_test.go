package node

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/internal/testmedia"
)

// TestPublisherReconnect kills the publisher and starts it again under the
// same name: playback resumes, the media sequence keeps increasing across the
// new generation, the switch is a discontinuity, and closing the node leaves
// no goroutine behind.
func TestPublisherReconnect(t *testing.T) {
	testkit.Slow(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := allInOneConfig(t)
	n := &Node{Config: c, Role: RoleRun, Log: testkit.Logger(t)}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	a := n.Addrs()
	pub := "rtsp://" + a.RTSP + "/live/re"
	base := "http://" + a.Cache + "/live/re"

	// publish retries while the edge still finishes the previous session (409).
	publish := func() *testmedia.Camera {
		for deadline := time.Now().Add(5 * time.Second); ; {
			cam := &testmedia.Camera{URL: pub}
			err := cam.Start(context.Background())
			if err == nil {
				return cam
			}
			if !strings.Contains(err.Error(), "409") || time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	mediaURL := func() string {
		var u string
		deadline := time.Now().Add(15 * time.Second)
		for {
			var err error
			if u, err = mediaPlaylistURL(base); err == nil {
				return u
			}
			if time.Now().After(deadline) {
				t.Fatalf("no media playlist: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// waitMSN polls until the media sequence passes min and returns the state.
	waitMSN := func(u string, min int, limit time.Duration) (msn, disc int) {
		deadline := time.Now().Add(limit)
		for time.Now().Before(deadline) {
			if m, d, _, err := playlistState(u); err == nil && m > min {
				return m, d
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("media sequence did not pass %d within %v", min, limit)
		return 0, 0
	}

	cam := publish()
	u := mediaURL()
	msn1, disc1 := waitMSN(u, 0, 15*time.Second)
	cam.Close()
	_ = cam.Wait()

	cam = publish()
	defer cam.Close()
	// The new generation shows as a discontinuity; the media sequence goes on from where it was.
	var msn2, disc2 int
	for deadline := time.Now().Add(20 * time.Second); ; {
		m, d, tags, err := playlistState(u)
		if err == nil && (d > disc1 || tags > 0) && m > msn1 {
			msn2, disc2 = m, d
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no discontinuity after the reconnect: msn %d disc %d tags %d err %v (before: msn %d disc %d)", m, d, tags, err, msn1, disc1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The sequence never goes backwards while the new generation plays.
	last := msn2
	for range 10 {
		m, _, _, err := playlistState(u)
		if err != nil {
			t.Fatal(err)
		}
		if m < last {
			t.Fatalf("media sequence went backwards: %d after %d", m, last)
		}
		last = m
		time.Sleep(150 * time.Millisecond)
	}
	t.Logf("media sequence %d (disc %d) before the reconnect, %d (disc %d) after", msn1, disc1, last, disc2)

	check := &testmedia.Check{MaxGaps: 3}
	r := &testmedia.Reader{URL: base + "/index.m3u8", OnVideo: check.Video, RetryInterval: 100 * time.Millisecond, Log: testkit.Logger(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := playFrames(ctx, r, check, 25); err != nil {
		t.Fatalf("playback after reconnect: %v", err)
	}
	cam.Close()
	_ = cam.Wait()
	n.Close()
}

// TestHostileInput sends garbage to every listener and asks for hostile
// paths; each gets a clear error and the node keeps serving a real publisher.
func TestHostileInput(t *testing.T) {
	testkit.Slow(t)
	c := allInOneConfig(t)
	// fMP4 segments: the strict in-order check at the end must not depend on
	// gohlslib's LL-HLS client, which on a loaded machine can deliver a part's
	// frames again when it catches up through the full segment.
	c.Origin.HLS.Variant = "fmp4"
	c.Origin.HLS.SegmentCount = 3
	n := startNode(t, c, RoleRun)
	a := n.Addrs()

	junk := make([]byte, 64<<10)
	_, _ = rand.Read(junk)
	for _, addr := range []string{a.RTSP, a.RTMP} {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
		_, _ = conn.Write(junk) // the server may hang up before all of it is written
		if _, err := io.ReadAll(conn); err != nil && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("%s: connection not closed by the server after garbage: %v", addr, err)
		}
		conn.Close()
	}
	// An RTSP request with an absurd body length and a truncated one.
	for _, req := range []string{
		"OPTIONS rtsp://x/live/a RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 999999999\r\n\r\n",
		"ANNOUNCE rtsp://x/live/a RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: 500\r\n\r\nv=0\r\n",
		"ANNOUNCE rtsp://x/../etc RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: 0\r\n\r\n",
	} {
		conn, err := net.DialTimeout("tcp", a.RTSP, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
		_, _ = conn.Write([]byte(req))
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		_, _ = io.ReadAll(conn)
		conn.Close()
	}
	for path, want := range map[string]int{
		"/live/none/index.m3u8":                        http.StatusNotFound,
		"/live/../etc/passwd":                          http.StatusBadRequest,
		"/live/%2e%2e/x/index.m3u8":                    http.StatusBadRequest,
		"/live/a*b/index.m3u8":                         http.StatusBadRequest,
		"/" + strings.Repeat("a/", 300) + "index.m3u8": http.StatusBadRequest,
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+a.Cache+path, nil)
		req.URL.Opaque = path // send the path as written, without cleaning
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %.60s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	// Still serving.
	publishAndPlay(t, n, "rtsp://"+a.RTSP+"/live/after", "tcp", "live/after")
}
