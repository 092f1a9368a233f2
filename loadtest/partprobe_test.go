package loadtest

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2"

	"github.com/streamgrid/streamgrid/internal/hlsproto"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// llPlaylist is a Low-Latency media playlist as the origin renders it: the
// last two segments with their parts, two parts of segment 12 built.
const llPlaylist = `#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:1
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6,CAN-SKIP-UNTIL=6
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-MEDIA-SEQUENCE:9
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-MAP:URI="a_init.mp4"
#EXT-X-GAP
#EXTINF:1.00000,
gap.mp4
#EXTINF:1.00000,
a_seg10.mp4
#EXT-X-PART:DURATION=0.20000,URI="a_part0.mp4",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI="a_part1.mp4"
#EXT-X-PART:DURATION=0.20000,URI="a_part2.mp4"
#EXT-X-PART:DURATION=0.20000,URI="a_part3.mp4"
#EXT-X-PART:DURATION=0.20000,URI="a_part4.mp4"
#EXTINF:1.00000,
a_seg11.mp4
#EXT-X-PART:DURATION=0.20000,URI="a_part5.mp4",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI="a_part6.mp4"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="a_part7.mp4"
`

func TestParseMediaPlaylist(t *testing.T) {
	for _, tc := range []struct {
		name     string
		text     string
		ll       bool
		msn      uint64
		segments int
		parts    []partKey
		next     partKey
		err      bool
	}{
		{name: "ll building", text: llPlaylist, ll: true, msn: 9, segments: 3,
			parts: []partKey{{11, 0}, {11, 1}, {11, 2}, {11, 3}, {11, 4}, {12, 0}, {12, 1}}, next: partKey{12, 2}},
		{name: "ll segment just complete", ll: true, msn: 20, segments: 2,
			text:  "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-PART-INF:PART-TARGET=0.2\n#EXT-X-MEDIA-SEQUENCE:20\n#EXT-X-PART:DURATION=0.2,URI=\"p0\"\n#EXTINF:1,\ns20\n#EXT-X-PART:DURATION=0.2,URI=\"p1\"\n#EXT-X-PART:DURATION=0.2,URI=\"p2\"\n#EXTINF:1,\ns21\n",
			parts: []partKey{{20, 0}, {21, 0}, {21, 1}}, next: partKey{22, 0}},
		{name: "delta update", ll: true, msn: 5, segments: 4,
			text:  "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-PART-INF:PART-TARGET=0.2\n#EXT-X-MEDIA-SEQUENCE:5\n#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n#EXTINF:1,\ns8\n#EXT-X-PART:DURATION=0.2,URI=\"p\"\n",
			parts: []partKey{{9, 0}}, next: partKey{9, 1}},
		{name: "classic", msn: 3, segments: 2,
			text: "#EXTM3U\r\n#EXT-X-TARGETDURATION:1\r\n#EXT-X-MEDIA-SEQUENCE:3\r\n#EXTINF:1,\r\ns3.ts\r\n\r\n#EXTINF:1,\r\ns4.ts\r\n",
			next: partKey{5, 0}},
		{name: "no media sequence", ll: true, segments: 1,
			text:  "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-PART-INF:PART-TARGET=0.2\n#EXTINF:1,\ns0\n#EXT-X-PART:DURATION=0.2,URI=\"p\"\n#EXT-X-PART:DURATION=0.2,URI=\"q\"\n",
			parts: []partKey{{1, 0}, {1, 1}}, next: partKey{1, 2}},
		{name: "no segment yet", err: true,
			text: "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-PART-INF:PART-TARGET=0.2\n#EXTINF:0.2,\n#EXT-X-PART:DURATION=0.2,URI=\"p\"\n"},
		{name: "part without duration", err: true,
			text: "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-PART-INF:PART-TARGET=0.2\n#EXTINF:1,\ns0\n#EXT-X-PART:URI=\"p\"\n"},
		{name: "empty", text: "", err: true},
		{name: "not m3u", text: "<html>", err: true},
		{name: "multivariant", text: "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n", err: true},
		{name: "no target duration", text: "#EXTM3U\n#EXTINF:1,\ns\n", err: true},
		{name: "bad sequence", text: "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:x\n", err: true},
		{name: "bad skip", text: "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-SKIP:FOO=1\n", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseMediaPlaylist(tc.text)
			if tc.err {
				if err == nil {
					t.Fatalf("accepted: %+v", p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.lowLatency != tc.ll || p.mediaSequence != tc.msn || p.segments != tc.segments ||
				!slices.Equal(p.parts, tc.parts) || p.next() != tc.next {
				t.Errorf("got ll %v msn %d segments %d parts %v next %v", p.lowLatency, p.mediaSequence,
					p.segments, p.parts, p.next())
			}
		})
	}
}

func TestPlaylistParts(t *testing.T) {
	p, err := parseMediaPlaylist(llPlaylist)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.newParts(partKey{11, 4}); !slices.Equal(got, []partKey{{11, 4}, {12, 0}, {12, 1}}) {
		t.Errorf("newParts(11.4) = %v", got)
	}
	if got := p.newParts(partKey{12, 2}); len(got) != 0 {
		t.Errorf("newParts(12.2) = %v", got)
	}
	if last, ok := p.last(); !ok || last != (partKey{12, 1}) {
		t.Errorf("last %v %v", last, ok)
	}
	if _, ok := (&mediaPlaylist{}).last(); ok {
		t.Error("last of no parts")
	}
	for _, tc := range []struct {
		a, b partKey
		less bool
	}{
		{partKey{1, 5}, partKey{2, 0}, true},
		{partKey{2, 0}, partKey{1, 5}, false},
		{partKey{2, 1}, partKey{2, 2}, true},
		{partKey{2, 2}, partKey{2, 2}, false},
	} {
		if got := tc.a.less(tc.b); got != tc.less {
			t.Errorf("%v < %v: %v", tc.a, tc.b, got)
		}
	}
}

func TestMediaPlaylistURI(t *testing.T) {
	for _, tc := range []struct {
		text, want string
		err        bool
	}{
		{text: "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n\n" +
			"#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio2\",AUTOSELECT=YES,DEFAULT=YES,URI=\"audio2_stream.m3u8\"\n" +
			"#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"avc1.64001f,mp4a.40.2\",AUDIO=\"audio\"\nvideo1_stream.m3u8\n", want: "video1_stream.m3u8"},
		{text: "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=3\nr720p_video1_stream.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=1\nr360p_video1_stream.m3u8\n",
			want: "r720p_video1_stream.m3u8"},
		{text: "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\ns.ts\n", want: ""},
		{text: "#EXTM3U\n#EXT-X-VERSION:3\n", err: true},
		{text: "stream not found\n", err: true},
	} {
		got, err := mediaPlaylistURI(tc.text)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%q: got %q, %v", tc.text, got, err)
		}
	}
}

// TestPartProbeSight pairs the two sides' sightings in either order, ignores
// the warm-up and forgets what the other side never saw.
func TestPartProbeSight(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := &runner{warmEnd: t0, partAll: newReservoir(100, 1)}
	p := &partProbe{r: r, cacheRs: newReservoir(100, 2), origin: map[partKey]time.Time{}, cache: map[partKey]time.Time{}}
	at := func(msec int) time.Time { return t0.Add(time.Duration(msec) * time.Millisecond) }

	p.sight(true, partKey{1, 0}, at(-500)) // in the warm-up: no sample
	p.sight(false, partKey{1, 0}, at(-450))
	p.sight(true, partKey{1, 1}, at(100)) // origin first
	p.sight(false, partKey{1, 1}, at(130))
	p.sight(false, partKey{1, 2}, at(300)) // cache first (the origin chain late)
	p.sight(true, partKey{1, 2}, at(310))
	p.sight(false, partKey{1, 3}, at(500))
	p.sight(false, partKey{1, 3}, at(900)) // a second cache sighting does not move the first
	p.sight(true, partKey{1, 3}, at(520))
	p.sight(false, partKey{1, 4}, at(600)) // never seen at the origin
	p.sight(true, partKey{1, 5}, at(700))  // never seen at the cache
	p.sight(true, partKey{9, 0}, at(700+int(partSightingTTL/time.Millisecond)+1))

	got := r.partAll.percentiles()
	if got.Count != 3 || got.Max != 30 || p.cacheRs.percentiles().Count != 3 {
		t.Errorf("samples %+v", got)
	}
	r.partAll.mu.Lock()
	samples := slices.Clone(r.partAll.samples)
	r.partAll.mu.Unlock()
	slices.Sort(samples)
	if !slices.Equal(samples, []float64{-20, -10, 30}) {
		t.Errorf("samples %v", samples)
	}
	if _, ok := p.cache[partKey{1, 4}]; !ok || len(p.origin) != 1 {
		t.Errorf("unmatched: origin %v cache %v", p.origin, p.cache)
	}
	if _, ok := p.origin[partKey{1, 5}]; ok {
		t.Errorf("origin sighting older than the TTL kept: %v", p.origin)
	}
}

func TestPlayIndex(t *testing.T) {
	for _, tc := range []struct{ cameras, plays int }{{1, 1}, {3, 2}, {10, 2}, {4, 3}, {5, 5}, {2, 4}} {
		seen := map[[2]int]bool{}
		for n := range tc.cameras * tc.plays {
			pair := [2]int{n % tc.cameras, playIndex(n, tc.cameras, tc.plays)}
			if seen[pair] {
				t.Errorf("%d cameras, %d plays: viewer %d repeats %v", tc.cameras, tc.plays, n, pair)
			}
			seen[pair] = true
		}
	}
}

func TestPartProbePlan(t *testing.T) {
	cfg, err := Config{Publish: "rtsp://127.0.0.1:1/load", Play: []string{"http://127.0.0.1:1/a", "http://127.0.0.1:2/b"},
		Origins: []string{"http://127.0.0.1:3/load/"}, Cameras: 3, Duration: time.Minute}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PartProbes != 4 || cfg.Origins[0] != "http://127.0.0.1:3/load" {
		t.Fatalf("defaults: probes %d, origins %q", cfg.PartProbes, cfg.Origins)
	}
	r := &runner{cfg: cfg}
	r.plan()
	var got []string
	for _, p := range r.probes {
		got = append(got, p.stream+"@"+p.play)
		if want := r.cameras[cameraNumber(p.stream)].startAt + cfg.ViewerDelay; p.startAt != want {
			t.Errorf("%s starts at %v, want %v", p.stream, p.startAt, want)
		}
	}
	// cam0001 through both caches, although 3 cameras are not a multiple of 2
	want := []string{"cam0001@http://127.0.0.1:1/a", "cam0002@http://127.0.0.1:2/b", "cam0003@http://127.0.0.1:1/a",
		"cam0001@http://127.0.0.1:2/b"}
	if !slices.Equal(got, want) {
		t.Errorf("probes %q", got)
	}
	if r.probes[0].cacheRs != r.probes[2].cacheRs || r.probes[0].cacheRs == r.probes[1].cacheRs {
		t.Error("probes of one cache must share its reservoir")
	}

	few := cfg
	few.Cameras, few.Play, few.PartProbes = 1, few.Play[:1], 10
	if few, err = few.withDefaults(); err != nil || few.PartProbes != 1 {
		t.Errorf("capped probes %d, %v", few.PartProbes, err)
	}
}

// cameraNumber is the 0-based index of a camera name.
func cameraNumber(name string) int {
	for i := range MaxCameras {
		if cameraName(i) == name {
			return i
		}
	}
	return -1
}

// TestRunPartProbe runs the probe for real on loopback: the stand-in is the
// owning origin, a reverse proxy in front of it the cache, and a second
// "origin" that answers 404 for every stream is skipped.
func TestRunPartProbe(t *testing.T) {
	testkit.Slow(t)
	s := startStandIn(t)
	defer s.close()
	target, err := url.Parse(s.http.URL)
	if err != nil {
		t.Fatal(err)
	}
	var blocking atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0) // requests cut at the end of the run
	cache := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has(hlsproto.MSN) {
			blocking.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	notOwner := httptest.NewServer(http.NotFoundHandler())
	// the proxy's and the test's idle connections
	defer cache.Close()
	defer notOwner.Close()

	rep := s.run(t, Config{
		Play:        []string{cache.URL + "/load"},
		Origins:     []string{notOwner.URL + "/load", s.playURL()},
		Cameras:     2,
		Viewers:     1,
		Duration:    8 * time.Second,
		Warmup:      time.Second,
		ViewerDelay: time.Second,
		Log:         testLog(t),
	})
	table := reportTable(rep)
	t.Logf("report:\n%s", table.String())
	if rep.PartProbes != 2 || rep.PartSamples == 0 || rep.PartSamples != rep.PartAvailabilityMS.Count ||
		len(rep.PartByCache) != 1 || rep.PartByCache[0].PartAvailabilityMS.Count != rep.PartSamples {
		t.Errorf("part probes %d, samples %d, availability %+v, by cache %+v",
			rep.PartProbes, rep.PartSamples, rep.PartAvailabilityMS, rep.PartByCache)
	}
	if rep.PartProbeErrors != 0 || blocking.Load() == 0 {
		t.Errorf("part probe errors %d, blocking reloads at the cache %d", rep.PartProbeErrors, blocking.Load())
	}
	if !strings.Contains(table.String(), "part availability ms") {
		t.Errorf("table lacks the part availability")
	}
	m := reportJSON(t, rep)
	pa, ok := m["part_availability_ms"].(map[string]any)
	if !ok || m["part_samples"] == nil || pa["p50"] == nil || pa["p95"] == nil || pa["p99"] == nil {
		t.Errorf("JSON lacks part availability: %v", m)
	}
}

// TestRunPartProbeClassic: a classic HLS stream has no parts; the probe says
// so once per side instead of looping.
func TestRunPartProbeClassic(t *testing.T) {
	testkit.Slow(t)
	s := startStandInVariant(t, gohlslib.MuxerVariantFMP4, 3)
	defer s.close()
	rep := s.run(t, Config{
		Origins:     []string{s.playURL()},
		Cameras:     1,
		Duration:    5 * time.Second,
		Warmup:      time.Second,
		ViewerDelay: time.Second,
		NoAudio:     true,
	})
	if rep.PartProbes != 1 || rep.PartSamples != 0 || rep.PartProbeErrors != 2 {
		t.Errorf("probes %d, samples %d, errors %d", rep.PartProbes, rep.PartSamples, rep.PartProbeErrors)
	}
}

// TestPartProbeOriginSecret: the probe sends the origin secret to the
// origins, as caches do, and never to a cache.
func TestPartProbeOriginSecret(t *testing.T) {
	const secret = "cluster-secret-0123456789"
	got := map[string]string{}
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.URL.Path] = r.Header.Get(hlsproto.HeaderAuth)
		mu.Unlock()
		_, _ = io.WriteString(w, "#EXTM3U\n")
	}))
	defer srv.Close()
	p := &partProbe{r: &runner{http: srv.Client(), cfg: Config{
		Origins: []string{srv.URL + "/origin"}, OriginSecret: secret,
	}}}
	for _, u := range []string{srv.URL + "/origin/cam0001/v.m3u8", srv.URL + "/cache/cam0001/v.m3u8", srv.URL + "/originx/cam0001/v.m3u8"} {
		if _, _, err := p.get(t.Context(), u); err != nil {
			t.Fatal(err)
		}
	}
	if got["/origin/cam0001/v.m3u8"] != secret || got["/cache/cam0001/v.m3u8"] != "" || got["/originx/cam0001/v.m3u8"] != "" {
		t.Errorf("secret sent: %q", got)
	}
}

// BenchmarkParseMediaPlaylist is the cost of reading one probe answer with
// gohlslib's parser: a probe reads about two per part and side (at most
// MaxPartProbes probes), far from the load generator's hot path.
func BenchmarkParseMediaPlaylist(b *testing.B) {
	for b.Loop() {
		if _, err := parseMediaPlaylist(llPlaylist); err != nil {
			b.Fatal(err)
		}
	}
}
