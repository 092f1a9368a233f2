package hlscache

import (
	"net/http"
	"sync"
	"testing"

	"github.com/streamgrid/streamgrid/internal/hlsproto"
)

// Routes to the origin in this process are served by its handler, not over
// the network: the same answers, with the origin secret, and no request
// reaches the origin's listener.
func TestLocalOriginInProcess(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var remotes, secrets []string
	local := newFakeOrigin(t, "origin1") // the "in-process" origin: its listener is never used
	e := newEnv(t, func(c *Cache) {
		c.OriginSecret = "s3cret"
		m, _ := c.Gossip.Member("origin1")
		c.Local = LocalOrigin{Addr: m.Meta.HTTP, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			remotes = append(remotes, r.RemoteAddr)
			secrets = append(secrets, r.Header.Get(hlsproto.HeaderAuth))
			mu.Unlock()
			local.serve(w, r)
		})}
	})
	const playlist = "/live/cam1/index.m3u8"
	local.set(playlist, []byte(llPlaylist))
	local.set("/live/cam1/abc_seg9.mp4", []byte("segment nine"))
	e.own("live/cam1")
	local.epoch.Store(e.origin.epoch.Load())
	if r := e.get(playlist); r.status != http.StatusOK || r.body != llPlaylist {
		t.Fatalf("playlist in process: %d %q", r.status, r.body)
	}
	if r := e.get("/live/cam1/abc_seg9.mp4"); r.status != http.StatusOK || r.body != "segment nine" {
		t.Fatalf("segment in process: %d %q", r.status, r.body)
	}
	if r := e.get("/live/cam1/nothere.mp4"); r.status != http.StatusNotFound {
		t.Fatalf("404 in process: %d", r.status)
	}
	if n := e.origin.count(playlist) + e.origin.count("/live/cam1/abc_seg9.mp4"); n != 0 {
		t.Errorf("%d requests went over the network", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(remotes) < 3 {
		t.Fatalf("%d requests in process, want at least 3", len(remotes))
	}
	for i := range remotes {
		if remotes[i] != "" || secrets[i] != "s3cret" {
			t.Errorf("request %d: remote %q, secret %q", i, remotes[i], secrets[i])
		}
	}
}
