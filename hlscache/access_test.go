package hlscache

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/hlsproto"
)

// With a signing key, only signed URLs are served; every viewer's token is
// stripped before the lookup, so viewers with different tokens share one
// cached object; each refusal is a 403 counted by reason.
func TestSignedURLs(t *testing.T) {
	t.Parallel()
	var now atomic.Int64
	now.Store(time.Unix(1_800_000_000, 0).Unix())
	e := newEnv(t, func(c *Cache) {
		c.SigningKey = testKey
		c.Now = func() time.Time { return time.Unix(now.Load(), 0) }
	})
	seg := strings.Repeat("s", 1000)
	e.origin.set("/live/cam1/video1_stream.m3u8", []byte(llPlaylist))
	e.origin.set("/live/cam1/abc_video1_seg7.mp4", []byte(seg))
	e.own("live/cam1")
	t0 := time.Unix(now.Load(), 0)
	tokA := Sign(testKey, "live/cam1", t0.Add(time.Hour), nil)
	tokB := Sign(testKey, "live/cam1", t0.Add(2*time.Hour), nil)

	r := e.get("/s/" + tokA + "/live/cam1/video1_stream.m3u8")
	if r.status != 200 || r.body != llPlaylist {
		t.Fatalf("signed playlist: %d %q", r.status, r.body)
	}
	r = e.get("/s/" + tokA + "/live/cam1/abc_video1_seg7.mp4")
	if r.status != 200 || r.body != seg || r.header.Get("X-Cache") != "MISS" {
		t.Fatalf("signed segment: %d %s %d bytes", r.status, r.header.Get("X-Cache"), len(r.body))
	}
	// Another viewer, another token: the same cached object.
	r = e.get("/s/" + tokB + "/live/cam1/abc_video1_seg7.mp4")
	if r.status != 200 || r.header.Get("X-Cache") != "HIT" {
		t.Fatalf("second token: %d %s", r.status, r.header.Get("X-Cache"))
	}
	e.wantOriginRequests("/live/cam1/abc_video1_seg7.mp4", 1, "")

	_, far, _ := net.ParseCIDR("198.51.100.0/24")
	_, near, _ := net.ParseCIDR("127.0.0.0/8")
	tampered := []byte(tokA)
	tampered[len(tampered)-3] ^= 1
	for _, tc := range []struct {
		name, path, reason string
	}{
		{"unsigned", "/live/cam1/video1_stream.m3u8", "missing"},
		{"empty token", "/s//live/cam1/video1_stream.m3u8", "missing"},
		{"tampered", "/s/" + string(tampered) + "/live/cam1/video1_stream.m3u8", "signature"},
		{"other stream", "/s/" + tokA + "/live/cam2/video1_stream.m3u8", "signature"},
		{"garbage", "/s/hello/live/cam1/video1_stream.m3u8", "malformed"},
		{"version", "/s/9" + tokA[1:] + "/live/cam1/video1_stream.m3u8", "version"},
		{"other network", "/s/" + Sign(testKey, "live/cam1", t0.Add(time.Hour), far) + "/live/cam1/abc_video1_seg7.mp4", "network"},
	} {
		before := metricValue(e.cache.m.denied[tc.reason])
		r := e.get(tc.path)
		if r.status != http.StatusForbidden {
			t.Errorf("%s: %d %q, want 403", tc.name, r.status, r.body)
		}
		if got := metricValue(e.cache.m.denied[tc.reason]); got != before+1 {
			t.Errorf("%s: denied{reason=%s} went %v → %v", tc.name, tc.reason, before, got)
		}
	}
	if r := e.get("/s/" + Sign(testKey, "live/cam1", t0.Add(time.Hour), near) + "/live/cam1/abc_video1_seg7.mp4"); r.status != 200 {
		t.Errorf("token for the viewer's network: %d", r.status)
	}
	// Past the expiry: 403, and the cached segment is not served either.
	now.Store(t0.Add(time.Hour).Unix())
	if r := e.get("/s/" + tokA + "/live/cam1/abc_video1_seg7.mp4"); r.status != http.StatusForbidden || !strings.Contains(r.body, "expired") {
		t.Errorf("expired: %d %q", r.status, r.body)
	}
	if r := e.get("/s/" + tokB + "/live/cam1/abc_video1_seg7.mp4"); r.status != 200 {
		t.Errorf("the later token: %d", r.status)
	}
	// CORS preflights carry no token and reveal nothing.
	if r := e.do(http.MethodOptions, "/live/cam1/video1_stream.m3u8"); r.status != http.StatusNoContent {
		t.Errorf("OPTIONS: %d", r.status)
	}
}

// Without a signing key the Authorize hook decides: 401 with a Basic
// challenge for ErrUnauthenticated, 403 for other errors.
func TestAuthorizeHook(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Cache) {
		c.Authorize = func(r *http.Request, stream string) error {
			user, pass, ok := r.BasicAuth()
			switch {
			case !ok:
				return fmt.Errorf("read %s: %w", stream, ErrUnauthenticated)
			case user == "viewer" && pass == "pw" && stream == "live/cam1":
				return nil
			}
			return errors.New("user viewer may not read " + stream + " (internal detail)")
		}
	})
	e.origin.set("/live/cam1/video1_stream.m3u8", []byte(llPlaylist))
	e.own("live/cam1")
	const p = "/live/cam1/video1_stream.m3u8"
	r := e.get(p)
	if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("no credentials: %d, WWW-Authenticate %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	basic := func(u, pw string) string {
		req, _ := http.NewRequest(http.MethodGet, "/", nil)
		req.SetBasicAuth(u, pw)
		return req.Header.Get("Authorization")
	}
	if r := e.get(p, "Authorization", basic("viewer", "pw")); r.status != 200 {
		t.Errorf("valid credentials: %d %q", r.status, r.body)
	}
	r = e.get(p, "Authorization", basic("viewer", "wrong"))
	if r.status != http.StatusForbidden || strings.Contains(r.body, "internal") {
		t.Errorf("refused: %d %q", r.status, r.body)
	}
	if got := metricValue(e.cache.m.denied[deniedUnauthenticated]); got != 1 {
		t.Errorf("unauthenticated counted %v", got)
	}
	if got := metricValue(e.cache.m.denied[deniedForbidden]); got != 1 {
		t.Errorf("forbidden counted %v", got)
	}
}

// Without a key, /s/... is an ordinary path; nothing is stripped.
func TestNoKeyNoPrefix(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.origin.set("/s/cam/video1_stream.m3u8", []byte(llPlaylist))
	e.own("s/cam")
	if r := e.get("/s/cam/video1_stream.m3u8"); r.status != 200 {
		t.Fatalf("stream s/cam: %d %q", r.status, r.body)
	}
}

// The cache sends the origin secret with every upstream request.
func TestOriginSecretSent(t *testing.T) {
	t.Parallel()
	const secret = "a-cluster-secret-of-some-length"
	e := newEnv(t, func(c *Cache) { c.OriginSecret = secret })
	var bad atomic.Int32
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get(hlsproto.HeaderAuth) != secret {
			bad.Add(1)
			http.Error(w, "origins serve caches only", http.StatusForbidden)
			return true
		}
		return false
	})
	e.origin.set("/live/cam1/video1_stream.m3u8", []byte(llPlaylist))
	e.origin.set("/live/cam1/abc_video1_seg7.mp4", []byte("seg"))
	e.own("live/cam1")
	for _, p := range []string{"/live/cam1/video1_stream.m3u8", "/live/cam1/abc_video1_seg7.mp4", "/live/cam1/video1_stream.m3u8?_HLS_msn=8"} {
		if r := e.get(p); r.status != 200 {
			t.Errorf("%s: %d %q", p, r.status, r.body)
		}
	}
	if bad.Load() != 0 {
		t.Errorf("%d upstream requests without the secret", bad.Load())
	}
}
