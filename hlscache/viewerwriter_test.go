package hlscache

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// bodyServer is a real HTTP server on loopback whose handler answers with
// writeObject or writeStale (path /stale) for obj, or, on /reference, with
// http.ServeContent and the headers writeObject sets before it: the answer
// the plain-GET path must match. It serves over viewerConns, as the cache
// does. Each answer's counted body bytes and network writes arrive on
// answers.
type bodyServer struct {
	url     string
	answers chan bodyAnswer
	sends   int // the network writes of the last answer do returned
}

// bodyAnswer is what the handler counted of one answer: body bytes, and
// writes to the network while the handler ran (the viewerConn's sends).
type bodyAnswer struct {
	n     int64
	sends int
}

func newBodyServer(t *testing.T, obj *object, tune func(*viewerWriter)) *bodyServer {
	t.Helper()
	s := &bodyServer{answers: make(chan bodyAnswer, 1)}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vc := viewerConnOf(r)
		sends := vc.sends
		vw := newViewerWriter(w)
		if tune != nil {
			tune(vw)
		}
		switch r.URL.Path {
		case "/stale":
			writeStale(vw, r, obj)
		case "/reference":
			h := vw.Header()
			h.Set("X-Cache", "HIT")
			h.Set("Content-Type", obj.header.contentType[0])
			h.Set("Cache-Control", obj.header.cacheControl[0])
			if obj.header.etag != nil {
				h.Set("ETag", obj.header.etag[0])
			}
			http.ServeContent(vw, r, "", obj.modTime, bytes.NewReader(obj.body))
		default:
			writeObject(vw, r, obj, resultHit)
		}
		vw.finish()
		s.answers <- bodyAnswer{n: vw.n, sends: vc.sends - sends}
	}))
	srv.Listener = viewerListener{srv.Listener}
	srv.Config.ConnContext = withViewerConn
	srv.Start()
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// do makes one request (hdr: key, value pairs) and returns the response
// with its body and the bytes the handler counted.
func (s *bodyServer) do(t *testing.T, method, path string, hdr ...string) (response, int64) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	a := <-s.answers
	s.sends = a.sends
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}, a.n
}

func TestServeBody(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("0123456789"), 30000) // 300 000 bytes, more than one Write of ServeContent's
	size := strconv.Itoa(len(body))
	mod := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	modText := mod.Format(http.TimeFormat)
	obj := &object{status: http.StatusOK, body: body, modTime: mod,
		header: newObjectHeader("video/mp4", "public, max-age=3600", `"v1"`, mod, len(body))}
	s := newBodyServer(t, obj, nil)

	const absent = "<absent>"
	full := map[string]string{
		"Content-Length": size, "Content-Type": "video/mp4", "Cache-Control": "public, max-age=3600",
		"Etag": `"v1"`, "Last-Modified": modText, "Accept-Ranges": "bytes", "X-Cache": "HIT",
	}
	stale := map[string]string{
		"Content-Length": size, "Content-Type": "video/mp4", "Cache-Control": "no-cache",
		"Etag": absent, "Last-Modified": absent, "X-Cache": "STALE",
	}
	for _, tc := range []struct {
		name        string
		method      string
		path        string
		hdr         []string
		status      int
		body        string // "full": all of body
		header      map[string]string
		wantCounted int64
	}{
		{"full GET", "GET", "/", nil, 200, "full", full, int64(len(body))},
		{"empty Range is no range", "GET", "/", []string{"Range", ""}, 200, "full", full, int64(len(body))},
		{"HEAD", "HEAD", "/", nil, 200, "", full, 0},
		{"Range", "GET", "/", []string{"Range", "bytes=10-19"}, 206, "0123456789",
			map[string]string{"Content-Range": "bytes 10-19/" + size, "Content-Length": "10", "Etag": `"v1"`}, 10},
		{"unsatisfiable Range", "GET", "/", []string{"Range", "bytes=400000-"}, 416, "",
			map[string]string{"Content-Range": "bytes */" + size}, -1},
		{"If-Range with the ETag", "GET", "/", []string{"Range", "bytes=0-3", "If-Range", `"v1"`}, 206, "0123",
			map[string]string{"Content-Length": "4"}, 4},
		{"If-Range with another ETag", "GET", "/", []string{"Range", "bytes=0-3", "If-Range", `"v0"`}, 200, "full", full, int64(len(body))},
		{"If-None-Match matching", "GET", "/", []string{"If-None-Match", `"v1"`}, 304, "",
			map[string]string{"Etag": `"v1"`, "Content-Length": absent}, 0},
		{"If-None-Match other", "GET", "/", []string{"If-None-Match", `"v0"`}, 200, "full", full, int64(len(body))},
		{"HEAD If-None-Match matching", "HEAD", "/", []string{"If-None-Match", `"v1"`}, 304, "", nil, 0},
		{"If-Modified-Since the modification", "GET", "/", []string{"If-Modified-Since", modText}, 304, "", nil, 0},
		{"If-Modified-Since before", "GET", "/", []string{"If-Modified-Since", mod.Add(-time.Hour).Format(http.TimeFormat)}, 200, "full", full, int64(len(body))},
		{"If-Match other", "GET", "/", []string{"If-Match", `"v0"`}, 412, "", nil, -1},
		{"If-Unmodified-Since before", "GET", "/", []string{"If-Unmodified-Since", mod.Add(-time.Hour).Format(http.TimeFormat)}, 412, "", nil, -1},
		{"stale GET", "GET", "/stale", nil, 200, "full", stale, int64(len(body))},
		{"stale HEAD", "HEAD", "/stale", nil, 200, "", stale, 0},
		{"stale ignores If-None-Match", "GET", "/stale", []string{"If-None-Match", `"v1"`}, 200, "full", stale, int64(len(body))},
		{"stale ignores If-Modified-Since", "GET", "/stale", []string{"If-Modified-Since", modText}, 200, "full", stale, int64(len(body))},
		{"stale Range", "GET", "/stale", []string{"Range", "bytes=5-9"}, 206, "56789",
			map[string]string{"Content-Range": "bytes 5-9/" + size, "X-Cache": "STALE"}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, counted := s.do(t, tc.method, tc.path, tc.hdr...)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d", r.status, tc.status)
			}
			want := tc.body
			if want == "full" {
				want = string(body)
			}
			// The text of a 412 or 416 is net/http's.
			if tc.status < 400 && r.body != want {
				t.Errorf("body of %d bytes, want %d", len(r.body), len(want))
			}
			for k, v := range tc.header {
				got, ok := r.header[k]
				switch {
				case v == absent && ok:
					t.Errorf("%s: %q, want none", k, got)
				case v != absent && r.header.Get(k) != v:
					t.Errorf("%s: %q, want %q", k, r.header.Get(k), v)
				}
			}
			if tc.wantCounted >= 0 && counted != tc.wantCounted {
				t.Errorf("counted %d body bytes, want %d", counted, tc.wantCounted)
			}
		})
	}
}

// The plain-GET path sends what http.ServeContent would, header for header.
func TestServeBodyMatchesServeContent(t *testing.T) {
	t.Parallel()
	body := []byte("#EXTM3U\n")
	mod := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		etag    string
		modTime time.Time
	}{
		{"etag and modification time", `"abc"`, mod},
		{"neither", "", time.Time{}},
		{"Unix epoch as modification time", `W/"x"`, time.Unix(0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := &object{status: http.StatusOK, body: body, modTime: tc.modTime,
				header: newObjectHeader("application/vnd.apple.mpegurl", "no-cache", tc.etag, tc.modTime, len(body))}
			s := newBodyServer(t, obj, nil)
			got, _ := s.do(t, "GET", "/")
			want, _ := s.do(t, "GET", "/reference")
			got.header.Del("Date")
			want.header.Del("Date")
			if g, w := fmt.Sprint(got.header), fmt.Sprint(want.header); g != w {
				t.Errorf("header\n got %s\nwant %s", g, w)
			}
			if got.status != want.status || got.body != want.body {
				t.Errorf("got %d %q, want %d %q", got.status, got.body, want.status, want.body)
			}
		})
	}
}

// A plain GET's headers and body reach the network in one write (a writev
// of net/http's buffer and the body), where net/http alone makes two.
func TestServeBodyOneWrite(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("0123456789"), 30000)
	obj := &object{status: http.StatusOK, body: body,
		header: newObjectHeader("video/mp4", "public, max-age=3600", `"v1"`, time.Time{}, len(body))}
	s := newBodyServer(t, obj, nil)
	for _, path := range []string{"/", "/stale"} {
		r, _ := s.do(t, "GET", path)
		if r.status != http.StatusOK || r.body != string(body) {
			t.Fatalf("GET %s: %d, %d bytes", path, r.status, len(r.body))
		}
		if s.sends != 1 {
			t.Errorf("GET %s: headers and body in %d writes, want 1", path, s.sends)
		}
	}
	r, _ := s.do(t, "GET", "/", "Range", "bytes=0-99999")
	if r.status != http.StatusPartialContent || r.body != string(body[:100000]) {
		t.Fatalf("Range: %d, %d bytes", r.status, len(r.body))
	}
}

// A viewer that stops reading is dropped once a write waits longer than the
// write timeout, even when the body goes out in one Write.
func TestServeBodyDropsStalledViewer(t *testing.T) {
	t.Parallel()
	body := make([]byte, 64<<20) // far more than loopback's socket buffers hold
	obj := &object{status: http.StatusOK, body: body,
		header: newObjectHeader("video/mp4", "public, max-age=3600", "", time.Time{}, len(body))}
	s := newBodyServer(t, obj, func(vw *viewerWriter) { vw.timeout = 200 * time.Millisecond })

	conn, err := net.Dial("tcp", s.url[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /seg.mp4 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Read the status line, then stop reading.
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("status line %q, %v", line, err)
	}
	select {
	case a := <-s.answers:
		if n := a.n; n >= int64(len(body)) {
			t.Errorf("all %d bytes written to a viewer that stopped reading", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the handler is still writing to a viewer that stopped reading")
	}
}
