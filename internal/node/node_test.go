package node

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/internal/testmedia"
)

// allInOneConfig is the default configuration on loopback with random ports.
func allInOneConfig(t *testing.T) *config.Config {
	c := config.Default()
	c.Node.Name = "aio"
	c.API.Address = "127.0.0.1:0"
	c.Bus.Server.Listen = "127.0.0.1:0"
	c.Bus.Server.StoreDir = t.TempDir()
	c.Gossip.Bind = "127.0.0.1:0"
	c.Edge.RTSPAddress = "127.0.0.1:0"
	rtp, rtcp := testkit.FreeUDPPair(t)
	c.Edge.RTPAddress = "127.0.0.1:" + strconv.Itoa(rtp)
	c.Edge.RTCPAddress = "127.0.0.1:" + strconv.Itoa(rtcp)
	c.Edge.RTMPAddress = "127.0.0.1:0"
	c.Origin.HTTPAddress = "127.0.0.1:0"
	c.Cache.HTTPAddress = "127.0.0.1:0"
	c.Origin.HLS.IdleTimeout = 3 * time.Second
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func startNode(t *testing.T, c *config.Config, role string) *Node {
	t.Helper()
	n := &Node{Config: c, Role: role, Log: testkit.Logger(t)}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// requireFFmpeg marks a test that runs ffmpeg and ffprobe: slow (skipped
// under -short), and skipped without them (failed under CI=true).
func requireFFmpeg(t *testing.T) {
	t.Helper()
	testkit.Slow(t)
	testkit.RequireFFmpeg(t)
	testkit.RequireFFprobe(t)
}

// playlistState fetches a media playlist and returns its EXT-X-MEDIA-SEQUENCE,
// EXT-X-DISCONTINUITY-SEQUENCE and count of EXT-X-DISCONTINUITY tags.
func playlistState(url string) (msn, disc, discTags int, err error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	if resp.Header.Get("X-Cache") == "STALE" {
		// A cache's last good copy during a failover is not progress.
		return 0, 0, 0, fmt.Errorf("%s: stale copy", url)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"):
			msn, _ = strconv.Atoi(strings.TrimPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"))
		case strings.HasPrefix(line, "#EXT-X-DISCONTINUITY-SEQUENCE:"):
			disc, _ = strconv.Atoi(strings.TrimPrefix(line, "#EXT-X-DISCONTINUITY-SEQUENCE:"))
		case line == "#EXT-X-DISCONTINUITY":
			discTags++
		}
	}
	return msn, disc, discTags, sc.Err()
}

// mediaPlaylistURL reads the multivariant playlist and returns the URL of its first media playlist.
func mediaPlaylistURL(base string) (string, error) {
	resp, err := http.Get(base + "/index.m3u8")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("index.m3u8: %s", resp.Status)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			return base + "/" + line, nil
		}
	}
	if m := regexp.MustCompile(`#EXT-X-MEDIA:.*URI="([^"]+)"`).FindStringSubmatch(string(b)); m != nil {
		return base + "/" + m[1], nil
	}
	return "", fmt.Errorf("no media playlist in %q", b)
}

// publishAndPlay publishes the sample with a synthetic camera and plays it back
// from the cache, checking that frames arrive in order with sane timestamps.
func publishAndPlay(t *testing.T, n *Node, pubURL, transport, path string) testmedia.Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cam := &testmedia.Camera{URL: pubURL, Transport: transport, StampSEI: true}
	start := time.Now()
	if err := cam.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	s := playChecked(t, ctx, "http://"+n.Addrs().Cache+"/"+path+"/index.m3u8", 75)
	t.Logf("%s over %s: first frame at the viewer %v after the publisher started; %d frames, %d gaps, latency avg %v",
		path, transport, s.FirstFrame.Sub(start).Round(time.Millisecond), s.Frames, s.Gaps, s.LatencyAvg.Round(time.Millisecond))
	if err := s.Err(); err != nil {
		t.Fatalf("playback check: %v", err)
	}
	return s
}

// playChecked plays url with the test viewer until it has frames video
// frames, checking each (SEI stamps, gaps), and returns the summary.
func playChecked(t *testing.T, ctx context.Context, url string, frames int) testmedia.Summary {
	t.Helper()
	check := &testmedia.Check{RequireSEI: true, MaxGaps: 3}
	r := &testmedia.Reader{
		URL:           url,
		OnVideo:       check.Video,
		OnAudio:       check.Audio,
		RetryInterval: 100 * time.Millisecond,
		Log:           testkit.Logger(t),
	}
	if err := playFrames(ctx, r, check, frames); err != nil {
		t.Fatalf("frames from %s: %v (summary %+v)", url, err, check.Summary())
	}
	return check.Summary()
}

// playFrames runs r until check has seen n video frames or ctx ends, then
// stops r and waits for it.
func playFrames(ctx context.Context, r *testmedia.Reader, check *testmedia.Check, n int) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	err := check.WaitFrames(rctx, n)
	cancel()
	<-done
	return err
}

func TestAllInOnePublishPlay(t *testing.T) {
	testkit.Slow(t)
	c := allInOneConfig(t)
	n := startNode(t, c, RoleRun)
	a := n.Addrs()
	cases := []struct {
		name, url, transport, path string
	}{
		{"rtsp-tcp", "rtsp://" + a.RTSP + "/live/cam1", "tcp", "live/cam1"},
		{"rtsp-udp", "rtsp://" + a.RTSP + "/live/cam2", "udp", "live/cam2"},
		{"rtmp", "rtmp://" + a.RTMP + "/rtmp/c1.live", "", "rtmp/c1.live"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			publishAndPlay(t, n, tc.url, tc.transport, tc.path)
		})
	}
}
