package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/hlscache"
	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

var signingKey = []byte("streamgrid-test-signing-key-0123")

// signedConfig is the all-in-one configuration with signed playback URLs
// and the origin secret on.
func signedConfig(t *testing.T) *config.Config {
	c := allInOneConfig(t)
	c.Auth.SigningKey = base64.StdEncoding.EncodeToString(signingKey)
	c.Auth.OriginSecret = "origin-secret-for-the-tests"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSignedPlayback: with auth.signing_key set, a signed URL plays in
// ffprobe, ffmpeg and the LL-HLS test viewer (blocking reloads and parts,
// all under the token prefix); unsigned, tampered, expired and other-stream
// URLs get 403 (ffprobe fails on them); the origin port refuses requests
// without the cluster secret.
func TestSignedPlayback(t *testing.T) {
	requireFFmpeg(t)
	n := startNode(t, signedConfig(t), RoleRun)
	a := n.Addrs()
	startCamera(t, "rtsp://"+a.RTSP+"/live/sig1")
	base := "http://" + a.Cache
	signed := base + hlscache.SignPath(signingKey, "live/sig1", time.Now().Add(time.Hour), nil)
	testkit.WaitFor(t, 30*time.Second, "the signed playlist answers 200", func() bool {
		code, _, err := fetch(signed)
		return err == nil && code == http.StatusOK
	})

	if out := ffprobeCodecs(t, signed); !strings.Contains(out, "h264") {
		t.Fatalf("ffprobe of the signed URL: %q", out)
	}
	ffmpegDecode(t, signed)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := playChecked(t, ctx, signed, 50)
	t.Logf("LL-HLS viewer on the signed URL: %d frames, %d gaps", s.Frames, s.Gaps)

	tok, _, _ := strings.Cut(strings.TrimPrefix(hlscache.SignPath(signingKey, "live/sig1", time.Now().Add(time.Hour), nil), "/s/"), "/")
	tampered := []byte(tok)
	tampered[len(tampered)-2] ^= 1
	for name, u := range map[string]string{
		"unsigned":     base + "/live/sig1/index.m3u8",
		"tampered":     base + "/s/" + string(tampered) + "/live/sig1/index.m3u8",
		"expired":      base + hlscache.SignPath(signingKey, "live/sig1", time.Now().Add(-time.Second), nil),
		"other stream": base + "/s/" + tok + "/live/sig2/index.m3u8",
		"other key":    base + hlscache.SignPath([]byte("another-key-of-32-bytes-........"), "live/sig1", time.Now().Add(time.Hour), nil),
	} {
		if code, body, err := fetch(u); err != nil || code != http.StatusForbidden {
			t.Errorf("%s: %d %q %v, want 403", name, code, body, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, "ffprobe", "-hide_banner", "-loglevel", "error", u).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), "403") {
			t.Errorf("ffprobe %s: %v %q, want a 403 failure", name, err, out)
		}
	}
	// The console's player links are signed: the page and its playlist answer.
	var rec streamRecord
	if code, body := httpGet(t, "http://"+a.API+"/v1/streams/live/sig1"); code != 200 || json.Unmarshal([]byte(body), &rec) != nil || len(rec.Play) == 0 {
		t.Fatalf("API record of live/sig1: %d %s", code, body)
	}
	if !strings.Contains(rec.Play[0], "/s/") {
		t.Errorf("player link not signed: %s", rec.Play[0])
	}
	for _, u := range []string{rec.Play[0], rec.Play[0] + "index.m3u8"} {
		if code, body, err := fetch(u); err != nil || code != http.StatusOK {
			t.Errorf("console link %s: %d %q %v", u, code, body, err)
		}
	}
	// The origin port is no way around the signed URLs.
	if code, _, err := fetch("http://" + a.Origin + "/live/sig1/index.m3u8"); err != nil || code != http.StatusForbidden {
		t.Errorf("origin without the cluster secret: %d %v", code, err)
	}
}

// TestSignedPlaybackChromium: headless Chromium's built-in HLS player plays
// a signed URL (fMP4 variant: see TestABRPlaysInChromium).
func TestSignedPlaybackChromium(t *testing.T) {
	requireFFmpeg(t)
	testkit.RequireChromium(t)
	c := signedConfig(t)
	c.Origin.HLS.Variant = "fmp4"
	c.Origin.HLS.IdleTimeout = 10 * time.Second
	n := startNode(t, c, RoleRun)
	a := n.Addrs()
	startCamera(t, "rtsp://"+a.RTSP+"/live/sigweb")
	signedPath := hlscache.SignPath(signingKey, "live/sigweb", time.Now().Add(time.Hour), nil)
	signed := "http://" + a.Cache + signedPath
	mediaURL := ""
	testkit.WaitFor(t, 30*time.Second, "the signed media playlist has 4 segments", func() bool {
		if mediaURL == "" {
			u, err := mediaPlaylistURL(strings.TrimSuffix(signed, "/index.m3u8"))
			if err != nil {
				return false
			}
			mediaURL = u
		}
		_, body, err := fetch(mediaURL)
		return err == nil && len(segments(body)) >= 4
	})

	playsInChromium(t, signed, "the signed URL")
	// The same page with an unsigned URL plays nothing.
	if code, _, err := fetch("http://" + a.Cache + "/live/sigweb/index.m3u8"); err != nil || code != http.StatusForbidden {
		t.Errorf("unsigned: %d %v", code, err)
	}
}
