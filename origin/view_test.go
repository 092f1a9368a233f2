package origin

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// llPlaylist builds a gohlslib-like Low-Latency media playlist: gaps for ids
// below 7 still in the window, real segments up to lastID (local numbering),
// and parts of the segment being built.
func llPlaylist(prefix string, firstID, lastID, building int) *playlist.Media {
	skipUntil := 6 * time.Second
	hold := 500 * time.Millisecond
	pl := &playlist.Media{
		Version:        10,
		TargetDuration: 1,
		ServerControl:  &playlist.MediaServerControl{CanBlockReload: true, PartHoldBack: &hold, CanSkipUntil: &skipUntil},
		PartInf:        &playlist.MediaPartInf{PartTarget: 200 * time.Millisecond},
		MediaSequence:  firstID,
		Map:            &playlist.MediaMap{URI: prefix + "_video1_init.mp4"},
	}
	part := 0
	for id := firstID; id <= lastID; id++ {
		if id < 7 {
			pl.Segments = append(pl.Segments, &playlist.MediaSegment{Gap: true, Duration: time.Second, URI: "gap.mp4"})
			continue
		}
		seg := &playlist.MediaSegment{Duration: time.Second, URI: fmt.Sprintf("%s_video1_seg%d.mp4", prefix, id)}
		if lastID-id < 2 {
			for range 5 {
				seg.Parts = append(seg.Parts, &playlist.MediaPart{Duration: 200 * time.Millisecond,
					URI: fmt.Sprintf("%s_video1_part%d.mp4", prefix, part)})
				part++
			}
		}
		pl.Segments = append(pl.Segments, seg)
	}
	for range building {
		pl.Parts = append(pl.Parts, &playlist.MediaPart{Duration: 200 * time.Millisecond,
			URI: fmt.Sprintf("%s_video1_part%d.mp4", prefix, part)})
		part++
	}
	pl.PreloadHint = &playlist.MediaPreloadHint{URI: fmt.Sprintf("%s_video1_part%d.mp4", prefix, part)}
	return pl
}

func llLayer(prefix string, offset int64, disc uint64, discStart bool, firstID, lastID, building int) *layer {
	pl := llPlaylist(prefix, firstID, lastID, building)
	return &layer{pl: pl, offset: offset, firstID: 7, disc: disc, discStart: discStart, mapURI: pl.Map.URI}
}

func renderView(t *testing.T, v *view, delta bool) (string, *playlist.Media) {
	t.Helper()
	b, err := v.render(delta, false)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := playlist.Unmarshal(b)
	if err != nil {
		t.Fatalf("served playlist does not parse: %v\n%s", err, b)
	}
	return string(b), pl.(*playlist.Media)
}

func TestViewSingleFreshInstance(t *testing.T) {
	// A fresh stream: gohlslib's window as it is (gaps 0..6, segment 7), no discontinuity.
	v := buildView([]*layer{llLayer("aaaaaaaaaaaa", 0, 0, false, 1, 7, 2)}, 7)
	text, pl := renderView(t, v, false)
	if pl.MediaSequence != 1 || len(pl.Segments) != 7 || *pl.DiscontinuitySequence != 0 {
		t.Fatalf("unexpected playlist:\n%s", text)
	}
	if strings.Contains(text, "#EXT-X-DISCONTINUITY\n") {
		t.Fatalf("fresh stream must not have a discontinuity:\n%s", text)
	}
	if !strings.Contains(text, "PART-HOLD-BACK=0.60000") {
		t.Fatalf("PART-HOLD-BACK not raised to 3 part targets:\n%s", text)
	}
	if v.last() != 7 || !v.satisfied(7, 0) || !v.satisfied(8, 1) || v.satisfied(8, 2) || v.tooFar(9) || !v.tooFar(10) {
		t.Fatalf("blocking bounds wrong: last=%d", v.last())
	}
}

func TestViewMergesPreviousInstance(t *testing.T) {
	// Instance A: local = global, segments 7..20 published, window 14..20, and
	// 3 parts of segment 21 listed: 21 is used. B starts at 22 with its gaps
	// covering 15..21.
	a := llLayer("aaaaaaaaaaaa", 0, 0, false, 14, 20, 3)
	b := llLayer("bbbbbbbbbbbb", 22-7, 1, true, 1, 7, 1)
	v := buildView([]*layer{a, b}, 7)
	text, pl := renderView(t, v, false)

	if pl.MediaSequence != 16 {
		t.Fatalf("media sequence %d, want 16:\n%s", pl.MediaSequence, text)
	}
	var uris []string
	for _, s := range pl.Segments {
		uris = append(uris, s.URI)
	}
	want := []string{
		"aaaaaaaaaaaa_video1_seg15.mp4", "aaaaaaaaaaaa_video1_seg16.mp4", "aaaaaaaaaaaa_video1_seg17.mp4",
		"aaaaaaaaaaaa_video1_seg18.mp4", "aaaaaaaaaaaa_video1_seg19.mp4", "aaaaaaaaaaaa_video1_seg20.mp4",
		"gap.mp4", "bbbbbbbbbbbb_video1_seg7.mp4",
	}
	if strings.Join(uris, " ") != strings.Join(want[1:], " ") && strings.Join(uris, " ") != strings.Join(want, " ") {
		t.Fatalf("segments %v\n%s", uris, text)
	}
	if *pl.DiscontinuitySequence != 0 {
		t.Fatalf("discontinuity sequence %d, want 0:\n%s", *pl.DiscontinuitySequence, text)
	}
	if n := strings.Count(text, "#EXT-X-DISCONTINUITY\n"); n != 1 {
		t.Fatalf("%d discontinuities, want 1:\n%s", n, text)
	}
	// The new instance's init section follows the discontinuity.
	if !strings.Contains(text, "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"bbbbbbbbbbbb_video1_init.mp4\"\n") {
		t.Fatalf("no EXT-X-MAP for the new instance:\n%s", text)
	}
	if !strings.HasPrefix(strings.SplitAfter(text, "#EXT-X-MAP:")[1], `URI="aaaaaaaaaaaa_video1_init.mp4"`) {
		t.Fatalf("first EXT-X-MAP must be the old instance's:\n%s", text)
	}
	// Segment 21 (parts listed by A) is a gap now; B's first segment is 22.
	if v.last() != 22 || !v.satisfied(21, 4) || !v.satisfied(22, 0) || !v.satisfied(23, 0) || v.satisfied(23, 1) {
		t.Fatalf("blocking evaluation wrong, last=%d", v.last())
	}
	// Old instance's parts are not listed on segments before the last two.
	if strings.Contains(text, "aaaaaaaaaaaa_video1_part") {
		t.Fatalf("old parts still listed:\n%s", text)
	}

	// While B has no content, A alone is served as it was.
	v = buildView([]*layer{a}, 7)
	if !v.satisfied(21, 2) || v.satisfied(21, 3) || v.tooFar(22) || !v.tooFar(23) {
		t.Fatalf("blocking evaluation on the frozen head wrong")
	}
}

func TestViewFailoverStart(t *testing.T) {
	// A new owner read NextMSN=100, discontinuity 4: its gaps cover 93..99,
	// its first segment 100 opens discontinuity 5.
	v := buildView([]*layer{llLayer("cccccccccccc", 93, 5, true, 2, 8, 0)}, 7)
	text, pl := renderView(t, v, false)
	if pl.MediaSequence != 95 || *pl.DiscontinuitySequence != 4 {
		t.Fatalf("media sequence %d / discontinuity sequence %d:\n%s", pl.MediaSequence, *pl.DiscontinuitySequence, text)
	}
	if !pl.Segments[5].Discontinuity || pl.Segments[5].URI != "cccccccccccc_video1_seg7.mp4" {
		t.Fatalf("first real segment must open the discontinuity:\n%s", text)
	}
	// Once the tagged segment is the first one, the tag stays and the sequence is unchanged.
	v = buildView([]*layer{llLayer("cccccccccccc", 93, 5, true, 7, 13, 0)}, 7)
	_, pl = renderView(t, v, false)
	if pl.MediaSequence != 100 || *pl.DiscontinuitySequence != 4 || !pl.Segments[0].Discontinuity {
		t.Fatalf("got MS %d DS %d", pl.MediaSequence, *pl.DiscontinuitySequence)
	}
	// And once it has left the window, the sequence counts it.
	v = buildView([]*layer{llLayer("cccccccccccc", 93, 5, true, 8, 14, 0)}, 7)
	_, pl = renderView(t, v, false)
	if *pl.DiscontinuitySequence != 5 {
		t.Fatalf("DS %d, want 5", *pl.DiscontinuitySequence)
	}
}

func TestViewGapsBeforeOlderInstance(t *testing.T) {
	// A was the first instance after a failover (gaps, then segments from
	// 100, discontinuity 1), short-lived; B follows. B's leading gaps that
	// A cannot fill precede A's discontinuity and keep the number before it.
	a := llLayer("aaaaaaaaaaaa", 93, 1, true, 1, 9, 0) // real 100..102
	b := llLayer("bbbbbbbbbbbb", 103-7, 2, true, 1, 7, 0)
	v := buildView([]*layer{a, b}, 7)
	text, pl := renderView(t, v, false)
	if pl.MediaSequence != 97 || *pl.DiscontinuitySequence != 0 {
		t.Fatalf("MS %d DS %d:\n%s", pl.MediaSequence, *pl.DiscontinuitySequence, text)
	}
	if n := strings.Count(text, "#EXT-X-DISCONTINUITY\n"); n != 2 {
		t.Fatalf("%d discontinuities, want 2:\n%s", n, text)
	}
	if n := strings.Count(text, "#EXT-X-MAP:"); n != 2 || !strings.Contains(text, `#EXT-X-MAP:URI="aaaaaaaaaaaa_video1_init.mp4"`) {
		t.Fatalf("%d EXT-X-MAP, want 2 (A's, then B's):\n%s", n, text)
	}
}

func TestViewDeltaUpdate(t *testing.T) {
	a := llLayer("aaaaaaaaaaaa", 0, 0, false, 14, 20, 3)
	b := llLayer("bbbbbbbbbbbb", 15, 1, true, 1, 13, 2) // window: gaps 1..6 → A 16..20 + gap 21, B 22..28
	v := buildView([]*layer{a, b}, 13)
	text, pl := renderView(t, v, true)
	if pl.Skip == nil {
		t.Fatalf("no skip:\n%s", text)
	}
	// Never skip the discontinuity or the segment before it.
	if !strings.Contains(text, "gap.mp4") || !strings.Contains(text, "#EXT-X-DISCONTINUITY") {
		t.Fatalf("skipped across the discontinuity:\n%s", text)
	}
	// No top-level EXT-X-MAP in a delta update; only the new instance's, after its discontinuity.
	if strings.Count(text, "#EXT-X-MAP:") != 1 || !strings.Contains(text, "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"bbbbbbbbbbbb") {
		t.Fatalf("delta update maps wrong:\n%s", text)
	}
	full, _ := renderView(t, v, false)
	if !strings.Contains(full, "EXT-X-MAP:URI=\"aaaaaaaaaaaa_video1_init.mp4\"") {
		t.Fatalf("full playlist lacks the first map:\n%s", full)
	}
}

func TestViewExtendsShortWindow(t *testing.T) {
	// Non-LL variants start at 0 without gaps: the new instance's first
	// segments are preceded by the old instance's last ones.
	mk := func(prefix string, first, last int, offset int64, disc uint64, discStart bool) *layer {
		pl := &playlist.Media{Version: 10, TargetDuration: 1, MediaSequence: first,
			Map: &playlist.MediaMap{URI: prefix + "_video1_init.mp4"}}
		for id := first; id <= last; id++ {
			pl.Segments = append(pl.Segments, &playlist.MediaSegment{Duration: time.Second,
				URI: fmt.Sprintf("%s_video1_seg%d.mp4", prefix, id)})
		}
		return &layer{pl: pl, offset: offset, disc: disc, discStart: discStart, mapURI: pl.Map.URI, hintPart: -1}
	}
	a := mk("aaaaaaaaaaaa", 5, 11, 0, 0, false)
	b := mk("bbbbbbbbbbbb", 0, 1, 12, 1, true)
	v := buildView([]*layer{a, b}, 7)
	text, pl := renderView(t, v, false)
	if pl.MediaSequence != 7 || len(pl.Segments) != 7 || !pl.Segments[5].Discontinuity || *pl.DiscontinuitySequence != 0 {
		t.Fatalf("unexpected merge:\n%s", text)
	}
	if v.lowLatency() {
		t.Fatal("not low-latency")
	}
}

func TestRequestPathValidation(t *testing.T) {
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/live/cam1/index.m3u8", true},
		{"/rtmp/c1.live/video1_stream.m3u8", true},
		{"/live/cam1/0123456789ab_video1_part3.mp4", true},
		{"/a/b/c/main_stream.m3u8", true},
		{"/index.m3u8", false},
		{"/live/../etc/index.m3u8", false},
		{"/live/cam1/..", false},
		{"/live/cam1/.hidden", false},
		{"/live/cam1/", false},
		{"/live/ca$m/index.m3u8", false},
		{"/live/cam 1/index.m3u8", false},
		{"/live//cam1/index.m3u8", false},
		{"/live/cam1/a b.m3u8", false},
		{"/live/cam1/x%2F.m3u8", false},
	} {
		if _, _, ok := splitRequestPath(tc.path); ok != tc.ok {
			t.Errorf("%s: ok=%v, want %v", tc.path, ok, tc.ok)
		}
	}
}

func TestFileNames(t *testing.T) {
	if p, ok := filePrefix("0123456789ab_video1_seg7.mp4"); !ok || p != "0123456789ab" {
		t.Fatal("prefix")
	}
	if _, ok := filePrefix("video1_stream.m3u8"); ok {
		t.Fatal("playlist has no prefix")
	}
	if sid, n, ok := parsePartName("0123456789ab_audio2_part41.mp4"); !ok || sid != "audio2" || n != 41 {
		t.Fatal("part name")
	}
	if _, _, ok := parsePartName("0123456789ab_video1_seg41.mp4"); ok {
		t.Fatal("segment is not a part")
	}
	if rescale(90000, 90000, 90000) != 90000 || rescale(48000, 48000, 90000) != 90000 || rescale(1<<62, 1000, 1000) != 1<<62 {
		t.Fatal("rescale")
	}
}

func TestViewListsTheNewestOfTheRetainedSegments(t *testing.T) {
	// The muxer keeps 7+9 segments; the playlist lists the newest 7.
	v := buildView([]*layer{llLayer("aaaaaaaaaaaa", 0, 0, false, 20, 35, 1)}, 7)
	text, pl := renderView(t, v, false)
	if pl.MediaSequence != 29 || len(pl.Segments) != 7 || pl.Segments[0].URI != "aaaaaaaaaaaa_video1_seg29.mp4" {
		t.Fatalf("MS %d, %d segments:\n%s", pl.MediaSequence, len(pl.Segments), text)
	}
}

func TestViewCompat(t *testing.T) {
	// A fresh stream (gaps 1..6, segments 7..9): the compatible view starts
	// at the first real segment, without Low-Latency tags or parts.
	v := buildView([]*layer{llLayer("aaaaaaaaaaaa", 0, 0, false, 3, 9, 2)}, 7)
	if v.realSegments() != 3 {
		t.Fatalf("%d real segments, want 3", v.realSegments())
	}
	b, err := v.render(false, true)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, tag := range []string{"#EXT-X-GAP", "#EXT-X-PART", "#EXT-X-PRELOAD-HINT", "#EXT-X-SERVER-CONTROL",
		"#EXT-X-RENDITION-REPORT", "#EXT-X-SKIP", "gap.mp4"} {
		if strings.Contains(text, tag) {
			t.Fatalf("compatible view has %s:\n%s", tag, text)
		}
	}
	pl, err := playlist.Unmarshal(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	m := pl.(*playlist.Media)
	if m.MediaSequence != 7 || len(m.Segments) != 3 || m.Version != 6 ||
		m.Segments[0].URI != "aaaaaaaaaaaa_video1_seg7.mp4" || m.Map == nil {
		t.Fatalf("unexpected compatible view:\n%s", text)
	}
	// A delta request is answered in full.
	if b2, _ := v.render(true, true); string(b2) != text {
		t.Fatalf("delta changed the compatible view:\n%s", b2)
	}
}

func TestCompatMultivariant(t *testing.T) {
	in := "#EXTM3U\n#EXT-X-VERSION:10\n#EXT-X-INDEPENDENT-SEGMENTS\n" +
		"#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio2\",AUTOSELECT=YES,DEFAULT=YES,URI=\"audio2_stream.m3u8\"\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=342096,CODECS=\"avc1.4d401e,mp4a.40.2\",AUDIO=\"audio\"\nvideo1_stream.m3u8\n"
	want := "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n" +
		"#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio2\",AUTOSELECT=YES,DEFAULT=YES,URI=\"compat_audio2_stream.m3u8\"\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=342096,CODECS=\"avc1.4d401e,mp4a.40.2\",AUDIO=\"audio\"\ncompat_video1_stream.m3u8\n"
	if got := string(compatMultivariantBody([]byte(in))); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func FuzzCompatMultivariant(f *testing.F) {
	f.Add("#EXTM3U\n#EXT-X-VERSION:10\n#EXT-X-MEDIA:TYPE=AUDIO,URI=\"a_stream.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv_stream.m3u8\n")
	f.Add("#EXTM3U\n#EXT-X-VERSION:x\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		out := string(compatMultivariantBody([]byte(in)))
		// Every media playlist line gains the prefix and nothing else changes
		// in line count.
		if strings.Count(out, "\n") != strings.Count(in, "\n") {
			t.Fatalf("line count changed:\n%q\n%q", in, out)
		}
		if strings.Count(out, compatPrefix) < strings.Count(in, compatPrefix) {
			t.Fatalf("prefix lost:\n%q\n%q", in, out)
		}
	})
}

// compatURIs renders the compatible view of layers and returns its segment
// URIs with the playlist.
func compatURIs(t *testing.T, layers []*layer, count int) ([]string, *playlist.Media, string) {
	t.Helper()
	b, err := compatView(layers, count).render(false, true)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := playlist.Unmarshal(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	m := pl.(*playlist.Media)
	var uris []string
	for _, s := range m.Segments {
		uris = append(uris, s.URI)
	}
	return uris, m, string(b)
}

func TestViewCompatAcrossReconnect(t *testing.T) {
	a := func(last, building int) *layer { return llLayer("aaaaaaaaaaaa", 0, 0, false, last-6, last, building) }
	seg := func(p string, ids ...int) []string {
		var out []string
		for _, id := range ids {
			out = append(out, fmt.Sprintf("%s_video1_seg%d.mp4", p, id))
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		layers []*layer
		want   []string
		msn    int
		disc   bool
	}{
		// Low-Latency: A stopped while building segment 21 (its parts were
		// listed, so 21 stays a gap); B starts at 22.
		{"gap, one segment after it: A's segments before the gap",
			[]*layer{a(20, 3), llLayer("bbbbbbbbbbbb", 22-7, 1, true, 1, 7, 1)},
			seg("aaaaaaaaaaaa", 16, 17, 18, 19, 20), 16, false},
		{"gap, three segments after it: from the discontinuity on, self-initializing",
			[]*layer{a(20, 3), llLayer("bbbbbbbbbbbb", 22-7, 1, true, 3, 9, 1)},
			append([]string{"compat_init_bbbbbbbbbbbb_video1_seg7.mp4"}, seg("bbbbbbbbbbbb", 8, 9)...), 22, true},
		// No gap (fmp4, mpegts): B's segment 7 follows A's 20 directly.
		{"discontinuity, two segments after it: A's final window held",
			[]*layer{a(20, 0), llLayer("bbbbbbbbbbbb", 21-7, 1, true, 7, 8, 0)},
			seg("aaaaaaaaaaaa", 14, 15, 16, 17, 18, 19, 20), 14, false},
		{"discontinuity, three segments after it: listed across it",
			[]*layer{a(20, 0), llLayer("bbbbbbbbbbbb", 21-7, 1, true, 7, 9, 0)},
			append(append(seg("aaaaaaaaaaaa", 17, 18, 19, 20), "compat_init_bbbbbbbbbbbb_video1_seg7.mp4"), seg("bbbbbbbbbbbb", 8, 9)...), 17, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uris, m, text := compatURIs(t, tc.layers, 7)
			if strings.Join(uris, " ") != strings.Join(tc.want, " ") || m.MediaSequence != tc.msn {
				t.Fatalf("segments %v from %d, want %v from %d:\n%s", uris, m.MediaSequence, tc.want, tc.msn, text)
			}
			if strings.Contains(text, "gap.mp4") || strings.Contains(text, "#EXT-X-GAP") {
				t.Fatalf("a gap placeholder is listed:\n%s", text)
			}
			if got := strings.Contains(text, "#EXT-X-DISCONTINUITY\n") && strings.Contains(text, `#EXT-X-MAP:URI="bbbbbbbbbbbb_video1_init.mp4"`); got != tc.disc {
				t.Fatalf("discontinuity with B's EXT-X-MAP: %v, want %v:\n%s", got, tc.disc, text)
			}
			if *m.DiscontinuitySequence != 0 {
				t.Fatalf("discontinuity sequence %d, want 0:\n%s", *m.DiscontinuitySequence, text)
			}
		})
	}
	// The default view is unchanged: plain names, the gap listed.
	text, _ := renderView(t, buildView([]*layer{a(20, 3), llLayer("bbbbbbbbbbbb", 22-7, 1, true, 3, 9, 1)}, 7), false)
	if strings.Contains(text, "compat_init_") || !strings.Contains(text, "gap.mp4") {
		t.Fatalf("default view changed:\n%s", text)
	}
}

// TestViewPartsBeforeFirstSegment: a muxer that serves from its first part
// (a declared target duration) lists parts before its first segment is
// complete. Those parts build the segment that opens its discontinuity, so
// EXT-X-DISCONTINUITY and its EXT-X-MAP come before them, the placeholders
// keep the number before it, and the numbers stay as they are once that
// segment completes.
func TestViewPartsBeforeFirstSegment(t *testing.T) {
	a := llLayer("aaaaaaaaaaaa", 0, 0, false, 14, 20, 3) // 21 used by A's parts
	b := llLayer("bbbbbbbbbbbb", 22-7, 1, true, 0, 6, 2) // gaps 15..21, parts of 22
	for _, tc := range []struct {
		name   string
		layers []*layer
		ds     int
	}{
		{"reconnect", []*layer{a, b}, 0},
		{"after a release", []*layer{b}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := buildView(tc.layers, 7)
			text, pl := renderView(t, v, false)
			if *pl.DiscontinuitySequence != tc.ds || pl.MediaSequence != 15 {
				t.Fatalf("MS %d DS %d:\n%s", pl.MediaSequence, *pl.DiscontinuitySequence, text)
			}
			tail := text[strings.LastIndex(text, "\ngap.mp4\n")+len("\ngap.mp4\n"):]
			if !strings.HasPrefix(tail, "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"bbbbbbbbbbbb_video1_init.mp4\"\n#EXT-X-PART:") {
				t.Fatalf("the parts of B's first segment must follow its discontinuity and init section:\n%s", text)
			}
			if n := strings.Count(text, "#EXT-X-DISCONTINUITY\n"); n != 1 {
				t.Fatalf("%d discontinuities, want 1:\n%s", n, text)
			}
			if len(pl.Parts) != 2 || v.last() != 21 || !v.satisfied(22, 1) || v.satisfied(22, 2) {
				t.Fatalf("%d parts, last %d:\n%s", len(pl.Parts), v.last(), text)
			}

			// The segment completes: same numbers, the tag on its EXTINF.
			done := append(tc.layers[:len(tc.layers)-1:len(tc.layers)-1], llLayer("bbbbbbbbbbbb", 22-7, 1, true, 1, 7, 1))
			text2, pl2 := renderView(t, buildView(done, 7), false)
			if *pl2.DiscontinuitySequence != tc.ds || !pl2.Segments[len(pl2.Segments)-1].Discontinuity {
				t.Fatalf("after the first segment, DS %d:\n%s", *pl2.DiscontinuitySequence, text2)
			}
		})
	}
	// A fresh path (no discontinuity) with the same muxer: no tag; the
	// initialization section comes before the parts, the window having
	// no segment that names it.
	v := buildView([]*layer{llLayer("cccccccccccc", 0, 0, false, 0, 6, 2)}, 7)
	text, _ := renderView(t, v, false)
	if strings.Contains(text, "#EXT-X-DISCONTINUITY\n") || strings.Count(text, "#EXT-X-MAP:") != 1 {
		t.Fatalf("fresh path:\n%s", text)
	}
}
