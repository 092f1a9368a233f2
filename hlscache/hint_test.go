package hlscache

import (
	"strings"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// llHintPlaylist is llPlaylist with a part target whose TTL (half of it,
// capped at 250 ms) outlasts the requests of a test.
func llHintPlaylist(lastPart, hint string) string {
	return `#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:4
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=6
#EXT-X-PART-INF:PART-TARGET=2
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-MAP:URI="abc_video1_init.mp4"
#EXTINF:4.0,
abc_video1_seg7.mp4
#EXT-X-PART:DURATION=2,URI="` + lastPart + `"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="` + hint + `"
`
}

// The playlist of the overtaken-copy tests, before and after its hinted
// part 31 completes.
const (
	hintedPlaylist = "/live/cam1/video1_stream.m3u8"
	hintedPart31   = "/live/cam1/abc_video1_part31.mp4"
)

var (
	hintedBefore = llHintPlaylist("abc_video1_part30.mp4", "abc_video1_part31.mp4")
	hintedAfter  = llHintPlaylist("abc_video1_part31.mp4", "abc_video1_part32.mp4")
)

// newHintedEnv is an env whose origin serves hintedBefore.
func newHintedEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, nil)
	e.origin.set(hintedPlaylist, []byte(hintedBefore))
	return e
}

func TestPreloadHintPart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body, want string
	}{
		{llPlaylist, "abc_video1_part31.mp4"},
		{"#EXTM3U\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p1.mp4\"\r\n", "p1.mp4"},
		{"#EXTM3U\n#EXT-X-PRELOAD-HINT:TYPE=MAP,URI=\"init.mp4\"\n", ""},
		{"#EXTM3U\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg.mp4\",BYTERANGE-START=100\n", ""},
		{"#EXTM3U\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"../other/p1.mp4\"\n", ""},
		{"#EXTM3U\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p1.mp4?x=1\"\n", ""},
		{"#EXTM3U\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"\"\n", ""},
		{"#EXTM3U\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p1.mp4\n", ""},
		{"#EXTM3U\n#EXTINF:2,\nseg1.ts\n", ""},
	} {
		if got := preloadHintPart([]byte(tc.body)); got != tc.want {
			t.Errorf("preloadHintPart(%q) = %q, want %q", tc.body, got, tc.want)
		}
	}
}

// A client that downloads the hinted part and reloads the playlist at once
// (gohlslib's) must get a playlist in which that part is complete, not the
// copy kept from before the part was: that copy would send it back to the
// same part, served from the LRU, in a loop until the copy expires.
func TestPlaylistCopyOvertakenByItsHintedPart(t *testing.T) {
	t.Parallel()
	e := newHintedEnv(t)
	e.own("live/cam1")

	for _, q := range []string{"", "?_HLS_skip=YES"} {
		if r := e.get(hintedPlaylist + q); r.status != 200 || r.body != hintedBefore {
			t.Fatalf("playlist%s: %d %q", q, r.status, r.body)
		}
	}
	// The part completes; the origin's playlist moves on.
	e.origin.set(hintedPart31, []byte("part-31"))
	e.origin.set(hintedPlaylist, []byte(hintedAfter))
	if r := e.get(hintedPart31); r.status != 200 || r.body != "part-31" {
		t.Fatalf("part: %d %q", r.status, r.body)
	}
	for _, q := range []string{"", "?_HLS_skip=YES"} {
		r := e.get(hintedPlaylist + q)
		if r.status != 200 || r.body != hintedAfter {
			t.Errorf("playlist%s after its hinted part was served: %d, X-Cache %s, hint %q; want the origin's new playlist",
				q, r.status, r.header.Get("X-Cache"), preloadHintPart([]byte(r.body)))
		}
	}
	// The new copy is cached as usual: its own hinted part is not there yet.
	// (No assertion on HIT: its TTL is short.)
	if got := e.origin.count(hintedPlaylist); got < 3 {
		t.Errorf("origin saw %d playlist requests, want the copy refetched after the part", got)
	}
}

// During a failover the last good copy of a playlist is served, but not one
// whose hinted part the viewer already got from the old owner's objects: the
// request waits for the new owner instead of sending the client back to that
// part.
func TestFailoverHoldsOvertakenPlaylistCopy(t *testing.T) {
	t.Parallel()
	e := newHintedEnv(t)
	e.origin.set(hintedPart31, []byte("part-31"))
	l := e.own("live/cam1")
	e.get(hintedPlaylist)
	if r := e.get(hintedPart31); r.status != 200 {
		t.Fatalf("part: %d", r.status)
	}
	e.release(l)

	held := make(chan response, 1)
	e.getAsync(hintedPlaylist, held)
	testkit.WaitFor(t, 5*time.Second, "the overtaken copy's request held", func() bool {
		return metricValue(e.cache.m.held) == 1
	})
	e.origin.set(hintedPlaylist, []byte(hintedAfter))
	e.own("live/cam1")
	r := <-held
	if r.status != 200 || !strings.Contains(r.body, "abc_video1_part32.mp4") {
		t.Fatalf("held request: %d %s %q", r.status, r.header.Get("X-Cache"), r.body)
	}
}
