//go:build e2e

// Package deploy holds the container deployment and its end-to-end test:
// `go test -tags e2e ./deploy/` brings the compose cluster up, publishes with
// ffmpeg, plays through both caches, and kills each kind of node in turn,
// recording how long the playlist at a surviving cache stood still.
package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/hlscheck"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

var root = func() string { d, _ := filepath.Abs(".."); return d }()

func compose(t *testing.T, args ...string) string {
	t.Helper()
	var cmd *exec.Cmd
	if exec.Command("docker", "compose", "version").Run() == nil {
		cmd = exec.Command("docker", append([]string{"compose"}, args...)...)
	} else {
		cmd = exec.Command("docker-compose", args...)
	}
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("compose %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// mediaURL returns the first media playlist of a multivariant playlist.
func mediaURL(base string) string {
	code, b, err := testkit.GetText(&http.Client{Timeout: 3 * time.Second}, base+"/index.m3u8")
	if err != nil || code != 200 {
		return ""
	}
	for _, l := range strings.Split(b, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			return base + "/" + strings.TrimSpace(l)
		}
	}
	return ""
}

// msn reads a media playlist's EXT-X-MEDIA-SEQUENCE. A cache's stale copy
// (served while a stream fails over) is not progress and does not count.
func msn(url string) (int, error) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Cache") == "STALE" {
		return 0, fmt.Errorf("status %d %s", resp.StatusCode, resp.Header.Get("X-Cache"))
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("no media sequence")
}

type watch struct {
	mu        sync.Mutex
	last      int
	moved     time.Time
	backwards []string
}

func startWatch(ctx context.Context, url string) *watch {
	w := &watch{last: -1, moved: time.Now()}
	go func() {
		for ctx.Err() == nil {
			if m, err := msn(url); err == nil {
				w.mu.Lock()
				if m < w.last {
					w.backwards = append(w.backwards, fmt.Sprintf("%d after %d", m, w.last))
				} else if m > w.last {
					w.last, w.moved = m, time.Now()
				}
				w.mu.Unlock()
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return w
}

func (w *watch) cur() (int, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last, w.moved
}

// stall runs fault and measures from the playlist's last advance before it
// to its first advance after it.
func (w *watch) stall(t *testing.T, what string, fault func()) time.Duration {
	t.Helper()
	m0, _ := w.cur()
	testkit.WaitFor(t, 15*time.Second, what+": playlist advancing", func() bool { m, _ := w.cur(); return m > m0 })
	fault()
	// The fault is complete (docker has killed the container): measure from
	// the playlist's last advance before that moment.
	m1, moved1 := w.cur()
	testkit.WaitFor(t, 30*time.Second, what+": playlist advancing after the fault", func() bool { m, _ := w.cur(); return m > m1 })
	m2, moved2 := w.cur()
	d := moved2.Sub(moved1)
	t.Logf("FIGURE %s: playlist stood still %.1f s (media sequence %d → %d)", what, d.Seconds(), m1, m2)
	return d
}

func decode(t *testing.T, url string) {
	t.Helper()
	if err := testkit.FFmpegDecode(url, 3); err != nil {
		diag, _ := exec.Command("curl", "-si", url).CombinedOutput()
		t.Fatalf("decode %s: %v\n--- curl -si now:\n%s\n--- logs:\n%s", url, err, diag,
			clusterLogs("--tail", "40", "cache1", "origin1", "origin2"))
	}
}

// clusterLogs returns what `compose logs ARGS...` prints, for a failure's
// message (a failure must be explainable from the CI log alone).
func clusterLogs(args ...string) string {
	var cmd *exec.Cmd
	if exec.Command("docker", "compose", "version").Run() == nil {
		cmd = exec.Command("docker", append([]string{"compose", "logs", "--no-color"}, args...)...)
	} else {
		cmd = exec.Command("docker-compose", append([]string{"logs", "--no-color"}, args...)...)
	}
	cmd.Dir = root
	out, _ := cmd.CombinedOutput()
	return string(out)
}

type route struct {
	Node  string `json:"node"`
	Alive bool   `json:"alive"`
}

func owner(t *testing.T, path string) string {
	t.Helper()
	var node string
	testkit.WaitFor(t, 20*time.Second, "an owner for "+path, func() bool {
		// The API answers loopback clients only (no auth section): ask from inside.
		b, err := apiStreams("cache1")
		if err != nil {
			return false
		}
		var v struct {
			Cache map[string]route `json:"cache"`
		}
		if json.Unmarshal(b, &v) != nil {
			return false
		}
		r, ok := v.Cache[path]
		node = r.Node
		return ok && r.Alive
	})
	return node
}

// apiStreams reads /v1/streams of a service from inside its container: the
// API serves loopback clients only while no auth section is configured.
func apiStreams(service string) ([]byte, error) {
	var cmd *exec.Cmd
	args := []string{"exec", "-T", service, "curl", "-fsS", "http://127.0.0.1:9997/v1/streams"}
	if exec.Command("docker", "compose", "version").Run() == nil {
		cmd = exec.Command("docker", append([]string{"compose"}, args...)...)
	} else {
		cmd = exec.Command("docker-compose", args...)
	}
	cmd.Dir = root
	return cmd.Output()
}

func pulling(t *testing.T, edge, source string) bool {
	out, err := apiStreams(edge)
	return err == nil && strings.Contains(string(out), `"path": "`+source+`"`)
}

// conform follows each stream with the conformance checker (RFC 8216 and
// LL-HLS rules, segments fetched after they left the playlist) for 15 s,
// all at once, and fails on any violation.
func conform(t *testing.T, urls ...string) {
	t.Helper()
	var wg sync.WaitGroup
	for _, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			rep, err := (&hlscheck.Checker{URL: u, Duration: 15 * time.Second}).Run(ctx)
			if err != nil {
				t.Errorf("check %s: %v", u, err)
				return
			}
			t.Logf("FIGURE check %s: %d reloads, %d segments, %d parts, %d fetches (%d after leaving the playlist), %d violations",
				u, rep.Reloads, rep.Segments, rep.Parts, rep.Fetches, rep.LateFetches, len(rep.Violations))
			for _, v := range rep.Violations {
				t.Errorf("check %s: %s %s: %s", u, v.Rule, v.Playlist, v.Detail)
			}
			if len(rep.Violations) > 0 {
				// What the nodes said meanwhile: the stream's owners and edges
				// (docker-compose v1 has no --since).
				t.Logf("--- logs:\n%s", clusterLogs("--tail", "150",
					"origin1", "origin2", "edge1", "edge2", "cache1", "cache2"))
			}
		}()
	}
	wg.Wait()
}

func TestComposeCluster(t *testing.T) {
	testkit.RequireDocker(t)
	testkit.RequireFFmpeg(t)
	testkit.RequireFFprobe(t)
	t.Log(compose(t, "up", "-d", "--build"))
	if os.Getenv("SG_E2E_KEEP") == "" {
		t.Cleanup(func() { compose(t, "down", "-v", "--remove-orphans") })
	}
	// Every node with a healthcheck healthy (the camera has none: running).
	testkit.WaitFor(t, 180*time.Second, "every node healthy", func() bool {
		ids := strings.Fields(compose(t, "ps", "-q"))
		if len(ids) < 10 {
			return false
		}
		for _, id := range ids {
			out, err := exec.Command("docker", "inspect", "--format",
				"{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}", id).Output()
			if st := strings.TrimSpace(string(out)); err != nil || st != "healthy" && st != "running" {
				return false
			}
		}
		return true
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-bf", "0", "-c:a", "aac",
		"-f", "rtsp", "-rtsp_transport", "tcp", "rtsp://127.0.0.1:8555/live/cl1")
	if err := pub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = pub.Wait() }()
	started := time.Now()

	var m1, m2 string
	testkit.WaitFor(t, 60*time.Second, "live/cl1 at both caches", func() bool {
		m1, m2 = mediaURL("http://127.0.0.1:8888/live/cl1"), mediaURL("http://127.0.0.1:8889/live/cl1")
		return m1 != "" && m2 != ""
	})
	t.Logf("FIGURE publish to edge2 → playable at both caches: %.1f s", time.Since(started).Seconds())
	decode(t, "http://127.0.0.1:8888/live/cl1/index.m3u8")
	decode(t, "http://127.0.0.1:8889/live/cl1/index.m3u8")
	conform(t, "http://127.0.0.1:8888/live/cl1/index.m3u8", "http://127.0.0.1:8889/live/cl1/index.m3u8")
	w1 := startWatch(ctx, m1)
	w2 := startWatch(ctx, m2)

	restart := func(svc string) {
		compose(t, "start", svc)
	}
	for i := range 2 {
		own := owner(t, "live/cl1")
		w1.stall(t, fmt.Sprintf("kill owning origin (%s, round %d)", own, i+1), func() { compose(t, "kill", own) })
		decode(t, "http://127.0.0.1:8888/live/cl1/index.m3u8")
		restart(own)
		time.Sleep(3 * time.Second) // let it rejoin gossip before the next fault
	}
	w1.stall(t, "kill bus node bus2", func() { compose(t, "kill", "bus2") })
	restart("bus2")
	w1.stall(t, "kill cache2 (watching cache1)", func() { compose(t, "kill", "cache2") })
	restart("cache2")

	// The pulled camera moves to the other edge.
	mc := ""
	testkit.WaitFor(t, 60*time.Second, "cams/demo playable", func() bool { mc = mediaURL("http://127.0.0.1:8888/cams/demo"); return mc != "" })
	conform(t, "http://127.0.0.1:8888/cams/demo/index.m3u8")
	wc := startWatch(ctx, mc)
	var holder string
	testkit.WaitFor(t, 30*time.Second, "an edge pulling cams/demo", func() bool {
		for _, e := range []string{"edge1", "edge2"} {
			if pulling(t, e, "cams/demo") {
				holder = e
				return true
			}
		}
		return false
	})
	wc.stall(t, "kill edge pulling the camera ("+holder+")", func() { compose(t, "kill", holder) })
	other := map[string]string{"edge1": "edge2", "edge2": "edge1"}[holder]
	testkit.WaitFor(t, 30*time.Second, other+" pulls cams/demo", func() bool { return pulling(t, other, "cams/demo") })
	decode(t, "http://127.0.0.1:8888/cams/demo/index.m3u8")
	restart(holder)

	for name, w := range map[string]*watch{"cache1": w1, "cache2": w2, "camera": wc} {
		w.mu.Lock()
		if len(w.backwards) > 0 {
			t.Errorf("%s: media sequence went backwards: %v", name, w.backwards)
		}
		w.mu.Unlock()
	}
}
