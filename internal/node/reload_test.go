package node

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.yaml.in/yaml/v3"

	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/internal/testmedia"
)

// startCameraServer starts a simulated IP camera serving path.
func startCameraServer(t *testing.T, path string) *testmedia.CameraServer {
	t.Helper()
	cam := &testmedia.CameraServer{Address: "127.0.0.1:0", Path: path, StampSEI: true}
	if err := cam.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cam.Close)
	return cam
}

// source is a configured camera pull with the defaults Load fills in.
func source(name, url string) config.Source {
	return config.Source{Name: name, URL: url, Transport: "tcp", BackoffMin: 200 * time.Millisecond,
		BackoffMax: time.Second, CloseAfter: config.DefaultCloseAfter}
}

// writeConfig writes c as streamgrid.yml the way an editor saves: to a
// temporary file renamed over the original.
func writeConfig(t *testing.T, path string, c *config.Config) {
	t.Helper()
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".swp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// playlistOK reports whether url answers a media playlist, and its state.
type plState struct{ msn, disc, discTags int }

func mediaState(t *testing.T, base string) (string, plState) {
	t.Helper()
	var url string
	testkit.WaitFor(t, 20*time.Second, base+" playable", func() bool {
		u, err := mediaPlaylistURL(base)
		if err != nil {
			return false
		}
		_, _, _, err = playlistState(u)
		url = u
		return err == nil
	})
	msn, disc, tags, err := playlistState(url)
	if err != nil {
		t.Fatal(err)
	}
	return url, plState{msn, disc, tags}
}

// TestReloadAddsAndRemovesCameras: a node with a pushed stream and a pulled
// camera gets a second camera by a rewrite of its file (seen by the file
// watcher): the new camera plays; the two streams the change does not touch
// go on with no new discontinuity, the first camera is not even reconnected.
// An invalid file is refused and the running configuration stays; removing
// the first camera stops its pull.
func TestReloadAddsAndRemovesCameras(t *testing.T) {
	testkit.Slow(t)
	cam1, cam2 := startCameraServer(t, "one"), startCameraServer(t, "two")
	c := allInOneConfig(t)
	c.Sources = []config.Source{source("cams/one", cam1.URL())}
	file := filepath.Join(t.TempDir(), "streamgrid.yml")
	writeConfig(t, file, c)
	loaded, err := config.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, loaded, RoleRun)
	w := &config.Watcher{Path: file, OnChange: func() { _ = n.ReloadFile(file) }, Log: testkit.Logger(t), Debounce: 50 * time.Millisecond}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := &testmedia.Camera{URL: "rtsp://" + n.Addrs().RTSP + "/live/push", Transport: "tcp", StampSEI: true}
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	cacheURL := "http://" + n.Addrs().Cache
	pushURL, push0 := mediaState(t, cacheURL+"/live/push")
	oneURL, one0 := mediaState(t, cacheURL+"/cams/one")
	describes1 := cam1.Describes()

	// A second camera, by a rewrite of the file.
	c.Sources = append(c.Sources, source("cams/two", cam2.URL()))
	writeConfig(t, file, c)
	playCtx, playCancel := context.WithTimeout(ctx, 30*time.Second)
	defer playCancel()
	s := playChecked(t, playCtx, cacheURL+"/cams/two/index.m3u8", 50)
	if err := s.Err(); err != nil {
		t.Fatalf("the added camera: %v", err)
	}

	// The untouched streams continue: media sequence forward, no new
	// discontinuity; the first camera was not reconnected.
	for _, st := range []struct {
		name, url string
		before    plState
	}{{"pushed stream", pushURL, push0}, {"first camera", oneURL, one0}} {
		var now plState
		testkit.WaitFor(t, 10*time.Second, st.name+" advancing", func() bool {
			msn, disc, tags, err := playlistState(st.url)
			now = plState{msn, disc, tags}
			return err == nil && msn > st.before.msn
		})
		if now.disc != st.before.disc || now.discTags > st.before.discTags {
			t.Errorf("%s: a discontinuity after the reload: before %+v, after %+v", st.name, st.before, now)
		}
		t.Logf("%s: media sequence %d → %d, discontinuity sequence %d → %d", st.name, st.before.msn, now.msn, st.before.disc, now.disc)
	}
	if d := cam1.Describes(); d != describes1 {
		t.Errorf("the first camera was asked DESCRIBE again (%d → %d): its pull restarted", describes1, d)
	}

	// An invalid file is refused; the running configuration stays.
	if err := os.WriteFile(file, []byte("sources:\n  - name: cams/bad\n    url: http://nope/\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = n.ReloadFile(file)
	if err == nil || !strings.Contains(err.Error(), "sources[0].url") {
		t.Fatalf("invalid file: err = %v, want it refused naming sources[0].url", err)
	}
	if got := len(n.CurrentConfig().Sources); got != 2 || len(n.edge.Pulls()) != 2 {
		t.Fatalf("after a refused reload: %d configured sources, %d pulls; want 2 and 2", got, len(n.edge.Pulls()))
	}
	if v := testutil.ToFloat64(n.m.reloads.WithLabelValues("refused")); v < 1 {
		t.Errorf("refused reloads counted %v", v)
	}

	// Removing the first camera stops its pull.
	c.Sources = c.Sources[1:]
	writeConfig(t, file, c)
	testkit.WaitFor(t, 15*time.Second, "the removed camera's session to close", func() bool {
		return cam1.Sessions() == 0 && len(n.edge.Pulls()) == 1
	})
	testkit.WaitFor(t, 15*time.Second, "the removed camera's stream to end at the edge", func() bool {
		for _, s := range n.edge.Streams() {
			if s.Path == "cams/one" {
				return false
			}
		}
		return true
	})
	if cam2.Sessions() != 1 {
		t.Errorf("the kept camera has %d sessions, want 1", cam2.Sessions())
	}
	if code, _, err := fetch(cacheURL + "/live/push/index.m3u8"); err != nil || code != http.StatusOK {
		t.Errorf("pushed stream after the removal: %d %v", code, err)
	}
}

// TestReloadHLSForNewStreams: a reload that changes the HLS variant applies
// to streams that start afterwards; a stream already packaged keeps its
// Low-Latency playlist.
func TestReloadHLSForNewStreams(t *testing.T) {
	testkit.Slow(t)
	c := allInOneConfig(t)
	n := startNode(t, c, RoleRun)
	a := n.Addrs()
	cacheURL := "http://" + a.Cache
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publish := func(path string) {
		cam := &testmedia.Camera{URL: "rtsp://" + a.RTSP + "/" + path}
		if err := cam.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cam.Close)
	}
	body := func(url string) string {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	publish("live/before")
	beforeURL, _ := mediaState(t, cacheURL+"/live/before")

	next := *c
	next.Origin.HLS.Variant = "mpegts"
	next.Origin.HLS.SegmentCount = 3
	if err := n.Reload(&next); err != nil {
		t.Fatal(err)
	}
	publish("live/after")
	afterURL, _ := mediaState(t, cacheURL+"/live/after")

	if b := body(beforeURL); !strings.Contains(b, "#EXT-X-PART:") {
		t.Errorf("the stream packaged before the reload lost its Low-Latency parts:\n%s", b)
	}
	if b := body(afterURL); strings.Contains(b, "#EXT-X-PART:") || !strings.Contains(b, ".ts") {
		t.Errorf("the stream started after the reload is not MPEG-TS:\n%s", b)
	}
}

// TestReloadAuth: users and permissions apply live; the signing key needs
// a restart and keeps its running value.
func TestReloadAuth(t *testing.T) {
	c := allInOneConfig(t)
	n := startNode(t, c, RoleRun)
	if n.auth.Enabled() {
		t.Fatal("auth enabled without an auth section")
	}
	next := *c
	next.Auth.Users = []config.AuthUser{{User: "admin", Pass: "secretpw", Permissions: []config.AuthPermission{{Action: "api"}}}}
	next.Auth.SigningKey = "MDEyMzQ1Njc4OWFiY2RlZg=="
	if err := n.Reload(&next); err != nil {
		t.Fatal(err)
	}
	if !n.auth.Enabled() {
		t.Error("the users of the reloaded file are not in force")
	}
	if cur := n.CurrentConfig(); cur.Auth.SigningKey != "" || len(cur.Auth.Users) != 1 {
		t.Errorf("in force: signing key %q, %d users; want the old key and the new users", cur.Auth.SigningKey, len(cur.Auth.Users))
	}
	if v := testkit.MetricSum(t, n.metrics, "streamgrid_config_restart_pending_keys", nil); v != 1 {
		t.Errorf("keys waiting for a restart: %v, want 1 (auth.signing_key)", v)
	}
}
