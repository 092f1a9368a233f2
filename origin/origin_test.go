package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/gossip"
	"github.com/streamgrid/streamgrid/internal/hlsproto"
	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

const camPath = "live/cam1"

func serving(o *Origin, path string) func() bool {
	return func() bool { _, ok := streamStatus(o, path); return ok }
}

// sliceKey identifies a video frame by its slice NAL units (parameter sets
// and delimiters may be added or dropped by muxers).
func sliceKey(au [][]byte) string {
	var b bytes.Buffer
	for _, n := range au {
		if t := h264.NALUType(n[0] & 0x1f); t == h264.NALUTypeIDR || t == h264.NALUTypeNonIDR {
			b.Write(n)
		}
	}
	return b.String()
}

// readFrames plays url with gohlslib's client until it has want video frames
// and checks they are consecutive frames of the clip, in order.
func readFrames(t *testing.T, url string, c *clip, want int) {
	t.Helper()
	var source []string
	for _, p := range c.packets {
		if p.Track == 0 {
			var au h264.AVCC
			if err := au.Unmarshal(p.Payload); err != nil {
				t.Fatal(err)
			}
			source = append(source, sliceKey(au))
		}
	}
	var (
		mu     sync.Mutex
		frames []string
		audio  int
		done   = make(chan struct{})
		once   sync.Once
	)
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	cl := &gohlslib.Client{
		URI:                       url,
		HTTPClient:                &http.Client{Transport: transport, Timeout: 10 * time.Second},
		OnDownloadPrimaryPlaylist: func(string) {},
		OnDownloadStreamPlaylist:  func(string) {},
		OnDownloadSegment:         func(string) {},
		OnDownloadPart:            func(string) {},
		OnDecodeError:             func(err error) { t.Logf("client decode error: %v", err) },
	}
	cl.OnTracks = func(tracks []*gohlslib.Track) error {
		for _, tr := range tracks {
			switch tr.Codec.(type) {
			case *codecs.H264:
				cl.OnDataH26x(tr, func(_, _ int64, au [][]byte) {
					mu.Lock()
					defer mu.Unlock()
					frames = append(frames, sliceKey(au))
					if len(frames) >= want && audio > 0 {
						once.Do(func() { close(done) })
					}
				})
			case *codecs.MPEG4Audio:
				cl.OnDataMPEG4Audio(tr, func(int64, [][]byte) {
					mu.Lock()
					defer mu.Unlock()
					audio++
					if len(frames) >= want {
						once.Do(func() { close(done) })
					}
				})
			}
		}
		return nil
	}
	if err := cl.Start(); err != nil {
		t.Fatal(err)
	}
	errCh := make(chan error, 1)
	go func() { errCh <- cl.Wait2() }()
	select {
	case <-done:
		cl.Close()
		<-errCh
	case err := <-errCh:
		t.Fatalf("client stopped: %v", err)
	case <-time.After(20 * time.Second):
		cl.Close()
		<-errCh
		t.Fatal("client did not receive enough frames")
	}

	mu.Lock()
	defer mu.Unlock()
	start := -1
	for k, key := range source {
		if key == frames[0] {
			start = k
			break
		}
	}
	if start < 0 {
		t.Fatal("first frame read back is not a frame of the clip")
	}
	for k, f := range frames {
		if f != source[(start+k)%len(source)] {
			t.Fatalf("frame %d read back is not frame %d of the clip: frames missing or out of order", k, start+k)
		}
	}
	if audio == 0 {
		t.Fatal("no audio read back")
	}
}

func TestLowLatencyPlaylistAndPlayback(t *testing.T) {
	checkLeaks(t)
	c := loadClip(t)
	b := startBus(t, time.Second)
	o := b.origin("o1", nil)
	startLive(t, b, o, c, 30*time.Second)
	u := base(o, camPath)
	st, _ := streamStatus(o, camPath)

	r := get(t, u+"index.m3u8")
	if r.code != http.StatusOK || r.header.Get("Content-Type") != mpegurl {
		t.Fatalf("multivariant: %d %q", r.code, r.header.Get("Content-Type"))
	}
	if r.header.Get(hlsproto.HeaderOrigin) != "o1" || r.header.Get(hlsproto.HeaderEpoch) != strconv.FormatUint(st.Epoch, 10) || st.Epoch == 0 {
		t.Fatalf("owner headers %q %q, epoch %d", r.header.Get(hlsproto.HeaderOrigin), r.header.Get(hlsproto.HeaderEpoch), st.Epoch)
	}
	mv, err := playlist.Unmarshal(r.body)
	if err != nil {
		t.Fatal(err)
	}
	if v := mv.(*playlist.Multivariant); v.Variants[0].URI != "video1_stream.m3u8" || len(v.Renditions) != 1 {
		t.Fatalf("multivariant:\n%s", r.body)
	}

	pl, text := mediaPlaylist(t, u+"video1_stream.m3u8")
	if pl.ServerControl == nil || !pl.ServerControl.CanBlockReload || pl.PartInf == nil || pl.PreloadHint == nil || pl.Map == nil {
		t.Fatalf("not a Low-Latency playlist:\n%s", text)
	}
	if !strings.Contains(text, "#EXT-X-PART:") || !strings.Contains(text, "#EXT-X-DISCONTINUITY-SEQUENCE:0") {
		t.Fatalf("no parts or no discontinuity sequence:\n%s", text)
	}
	if strings.Contains(text, "#EXT-X-DISCONTINUITY\n") {
		t.Fatalf("a fresh stream has no discontinuity:\n%s", text)
	}
	lastSeg := pl.Segments[len(pl.Segments)-1]
	if len(lastSeg.Parts) == 0 {
		t.Fatalf("the last segment lists no parts:\n%s", text)
	}
	for _, uri := range []string{pl.Map.URI, lastSeg.URI, lastSeg.Parts[0].URI} {
		r := get(t, u+uri)
		if r.code != http.StatusOK || r.header.Get("Content-Type") != "video/mp4" || len(r.body) == 0 {
			t.Fatalf("%s: %d %q", uri, r.code, r.header.Get("Content-Type"))
		}
		if r.header.Get("Cache-Control") != "public, max-age=3600" || r.header.Get(hlsproto.HeaderOrigin) != "o1" {
			t.Fatalf("%s: headers %v", uri, r.header)
		}
	}

	// A blocking request for the next part returns once it exists.
	msn := pl.MediaSequence + len(pl.Segments)
	partIdx := len(pl.Parts)
	pl2, text2 := mediaPlaylist(t, fmt.Sprintf("%svideo1_stream.m3u8?_HLS_msn=%d&_HLS_part=%d", u, msn, partIdx))
	last2 := pl2.MediaSequence + len(pl2.Segments) - 1
	if last2 < msn && !(last2 == msn-1 && len(pl2.Parts) > partIdx) {
		t.Fatalf("blocking reload for %d.%d answered too early:\n%s", msn, partIdx, text2)
	}
	if pl2.MediaSequence < pl.MediaSequence {
		t.Fatal("media sequence went backwards")
	}
	// The delta update skips old segments.
	r = get(t, u+"video1_stream.m3u8?_HLS_skip=YES")
	if r.code != http.StatusOK {
		t.Fatalf("delta update: %d", r.code)
	}
	// The preload hint is served when the part completes.
	if r := get(t, u+pl2.PreloadHint.URI); r.code != http.StatusOK || len(r.body) == 0 {
		t.Fatalf("preload hint: %d", r.code)
	}

	readFrames(t, u+"index.m3u8", c, 30)

	if st, _ := streamStatus(o, camPath); st.WriteErrors != 0 || st.Packets == 0 || st.Variant != VariantLowLatency {
		t.Fatalf("status %+v", st)
	}
}

func TestGenerationChangeContinuesSequence(t *testing.T) {
	checkLeaks(t)
	c := loadClip(t)
	b := startBus(t, time.Second)
	o := b.origin("o1", nil)
	p := newPublisherNoGOP(t, b, c, camPath, 1)
	testkit.WaitFor(t, 5*time.Second, "claim", serving(o, camPath))
	ctx := context.Background()
	p.play(ctx, 4*time.Second, 4*time.Second)
	u := base(o, camPath)
	var pl1 *playlist.Media
	testkit.WaitFor(t, 10*time.Second, "three segments", func() bool {
		if !ready(o, camPath)() {
			return false
		}
		pl1, _ = mediaPlaylist(t, u+"video1_stream.m3u8")
		real := 0
		for _, s := range pl1.Segments {
			if !s.Gap {
				real++
			}
		}
		return real >= 3
	})
	pl1, _ = stablePlaylist(t, u+"video1_stream.m3u8")
	last1 := pl1.MediaSequence + len(pl1.Segments) - 1
	oldSeg := pl1.Segments[len(pl1.Segments)-1].URI
	oldPrefix, _ := filePrefix(oldSeg)

	// A player at the live edge asks for the segment after the one being
	// built: it only exists in the next generation, and the request waits for it.
	wantMSN := last1 + 2
	blocked := make(chan response, 1)
	go func() {
		c := &http.Client{Timeout: 15 * time.Second}
		defer c.CloseIdleConnections()
		res, err := c.Get(fmt.Sprintf("%svideo1_stream.m3u8?_HLS_msn=%d&_HLS_part=0", u, wantMSN))
		if err != nil {
			blocked <- response{}
			return
		}
		defer res.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(res.Body)
		blocked <- response{code: res.StatusCode, body: buf.Bytes()}
	}()

	p.newGeneration()
	p.play(ctx, 4*time.Second, 4*time.Second)

	r := <-blocked
	if r.code != http.StatusOK {
		t.Fatalf("blocking request across the generation change: %d %s", r.code, r.body)
	}
	plb, err := playlist.Unmarshal(r.body)
	if err != nil {
		t.Fatal(err)
	}
	if m := plb.(*playlist.Media); m.MediaSequence+len(m.Segments) < wantMSN {
		t.Fatalf("answered before segment %d existed:\n%s", wantMSN, r.body)
	}

	var pl2 *playlist.Media
	var text2 string
	testkit.WaitFor(t, 10*time.Second, "new generation in the playlist", func() bool {
		pl2, text2 = mediaPlaylist(t, u+"video1_stream.m3u8")
		for k, s := range pl2.Segments {
			if s.Discontinuity && k < len(pl2.Segments)-1 {
				return true
			}
		}
		return false
	})
	if pl2.MediaSequence < pl1.MediaSequence {
		t.Fatalf("media sequence went backwards: %d → %d", pl1.MediaSequence, pl2.MediaSequence)
	}
	disc := -1
	for k, s := range pl2.Segments {
		if s.Discontinuity {
			disc = k
		}
	}
	if first := pl2.MediaSequence + disc; first <= last1 {
		t.Fatalf("new generation starts at %d, not after %d:\n%s", first, last1, text2)
	}
	if *pl2.DiscontinuitySequence != 0 || strings.Count(text2, "#EXT-X-DISCONTINUITY\n") != 1 {
		t.Fatalf("discontinuity accounting:\n%s", text2)
	}
	newPrefix, _ := filePrefix(pl2.Segments[disc].URI)
	if newPrefix == oldPrefix || !strings.Contains(text2, `#EXT-X-DISCONTINUITY`+"\n"+`#EXT-X-MAP:URI="`+newPrefix) {
		t.Fatalf("new instance without its own init section:\n%s", text2)
	}
	// The old generation's segments are still listed before the boundary and fetchable.
	if !strings.Contains(text2, oldSeg) {
		t.Fatalf("old segment %s dropped from the window:\n%s", oldSeg, text2)
	}
	if r := get(t, u+oldSeg); r.code != http.StatusOK || len(r.body) == 0 {
		t.Fatalf("old segment: %d", r.code)
	}
	// The audio rendition switched the same way.
	pla, texta := mediaPlaylist(t, u+"audio2_stream.m3u8")
	discA := -1
	for k, s := range pla.Segments {
		if s.Discontinuity {
			discA = pla.MediaSequence + k
		}
	}
	if discA != pl2.MediaSequence+disc || *pla.DiscontinuitySequence != 0 {
		t.Fatalf("audio rendition's discontinuity at %d, video's at %d:\n%s", discA, pl2.MediaSequence+disc, texta)
	}
	st, _ := streamStatus(o, camPath)
	if st.Generation != 2 || st.Recreations != 1 || st.Discontinuity != 1 {
		t.Fatalf("status %+v", st)
	}
}

// stablePlaylist waits until everything published is packaged: the
// playlist stops changing.
func stablePlaylist(t *testing.T, url string) (*playlist.Media, string) {
	t.Helper()
	var pl *playlist.Media
	var text, prev string
	testkit.WaitFor(t, 10*time.Second, "a stable playlist", func() bool {
		pl, text = mediaPlaylist(t, url)
		stable := text == prev
		prev = text
		if !stable {
			time.Sleep(200 * time.Millisecond)
		}
		return stable
	})
	return pl, text
}

func TestBlockingBoundsAndHTTPErrors(t *testing.T) {
	checkLeaks(t)
	c := loadClip(t)
	b := startBus(t, time.Second)
	o := b.origin("o1", func(o *Origin) {
		o.blockTimeout = 300 * time.Millisecond
		o.HLS.IdleTimeout = 1500 * time.Millisecond
	})
	p := newPublisherNoGOP(t, b, c, camPath, 1)
	testkit.WaitFor(t, 5*time.Second, "claim", serving(o, camPath))
	p.play(context.Background(), 3*time.Second, 3*time.Second) // then the publisher stalls
	testkit.WaitFor(t, 10*time.Second, "first segment", ready(o, camPath))
	u := base(o, camPath)
	pl, _ := stablePlaylist(t, u+"video1_stream.m3u8")
	next := pl.MediaSequence + len(pl.Segments)

	timed := func(url string) (response, time.Duration) {
		start := time.Now()
		r := get(t, url)
		return r, time.Since(start)
	}
	// The next part never comes: the wait ends at the bound with 503.
	r, took := timed(fmt.Sprintf("%svideo1_stream.m3u8?_HLS_msn=%d&_HLS_part=%d", u, next, len(pl.Parts)))
	if r.code != http.StatusServiceUnavailable || took > 5*time.Second {
		t.Fatalf("blocking request past the live edge: %d after %v", r.code, took)
	}
	// Far beyond the window: 400 at once.
	if r, _ := timed(fmt.Sprintf("%svideo1_stream.m3u8?_HLS_msn=%d", u, next+10)); r.code != http.StatusBadRequest {
		t.Fatalf("msn far ahead: %d", r.code)
	}
	// Behind the window: the current playlist at once.
	if r, _ := timed(fmt.Sprintf("%svideo1_stream.m3u8?_HLS_msn=0&_HLS_part=0", u)); r.code != http.StatusOK {
		t.Fatalf("old msn: %d", r.code)
	}
	// The preload hint does not complete either.
	if r, _ := timed(u + pl.PreloadHint.URI); r.code != http.StatusServiceUnavailable {
		t.Fatalf("preload hint of a stalled stream: %d", r.code)
	}
	prefix, _ := filePrefix(pl.Map.URI)
	badBefore := testutil.ToFloat64(o.m.requests.WithLabelValues("bad"))
	for _, tc := range []struct {
		url  string
		code int
	}{
		{u + "video1_stream.m3u8?_HLS_part=1", http.StatusBadRequest},
		{u + "video1_stream.m3u8?_HLS_msn=x", http.StatusBadRequest},
		{u + prefix + "_video1_seg9999.mp4", http.StatusNotFound},
		{u + prefix + "_video1_part9999.mp4", http.StatusNotFound},
		{u + "0123456789ab_video1_seg7.mp4", http.StatusNotFound},
		{u + "video9_stream.m3u8", http.StatusNotFound},
		{u + "whatever.mp4", http.StatusNotFound},
		{base(o, "live/nope") + "index.m3u8", http.StatusNotFound},
		{"http://" + o.HTTPAddr().String() + "/live/cam$1/index.m3u8", http.StatusBadRequest},
	} {
		if r := get(t, tc.url); r.code != tc.code {
			t.Errorf("GET %s: %d, want %d", tc.url, r.code, tc.code)
		}
	}
	// Both malformed directives and the bad stream path are counted.
	if n := testutil.ToFloat64(o.m.requests.WithLabelValues("bad")) - badBefore; n != 3 {
		t.Errorf("bad requests counted: %v, want 3", n)
	}
	// Hostile paths, straight to the handler (an HTTP client would clean them).
	for _, path := range []string{"/live/../cam1/index.m3u8", "/live/cam1/..", "/live/cam1/%2e%2e", "/../../etc/passwd",
		"/live/cam1/a%00b.m3u8", "/live/cam1/a%5cb.m3u8", "/live%2f..%2fcam1/index.m3u8", "/index.m3u8", "/live/cam1/"} {
		req := httptest.NewRequest(http.MethodGet, "http://origin"+path, nil)
		w := httptest.NewRecorder()
		o.Handler().ServeHTTP(w, req)
		if w.Code != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", path, w.Code)
		}
	}
	w := httptest.NewRecorder()
	o.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "http://origin/live/cam1/index.m3u8", nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", w.Code)
	}
	if r := get(t, "http://"+o.HTTPAddr().String()+"/_streams"); r.code != http.StatusOK || !strings.Contains(string(r.body), `"path":"live/cam1"`) {
		t.Fatalf("/_streams: %d %s", r.code, r.body)
	}

	// Idle: the muxer closes, the lease stays while the stream is live...
	testkit.WaitFor(t, 5*time.Second, "idle", func() bool { st, ok := streamStatus(o, camPath); return ok && !st.Ready })
	if r := get(t, u+"video1_stream.m3u8"); r.code != http.StatusServiceUnavailable {
		t.Fatalf("idle stream playlist: %d", r.code)
	}
	// ...and the stream is released once it has ended.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.reg.ReleaseStream(ctx, camPath, p.rev); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "release", func() bool {
		_, err := p.reg.OwnerOf(ctx, camPath)
		return errors.Is(err, bus.ErrNotFound) && o.load() == 0
	})
	st, _, err := p.reg.State(ctx, camPath)
	if err != nil || st.NextMSN <= uint64(next-1) || st.Node != "o1" {
		t.Fatalf("final state %+v, %v (last segment %d)", st, err, next-1)
	}
}

func TestVariants(t *testing.T) {
	for _, tc := range []struct {
		variant, playlist, contentType string
	}{
		{VariantFMP4, "video1_stream.m3u8", "video/mp4"},
		{VariantMPEGTS, "main_stream.m3u8", "video/mp2t"},
	} {
		t.Run(tc.variant, func(t *testing.T) {
			checkLeaks(t)
			c := loadClip(t)
			b := startBus(t, time.Second)
			o := b.origin("o1", func(o *Origin) {
				o.HLS.Variant = tc.variant
				o.HLS.SegmentCount = 5
			})
			p := newPublisher(t, b, c, camPath, 1)
			testkit.WaitFor(t, 5*time.Second, "claim", serving(o, camPath))
			p.background(4*time.Second, 30*time.Second)
			u := base(o, camPath)
			var pl *playlist.Media
			var text string
			testkit.WaitFor(t, 10*time.Second, "three segments", func() bool {
				if !ready(o, camPath)() {
					return false
				}
				pl, text = mediaPlaylist(t, u+tc.playlist)
				return len(pl.Segments) >= 3
			})
			if pl.ServerControl != nil || len(pl.Parts) != 0 || strings.Contains(text, "#EXT-X-PART") {
				t.Fatalf("%s playlist has Low-Latency features:\n%s", tc.variant, text)
			}
			if (tc.variant == VariantFMP4) != (pl.Map != nil) {
				t.Fatalf("EXT-X-MAP presence wrong:\n%s", text)
			}
			r := get(t, u+pl.Segments[0].URI)
			if r.code != http.StatusOK || r.header.Get("Content-Type") != tc.contentType {
				t.Fatalf("segment: %d %q", r.code, r.header.Get("Content-Type"))
			}
			readFrames(t, u+"index.m3u8", c, 15)
			if st, _ := streamStatus(o, camPath); st.Variant != tc.variant {
				t.Fatalf("variant %q", st.Variant)
			}
		})
	}
}

func TestFailoverContinuesSequence(t *testing.T) {
	testkit.Slow(t) // a crash, a take-over a node TTL later and a new owner's first segment (~3 s)
	checkLeaks(t)
	c := loadClip(t)
	b := startBus(t, time.Second)
	a := b.origin("a", nil)
	p := startLive(t, b, a, c, 60*time.Second)
	bo := b.origin("b", nil)

	plA, _ := mediaPlaylist(t, base(a, camPath)+"video1_stream.m3u8")
	lastA := plA.MediaSequence + len(plA.Segments) // the segment being built
	stA, _ := streamStatus(a, camPath)

	a.shutdown(stopAbandon) // a crash: no release, no final state
	testkit.WaitFor(t, 10*time.Second, "takeover", ready(bo, camPath))
	stB, _ := streamStatus(bo, camPath)
	if stB.Epoch <= stA.Epoch {
		t.Fatalf("epoch %d after %d", stB.Epoch, stA.Epoch)
	}
	var plB *playlist.Media
	var textB string
	testkit.WaitFor(t, 10*time.Second, "first segment of the new owner", func() bool {
		// (Its parts may come first: the playlist state tells the new
		// owner the target duration, and it serves from the first part.)
		plB, textB = mediaPlaylist(t, base(bo, camPath)+"video1_stream.m3u8")
		return slices.ContainsFunc(plB.Segments, func(s *playlist.MediaSegment) bool { return s.Discontinuity })
	})
	first := -1
	for k, s := range plB.Segments {
		if s.Discontinuity {
			first = plB.MediaSequence + k
		}
	}
	if first <= lastA {
		t.Fatalf("new owner starts at %d, old owner had reached %d:\n%s", first, lastA, textB)
	}
	if *plB.DiscontinuitySequence != 0 || plB.MediaSequence < plA.MediaSequence {
		t.Fatalf("sequence numbers:\n%s", textB)
	}

	// The crashed owner's epoch is fenced.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.reg.PutState(ctx, camPath, bus.PlaylistState{NextMSN: 1, Epoch: stA.Epoch, Node: "a"})
	if !errors.Is(err, bus.ErrFenced) {
		t.Fatalf("stale epoch write: %v", err)
	}
	readFrames(t, base(bo, camPath)+"index.m3u8", c, 10)
}

func TestDrainHandsOverAtOnce(t *testing.T) {
	checkLeaks(t)
	c := loadClip(t)
	b := startBus(t, 10*time.Second) // takeover must not wait for the lease to expire
	a := b.origin("a", nil)
	startLive(t, b, a, c, 60*time.Second)
	bo := b.origin("b", nil)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a.Drain(ctx)
	if len(a.Streams()) != 0 {
		t.Fatal("drained origin still holds streams")
	}
	// b takes over well before a's lease could have expired, and continues.
	testkit.WaitFor(t, 3*time.Second, "takeover", ready(bo, camPath))
	testkit.WaitFor(t, 10*time.Second, "new owner's first segment", func() bool {
		_, text := mediaPlaylist(t, base(bo, camPath)+"video1_stream.m3u8")
		return strings.Contains(text, "#EXT-X-DISCONTINUITY\n")
	})
	// A drained origin claims nothing new.
	newPublisher(t, b, c, "live/cam2", 1)
	testkit.WaitFor(t, 3*time.Second, "second stream to b", serving(bo, "live/cam2"))
	if serving(a, "live/cam2")() {
		t.Fatal("drained origin claimed a stream")
	}
}

func TestTakeoverFencesOldOwner(t *testing.T) {
	checkLeaks(t)
	b := startBus(t, 3*time.Second)
	a := b.origin("a", func(o *Origin) { o.blockTimeout = 200 * time.Millisecond })
	reg, ctx := claimServed(t, b, a)
	stA, _ := streamStatus(a, camPath)
	if r := get(t, base(a, camPath)+"index.m3u8"); r.code != http.StatusServiceUnavailable {
		t.Fatalf("stream without media yet: %d", r.code)
	}
	bo := b.origin("b", nil)

	// The record is taken over behind a's back, as a survivor that judged
	// a dead does (here in b's name; b then takes it from itself, as it
	// has no stream for it).
	js := reg.JS
	kv, err := js.KeyValue(ctx, bus.BucketOwners)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, bus.EncodePath(camPath))
	if err != nil {
		t.Fatal(err)
	}
	prev, err := reg.OwnerOf(ctx, camPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.TakeOverOwner(ctx, camPath, *prev, e.Revision(), bus.Owner{Node: "b", Instance: bo.live.Instance(), HTTP: bo.AdvertiseHTTP}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "b takes over", serving(bo, camPath))
	testkit.WaitFor(t, 5*time.Second, "a stops", func() bool { return !serving(a, camPath)() })
	if r := get(t, base(a, camPath)+"index.m3u8"); r.code != http.StatusNotFound {
		t.Fatalf("old owner still serves: %d", r.code)
	}
	owner, err := reg.OwnerOf(ctx, camPath)
	if err != nil || owner.Node != "b" {
		t.Fatalf("owner %+v, %v", owner, err)
	}
	if err := reg.PutState(ctx, camPath, bus.PlaylistState{Epoch: stA.Epoch, Node: "a"}); !errors.Is(err, bus.ErrFenced) {
		t.Fatalf("stale epoch write: %v", err)
	}
}

func TestCapacity(t *testing.T) {
	checkLeaks(t)
	b := startBus(t, 3*time.Second)
	o := b.origin("o1", func(o *Origin) { o.Capacity = 1 })
	_, reg := b.client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, path := range []string{"live/a", "live/b"} {
		claimVideo(t, ctx, reg, path)
	}
	testkit.WaitFor(t, 5*time.Second, "one claim", func() bool { return len(o.Streams()) == 1 })
	// A negative check needs a wait: a second claim would be scheduled within
	// a few claim steps.
	time.Sleep(300 * time.Millisecond)
	if n := len(o.Streams()); n != 1 {
		t.Fatalf("%d streams held with capacity 1", n)
	}
}

func TestMuxerTracksFallback(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tracks   []bus.TrackInfo
		want     gohlslib.MuxerVariant
		fallback bool
		n        int
	}{
		{"h264+aac stays ts", []bus.TrackInfo{{ID: 0, Codec: media.CodecH264}, {ID: 1, Codec: media.CodecAAC, AudioConfig: []byte{0x11, 0x88}}},
			gohlslib.MuxerVariantMPEGTS, false, 2},
		{"h265 falls back", []bus.TrackInfo{{ID: 0, Codec: media.CodecH265}}, gohlslib.MuxerVariantFMP4, true, 1},
		{"opus falls back", []bus.TrackInfo{{ID: 0, Codec: media.CodecH264}, {ID: 1, Codec: media.CodecOpus}},
			gohlslib.MuxerVariantFMP4, true, 2},
		{"bad aac skipped", []bus.TrackInfo{{ID: 0, Codec: media.CodecH264}, {ID: 1, Codec: media.CodecAAC}},
			gohlslib.MuxerVariantMPEGTS, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tracks, writers, v, fb, _ := muxerTracks(&bus.StreamInfo{Tracks: tc.tracks}, gohlslib.MuxerVariantMPEGTS)
			if v != tc.want || (fb != "") != tc.fallback || len(tracks) != tc.n || len(writers) != tc.n {
				t.Fatalf("variant %v fallback %q tracks %d", v, fb, len(tracks))
			}
			if !tracks[0].Codec.IsVideo() {
				t.Fatal("video must lead")
			}
		})
	}
}

func TestGossipLoad(t *testing.T) {
	checkLeaks(t)
	b := startBus(t, 3*time.Second)
	g := &gossip.Node{Name: "o1", BindAddr: "127.0.0.1", Meta: gossip.Meta{Role: "origin", HTTP: "127.0.0.1:1"},
		Log: slog.New(slog.DiscardHandler)}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	o := b.origin("o1", func(o *Origin) { o.Gossip = g; o.Capacity = 5 })
	_, reg := b.client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	claimVideo(t, ctx, reg, camPath)
	meta := func() gossip.Meta { m, _ := g.Member("o1"); return m.Meta }
	testkit.WaitFor(t, 5*time.Second, "load 1 gossiped", func() bool { return meta().Load == 1 })
	if m := meta(); m.Role != "origin" || m.HTTP != o.AdvertiseHTTP || m.Capacity != 5 || m.Draining { // the origin advertises its own HTTP address
		t.Fatalf("metadata %+v", m)
	}
	o.Drain(ctx)
	testkit.WaitFor(t, 5*time.Second, "drain gossiped", func() bool { m := meta(); return m.Load == 0 && m.Draining })
}

func TestRepeatedWriteErrorsRecreateMuxer(t *testing.T) {
	checkLeaks(t)
	b := startBus(t, 3*time.Second)
	o := b.origin("o1", nil)
	nc, reg := b.client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	claimVideo(t, ctx, reg, camPath)
	testkit.WaitFor(t, 5*time.Second, "claim", serving(o, camPath))
	pub := bus.NewPublisher(nc, camPath)
	for k := range maxConsecutiveWriteErrors + 2 {
		// A NAL unit length past the end of the payload: the access unit is refused.
		p := &media.Packet{Codec: media.CodecH264, Flags: media.FlagKeyframe, PTS: int64(k) * 3600, DTS: int64(k) * 3600,
			Generation: 1, Seq: uint64(k), Payload: []byte{0, 0, 0, 9, 0x65}}
		if err := pub.Publish(p); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "muxer re-created", func() bool {
		st, _ := streamStatus(o, camPath)
		return st.WriteErrors >= maxConsecutiveWriteErrors && st.Recreations == 1
	})
	// Garbage packets are counted, never served.
	if r := get(t, base(o, camPath)+"0123456789ab_video1_seg7.mp4"); r.code != http.StatusNotFound {
		t.Fatalf("segment of a failing stream: %d", r.code)
	}
}

// TestRewrittenRecordIsReleased: the owner record rewritten unchanged
// behind the owner's back (a write the registry applied whose reply was
// lost) leaves the stream where it is, and the release at the end still
// removes the record (bus.Registry.RecoverOwner).
func TestRewrittenRecordIsReleased(t *testing.T) {
	checkLeaks(t)
	b := startBus(t, time.Second)
	o := b.origin("o1", nil)
	reg, ctx := claimServed(t, b, o)
	st, _ := streamStatus(o, camPath)

	kv, err := reg.JS.KeyValue(ctx, bus.BucketOwners)
	if err != nil {
		t.Fatal(err)
	}
	key := bus.EncodePath(camPath)
	e, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	// Rewritten as a renewal writes it (bus.Registry.RenewOwner): the
	// epoch in the value (a claim's record holds 0, read as its create
	// revision).
	var rec bus.Owner
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Epoch == 0 {
		rec.Epoch = e.Revision()
	}
	v, _ := json.Marshal(rec)
	if _, err := kv.Update(ctx, key, v, e.Revision()); err != nil {
		t.Fatal(err)
	}
	// The rewrite reaches o's owner watch; a claim of a second stream after
	// it shows the watch has moved past it.
	claimVideo(t, ctx, reg, "live/cam2")
	testkit.WaitFor(t, 5*time.Second, "second claim", serving(o, "live/cam2"))
	if now, ok := streamStatus(o, camPath); !ok || now.Epoch != st.Epoch {
		t.Fatalf("stream dropped or re-acquired: %+v", now)
	}
	o.Close()
	if _, err := reg.OwnerOf(ctx, camPath); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("record after the release: %v", err)
	}
}

// TestUnwatchedPlaylistsRefreshSlowly: a Low-Latency stream nobody asks for
// re-reads its playlists about once a second instead of after every part; a
// request brings the per-part refresh back, and it lapses again once the
// requests stop.
func TestUnwatchedPlaylistsRefreshSlowly(t *testing.T) {
	testkit.Slow(t)
	checkLeaks(t)
	c := loadClip(t)
	b := startBus(t, time.Second)
	o := b.origin("o1", func(o *Origin) { o.watchedFor = 400 * time.Millisecond })
	startLive(t, b, o, c, 30*time.Second)
	s := o.lookup(camPath)
	u := base(o, camPath)

	// Quiet: 10 parts of 200 ms in 2 s, but about 2 refreshes.
	quiet := func() uint64 {
		n0 := s.refreshes.Load()
		time.Sleep(2 * time.Second) // the quiet spell is what is tested
		return s.refreshes.Load() - n0
	}
	if n := quiet(); n > 4 {
		t.Fatalf("%d playlist refreshes in 2 s with nobody watching, want about 2", n)
	}

	// Watched: every part again (about 5 a second).
	testkit.WaitFor(t, 10*time.Second, "per-part refreshes while watched", func() bool {
		n0 := s.refreshes.Load()
		deadline := time.Now().Add(1200 * time.Millisecond)
		for time.Now().Before(deadline) {
			if r := get(t, u+"video1_stream.m3u8"); r.code != http.StatusOK {
				t.Fatalf("media playlist: %d", r.code)
			}
			time.Sleep(100 * time.Millisecond)
		}
		return s.refreshes.Load()-n0 >= 4
	})

	// The requests stop: after watchedFor, slow again.
	time.Sleep(500 * time.Millisecond)
	if n := quiet(); n > 4 {
		t.Fatalf("%d playlist refreshes in 2 s after the requests stopped, want about 2", n)
	}
	// Still current: a blocking request for the next part is answered.
	pl, _ := mediaPlaylist(t, u+"video1_stream.m3u8")
	msn := pl.MediaSequence + len(pl.Segments)
	pl2, text := mediaPlaylist(t, fmt.Sprintf("%svideo1_stream.m3u8?_HLS_msn=%d&_HLS_part=%d", u, msn, len(pl.Parts)))
	if last := pl2.MediaSequence + len(pl2.Segments) - 1; last < msn-1 {
		t.Fatalf("blocking reload for %d.%d answered with an old playlist:\n%s", msn, len(pl.Parts), text)
	}
}

// TestLapsedNodeLosesItsStreams: an origin cut off from the bus (its
// connection stalls, as a paused process's does) stops answering once its
// liveness lapses; the other origin takes the stream over by
// compare-and-set with a newer epoch; when the stalled one wakes up it has
// given the stream up, its state writes are fenced, and it does not take
// the stream back.
func TestLapsedNodeLosesItsStreams(t *testing.T) {
	checkLeaks(t)
	b := startBus(t, 3*time.Second)
	stall := &stallDialer{}
	nc, err := bus.Connect(bus.ConnOptions{URLs: []string{b.srv.ClientURL()}, Dialer: stall, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	a := b.origin("a", func(o *Origin) {
		o.NC = nc // heartbeats and media; the registry keeps its own connection
		o.NodeTTL = 400 * time.Millisecond
		o.blockTimeout = 200 * time.Millisecond
	})
	reg, ctx := claimServed(t, b, a)
	stA, _ := streamStatus(a, camPath)
	bo := b.origin("b", func(o *Origin) { o.NodeTTL = 400 * time.Millisecond })

	stall.set(true) // a "pauses"
	testkit.WaitFor(t, 5*time.Second, "a's liveness lapses", func() bool { return !a.live.Alive() })
	if r := get(t, base(a, camPath)+"index.m3u8"); r.code == http.StatusOK {
		t.Fatalf("lapsed owner still answers: %d", r.code)
	}
	testkit.WaitFor(t, 5*time.Second, "b takes over", serving(bo, camPath))
	owner, err := reg.OwnerOf(ctx, camPath)
	if err != nil || owner.Node != "b" || owner.Epoch != stA.Epoch+1 {
		t.Fatalf("owner after the take-over %+v, %v (a had epoch %d)", owner, err, stA.Epoch)
	}

	stall.set(false) // a wakes up
	testkit.WaitFor(t, 5*time.Second, "a gives the stream up", func() bool { return !serving(a, camPath)() })
	testkit.WaitFor(t, 5*time.Second, "a alive again", a.live.Alive)
	if err := reg.PutState(ctx, camPath, bus.PlaylistState{NextMSN: 1, Epoch: stA.Epoch, Node: "a"}); !errors.Is(err, bus.ErrFenced) {
		t.Fatalf("stale epoch write: %v", err)
	}
	if r := get(t, base(a, camPath)+"index.m3u8"); r.code == http.StatusOK {
		t.Fatalf("old owner answers after waking: %d", r.code)
	}
	if owner, err := reg.OwnerOf(ctx, camPath); err != nil || owner.Node != "b" {
		t.Fatalf("owner after a woke %+v, %v", owner, err)
	}
}

// stallDialer dials TCP; while stalled, its connections neither read nor
// write (a stopped process, or a link that went quiet).
type stallDialer struct {
	mu      sync.Mutex
	stalled bool
	wake    chan struct{}
}

func (d *stallDialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return stallConn{Conn: c, d: d}, nil
}

func (d *stallDialer) set(v bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case v && !d.stalled:
		d.wake = make(chan struct{})
	case !v && d.stalled:
		close(d.wake)
	}
	d.stalled = v
}

func (d *stallDialer) wait() {
	d.mu.Lock()
	w, stalled := d.wake, d.stalled
	d.mu.Unlock()
	if stalled {
		<-w
	}
}

type stallConn struct {
	net.Conn
	d *stallDialer
}

func (c stallConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.d.wait()
	return n, err
}

func (c stallConn) Write(p []byte) (int, error) {
	c.d.wait()
	return c.Conn.Write(p)
}

// TestStateRemembersTargetDuration: the playlist state carries the
// stream's measured target duration (its keyframe interval), so that a
// later session of the path can declare it up front.
func TestStateRemembersTargetDuration(t *testing.T) {
	c := loadClip(t) // 1 s GOP
	b := startBus(t, time.Second)
	o := b.origin("a", nil)
	startLive(t, b, o, c, 30*time.Second)
	_, reg := b.client()
	testkit.WaitFor(t, 10*time.Second, "target duration in the playlist state", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, _, err := reg.State(ctx, camPath)
		return err == nil && st.TargetDuration == 1
	})
}
