package hlscache

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/hlsproto"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

func TestParseWindow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body string
		want *playlistWindow
	}{
		{"ll", llPlaylist, &playlistWindow{first: 7, next: 8, maxPart: 21, blocking: true, duration: 2 * time.Second, target: 2 * time.Second}},
		{"classic", "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:100\n#EXTINF:4,\na.ts\n#EXTINF:4,\nb.ts\n",
			&playlistWindow{first: 100, next: 102, duration: 8 * time.Second, target: 4 * time.Second}},
		{"crlf", "#EXTM3U\r\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES\r\n#EXT-X-TARGETDURATION:1\r\n#EXT-X-PART-INF:PART-TARGET=0.33334\r\n#EXT-X-MEDIA-SEQUENCE:5\r\n#EXTINF:1,\r\na.mp4\r\n",
			&playlistWindow{first: 5, next: 6, maxPart: 7, blocking: true, duration: time.Second, target: time.Second}},
		{"multivariant", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n", nil},
		{"bad sequence", "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:-1\n", nil},
		{"empty", "", nil},
	} {
		got := parseWindow([]byte(tc.body))
		if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// _HLS_msn/_HLS_part beyond the window are refused before anything is
// fetched for them; below the window, or on a playlist that cannot block,
// they are answered as the plain playlist.
func TestBlockingReloadWindow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	const media = "/live/cam1/video1_stream.m3u8"
	e.origin.set(media, []byte(llPlaylist)) // MEDIA-SEQUENCE 7, one segment: next is 8
	e.origin.set("/live/cam1/index.m3u8", []byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nvideo1_stream.m3u8\n"))
	e.own("live/cam1")
	for _, tc := range []struct {
		query    string
		status   int
		upstream string // the directive the origin must have seen; "" for none
	}{
		{"_HLS_msn=10", 400, ""},
		{"_HLS_msn=4000000000", 400, ""},
		{"_HLS_msn=8&_HLS_part=22", 400, ""},
		{"_HLS_msn=9", 200, "_HLS_msn=9"},
		{"_HLS_msn=8&_HLS_part=21", 200, "_HLS_msn=8&_HLS_part=21"},
		{"_HLS_msn=7&_HLS_part=3&_HLS_skip=YES", 200, "_HLS_msn=7&_HLS_part=3&_HLS_skip=YES"},
		{"_HLS_msn=3", 200, ""},
		{"_HLS_msn=6&_HLS_part=2&_HLS_skip=YES", 200, "_HLS_skip=YES"},
	} {
		before := len(e.origin.receivedQueries())
		r := e.get(media + "?" + tc.query)
		if r.status != tc.status {
			t.Errorf("%s: %d %q, want %d", tc.query, r.status, r.body, tc.status)
		}
		for _, q := range e.origin.receivedQueries()[before:] {
			if q != "" && q != tc.upstream {
				t.Errorf("%s: the origin was asked %q", tc.query, q)
			}
		}
	}
	// A multivariant playlist cannot block: one cache key, whatever msn.
	for _, q := range []string{"_HLS_msn=1", "_HLS_msn=99999&_HLS_part=99999"} {
		if r := e.get("/live/cam1/index.m3u8?" + q); r.status != 200 {
			t.Errorf("multivariant ?%s: %d", q, r.status)
		}
	}
	e.wantOriginRequests("/live/cam1/index.m3u8", 1, "the multivariant playlist")
	if qs := e.origin.receivedQueries(); slices.ContainsFunc(qs, func(q string) bool { return strings.Contains(q, "99999") || q == "_HLS_msn=10" }) {
		t.Errorf("out-of-window directives reached the origin: %q", qs)
	}
	if got := metricValue(e.cache.m.requestsBy[kindPlaylist][outcomeRefused]); got != 3 {
		t.Errorf("refused counted %v, want 3", got)
	}

	// The window moves on: a request beyond the stored window makes the
	// cache look at the playlist again before refusing.
	e.origin.set(media, []byte(strings.Replace(llPlaylist, "MEDIA-SEQUENCE:7", "MEDIA-SEQUENCE:20", 1)))
	testkit.WaitFor(t, 5*time.Second, "msn 21 accepted once the window moved", func() bool {
		return e.get(media+"?_HLS_msn=21").status == 200
	})
}

// Fetches beyond max_upstream_conns to one origin wait for a slot within
// their deadline, then get 503; other viewers of cached objects are served.
func TestUpstreamSlots(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Cache) {
		c.MaxUpstreamConns = 2
		c.UpstreamTimeout = 300 * time.Millisecond
		c.BlockingHold = 5 * time.Second
	})
	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "_part") {
			select {
			case <-release:
			case <-r.Context().Done():
				return true
			}
		}
		return false
	})
	e.origin.set("/live/cam1/abc_video1_part1.mp4", []byte("p1"))
	e.origin.set("/live/cam1/abc_video1_part2.mp4", []byte("p2"))
	e.origin.set("/live/cam1/abc_video1_seg1.mp4", []byte("s1"))
	e.own("live/cam1")
	parts := make(chan response, 2)
	for _, p := range []string{"part1", "part2"} {
		e.getAsync("/live/cam1/abc_video1_"+p+".mp4", parts)
	}
	testkit.WaitFor(t, 5*time.Second, "two parts held upstream", func() bool {
		return e.origin.count("/live/cam1/abc_video1_part1.mp4") == 1 && e.origin.count("/live/cam1/abc_video1_part2.mp4") == 1
	})
	r := e.get("/live/cam1/abc_video1_seg1.mp4")
	if r.status != http.StatusServiceUnavailable || strings.TrimSpace(r.body) != "upstream busy" {
		t.Errorf("third fetch: %d %q, want 503 upstream busy", r.status, r.body)
	}
	e.wantOriginRequests("/live/cam1/abc_video1_seg1.mp4", 0, "")
	if got := metricValue(e.cache.m.upstreamErrors.WithLabelValues("segment", "busy")); got != 1 {
		t.Errorf("busy counted %v", got)
	}
	close(release)
	for range 2 {
		if r := <-parts; r.status != 200 {
			t.Errorf("held part: %d %q", r.status, r.body)
		}
	}
	if r := e.get("/live/cam1/abc_video1_seg1.mp4"); r.status != 200 {
		t.Errorf("segment once slots are free: %d", r.status)
	}
}

// 300 connections that never finish their headers: the first 256 (the
// per-IP cap) are held until the header timeout closes them, the rest are
// answered 429 at once; a viewer from another address is served throughout.
func TestSlowHeaderConnections(t *testing.T) {
	t.Parallel()
	const slow = 300
	// The header timeout must outlast dialling all of them (on a loaded
	// 2-core machine that took over 700 ms): a held connection closed
	// before the last dial frees a slot that a later one takes instead of
	// being refused, and the counts below never meet.
	e := newEnv(t, func(c *Cache) { c.HeaderTimeout = 3 * time.Second })
	e.origin.set("/live/cam1/video1_stream.m3u8", []byte(llPlaylist))
	seg := strings.Repeat("x", 200_000)
	e.origin.set("/live/cam1/abc_video1_seg7.mp4", []byte(seg))
	e.own("live/cam1")

	addr := e.cache.HTTPAddr().String()
	conns := make([]net.Conn, 0, slow)
	for range slow {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, "GET /live/cam1/video1_stream.m3u8 HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	loop := netip.MustParseAddr("127.0.0.1")
	testkit.WaitFor(t, 5*time.Second, "the slow connections accepted or refused", func() bool {
		return e.cache.limit.open(loop) == DefaultMaxConnsPerIP &&
			metricValue(e.cache.m.connsRefused) == slow-DefaultMaxConnsPerIP
	})

	// A real viewer, from 127.0.0.2, while they are open.
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	viewer := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dialer.DialContext}}
	defer viewer.CloseIdleConnections()
	var worst time.Duration
	for i := range 20 {
		p := "/live/cam1/video1_stream.m3u8"
		if i%2 == 1 {
			p = "/live/cam1/abc_video1_seg7.mp4"
		}
		start := time.Now()
		resp, err := viewer.Get(e.base + p)
		if err != nil {
			t.Fatalf("viewer: %v", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		worst = max(worst, time.Since(start))
		if err != nil || resp.StatusCode != 200 || i%2 == 1 && len(b) != len(seg) {
			t.Fatalf("viewer %s: %d, %d bytes, %v", p, resp.StatusCode, len(b), err)
		}
	}
	t.Logf("viewer: 20 requests while %d slow connections were open, slowest %v", slow, worst)

	// Every slow connection ends: 429 for those over the cap, a close
	// after the header timeout for the others.
	var refused, closed int
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		switch {
		case strings.HasPrefix(line, "HTTP/1.1 429"):
			refused++
		case err != nil && !isTimeout(err):
			closed++
		default:
			t.Fatalf("slow connection: %q, %v", line, err)
		}
	}
	if refused != slow-DefaultMaxConnsPerIP || closed != DefaultMaxConnsPerIP {
		t.Errorf("refused %d, closed %d", refused, closed)
	}
	testkit.WaitFor(t, 5*time.Second, "no connection left counted for 127.0.0.1", func() bool { return e.cache.limit.open(loop) == 0 })
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// FuzzParseWindow: any playlist body (it comes from an origin) parses
// without a panic into nothing or a sane window.
func FuzzParseWindow(f *testing.F) {
	f.Add([]byte(llPlaylist))
	f.Add([]byte("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:18446744073709551615\n#EXTINF:1,\na\n"))
	f.Add([]byte("#EXT-X-PART-INF:PART-TARGET=0\n#EXT-X-TARGETDURATION:1e308\n#EXTINF:"))
	f.Fuzz(func(t *testing.T, body []byte) {
		w := parseWindow(body)
		if w == nil {
			return
		}
		if w.next < w.first {
			t.Fatalf("window %+v: next below first", w)
		}
		_ = w.judge(hlsproto.Directives{MSN: w.next, HasMSN: true, Part: w.maxPart, HasPart: true})
	})
}
