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

// position reads where a media playlist ends: its media sequence, and the
// last segment it lists with the parts listed after it (Low-Latency), so
// that every new part is progress. A cache's stale copy (served while a
// stream fails over) is not progress and does not count.
func position(url string) (seq int, end [2]int, err error) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, end, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Cache") == "STALE" {
		return 0, end, fmt.Errorf("status %d %s", resp.StatusCode, resp.Header.Get("X-Cache"))
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, end, err
	}
	seq = -1
	segs, parts := 0, 0
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"):
			if seq, err = strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"))); err != nil {
				return 0, end, err
			}
		case strings.HasPrefix(l, "#EXTINF:"):
			segs, parts = segs+1, 0
		case strings.HasPrefix(l, "#EXT-X-PART:"):
			parts++
		}
	}
	if seq < 0 {
		return 0, end, fmt.Errorf("no media sequence")
	}
	return seq, [2]int{seq + segs - 1, parts}, nil
}

func after(a, b [2]int) bool { return a[0] > b[0] || a[0] == b[0] && a[1] > b[1] }

// watch follows a media playlist every 50 ms: the newest part it lists and
// when that last changed, and any step back of its media sequence.
type watch struct {
	mu        sync.Mutex
	seq       int
	last      [2]int
	moved     time.Time
	backwards []string
}

func startWatch(ctx context.Context, url string) *watch {
	w := &watch{seq: -1, last: [2]int{-1, -1}, moved: time.Now()}
	go func() {
		for ctx.Err() == nil {
			if seq, end, err := position(url); err == nil {
				w.mu.Lock()
				if seq < w.seq {
					w.backwards = append(w.backwards, fmt.Sprintf("%d after %d", seq, w.seq))
				}
				w.seq = max(w.seq, seq)
				if after(end, w.last) {
					w.last, w.moved = end, time.Now()
				}
				w.mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return w
}

func (w *watch) cur() ([2]int, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last, w.moved
}

// stall runs fault and measures from the playlist's last new part before it
// to its first new part after it.
func (w *watch) stall(t *testing.T, what string, fault func()) time.Duration {
	t.Helper()
	p0, _ := w.cur()
	testkit.WaitFor(t, 15*time.Second, what+": playlist advancing", func() bool { p, _ := w.cur(); return after(p, p0) })
	fault()
	// The fault is complete (docker has killed the container): measure from
	// the playlist's last advance before that moment.
	p1, moved1 := w.cur()
	testkit.WaitFor(t, 30*time.Second, what+": playlist advancing after the fault", func() bool { p, _ := w.cur(); return after(p, p1) })
	p2, moved2 := w.cur()
	d := moved2.Sub(moved1)
	t.Logf("FIGURE %s: playlist stood still %.2f s (segment %d part %d → segment %d part %d)", what, d.Seconds(), p1[0], p1[1], p2[0], p2[1])
	return d
}

// player is ffmpeg decoding a stream through a cache for the rest of the
// test, as a viewer would: it must keep decoding across every fault.
type player struct {
	url    string
	mu     sync.Mutex
	frames int
	exited error // set when ffmpeg ended
	done   chan struct{}
	errs   testkit.Buffer
}

func startPlayer(ctx context.Context, t *testing.T, url string) *player {
	p := &player{url: url, done: make(chan struct{})}
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostats", "-loglevel", "warning",
		"-i", url, "-f", "null", "-", "-progress", "pipe:1")
	cmd.Stderr = &p.errs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		b := make([]byte, 4096)
		var line strings.Builder
		for {
			n, rerr := out.Read(b)
			for _, c := range b[:n] {
				if c != '\n' {
					line.WriteByte(c)
					continue
				}
				if v, ok := strings.CutPrefix(line.String(), "frame="); ok {
					if f, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
						p.mu.Lock()
						p.frames = f
						p.mu.Unlock()
					}
				}
				line.Reset()
			}
			if rerr != nil {
				break
			}
		}
		werr := cmd.Wait()
		p.mu.Lock()
		p.exited = fmt.Errorf("ffmpeg ended: %v", werr)
		p.mu.Unlock()
	}()
	return p
}

func (p *player) state() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frames, p.exited
}

// decoding fails the test unless the player is still running and decodes
// new frames within 20 s.
func (p *player) decoding(t *testing.T, what string) {
	t.Helper()
	f0, err := p.state()
	if err == nil {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			var f int
			if f, err = p.state(); err != nil || f > f0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	f1, err := p.state()
	if err != nil || f1 <= f0 {
		t.Errorf("%s: the player of %s stopped decoding (%d frames, then %d; %v)\n%s\n--- logs:\n%s", what, p.url, f0, f1, err, p.errs.String(),
			clusterLogs("--tail", "150", "edge1", "edge2", "origin1", "origin2", "cache1"))
		return
	}
	t.Logf("FIGURE %s: the player of %s decodes on (%d frames)", what, p.url, f1)
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
	p1 := startPlayer(ctx, t, "http://127.0.0.1:8888/live/cl1/index.m3u8")

	restart := func(svc string) {
		compose(t, "start", svc)
	}
	for i := range 2 {
		own := owner(t, "live/cl1")
		what := fmt.Sprintf("kill owning origin (%s, round %d)", own, i+1)
		w1.stall(t, what, func() { compose(t, "kill", own) })
		p1.decoding(t, what)
		decode(t, "http://127.0.0.1:8888/live/cl1/index.m3u8")
		restart(own)
		time.Sleep(3 * time.Second) // let it rejoin gossip before the next fault
	}
	w1.stall(t, "kill bus node bus2", func() { compose(t, "kill", "bus2") })
	p1.decoding(t, "kill bus node bus2")
	restart("bus2")
	w1.stall(t, "kill cache2 (watching cache1)", func() { compose(t, "kill", "cache2") })
	p1.decoding(t, "kill cache2")
	restart("cache2")

	// The pulled camera moves to the other edge.
	mc := ""
	testkit.WaitFor(t, 60*time.Second, "cams/demo playable", func() bool { mc = mediaURL("http://127.0.0.1:8888/cams/demo"); return mc != "" })
	conform(t, "http://127.0.0.1:8888/cams/demo/index.m3u8")
	wc := startWatch(ctx, mc)
	pc := startPlayer(ctx, t, "http://127.0.0.1:8888/cams/demo/index.m3u8")
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
	pc.decoding(t, "kill edge pulling the camera")
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
