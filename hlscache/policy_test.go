package hlscache

import (
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/hlsproto"
)

const multivariantPlaylist = `#EXTM3U
#EXT-X-VERSION:9
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=1000000,CODECS="avc1.64001f"
video1_stream.m3u8
`

const classicPlaylist = `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:3
#EXTINF:2.0,
main_seg3.ts
`

func TestParseCacheControl(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want cacheControl
	}{
		{"", cacheControl{}},
		{"no-cache", cacheControl{noCache: true}},
		{"public, max-age=3600", cacheControl{maxAge: time.Hour, hasMaxAge: true}},
		{"max-age=30, s-maxage=2", cacheControl{maxAge: 2 * time.Second, hasMaxAge: true}},
		{"s-maxage=2, max-age=30", cacheControl{maxAge: 2 * time.Second, hasMaxAge: true}},
		{`MAX-AGE="5"`, cacheControl{maxAge: 5 * time.Second, hasMaxAge: true}},
		{"max-age=-1, private", cacheControl{noStore: true}},
		{"no-store", cacheControl{noStore: true}},
		{"max-age=abc", cacheControl{}},
	} {
		if got := parseCacheControl(tc.in); got != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestInspectPlaylist(t *testing.T) {
	t.Parallel()
	if i := inspectPlaylist([]byte(llPlaylist)); i.multivariant || !i.lowLatency || i.partTarget != 200*time.Millisecond {
		t.Errorf("LL: %+v", i)
	}
	if i := inspectPlaylist([]byte(multivariantPlaylist)); !i.multivariant || i.lowLatency {
		t.Errorf("multivariant: %+v", i)
	}
	if i := inspectPlaylist([]byte(classicPlaylist)); i.multivariant || i.lowLatency {
		t.Errorf("classic: %+v", i)
	}
}

func TestPolicy(t *testing.T) {
	t.Parallel()
	playlist := &request{kind: kindPlaylist, ext: ".m3u8"}
	blocking := &request{kind: kindPlaylist, ext: ".m3u8", hls: hlsproto.Directives{MSN: 3, HasMSN: true}}
	segment := &request{kind: kindSegment, ext: ".mp4"}
	part := &request{kind: kindPart, ext: ".mp4"}
	for _, tc := range []struct {
		name      string
		req       *request
		status    int
		cc        string
		body      string
		ttl       time.Duration
		immutable bool
		viewerCC  string
	}{
		{"segment", segment, 200, "public, max-age=3600", "x", time.Hour, false, "public, max-age=3600"},
		{"segment without cache-control", segment, 200, "", "x", 0, true, defaultImmutableCacheControl},
		{"segment no-store", segment, 200, "no-store", "x", 0, false, "no-store"},
		{"part no-cache", part, 200, "no-cache", "x", 0, false, "no-cache"},
		{"LL media playlist", playlist, 200, "no-cache", llPlaylist, 100 * time.Millisecond, false, "no-cache"},
		{"classic media playlist", playlist, 200, "public, max-age=2", classicPlaylist, mediaPlaylistTTL, false, "public, max-age=2"},
		{"media playlist max-age=0", playlist, 200, "max-age=0", classicPlaylist, 0, false, "max-age=0"},
		{"media playlist no cache-control", playlist, 200, "", classicPlaylist, mediaPlaylistTTL, false, "no-cache"},
		{"blocking reload", blocking, 200, "no-cache", llPlaylist, blockingPlaylistTTL, false, "no-cache"},
		{"blocking reload no-store", blocking, 200, "no-store", llPlaylist, 0, false, "no-cache"},
		{"multivariant", playlist, 200, "public, max-age=30", multivariantPlaylist, multivariantTTLCap, false, "public, max-age=30"},
		{"multivariant short", playlist, 200, "max-age=2", multivariantPlaylist, 2 * time.Second, false, "max-age=2"},
		{"multivariant no cache-control", playlist, 200, "", multivariantPlaylist, multivariantDefaultTTL, false, "no-cache"},
		{"404 segment", segment, 404, "", "", notFoundTTL, false, "no-cache"},
		{"404 part", part, 404, "", "", 0, false, "no-cache"},
		{"400", blocking, 400, "", "", 0, false, "no-cache"},
	} {
		ttl, immutable, viewerCC := policy(tc.req, tc.status, tc.cc, []byte(tc.body))
		if ttl != tc.ttl || immutable != tc.immutable || viewerCC != tc.viewerCC {
			t.Errorf("%s: ttl %v immutable %v cache-control %q; want %v %v %q",
				tc.name, ttl, immutable, viewerCC, tc.ttl, tc.immutable, tc.viewerCC)
		}
	}
}
