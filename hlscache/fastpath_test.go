package hlscache

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// fastCase is one exchange of TestFastPathMatchesNetHTTP: what a client
// sends (in parts, with a pause between them: a slow client), and how many
// of its requests the fast path must answer itself.
type fastCase struct {
	name  string
	parts []string
	fast  int
	// noCloser: send no closing request after it (a request net/http
	// refuses ends the connection; bytes left unread there would reset it).
	noCloser bool
	// halfClose: end the stream after sending (no closer).
	halfClose bool
	// settle: a pause between the two sides, for an answer the first one
	// stored briefly (a playlist) to expire.
	settle time.Duration
}

const (
	fastSeg    = "/live/cam1/abc_video1_seg7.mp4"
	fastTagged = "/live/cam1/abc_video1_seg8.mp4" // with an ETag and a Last-Modified
	fastPart   = "/live/cam1/abc_video1_part3.mp4"
	fastInit   = "/live/cam1/abc_video1_init.mp4"
	fastMedia  = "/live/cam1/video.m3u8" // no-cache upstream: never stored, fetched every time
	fastIndex  = "/live/cam1/index.m3u8" // the same, negotiated (compat.go)
)

func get11(target string, hdr ...string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: cache.example\r\n" + strings.Join(hdr, "") + "\r\n"
}

// closer ends every exchange that leaves its connection open: net/http
// answers it (a 404 to a HEAD, which the fast path leaves to net/http) and
// closes, in both servers.
var closer = "HEAD /live/cam1/nothing.txt HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n"

var fastCases = []fastCase{
	{name: "GET", parts: []string{get11(fastSeg)}, fast: 1},
	{name: "HEAD", parts: []string{"HEAD " + fastSeg + " HTTP/1.1\r\nHost: c\r\n\r\n"}, fast: 1},
	{name: "part", parts: []string{get11(fastPart, "User-Agent: test/1\r\nAccept: */*\r\n")}, fast: 1},
	{name: "init, lower-case names", parts: []string{"GET " + fastInit + " HTTP/1.1\r\nhost: c\r\nuser-agent: x\r\nconnection: keep-alive\r\n\r\n"}, fast: 1},
	{name: "ETag and Last-Modified", parts: []string{get11(fastTagged)}, fast: 1},
	{name: "HEAD with ETag and Last-Modified", parts: []string{"HEAD " + fastTagged + " HTTP/1.1\r\nHost: c\r\n\r\n"}, fast: 1},
	{name: "query", parts: []string{get11(fastSeg + "?token=abc&x=%41")}, fast: 1},
	{name: "HTTP/1.0", parts: []string{"GET " + fastSeg + " HTTP/1.0\r\n\r\n"}, fast: 1},
	{name: "HTTP/1.0 keep-alive, pipelined", parts: []string{"GET " + fastSeg + " HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n" +
		"HEAD " + fastInit + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + "GET " + fastPart + " HTTP/1.0\r\n\r\n"}, fast: 3},
	{name: "Connection: close, pipelined", parts: []string{get11(fastSeg, "Connection: close\r\n") + get11(fastInit)}, fast: 1},
	{name: "pipelined", parts: []string{get11(fastSeg) + get11(fastInit) + get11(fastPart)}, fast: 3},
	{name: "pipelined, then net/http's", parts: []string{get11(fastInit) + get11(fastSeg, "If-None-Match: \"x\"\r\n") + get11(fastInit)}, fast: 1},
	{name: "slow client", parts: []string{"GET " + fastInit, " HTTP/1.1\r\nHo", "st: c\r\n", "\r\n"}, fast: 1},
	{name: "slow second request", parts: []string{get11(fastInit) + "GET " + fastPart + " HTT", "P/1.1\r\nHost: c\r\n\r\n"}, fast: 2},
	{name: "Range", parts: []string{get11(fastSeg, "Range: bytes=0-99\r\n")}, fast: 1},
	{name: "Range from 0, as ffmpeg asks", parts: []string{"GET " + fastSeg + " HTTP/1.1\r\nUser-Agent: Lavf/59.27.100\r\nAccept: */*\r\nRange: bytes=0-\r\n" +
		"Connection: keep-alive\r\nHost: c\r\nIcy-MetaData: 1\r\n\r\n"}, fast: 1},
	{name: "Range, a suffix", parts: []string{get11(fastSeg, "Range: bytes=-500\r\n")}, fast: 1},
	{name: "Range, a suffix over the body", parts: []string{get11(fastInit, "Range: bytes=-5000\r\n")}, fast: 1},
	{name: "Range, past the end", parts: []string{get11(fastInit, "Range: bytes=3-999999999999\r\n")}, fast: 1},
	{name: "Range, the last byte", parts: []string{get11(fastInit, "Range: bytes=11-11\r\n")}, fast: 1},
	{name: "Range, HEAD, tagged", parts: []string{"HEAD " + fastTagged + " HTTP/1.1\r\nHost: c\r\nRange: bytes=7-\r\n\r\n"}, fast: 1},
	{name: "Range, pipelined", parts: []string{get11(fastPart, "Range: bytes=0-\r\n") + get11(fastPart, "Range: bytes=4000-\r\n")}, fast: 2},
	{name: "Range, unsatisfiable", parts: []string{get11(fastInit, "Range: bytes=12-\r\n")}},
	{name: "Range, backwards", parts: []string{get11(fastInit, "Range: bytes=5-4\r\n")}},
	{name: "Range, a suffix of 0", parts: []string{get11(fastInit, "Range: bytes=-0\r\n")}},
	{name: "Range, spaces", parts: []string{get11(fastSeg, "Range: bytes= 0-9\r\n")}},
	{name: "Range, a sign", parts: []string{get11(fastSeg, "Range: bytes=+0-9\r\n")}},
	{name: "Range, other unit", parts: []string{get11(fastSeg, "Range: items=0-9\r\n")}},
	{name: "Range, twice", parts: []string{get11(fastSeg, "Range: bytes=0-9\r\nRange: bytes=0-9\r\n")}},
	{name: "Range and If-Range", parts: []string{get11(fastTagged, "Range: bytes=0-9\r\nIf-Range: \"v8\"\r\n")}},
	{name: "If-None-Match", parts: []string{get11(fastTagged, "If-None-Match: \"v8\"\r\n")}},
	{name: "If-Modified-Since", parts: []string{get11(fastTagged, "If-Modified-Since: Sat, 05 Dec 2026 10:00:00 GMT\r\n")}},
	{name: "token URL", parts: []string{get11("/s/v1.abc.def/live/cam1/abc_video1_seg7.mp4")}},
	{name: "escaped path", parts: []string{get11("/live/cam1/abc_video1_seg%37.mp4")}},
	{name: "unknown stream", parts: []string{get11("/live/cam9/abc_video1_seg7.mp4")}},
	{name: "not at the origin", parts: []string{get11("/live/cam1/abc_video1_part99.mp4")}, fast: 1}, // a part's 404 is not kept
	{name: "not at the origin, Connection: close", parts: []string{get11("/live/cam1/abc_video1_part96.mp4", "Connection: close\r\n")}, fast: 1, noCloser: true},
	{name: "unknown file, Connection: close", parts: []string{get11("/live/cam1/abc.exe", "Connection: close\r\n")}, fast: 1, noCloser: true},
	{name: "not at the origin, HTTP/1.0", parts: []string{"GET /live/cam1/abc_video1_part98.mp4 HTTP/1.0\r\n\r\n"}},
	{name: "not at the origin, HEAD", parts: []string{"HEAD /live/cam1/abc_video1_part97.mp4 HTTP/1.1\r\nHost: c\r\n\r\n"}},
	{name: "unknown file", parts: []string{get11("/live/cam1/abc.exe")}, fast: 1},
	{name: "EXT-X-GAP's placeholder, as ffmpeg asks", parts: []string{"GET /live/cam1/gap.mp4 HTTP/1.1\r\nUser-Agent: Lavf/59.27.100\r\nAccept: */*\r\n" +
		"Range: bytes=0-\r\nConnection: keep-alive\r\nHost: c\r\nIcy-MetaData: 1\r\n\r\n"}, fast: 1, settle: notFoundTTL + 100*time.Millisecond},
	{name: "unknown file, HTTP/1.0 keep-alive", parts: []string{"GET /live/cam1/abc.exe HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"}, fast: 1},
	{name: "unknown file, HEAD", parts: []string{"HEAD /live/cam1/abc.exe HTTP/1.1\r\nHost: c\r\n\r\n"}},
	{name: "bad path", parts: []string{get11("/live//cam1/a.mp4")}, fast: 1},
	{name: "no file", parts: []string{get11("/")}, fast: 1},
	{name: "playlist, not stored yet", parts: []string{get11(fastMedia)}, fast: 1, settle: 400 * time.Millisecond},
	{name: "multivariant", parts: []string{get11(fastIndex, "User-Agent: Lavf/59.27.100\r\n")}, fast: 1, settle: multivariantDefaultTTL + 100*time.Millisecond},
	{name: "multivariant, Chromium's media element", parts: []string{get11(fastIndex,
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\nSec-Fetch-Dest: video\r\n")},
		fast: 1, settle: multivariantDefaultTTL + 100*time.Millisecond},
	{name: "multivariant, Chromium's script", parts: []string{get11(fastIndex, "User-Agent: x Chrome/120.0\r\nSec-Fetch-Dest: empty\r\nSec-Fetch-Dest: video\r\n")},
		fast: 1, settle: multivariantDefaultTTL + 100*time.Millisecond},
	{name: "multivariant, VLC", parts: []string{get11(fastIndex, "User-Agent: VLC/3.0.18 LibVLC/3.0.18\r\n")}, fast: 1, settle: multivariantDefaultTTL + 100*time.Millisecond},
	{name: "blocking playlist", parts: []string{get11(fastMedia + "?_HLS_msn=x")}, fast: 1},
	{name: "player page", parts: []string{get11("/live/cam1/")}, fast: 1},
	{name: "player page, HEAD", parts: []string{"HEAD /live/cam1/ HTTP/1.1\r\nHost: c\r\n\r\n"}, fast: 1},
	{name: "player page of a stream not live, MSE forced, then a segment", parts: []string{get11("/live/cam9/?player=mse") + get11(fastSeg)}, fast: 2},
	{name: "player page, HTTP/1.0", parts: []string{"GET /live/cam1/ HTTP/1.0\r\n\r\n"}, fast: 1},
	{name: "OPTIONS", parts: []string{"OPTIONS " + fastSeg + " HTTP/1.1\r\nHost: c\r\n\r\n"}},
	{name: "POST", parts: []string{"POST " + fastSeg + " HTTP/1.1\r\nHost: c\r\nContent-Length: 2\r\n\r\nab"}},
	{name: "GET with a body", parts: []string{get11(fastSeg, "Content-Length: 3\r\n") + "abc"}},
	{name: "chunked", parts: []string{get11(fastSeg, "Transfer-Encoding: chunked\r\n") + "3\r\nabc\r\n0\r\n\r\n"}},
	{name: "Expect", parts: []string{get11(fastSeg, "Expect: 100-continue\r\n")}},
	{name: "absolute form", parts: []string{get11("http://c" + fastSeg)}},
	{name: "cookie over the buffer", parts: []string{get11(fastSeg, "Cookie: "+strings.Repeat("a", 5000)+"\r\n")}},
	{name: "oversized header", parts: []string{get11(fastSeg, "Cookie: "+strings.Repeat("a", 40000)+"\r\n")}, noCloser: true},
	{name: "no Host", parts: []string{"GET " + fastSeg + " HTTP/1.1\r\n\r\n"}, noCloser: true},
	{name: "two Hosts", parts: []string{get11(fastSeg, "Host: d\r\n")}, noCloser: true},
	{name: "bad request line", parts: []string{"GET " + fastSeg + "\r\nHost: c\r\n\r\n"}, noCloser: true},
	{name: "bad header", parts: []string{get11(fastSeg, "Bad Name: x\r\n")}, noCloser: true},
	{name: "bare LF", parts: []string{"GET " + fastSeg + " HTTP/1.1\nHost: c\n\n"}},
	{name: "HTTP/2 preface", parts: []string{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"}, noCloser: true},
	{name: "head cut short", parts: []string{"GET " + fastSeg + " HTTP/1.1\r\nHost: c\r\n"}, noCloser: true, halfClose: true},
	{name: "HTTP/1.2", parts: []string{"GET " + fastSeg + " HTTP/1.2\r\nHost: c\r\n\r\n"}},
}

var dateLine = regexp.MustCompile(`\r\nDate: [^\r]*\r\n`)

// TestFastPathMatchesNetHTTP sends each case to the cache (fast path) and
// to net/http serving the same cache beside it (the cache's own server
// configuration), and compares the raw answers, Date aside; then the
// request, byte and audience counters each side added.
func TestFastPathMatchesNetHTTP(t *testing.T) {
	e := newEnv(t, nil)
	fillFastObjects(e)
	if e.cache.fast == nil {
		t.Fatal("no fast path on a plain-HTTP cache")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := e.cache.newServer(nil)
	go func() { _ = srv.Serve(viewerListener{ln}) }()
	t.Cleanup(func() { _ = srv.Close() })
	fastAddr, plainAddr := e.cache.HTTPAddr().String(), ln.Addr().String()

	for _, tc := range fastCases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.cache.fast.served.Load()
			counts := cacheCounts(e)
			fast := exchange(t, fastAddr, tc)
			answered := int(e.cache.fast.served.Load() - before)
			fastCounts := diffCounts(cacheCounts(e), counts)

			time.Sleep(tc.settle)
			counts = cacheCounts(e)
			plain := exchange(t, plainAddr, tc)
			plainCounts := diffCounts(cacheCounts(e), counts)

			if fast != plain {
				t.Errorf("answers differ\nfast path:\n%s\nnet/http:\n%s", clip(fast), clip(plain))
			}
			if answered != tc.fast {
				t.Errorf("fast path answered %d requests, want %d", answered, tc.fast)
			}
			if !maps.Equal(fastCounts, plainCounts) {
				t.Errorf("counters differ\nfast path: %v\nnet/http:  %v", fastCounts, plainCounts)
			}
		})
	}
}

// fillFastObjects makes cam1 routable and stores the cases' objects.
func fillFastObjects(e *env) {
	seg := benchSegment()
	e.origin.set(fastSeg, seg)
	e.origin.set(fastPart, seg[:5000])
	e.origin.set(fastInit, []byte("init section"))
	e.origin.set(fastMedia, []byte(llPlaylist))
	e.origin.set(fastIndex, []byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nvideo.m3u8\n"))
	e.origin.set("/live/cam1/compat.m3u8", []byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\ncompat_video.m3u8\n"))
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != fastTagged {
			return false
		}
		w.Header().Set("ETag", `"v8"`)
		w.Header().Set("Last-Modified", "Sat, 05 Dec 2026 09:00:00 GMT")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		_, _ = w.Write(seg[:3000])
		return true
	})
	e.own("live/cam1")
	warm := []string{fastSeg, fastPart, fastInit, fastTagged}
	for _, p := range warm {
		if r := e.get(p); r.status != http.StatusOK {
			e.t.Fatalf("warm-up %s: %d", p, r.status)
		}
	}
	// The handler counts a request after its answer went out.
	testkit.WaitFor(e.t, 5*time.Second, "warm-up counted", func() bool {
		return metricValue(e.cache.m.requests) == float64(len(warm))
	})
}

// exchange sends tc over a new connection and returns everything the
// server sent until it closed, with Date lines normalised.
func exchange(t *testing.T, addr string, tc fastCase) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	parts := tc.parts
	if !tc.noCloser {
		parts = append(parts[:len(parts):len(parts)], closer)
		// The closer goes with the last part: one write.
		parts[len(parts)-2] += parts[len(parts)-1]
		parts = parts[:len(parts)-1]
	}
	for i, p := range parts {
		if i > 0 {
			time.Sleep(30 * time.Millisecond)
		}
		if _, err := io.WriteString(conn, p); err != nil {
			t.Fatal(err)
		}
	}
	if tc.halfClose {
		_ = conn.(*net.TCPConn).CloseWrite()
	}
	var out bytes.Buffer
	_, err = io.Copy(&out, conn)
	if err != nil && out.Len() == 0 {
		t.Fatalf("reading the answer: %v", err)
	}
	return dateLine.ReplaceAllString(out.String(), "\r\nDate: (date)\r\n")
}

func clip(s string) string {
	if i := strings.Index(s, "\r\n\r\n"); i >= 0 && len(s) > i+200 {
		return s[:i+200] + "…"
	}
	return s
}

// cacheCounts reads the request and byte counters and the per-stream
// request counts, as series → value. (The audience is a set of clients by
// address and User-Agent: the second side's requests add none.)
func cacheCounts(e *env) map[string]float64 {
	out := map[string]float64{}
	for _, c := range []prometheus.Collector{e.cache.m.requests, e.cache.m.servedBytes} {
		ch := make(chan prometheus.Metric, 64)
		go func() {
			c.Collect(ch)
			close(ch)
		}()
		for m := range ch {
			var d dto.Metric
			if err := m.Write(&d); err != nil {
				panic(err)
			}
			key := m.Desc().String()
			for _, l := range d.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			out[key] = d.GetCounter().GetValue()
		}
	}
	for s, v := range e.cache.Viewers() {
		out["requests "+s] = float64(v.Requests)
	}
	return out
}

// diffCounts returns what changed from before to after.
func diffCounts(after, before map[string]float64) map[string]float64 {
	d := map[string]float64{}
	for k, v := range after {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

// TestFastPathClose: Close ends a kept-alive connection waiting on the fast
// path at once, waits for none of them, and a connection handed to net/http
// after it is closed.
func TestFastPathClose(t *testing.T) {
	e := newEnv(t, nil)
	fillFastObjects(e)
	conn, err := net.Dial("tcp", e.cache.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, get11(fastInit)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%v %v", resp, err)
	}
	start := time.Now()
	e.cache.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v with an idle fast-path connection", d)
	}
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("read after Close: %d, %v", n, err)
	}
	// The fast path's goroutines are gone: a hand-over now closes.
	e.cache.fast.handoff.give(&replayConn{Conn: newClosedConn(t)})
}

// newClosedConn is one end of a pipe, for a hand-over that must close it.
func newClosedConn(t *testing.T) net.Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a
}

// TestFastPathAuthorizeAll: with an Authorize hook the fast path answers
// only while AuthorizeAll says the hook allows everything; otherwise the
// hook decides, through net/http.
func TestFastPathAuthorizeAll(t *testing.T) {
	var open atomic.Bool
	var asked atomic.Int64
	e := newEnv(t, func(c *Cache) {
		c.Authorize = func(r *http.Request, stream string) error {
			asked.Add(1)
			if open.Load() {
				return nil
			}
			return errors.New("no")
		}
		c.AuthorizeAll = open.Load
	})
	open.Store(true)
	e.origin.set(fastInit, []byte("init section"))
	e.own("live/cam1")
	if r := e.get(fastInit); r.status != http.StatusOK { // the miss: net/http, not asked
		t.Fatalf("open: %d", r.status)
	}
	// The miss handed its connection to net/http for good: a new one.
	e.client.CloseIdleConnections()
	before, askedBefore := e.cache.fast.served.Load(), asked.Load()
	if r := e.get(fastInit); r.status != http.StatusOK || e.cache.fast.served.Load() != before+1 || asked.Load() != askedBefore {
		t.Fatalf("open: %d, fast path answered %d, hook asked %d", r.status,
			e.cache.fast.served.Load()-before, asked.Load()-askedBefore)
	}
	open.Store(false)
	if r := e.get(fastInit); r.status != http.StatusForbidden || asked.Load() == 0 {
		t.Fatalf("closed: %d, hook asked %d times", r.status, asked.Load())
	}
}

// TestFastPathSaysCloseWhenClosing: an answer the fast path writes while
// the cache shuts down says the connection closes after it, as net/http's
// answers do then (HTTP/1.1: "Connection: close"; HTTP/1.0 keep-alive
// keeps its header, as net/http's does).
func TestFastPathSaysCloseWhenClosing(t *testing.T) {
	fc := &fastConn{s: &fastServer{c: &Cache{}}}
	a := &fastAnswer{obj: &object{status: http.StatusOK, body: []byte("x")}, span: bodySpan{length: 1}}
	h11 := &fastHead{http11: true}
	h10 := &fastHead{keepAlive: true}
	if b := string(fc.appendHeader(nil, h11, a)); strings.Contains(b, "Connection:") {
		t.Fatalf("an open server's HTTP/1.1 answer:\n%s", b)
	}
	fc.s.closing.Store(true)
	if b := string(fc.appendHeader(nil, h11, a)); !strings.HasSuffix(b, "\r\nConnection: close\r\n\r\n") {
		t.Fatalf("a closing server's HTTP/1.1 answer:\n%s", b)
	}
	if b := string(fc.appendHeader(nil, h10, a)); !strings.HasSuffix(b, "\r\nConnection: keep-alive\r\n\r\n") {
		t.Fatalf("a closing server's HTTP/1.0 keep-alive answer:\n%s", b)
	}
}

// TestFastPathWaits: a miss, an LL-HLS blocking reload and an origin's 404
// are answered on the fast path once their upstream fetch completes, and
// the connection stays there; a request whose fetch fails (an origin's 500)
// goes to net/http with the fetch's result, which it answers from (the
// connection stays with net/http).
func TestFastPathWaits(t *testing.T) {
	e := newEnv(t, nil)
	const media = "/live/cam1/video1_stream.m3u8"
	const fresh = "/live/cam1/abc_video1_seg9.mp4"
	const broken = "/live/cam1/abc_video1_seg10.mp4"
	e.origin.set(media, []byte(llPlaylist))
	e.origin.set(fresh, []byte("segment nine"))
	release := make(chan struct{})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == broken {
			http.Error(w, "broken", http.StatusInternalServerError)
			return true
		}
		if r.URL.Query().Has("_HLS_msn") {
			<-release
		}
		return false
	})
	e.own("live/cam1")
	conn, err := net.Dial("tcp", e.cache.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(conn)
	ask := func(target string) (*http.Response, string) {
		t.Helper()
		if _, err := io.WriteString(conn, get11(target)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	handed := func() float64 { return metricValue(e.cache.m.handedOver) }
	served := e.cache.fast.served.Load()

	if r, body := ask(fresh); r.StatusCode != http.StatusOK || body != "segment nine" || r.Header.Get("X-Cache") != "MISS" {
		t.Fatalf("a miss: %d %q X-Cache %q", r.StatusCode, body, r.Header.Get("X-Cache"))
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		close(release)
	}()
	start := time.Now()
	r, body := ask(media + "?_HLS_msn=8&_HLS_part=2")
	if r.StatusCode != http.StatusOK || body != llPlaylist || r.Header.Get("X-Cache") != "MISS" {
		t.Fatalf("a blocking reload: %d X-Cache %q\n%s", r.StatusCode, r.Header.Get("X-Cache"), body)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("the blocking reload was answered after %v, before its part", d)
	}
	if r, _ := ask(fresh); r.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("the miss was not kept: X-Cache %q", r.Header.Get("X-Cache"))
	}
	if got := e.cache.fast.served.Load() - served; got != 3 || handed() != 0 {
		t.Fatalf("fast path answered %d of 3, handed %v connections over", got, handed())
	}
	if r, body := ask("/live/cam1/abc_video1_part99.mp4"); r.StatusCode != http.StatusNotFound || body != "no such file\n" || handed() != 0 {
		t.Fatalf("a part the origin lacks: %d %q, %v connections handed over", r.StatusCode, body, handed())
	}
	if r, body := ask(broken); r.StatusCode != http.StatusBadGateway || handed() != 1 {
		t.Fatalf("an origin's 500: %d %q, %v connections handed over", r.StatusCode, body, handed())
	}
	e.wantOriginRequests(broken, 1, "net/http answers from the fast path's fetch")
	if r, body := ask(fresh); r.StatusCode != http.StatusOK || body != "segment nine" || e.cache.fast.served.Load()-served != 4 {
		t.Fatalf("after the hand-over: %d %q, fast path answered %d", r.StatusCode, body, e.cache.fast.served.Load()-served)
	}
}
