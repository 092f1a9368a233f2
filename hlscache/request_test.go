package hlscache

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/hlsproto"
)

func TestParseRequest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path, query string
		status      int    // 0: valid
		msg         string // the error's text, when given
		stream      string // when valid
		file        string
		kind        kind
		upstream    string
	}{
		{path: "/live/cam1/index.m3u8", stream: "live/cam1", file: "index.m3u8", kind: kindPlaylist, upstream: "/live/cam1/index.m3u8"},
		{path: "/cam/index.m3u8", query: "token=abc&_HLS_skip=YES&_HLS_part=3&_HLS_msn=0012", stream: "cam", file: "index.m3u8",
			kind: kindPlaylist, upstream: "/cam/index.m3u8?_HLS_msn=12&_HLS_part=3&_HLS_skip=YES"},
		{path: "/a/b/c.d~e/video1_stream.m3u8", query: "_HLS_skip=v2", stream: "a/b/c.d~e", file: "video1_stream.m3u8",
			kind: kindPlaylist, upstream: "/a/b/c.d~e/video1_stream.m3u8?_HLS_skip=v2"},
		{path: "/live/cam1/0a1b2c3d4e5f_video1_seg12.mp4", query: "_HLS_msn=1", stream: "live/cam1", file: "0a1b2c3d4e5f_video1_seg12.mp4",
			kind: kindSegment, upstream: "/live/cam1/0a1b2c3d4e5f_video1_seg12.mp4"},
		{path: "/live/cam1/0a1b2c3d4e5f_video1_part40.mp4", stream: "live/cam1", file: "0a1b2c3d4e5f_video1_part40.mp4", kind: kindPart,
			upstream: "/live/cam1/0a1b2c3d4e5f_video1_part40.mp4"},
		{path: "/live/cam1/0a1b2c3d4e5f_video1_init.mp4", stream: "live/cam1", file: "0a1b2c3d4e5f_video1_init.mp4", kind: kindInit,
			upstream: "/live/cam1/0a1b2c3d4e5f_video1_init.mp4"},
		// The compatible view's self-initializing segment is a segment.
		{path: "/live/cam1/compat_init_0a1b2c3d4e5f_video1_seg7.mp4", stream: "live/cam1", file: "compat_init_0a1b2c3d4e5f_video1_seg7.mp4", kind: kindSegment,
			upstream: "/live/cam1/compat_init_0a1b2c3d4e5f_video1_seg7.mp4"},
		{path: "/live/cam1/init-stream0.m4s", stream: "live/cam1", file: "init-stream0.m4s", kind: kindInit, upstream: "/live/cam1/init-stream0.m4s"},
		{path: "/live/cam1/chunk-part3.m4s", stream: "live/cam1", file: "chunk-part3.m4s", kind: kindPart, upstream: "/live/cam1/chunk-part3.m4s"},
		{path: "/live/cam1/main_seg1.ts", stream: "live/cam1", file: "main_seg1.ts", kind: kindSegment, upstream: "/live/cam1/main_seg1.ts"},
		{path: "/live/cam1/partial.aac", stream: "live/cam1", file: "partial.aac", kind: kindSegment, upstream: "/live/cam1/partial.aac"},
		{path: "/live/cam1/x.m3u8", query: "_HLS_msn=1&bad=%zz", stream: "live/cam1", file: "x.m3u8", kind: kindPlaylist, upstream: "/live/cam1/x.m3u8?_HLS_msn=1"},

		{path: "", status: 400},
		{path: "live/cam1/index.m3u8", status: 400},
		{path: "/", status: 404},
		{path: "/index.m3u8", status: 404},
		{path: "/live/../index.m3u8", status: 400},
		{path: "/live/./index.m3u8", status: 400},
		{path: "/live/cam1/..", status: 400},
		{path: "//index.m3u8", status: 400},
		{path: "/live//index.m3u8", status: 400},
		{path: "/live/cam1/", stream: "live/cam1", kind: kindPage, upstream: "/live/cam1/"},
		{path: "/rtmp/c1.live/", stream: "rtmp/c1.live", kind: kindPage, upstream: "/rtmp/c1.live/"},
		{path: "/live/../", status: 400},
		{path: "/live//", status: 400},
		{path: "/live/ca m/", status: 400},
		{path: "/live/ca m/index.m3u8", status: 400},
		{path: "/live/ca*m/index.m3u8", status: 400},
		{path: "/live/cam1/index.html", status: 404},
		{path: "/live/cam1/index", status: 404},
		{path: "/live/cam1/.m3u8", status: 404},
		{path: "/live/cam1/_x.m3u8", status: 404},
		{path: "/live/cam1/a~b.m3u8", status: 404},
		{path: "/live/cam1/" + strings.Repeat("a", maxFileLen) + ".ts", status: 404},
		{path: "/" + strings.Repeat("a", bus.MaxPathLen+1) + "/x.ts", status: 400},
		// The LL-HLS directives (internal/hlsproto): a malformed one is a
		// 400 whose text names it.
		{path: "/live/cam1/x.m3u8", query: "_HLS_part=1", status: 400, msg: "_HLS_part without _HLS_msn"},
		{path: "/live/cam1/x.m3u8", query: "_HLS_msn=-1", status: 400, msg: "bad _HLS_msn"},
		{path: "/live/cam1/x.m3u8", query: "_HLS_msn=+1", status: 400, msg: "bad _HLS_msn"},
		{path: "/live/cam1/x.m3u8", query: "_HLS_msn=99999999999999999999", status: 400, msg: "bad _HLS_msn"},
		{path: "/live/cam1/x.m3u8", query: "_HLS_msn=1&_HLS_msn=2", status: 400, msg: "repeated _HLS_msn"},
		{path: "/live/cam1/x.m3u8", query: "_HLS_msn=1&_HLS_part=x", status: 400, msg: "bad _HLS_part"},
		{path: "/live/cam1/x.m3u8", query: "_HLS_msn=1&_HLS_part=1&_HLS_part=2", status: 400, msg: "repeated _HLS_part"},
		{path: "/live/cam1/x.m3u8", query: "_HLS_skip=yes", status: 400, msg: "bad _HLS_skip"},
		{path: "/live/cam1/x.m3u8", query: "_HLS_skip=YES&_HLS_skip=YES", status: 400, msg: "repeated _HLS_skip"},
		{path: "/live/cam1/x.m3u8", query: "_HLS_msn=%zz", status: 400, msg: "bad _HLS_msn"},
		{path: "/live/cam1/x.m3u8", query: "_HLS_other=%zz", status: 400, msg: "bad _HLS_other"},
		// Directives of other kinds are not parsed: not forwarded, no 400.
		{path: "/live/cam1/a_seg1.mp4", query: "_HLS_msn=x", stream: "live/cam1", file: "a_seg1.mp4", kind: kindSegment, upstream: "/live/cam1/a_seg1.mp4"},
	} {
		req, err := parseRequest(tc.path, tc.query)
		if tc.status != 0 {
			var re *requestError
			if !errors.As(err, &re) || re.status != tc.status || tc.msg != "" && re.msg != tc.msg {
				t.Errorf("%q ?%q: err %v, want status %d %q", tc.path, tc.query, err, tc.status, tc.msg)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q ?%q: %v", tc.path, tc.query, err)
			continue
		}
		if req.stream != tc.stream || req.file != tc.file || req.kind != tc.kind || req.upstreamPath() != tc.upstream {
			t.Errorf("%q ?%q: got %q %q %v %q", tc.path, tc.query, req.stream, req.file, req.kind, req.upstreamPath())
		}
	}
}

// FuzzParseRequest checks that whatever a viewer sends, an accepted request
// names a valid stream and file, and the origin URL built from it stays
// under that stream with only the LL-HLS directives in its query.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"/live/cam1/index.m3u8\x00_HLS_msn=1&_HLS_part=2",
		"/live/../x.ts\x00",
		"/a/b/c/d_part1.mp4\x00_HLS_skip=v2&x=%00",
		"//\x00&&&=",
		"/live/cam1/x.m3u8\x00_HLS_msn=0&_HLS_msn=0",
		"/%2e%2e/x.aac\x00",
		"/live/cam1/\x00player=mse",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		path, query, _ := strings.Cut(in, "\x00")
		req, err := parseRequest(path, query)
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) || re.status != 400 && re.status != 404 {
				t.Fatalf("%q: unexpected error %v", in, err)
			}
			return
		}
		if err := bus.ValidatePath(req.stream); err != nil {
			t.Fatalf("%q: accepted stream %q: %v", in, req.stream, err)
		}
		if req.kind == kindPage {
			if req.file != "" || path != "/"+req.stream+"/" {
				t.Fatalf("%q: page of %q, file %q", in, req.stream, req.file)
			}
			return
		}
		if !validFileName(req.file) || strings.Contains(req.file, "/") {
			t.Fatalf("%q: accepted file %q", in, req.file)
		}
		if path != "/"+req.stream+"/"+req.file {
			t.Fatalf("%q: parsed as %q + %q", in, req.stream, req.file)
		}
		u, err := url.Parse("http://origin:8889" + req.upstreamPath())
		if err != nil {
			t.Fatalf("%q: upstream URL: %v", in, err)
		}
		if u.Path != path || u.Host != "origin:8889" || u.User != nil || u.Fragment != "" {
			t.Fatalf("%q: upstream URL %q", in, u)
		}
		for k := range u.Query() {
			if k != "_HLS_msn" && k != "_HLS_part" && k != "_HLS_skip" {
				t.Fatalf("%q: forwarded parameter %q", in, k)
			}
		}
		if req.kind != kindPlaylist && u.RawQuery != "" {
			t.Fatalf("%q: query forwarded for a %v", in, req.kind)
		}
		// Normalisation is idempotent: the forwarded query parses to itself.
		q, err := hlsproto.Parse(u.RawQuery)
		if err != nil || q != req.hls {
			t.Fatalf("%q: forwarded query %q reparsed to %+v, %v", in, u.RawQuery, q, err)
		}
	})
}
