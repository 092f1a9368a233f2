package hlscache

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/streamgrid/streamgrid/internal/hlsproto"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

const llPlaylist = `#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-MAP:URI="abc_video1_init.mp4"
#EXTINF:2.0,
abc_video1_seg7.mp4
#EXT-X-PART:DURATION=0.2,URI="abc_video1_part30.mp4"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="abc_video1_part31.mp4"
`

func TestServePlaylistAndSegment(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.origin.set("/live/cam1/video1_stream.m3u8", []byte(llPlaylist))
	seg := bytes.Repeat([]byte("0123456789"), 100)
	e.origin.set("/live/cam1/abc_video1_seg7.mp4", seg)
	e.origin.set("/live/cam1/seg1.ts", []byte("tsdata"))
	e.origin.set("/live/cam1/audio.aac", []byte("aacdata"))
	e.own("live/cam1")

	r := e.get("/live/cam1/video1_stream.m3u8")
	if r.status != 200 || r.body != llPlaylist {
		t.Fatalf("playlist: %d %q", r.status, r.body)
	}
	checkHeaders(t, r, map[string]string{
		"Content-Type":                  "application/vnd.apple.mpegurl",
		"Cache-Control":                 "no-cache",
		"X-Cache":                       "MISS",
		"Access-Control-Allow-Origin":   "*",
		"Access-Control-Allow-Methods":  "GET, HEAD, OPTIONS",
		"Access-Control-Allow-Headers":  "Range, Origin, Content-Type, Accept",
		"Access-Control-Expose-Headers": "Content-Length, Content-Range",
	})
	if v := r.header.Get("Access-Control-Allow-Credentials"); v != "" {
		t.Errorf("credentials allowed with a wildcard origin: %q", v)
	}

	r = e.get("/live/cam1/abc_video1_seg7.mp4")
	if r.status != 200 || r.body != string(seg) {
		t.Fatalf("segment: %d, %d bytes", r.status, len(r.body))
	}
	checkHeaders(t, r, map[string]string{
		"Content-Type":   "video/mp4",
		"Cache-Control":  "public, max-age=3600",
		"X-Cache":        "MISS",
		"Content-Length": strconv.Itoa(len(seg)),
	})
	r = e.get("/live/cam1/abc_video1_seg7.mp4?token=1")
	checkHeaders(t, r, map[string]string{"X-Cache": "HIT"})
	e.wantOriginRequests("/live/cam1/abc_video1_seg7.mp4", 1, "")

	r = e.get("/live/cam1/abc_video1_seg7.mp4", "Range", "bytes=10-19")
	if r.status != http.StatusPartialContent || r.body != "0123456789" {
		t.Errorf("range: %d %q", r.status, r.body)
	}
	checkHeaders(t, r, map[string]string{"Content-Range": "bytes 10-19/1000"})

	r = e.do(http.MethodHead, "/live/cam1/abc_video1_seg7.mp4")
	if r.status != 200 || r.body != "" || r.header.Get("Content-Length") != "1000" {
		t.Errorf("HEAD: %d %q length %q", r.status, r.body, r.header.Get("Content-Length"))
	}

	r = e.get("/live/cam1/seg1.ts")
	checkHeaders(t, r, map[string]string{"Content-Type": "video/mp2t"})
	r = e.get("/live/cam1/audio.aac")
	checkHeaders(t, r, map[string]string{"Content-Type": "audio/aac"})

	r = e.do(http.MethodOptions, "/live/cam1/video1_stream.m3u8", "Origin", "https://player.example", "Access-Control-Request-Method", "GET")
	if r.status != http.StatusNoContent {
		t.Errorf("OPTIONS: %d", r.status)
	}
	checkHeaders(t, r, map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS"})

	r = e.do(http.MethodPost, "/live/cam1/video1_stream.m3u8")
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD, OPTIONS" {
		t.Errorf("POST: %d allow %q", r.status, r.header.Get("Allow"))
	}

	// A file the origin does not have passes through as 404.
	r = e.get("/live/cam1/abc_video1_seg99.mp4")
	if r.status != 404 {
		t.Errorf("missing segment: %d", r.status)
	}

	if got := metricValue(e.cache.m.requests.WithLabelValues("segment", "hit")); got < 2 {
		t.Errorf("segment hits counted %v", got)
	}
	if got := metricValue(e.cache.m.routes); got != 1 {
		t.Errorf("routes gauge %v", got)
	}
}

func checkHeaders(t *testing.T, r response, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
}

func TestSpecificAllowOrigin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Cache) { c.AllowOrigin = "https://player.example" })
	r := e.get("/live/nope/index.m3u8")
	if r.status != 404 || strings.TrimSpace(r.body) != "stream not found" {
		t.Fatalf("unknown stream: %d %q", r.status, r.body)
	}
	checkHeaders(t, r, map[string]string{
		"Access-Control-Allow-Origin":      "https://player.example",
		"Access-Control-Allow-Credentials": "true",
		"Content-Type":                     "text/plain; charset=utf-8",
	})
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.origin.set("/live/cam1/index.m3u8", []byte(llPlaylist))
	e.own("live/cam1")
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/live/../cam1/index.m3u8", 400},
		{"/live/cam1/%2e%2e/index.m3u8", 400},
		{"/live//cam1/index.m3u8", 400},
		{"/live/c%20m/index.m3u8", 400},
		{"/live/c%20m/", 400},
		{"/live/cam1/index.m3u8?_HLS_part=1", 400},
		{"/live/cam1/index.m3u8?_HLS_msn=x", 400},
		{"/live/cam1/index.m3u8?_HLS_msn=1&_HLS_msn=2", 400},
		{"/live/cam1/index.m3u8?_HLS_skip=NO", 400},
		{"/live/cam1/index.html", 404},
		{"/live/cam1/.hidden.mp4", 404},
		{"/index.m3u8", 404},
		{"/", 404},
		{"/live/other/index.m3u8", 404},
	} {
		r := e.get(tc.path)
		if r.status != tc.status {
			t.Errorf("%s: %d, want %d", tc.path, r.status, tc.status)
		}
		if r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS header", tc.path)
		}
	}
	e.wantOriginRequests("/live/cam1/index.m3u8", 0, "rejected requests")
}

// Many viewers asking for one segment at once cost the origin one request.
func TestCoalescedSegment(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	const path = "/live/cam1/abc_video1_seg8.mp4"
	seg := bytes.Repeat([]byte{0xAB}, 50_000)
	e.origin.set(path, seg)
	release := e.origin.holdAll()
	l := e.own("live/cam1")

	const viewers = 100
	results := make(chan response, viewers)
	for range viewers {
		e.getAsync(path, results)
	}
	key := cacheKey(route{node: "origin1", epoch: l.Owner.Epoch}, &request{stream: "live/cam1", file: "abc_video1_seg8.mp4"})
	testkit.WaitFor(t, 10*time.Second, "all viewers waiting on one fetch", func() bool {
		return e.cache.flights.waiting(key) == viewers
	})
	close(release)
	counts := map[string]int{}
	for range viewers {
		r := <-results
		if r.status != 200 || r.body != string(seg) {
			t.Fatalf("viewer got %d (%d bytes) %s", r.status, len(r.body), r.header.Get("X-Cache"))
		}
		counts[r.header.Get("X-Cache")]++
	}
	e.wantOriginRequests(path, 1, "")
	if counts["MISS"] != 1 || counts["COALESCED"] != viewers-1 {
		t.Errorf("X-Cache counts %v", counts)
	}
	if got := metricValue(e.cache.m.upstreamRequests.WithLabelValues("segment")); got != 1 {
		t.Errorf("upstream requests metric %v", got)
	}
}

// Blocking LL-HLS reloads for one (msn, part) share one upstream request,
// whatever the order of the directives and whatever other parameters come
// with them; only the directives reach the origin.
func TestCoalescedBlockingPlaylist(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	const path = "/live/cam1/video1_stream.m3u8"
	e.origin.set(path, []byte(llPlaylist))
	release := make(chan struct{})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Query().Has("_HLS_msn") {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		return false
	})
	l := e.own("live/cam1")

	queries := []string{"?_HLS_msn=8&_HLS_part=2", "?_HLS_part=2&_HLS_msn=8", "?_HLS_msn=08&_HLS_part=2&token=secret", "?a=b&_HLS_part=2&_HLS_msn=8"}
	const viewers = 20
	results := make(chan response, viewers)
	for i := range viewers {
		e.getAsync(path+queries[i%len(queries)], results)
	}
	req := &request{stream: "live/cam1", file: "video1_stream.m3u8", kind: kindPlaylist,
		hls: hlsproto.Directives{MSN: 8, Part: 2, HasMSN: true, HasPart: true}}
	key := cacheKey(route{node: "origin1", epoch: l.Owner.Epoch}, req)
	testkit.WaitFor(t, 10*time.Second, "all blocking reloads waiting on one fetch", func() bool {
		return e.cache.flights.waiting(key) == viewers
	})
	close(release)
	for range viewers {
		r := <-results
		if r.status != 200 || r.body != llPlaylist || r.header.Get("Cache-Control") != "no-cache" {
			t.Fatalf("viewer got %d %q cache-control %q", r.status, r.body, r.header.Get("Cache-Control"))
		}
	}
	// The cache knew no window of this playlist: it fetched the plain
	// playlist once to check _HLS_msn against it (window.go).
	qs := e.origin.receivedQueries()
	if len(qs) != 2 || qs[0] != "" || qs[1] != "_HLS_msn=8&_HLS_part=2" {
		t.Errorf("origin received queries %q, want the plain playlist, then one _HLS_msn=8&_HLS_part=2", qs)
	}
	// The answer for this (msn, part) is kept: a late viewer hits.
	r := e.get(path + "?_HLS_msn=8&_HLS_part=2")
	checkHeaders(t, r, map[string]string{"X-Cache": "HIT"})
}

// A viewer that gives up does not cancel the fetch others wait on.
func TestViewerLeavingKeepsSharedFetch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	const path = "/live/cam1/abc_video1_part31.mp4"
	e.origin.set(path, []byte("part-31"))
	release := e.origin.holdAll()
	l := e.own("live/cam1")
	key := cacheKey(route{node: "origin1", epoch: l.Owner.Epoch}, &request{stream: "live/cam1", file: "abc_video1_part31.mp4"})

	ctx, cancel := context.WithCancel(context.Background())
	leaver := make(chan error, 1)
	go func() {
		_, err := e.request(ctx, http.MethodGet, path)
		leaver <- err
	}()
	stayer := make(chan response, 1)
	e.getAsync(path, stayer)
	testkit.WaitFor(t, 10*time.Second, "two viewers waiting", func() bool { return e.cache.flights.waiting(key) == 2 })
	cancel()
	if err := <-leaver; !errors.Is(err, context.Canceled) {
		t.Fatalf("leaver: %v", err)
	}
	testkit.WaitFor(t, 10*time.Second, "the leaver gone", func() bool { return e.cache.flights.waiting(key) == 1 })
	close(release)
	r := <-stayer
	if r.status != 200 || r.body != "part-31" {
		t.Fatalf("stayer got %d %q", r.status, r.body)
	}
	e.wantOriginRequests(path, 1, "")
}

func TestLRUEvictsByBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Cache) { c.MaxBytes = 20 << 10 })
	body := bytes.Repeat([]byte("x"), 1500) // ~2.1 KiB accounted: 9 fit in 20 KiB
	for i := range 12 {
		e.origin.set("/live/cam1/s"+strconv.Itoa(i)+".mp4", body)
	}
	big := bytes.Repeat([]byte("y"), 3000) // over MaxBytes/8: served, never kept
	e.origin.set("/live/cam1/big.mp4", big)
	e.own("live/cam1")

	for i := range 12 {
		if r := e.get("/live/cam1/s" + strconv.Itoa(i) + ".mp4"); r.status != 200 || len(r.body) != 1500 {
			t.Fatalf("s%d: %d", i, r.status)
		}
	}
	size, n := e.cache.lru.size()
	if size > 20<<10 || n != 9 {
		t.Errorf("LRU holds %d bytes in %d objects", size, n)
	}
	if got := metricValue(e.cache.m.lruEvictions); got != 3 {
		t.Errorf("evictions %v, want 3", got)
	}
	if got := metricValue(e.cache.m.lruBytes); got != float64(size) {
		t.Errorf("lru bytes gauge %v, want %d", got, size)
	}
	// The oldest were evicted and come from the origin again; the newest hit.
	if r := e.get("/live/cam1/s0.mp4"); r.header.Get("X-Cache") != "MISS" {
		t.Errorf("s0 after eviction: %s", r.header.Get("X-Cache"))
	}
	if r := e.get("/live/cam1/s11.mp4"); r.header.Get("X-Cache") != "HIT" {
		t.Errorf("s11: %s", r.header.Get("X-Cache"))
	}
	for range 2 {
		if r := e.get("/live/cam1/big.mp4"); r.status != 200 || len(r.body) != len(big) {
			t.Fatalf("big: %d", r.status)
		}
	}
	e.wantOriginRequests("/live/cam1/big.mp4", 2, "never cached")
}

// When the owner changes, so do the keys: the new owner's object is fetched,
// never the old one's served in its place.
func TestOwnerChangeChangesKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	const path = "/live/cam1/init.mp4"
	e.origin.set(path, []byte("init-of-epoch-1"))
	l := e.own("live/cam1")
	if r := e.get(path); r.body != "init-of-epoch-1" {
		t.Fatalf("first owner: %q", r.body)
	}
	e.release(l)
	e.origin.set(path, []byte("init-of-epoch-2"))
	l2 := e.own("live/cam1")
	if l2.Owner.Epoch == l.Owner.Epoch {
		t.Fatal("epoch did not change")
	}
	r := e.get(path)
	if r.body != "init-of-epoch-2" || r.header.Get("X-Cache") != "MISS" {
		t.Errorf("after the owner changed: %q %s", r.body, r.header.Get("X-Cache"))
	}
	e.wantOriginRequests(path, 2, "")
}

// An answer whose X-Streamgrid headers name another owner or epoch is served
// but never stored.
func TestMismatchedOriginHeadersNotCached(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	const path = "/live/cam1/abc_video1_seg7.mp4"
	e.origin.set(path, []byte("segment"))
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set(hlsproto.HeaderEpoch, "999999")
		return false
	})
	e.own("live/cam1")
	for range 2 {
		if r := e.get(path); r.status != 200 || r.header.Get("X-Cache") != "MISS" {
			t.Fatalf("got %d %s", r.status, r.header.Get("X-Cache"))
		}
	}
	e.wantOriginRequests(path, 2, "")
}

// An owner whose lease ends starts a failover: viewers get the last good
// playlist and the old owner's cached segments, blocking reloads are held
// until a new owner appears, and nothing answers 404 or 502 meanwhile.
func TestFailoverServesLastGoodPlaylist(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	const (
		playlist = "/live/cam1/video1_stream.m3u8"
		seg      = "/live/cam1/abc_video1_seg7.mp4"
	)
	e.origin.set(playlist, []byte(llPlaylist))
	e.origin.set(seg, []byte("segment-7"))
	l := e.own("live/cam1")
	e.get(playlist)
	e.get(seg)

	e.release(l)
	r := e.get(playlist + "?_HLS_skip=YES")
	if r.status != 200 || r.body != llPlaylist {
		t.Fatalf("during failover: %d %q", r.status, r.body)
	}
	checkHeaders(t, r, map[string]string{"X-Cache": "STALE", "Cache-Control": "no-cache", "Content-Type": "application/vnd.apple.mpegurl"})
	r = e.get(seg)
	if r.status != 200 || r.body != "segment-7" || r.header.Get("X-Cache") != "HIT" {
		t.Fatalf("old owner's segment during failover: %d %q %s", r.status, r.body, r.header.Get("X-Cache"))
	}

	held := make(chan response, 1)
	e.getAsync(playlist+"?_HLS_msn=8", held)
	// The held reload reaches no origin while there is no owner.
	testkit.WaitFor(t, 5*time.Second, "the blocking reload held", func() bool {
		return metricValue(e.cache.m.held) == 1
	})
	e.wantOriginRequests(playlist, 1, "the one before the failover")
	e.origin.set(playlist, []byte(llPlaylist+"#new-owner\n"))
	e.own("live/cam1")
	r = <-held
	if r.status != 200 || !strings.HasSuffix(r.body, "#new-owner\n") {
		t.Fatalf("held reload: %d %q", r.status, r.body)
	}
	if got := metricValue(e.cache.m.requests.WithLabelValues("playlist", "not_found")); got != 0 {
		t.Errorf("%v playlist requests answered 404 during failover", got)
	}

	// The new owner does not have the old owner's segment: a player still
	// on the last good playlist gets the old owner's copy, not a 404.
	e.origin.remove(seg)
	for range 2 {
		r = e.get(seg)
		if r.status != 200 || r.body != "segment-7" || r.header.Get("X-Cache") != "HIT" {
			t.Fatalf("old owner's segment after the failover: %d %q %s", r.status, r.body, r.header.Get("X-Cache"))
		}
	}
	// A segment neither owner has is still a 404.
	if r := e.get("/live/cam1/abc_video1_seg99.mp4"); r.status != 404 {
		t.Errorf("unknown segment after the failover: %d", r.status)
	}
}

// An owner that leaves gossip (its node died) fails over the same way, and
// once the window has passed the stream is unknown.
func TestFailoverOnGossipLossThenNotFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Cache) { c.FailoverWindow = time.Second })
	const playlist = "/live/cam1/index.m3u8"
	e.origin.set(playlist, []byte(llPlaylist))
	e.own("live/cam1")
	e.get(playlist)

	e.originGossip.Close()
	testkit.WaitFor(t, 10*time.Second, "the owner seen dead", func() bool { return !e.cache.Routes()["live/cam1"].Alive })
	r := e.get(playlist)
	if r.status != 200 || r.header.Get("X-Cache") != "STALE" {
		t.Fatalf("after the owner left gossip: %d %s", r.status, r.header.Get("X-Cache"))
	}
	testkit.WaitFor(t, 10*time.Second, "the failover window to pass", func() bool {
		return e.get(playlist).status == 404
	})
}

// A hung origin answers 504 within the deadline, and other streams are
// served meanwhile.
func TestHungUpstreamTimesOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Cache) { c.UpstreamTimeout = 300 * time.Millisecond })
	e.origin.set("/live/ok/index.m3u8", []byte(llPlaylist))
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, "/live/hung/") {
			<-r.Context().Done()
			return true
		}
		return false
	})
	e.own("live/hung")
	e.own("live/ok")

	hung := make(chan response, 1)
	e.getAsync("/live/hung/abc_seg1.mp4", hung)
	testkit.WaitFor(t, 5*time.Second, "the hung request upstream", func() bool { return e.origin.count("/live/hung/abc_seg1.mp4") == 1 })
	if r := e.get("/live/ok/index.m3u8"); r.status != 200 {
		t.Fatalf("other stream: %d", r.status)
	}
	r := <-hung
	if r.status != http.StatusGatewayTimeout || strings.TrimSpace(r.body) != "upstream timeout" {
		t.Fatalf("hung: %d %q", r.status, r.body)
	}
	if got := metricValue(e.cache.m.upstreamErrors.WithLabelValues("segment", "timeout")); got != 1 {
		t.Errorf("timeout errors counted %v", got)
	}
}

func TestUpstreamErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) bool {
		switch r.URL.Path {
		case "/live/cam1/boom.mp4":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "/live/cam1/empty.mp4":
			w.WriteHeader(http.StatusOK) // gohlslib's answer for an unknown file
		case "/live/cam1/index.m3u8":
			http.Error(w, "bad msn", http.StatusBadRequest)
		case "/live/cam1/stalled.m3u8":
			w.Header().Set("Retry-After", "1")
			http.Error(w, "not available yet", http.StatusServiceUnavailable)
		default:
			return false
		}
		return true
	})
	e.own("live/cam1")
	if r := e.get("/live/cam1/boom.mp4"); r.status != http.StatusBadGateway {
		t.Errorf("5xx: %d", r.status)
	}
	if got := metricValue(e.cache.m.upstreamErrors.WithLabelValues("segment", "status")); got != 1 {
		t.Errorf("status errors counted %v", got)
	}
	for range 2 {
		if r := e.get("/live/cam1/empty.mp4"); r.status != http.StatusNotFound {
			t.Errorf("empty 200: %d", r.status)
		}
	}
	e.wantOriginRequests("/live/cam1/empty.mp4", 1, "the 404 remembered")
	if r := e.get("/live/cam1/index.m3u8?_HLS_msn=99999"); r.status != http.StatusBadRequest || strings.TrimSpace(r.body) != "bad msn" {
		t.Errorf("4xx: %d %q", r.status, r.body)
	}
	// The origin's retriable "not yet" (a blocking reload it could not
	// satisfy in time) reaches the viewer as a 503 with Retry-After.
	if r := e.get("/live/cam1/stalled.m3u8"); r.status != http.StatusServiceUnavailable ||
		r.header.Get("Retry-After") == "" || strings.TrimSpace(r.body) != "not available yet" {
		t.Errorf("503 from the origin: %d %q %q", r.status, r.header.Get("Retry-After"), r.body)
	}
}

// An owner whose HTTP server is gone (before gossip notices) costs playlist
// viewers nothing: they get the last good copy.
func TestDeadOwnerPlaylistServedStale(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	const playlist = "/live/cam1/index.m3u8"
	e.origin.set(playlist, []byte(llPlaylist))
	e.own("live/cam1")
	e.get(playlist)
	e.origin.srv.Close()
	testkit.WaitFor(t, 5*time.Second, "the cached playlist to expire", func() bool {
		r := e.get(playlist)
		return r.header.Get("X-Cache") == "STALE"
	})
	if r := e.get("/live/cam1/abc_seg9.mp4"); r.status != http.StatusBadGateway {
		t.Errorf("segment from a dead owner: %d", r.status)
	}
	connect := metricValue(e.cache.m.upstreamErrors.WithLabelValues("segment", "connect"))
	transport := metricValue(e.cache.m.upstreamErrors.WithLabelValues("segment", "transport"))
	if connect+transport != 1 {
		t.Errorf("connection errors counted %v+%v", connect, transport)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	if err := (&Cache{}).Start(); err == nil {
		t.Error("Start without Registry succeeded")
	}
	e := newEnv(t, nil)
	taken := e.cache.HTTPAddr().String()
	c := &Cache{Registry: e.reg, Gossip: e.cacheGossip, HTTPAddress: taken, Log: quiet}
	if err := c.Start(); err == nil {
		c.Close()
		t.Error("Start on a taken port succeeded")
	}
	for _, tls := range [][2]string{{"cert.pem", ""}, {filepath.Join(t.TempDir(), "none.pem"), filepath.Join(t.TempDir(), "none.key")}} {
		c := &Cache{Registry: e.reg, Gossip: e.cacheGossip, HTTPAddress: "127.0.0.1:0", TLSCert: tls[0], TLSKey: tls[1], Log: quiet}
		if err := c.Start(); err == nil {
			c.Close()
			t.Errorf("Start with TLS files %q succeeded", tls)
		}
	}
	// The same registry takes a second cache once the first is closed
	// (metrics unregistered), and after a Start that failed (undone), the
	// demand table's collectors included.
	reg := prometheus.NewRegistry()
	demander := &fakeDemander{onDemand: map[string]bool{}, asks: map[string]int{}}
	for _, addr := range []string{"127.0.0.1:0", taken, "127.0.0.1:0"} {
		c := &Cache{Registry: e.reg, Gossip: e.cacheGossip, HTTPAddress: addr, Metrics: reg, Demander: demander, Log: quiet}
		err := c.Start()
		if addr == taken {
			if err == nil {
				t.Fatal("Start on a taken port succeeded")
			}
			c.Close()
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		c.Close()
	}
}

// Drain lets an in-flight request finish and refuses new connections; Close
// after everything leaves no goroutine behind.
func TestDrainAndClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), testkit.IgnoreMemberlistProbe)
	func() {
		e := newEnv(t, nil)
		const path = "/live/cam1/abc_video1_part40.mp4"
		e.origin.set(path, []byte("part-40"))
		release := e.origin.holdAll()
		e.own("live/cam1")
		inflight := make(chan response, 1)
		e.getAsync(path, inflight)
		testkit.WaitFor(t, 5*time.Second, "the request upstream", func() bool { return e.origin.count(path) == 1 })
		drained := make(chan error, 1)
		go func() { drained <- e.cache.Drain(context.Background()) }()
		testkit.WaitFor(t, 5*time.Second, "the listener closed", func() bool {
			_, err := (&http.Client{Timeout: time.Second}).Get(e.base + path)
			return err != nil
		})
		close(release)
		if r := <-inflight; r.status != 200 || r.body != "part-40" {
			t.Errorf("in-flight request: %d %q", r.status, r.body)
		}
		if err := <-drained; err != nil {
			t.Errorf("Drain: %v", err)
		}
		e.cache.Close()
		e.cache.Close()
		e.client.CloseIdleConnections()
		// The rest of the cluster goes in reverse order through t.Cleanup;
		// close it here so the leak check sees it gone.
		e.cacheGossip.Close()
		e.originGossip.Close()
		e.origin.srv.Close()
		e.nc.Close()
		e.server.Close()
	}()
}

// The routes table follows the registry.
func TestRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	l := e.own("live/a")
	got := e.cache.Routes()["live/a"]
	want := Route{Node: "origin1", HTTP: e.origin.addr(), Epoch: l.Owner.Epoch, Alive: true}
	if got != want {
		t.Errorf("route %+v, want %+v", got, want)
	}
	var wg sync.WaitGroup
	for range 4 { // reads race with refreshes
		wg.Go(func() { _ = e.cache.Routes() })
	}
	wg.Wait()
}

// Every answer is counted by kind and result, with the body bytes it wrote.
func TestRequestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	seg := bytes.Repeat([]byte("0123456789"), 100)
	e.origin.set("/live/cam1/abc_video1_seg7.mp4", seg)
	e.own("live/cam1")

	e.get("/live/cam1/abc_video1_seg7.mp4")                            // miss: 1000 bytes
	e.get("/live/cam1/abc_video1_seg7.mp4")                            // hit: 1000
	e.do(http.MethodHead, "/live/cam1/abc_video1_seg7.mp4")            // hit: 0
	e.get("/live/cam1/abc_video1_seg7.mp4", "Range", "bytes=0-9")      // hit: 10
	e.get("/live/cam1/abc_video1_seg7.mp4", "If-None-Match", `"none"`) // hit: 1000 (no ETag to match)
	e.get("/live/nope/abc_video1_seg7.mp4")                            // not_found: 17 ("stream not found\n")
	e.get("/live/cam1/../x.mp4")                                       // bad request
	e.get("/live/cam1/index.html")                                     // bad request

	for _, c := range []struct {
		kind, result string
		want         float64
	}{
		{"segment", "miss", 1}, {"segment", "hit", 4}, {"segment", "not_found", 1},
		{"playlist", "hit", 0}, {"other", "bad_request", 2},
	} {
		if got := metricValue(e.cache.m.requests.WithLabelValues(c.kind, c.result)); got != c.want {
			t.Errorf("requests %s/%s: %v, want %v", c.kind, c.result, got, c.want)
		}
	}
	if got := metricValue(e.cache.m.servedBytes.WithLabelValues("segment")); got != 3027 {
		t.Errorf("segment bytes served: %v, want 3027", got)
	}
}
