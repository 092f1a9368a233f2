package llhls

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"

	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/internal/testmedia"
)

// handler is what both muxers offer.
type handler interface {
	WriteH264(*gohlslib.Track, time.Time, int64, [][]byte) error
	WriteMPEG4Audio(*gohlslib.Track, time.Time, int64, [][]byte) error
	Handle(http.ResponseWriter, *http.Request)
	Close()
}

type fed struct {
	h            handler
	video, audio *gohlslib.Track
}

// tracksFor makes fresh tracks for the clip (muxers change a track's codec).
func tracksFor(c *testmedia.Clip, video, audio bool) (v, a *gohlslib.Track, all []*gohlslib.Track) {
	if video {
		v = &gohlslib.Track{Codec: &codecs.H264{SPS: c.SPS, PPS: c.PPS}, ClockRate: 90000}
		all = append(all, v)
	}
	if audio {
		a = &gohlslib.Track{Codec: &codecs.MPEG4Audio{Config: *c.AudioConfig}, ClockRate: c.AudioConfig.SampleRate}
		all = append(all, a)
	}
	return v, a, all
}

// feed writes passes of the clip, interleaved by time, to every muxer.
func feed(t testing.TB, c *testmedia.Clip, passes int, from int, ms ...fed) {
	t.Helper()
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for p := from; p < from+passes; p++ {
		off := time.Duration(p) * c.Duration
		vi, ai := 0, 0
		for vi < len(c.Video) || ai < len(c.Audio) {
			useVideo := ai >= len(c.Audio) || vi < len(c.Video) && c.Video[vi].DTS <= c.Audio[ai].PTS
			for _, m := range ms {
				var err error
				switch {
				case useVideo && m.video != nil:
					f := c.Video[vi]
					err = m.h.WriteH264(m.video, base.Add(off+f.PTS), int64((off+f.PTS)*90000/time.Second), f.NALUs)
				case !useVideo && m.audio != nil:
					f := c.Audio[ai]
					rate := time.Duration(m.audio.ClockRate)
					err = m.h.WriteMPEG4Audio(m.audio, base.Add(off+f.PTS), int64((off+f.PTS)*rate/time.Second), [][]byte{f.Data})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if useVideo {
				vi++
			} else {
				ai++
			}
		}
	}
}

type answer struct {
	code  int
	hdr   http.Header
	body  []byte
	wrote bool
}

func get(h handler, name string) answer {
	// A zero ResponseRecorder keeps Code 0 until something is written,
	// where NewRecorder's says 200.
	r := &httptest.ResponseRecorder{Body: new(bytes.Buffer)}
	req := httptest.NewRequest(http.MethodGet, "/"+name, nil)
	h.Handle(r, req)
	return answer{code: r.Code, hdr: r.Header(), body: r.Body.Bytes(), wrote: r.Code != 0}
}

func loadClip(t *testing.T) *testmedia.Clip {
	t.Helper()
	c, err := testmedia.Load()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// prefixRe replaces a muxer's prefix so that both muxers' texts compare.
func unprefix(b []byte, prefix string) string {
	return strings.ReplaceAll(string(b), prefix, "PREFIX")
}

func gohlsPrefix(t *testing.T, h handler, name string) string {
	t.Helper()
	a := get(h, name)
	pl, err := playlist.Unmarshal(a.body)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return pl.(*playlist.Media).Map.URI[:12]
}

// TestSameOutputAsGohlslib feeds the same media to gohlslib's muxer and to
// this one and compares every answer: playlists (prefix aside), headers,
// and the bytes of every init, segment and part listed.
func TestSameOutputAsGohlslib(t *testing.T) {
	c := loadClip(t)
	for _, tc := range []struct {
		name         string
		variant      gohlslib.MuxerVariant
		video, audio bool
		disk         bool
	}{
		{"low-latency video+audio", gohlslib.MuxerVariantLowLatency, true, true, false},
		{"low-latency video", gohlslib.MuxerVariantLowLatency, true, false, false},
		{"low-latency audio only", gohlslib.MuxerVariantLowLatency, false, true, false},
		{"low-latency on disk", gohlslib.MuxerVariantLowLatency, true, true, true},
		{"fmp4 video+audio", gohlslib.MuxerVariantFMP4, true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gv, ga, gt := tracksFor(c, tc.video, tc.audio)
			ref := &gohlslib.Muxer{Tracks: gt, Variant: tc.variant, SegmentCount: 9, SegmentMinDuration: time.Second, PartMinDuration: 200 * time.Millisecond, OnEncodeError: func(error) {}}
			if err := ref.Start(); err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			ov, oa, ot := tracksFor(c, tc.video, tc.audio)
			our := &Muxer{Tracks: ot, Variant: tc.variant, SegmentCount: 9, SegmentMinDuration: time.Second, PartMinDuration: 200 * time.Millisecond}
			if tc.disk {
				our.Directory = t.TempDir()
			}
			if err := our.Start(); err != nil {
				t.Fatal(err)
			}
			defer our.Close()
			for pass := 0; pass < 5; pass++ {
				feed(t, c, 2, 2*pass, fed{ref, gv, ga}, fed{our, ov, oa})
				compareMuxers(t, ref, our)
			}
			if tc.disk {
				ents, _ := os.ReadDir(our.Directory)
				if want := len(ot) * (9 + 1); len(ents) == 0 || len(ents) > want {
					t.Fatalf("%d files on disk, want 1..%d (per stream: the segments kept and the current one)", len(ents), want)
				}
			}
		})
	}
}

func compareMuxers(t *testing.T, ref, our handler) {
	t.Helper()
	rm, om := get(ref, "index.m3u8"), get(our, "index.m3u8")
	if rm.code != 200 || om.code != 200 {
		t.Fatalf("index.m3u8: %d and %d", rm.code, om.code)
	}
	if string(rm.body) != string(om.body) {
		t.Fatalf("multivariant playlists differ:\n%s\n----\n%s", rm.body, om.body)
	}
	sameHeaders(t, "index.m3u8", rm, om)
	mv, err := playlist.Unmarshal(om.body)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{mv.(*playlist.Multivariant).Variants[0].URI}
	for _, r := range mv.(*playlist.Multivariant).Renditions {
		if r.URI != nil {
			names = append(names, *r.URI)
		}
	}
	for _, name := range names {
		rp, op := get(ref, name), get(our, name)
		sameHeaders(t, name, rp, op)
		rpre, opre := gohlsPrefix(t, ref, name), gohlsPrefix(t, our, name)
		if unprefix(rp.body, rpre) != unprefix(op.body, opre) {
			t.Fatalf("%s differs:\n%s\n----\n%s", name, rp.body, op.body)
		}
		pl, err := playlist.Unmarshal(op.body)
		if err != nil {
			t.Fatalf("%s does not parse: %v", name, err)
		}
		m := pl.(*playlist.Media)
		objs := []string{m.Map.URI}
		for _, s := range m.Segments {
			if !s.Gap {
				objs = append(objs, s.URI)
			}
			for _, p := range s.Parts {
				objs = append(objs, p.URI)
			}
		}
		for _, p := range m.Parts {
			objs = append(objs, p.URI)
		}
		for _, o := range objs {
			ro := get(ref, strings.Replace(o, opre, rpre, 1))
			oo := get(our, o)
			if oo.code != 200 || !bytes.Equal(ro.body, oo.body) {
				t.Fatalf("%s: status %d, %d bytes; gohlslib's: %d, %d bytes", o, oo.code, len(oo.body), ro.code, len(ro.body))
			}
			sameHeaders(t, o, ro, oo)
			if strings.Contains(o, "_init") {
				continue
			}
			var parts fmp4.Parts
			if err := parts.Unmarshal(oo.body); err != nil || len(parts) == 0 {
				t.Fatalf("%s: mediacommon cannot read it: %v", o, err)
			}
		}
	}
}

func sameHeaders(t *testing.T, name string, a, b answer) {
	t.Helper()
	for _, k := range []string{"Cache-Control", "Content-Type"} {
		if a.hdr.Get(k) != b.hdr.Get(k) {
			t.Fatalf("%s: %s %q, gohlslib's %q", name, k, b.hdr.Get(k), a.hdr.Get(k))
		}
	}
	if a.code != b.code {
		t.Fatalf("%s: status %d, gohlslib's %d", name, b.code, a.code)
	}
}

func startOurs(t *testing.T, c *testmedia.Clip) (*Muxer, *gohlslib.Track, *gohlslib.Track) {
	t.Helper()
	v, a, all := tracksFor(c, true, true)
	m := &Muxer{Tracks: all, SegmentCount: 9}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, v, a
}

func leadingPlaylist(t *testing.T, m *Muxer) *playlist.Media {
	t.Helper()
	a := get(m, "video1_stream.m3u8")
	pl, err := playlist.Unmarshal(a.body)
	if err != nil {
		t.Fatal(err)
	}
	return pl.(*playlist.Media)
}

func TestPreloadHintBlocksUntilThePartIsComplete(t *testing.T) {
	c := loadClip(t)
	m, v, a := startOurs(t, c)
	feed(t, c, 1, 0, fed{m, v, a})
	hint := leadingPlaylist(t, m).PreloadHint.URI
	if got := get(m, hint+"x"); got.wrote {
		t.Fatalf("an unknown name was answered %d", got.code)
	}
	done := make(chan answer, 1)
	go func() { done <- get(m, hint) }()
	// The request can only be answered by a part the playlist then lists.
	feed(t, c, 1, 1, fed{m, v, a})
	got := <-done
	if got.code != 200 || len(got.body) == 0 {
		t.Fatalf("preload hint answered %d with %d bytes", got.code, len(got.body))
	}
	again := get(m, hint)
	var parts fmp4.Parts
	if !bytes.Equal(again.body, got.body) || parts.Unmarshal(got.body) != nil {
		t.Fatalf("%s: the blocked answer is not the complete part", hint)
	}
	pl := leadingPlaylist(t, m)
	if pl.PreloadHint.URI == hint {
		t.Fatalf("%s answered but still the preload hint", hint)
	}

	// A pending hint is answered 404 when the muxer closes.
	hint = pl.PreloadHint.URI
	var wg sync.WaitGroup
	var closed answer
	wg.Add(1)
	go func() { defer wg.Done(); closed = get(m, hint) }()
	m.Close()
	wg.Wait()
	if closed.code != http.StatusNotFound {
		t.Fatalf("pending hint after Close: %d", closed.code)
	}
	if got := get(m, "index.m3u8"); got.code != http.StatusNotFound {
		t.Fatalf("playlist after Close: %d", got.code)
	}
}

func TestUnknownNamesGetNothing(t *testing.T) {
	c := loadClip(t)
	m, v, a := startOurs(t, c)
	feed(t, c, 1, 0, fed{m, v, a})
	pre := leadingPlaylist(t, m).Map.URI[:12]
	for _, n := range []string{"x.m3u8", pre + "_video1_seg0.mp4", pre + "_video1_seg99.mp4", pre + "_video1_part999.mp4",
		"000000000000_video1_init.mp4", pre + "_video9_init.mp4", pre + "_video1_segx.mp4", pre + "_audio2_part-1.mp4"} {
		if got := get(m, n); got.wrote {
			t.Errorf("%s answered %d", n, got.code)
		}
	}
}

// TestFFprobeDecodesASegment checks the init section and a segment with a
// real decoder.
func TestFFprobeDecodesASegment(t *testing.T) {
	ffprobe := testkit.RequireFFprobe(t)
	c := loadClip(t)
	m, v, a := startOurs(t, c)
	feed(t, c, 2, 0, fed{m, v, a})
	pl := leadingPlaylist(t, m)
	var seg string
	for _, s := range pl.Segments {
		if !s.Gap {
			seg = s.URI
		}
	}
	init, body := get(m, pl.Map.URI).body, get(m, seg).body
	f := filepath.Join(t.TempDir(), "seg.mp4")
	if err := os.WriteFile(f, append(append([]byte{}, init...), body...), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", f).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v: %s", err, out)
	}
	got := strings.TrimSpace(string(out))
	if !strings.HasPrefix(got, "h264,640,360,") || strings.HasSuffix(got, ",0") || strings.Contains(got, "\n") {
		t.Fatalf("ffprobe read %q from %s", got, seg)
	}
}

func TestStartRejects(t *testing.T) {
	c := loadClip(t)
	_, _, all := tracksFor(c, true, true)
	for name, m := range map[string]*Muxer{
		"no tracks":     {},
		"mpegts":        {Tracks: all, Variant: gohlslib.MuxerVariantMPEGTS},
		"few segments":  {Tracks: all, SegmentCount: 6},
		"bad clockrate": {Tracks: []*gohlslib.Track{{Codec: &codecs.H264{SPS: c.SPS, PPS: c.PPS}, ClockRate: 1000}}},
	} {
		if err := m.Start(); err == nil {
			t.Errorf("%s: started", name)
		}
	}
}

// benchMuxer feeds 4 s of the sample clip (H264 + AAC) per op, then reads
// (the muxer keeps 16 segments, as the origin configures it by default).
func benchMuxer(b *testing.B, start func(video, audio *gohlslib.Track, all []*gohlslib.Track) handler) {
	c, err := testmedia.Load()
	if err != nil {
		b.Fatal(err)
	}
	v, a, all := tracksFor(c, true, true)
	h := start(v, a, all)
	defer h.Close()
	b.ReportAllocs()
	b.SetBytes(int64(clipBytes(c)))
	pass := 0
	for b.Loop() {
		feed(b, c, 1, pass, fed{h, v, a})
		pass++
	}
}

func clipBytes(c *testmedia.Clip) int {
	n := 0
	for _, f := range c.Video {
		for _, nalu := range f.NALUs {
			n += len(nalu)
		}
	}
	for _, f := range c.Audio {
		n += len(f.Data)
	}
	return n
}

func BenchmarkMuxerGohlslib(b *testing.B) {
	benchMuxer(b, func(_, _ *gohlslib.Track, all []*gohlslib.Track) handler {
		m := &gohlslib.Muxer{Tracks: all, SegmentCount: 16, OnEncodeError: func(error) {}}
		if err := m.Start(); err != nil {
			b.Fatal(err)
		}
		return m
	})
}

func BenchmarkMuxerBuiltin(b *testing.B) {
	benchMuxer(b, func(_, _ *gohlslib.Track, all []*gohlslib.Track) handler {
		m := &Muxer{Tracks: all, SegmentCount: 16}
		if err := m.Start(); err != nil {
			b.Fatal(err)
		}
		return m
	})
}

func TestWritesAfterCloseAreIgnored(t *testing.T) {
	c := loadClip(t)
	for _, fedFirst := range []bool{false, true} {
		m, v, a := startOurs(t, c)
		if fedFirst {
			feed(t, c, 1, 0, fed{m, v, a})
		}
		m.Close()
		feed(t, c, 1, 1, fed{m, v, a})
		if got := get(m, "video1_stream.m3u8"); got.code != http.StatusNotFound {
			t.Fatalf("playlist after Close: %d", got.code)
		}
	}
}

type opusWriter interface {
	handler
	WriteOpus(*gohlslib.Track, time.Time, int64, [][]byte) error
}

// TestOpusSameAsGohlslib: an audio-only Opus stream (20 ms packets, two
// per call) compared with gohlslib's muxer.
func TestOpusSameAsGohlslib(t *testing.T) {
	mk := func() *gohlslib.Track { return &gohlslib.Track{Codec: &codecs.Opus{ChannelCount: 2}, ClockRate: 48000} }
	rt, ot := mk(), mk()
	ref := &gohlslib.Muxer{Tracks: []*gohlslib.Track{rt}, SegmentCount: 9, OnEncodeError: func(error) {}}
	our := &Muxer{Tracks: []*gohlslib.Track{ot}, SegmentCount: 9}
	startPair(t, ref, our)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	const perPacket = 960 // 20 ms at 48 kHz: TOC config 31 (CELT FB 20 ms), one frame
	for i := 0; i < 1000; i += 2 {
		pkts := [][]byte{{31 << 3, byte(i), 1, 2, 3}, {31 << 3, byte(i + 1), 4, 5}}
		for _, m := range []struct {
			w opusWriter
			t *gohlslib.Track
		}{{ref, rt}, {our, ot}} {
			if err := m.w.WriteOpus(m.t, base.Add(time.Duration(i)*20*time.Millisecond), int64(i*perPacket), pkts); err != nil {
				t.Fatal(err)
			}
		}
		if i%200 == 198 {
			compareMuxers(t, ref, our)
		}
	}
}

// startPair starts gohlslib's muxer and ours, closed when the test ends.
func startPair(t *testing.T, ref *gohlslib.Muxer, our *Muxer) {
	t.Helper()
	for _, m := range []interface {
		Start() error
		Close()
	}{ref, our} {
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
	}
}

// TestSegmentsShareFiles: with Directory, a stream appends consecutive
// segments to one file for fileSpan (wall time) and removes a file once its
// last segment is dropped, instead of making and removing a file per
// segment; what is served is what the same muxer in memory serves. Where
// the segments kept outlast the kernel's dirty expiry anyway, a file per
// segment, as before.
func TestSegmentsShareFiles(t *testing.T) {
	c := loadClip(t)
	for _, tc := range []struct {
		name          string
		segmentCount  int
		perFile, keep int // segments per file; most files per stream on disk
	}{
		// kept (9+1) x 1 s; 80 % of 30 s minus that is 14 s, above the 10 s cap
		{"default", 9, 10, 3},
		{"long window", 30, 1, 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if dirtyExpiry() != 30*time.Second {
				t.Skipf("vm.dirty_expire_centisecs is not the default: %v", dirtyExpiry())
			}
			start := func(dir string) (*Muxer, *gohlslib.Track, *gohlslib.Track) {
				v, a, all := tracksFor(c, true, true)
				m := &Muxer{Tracks: all, Variant: gohlslib.MuxerVariantLowLatency, SegmentCount: tc.segmentCount,
					SegmentMinDuration: time.Second, PartMinDuration: 200 * time.Millisecond, Directory: dir}
				// one second of wall time per segment, as for a live camera
				base := time.Now()
				m.clock = func() time.Time { return base.Add(time.Duration(m.leading.nextSegID) * time.Second) }
				if err := m.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(m.Close)
				return m, v, a
			}
			disk, dv, da := start(t.TempDir())
			mem, mv, ma := start("")
			segments := func() int {
				disk.mu.Lock()
				defer disk.mu.Unlock()
				return int(disk.leading.nextSegID) - gapCount
			}
			for pass := 0; segments() < 4*tc.segmentCount; pass++ {
				feed(t, c, 1, pass, fed{disk, dv, da}, fed{mem, mv, ma})
			}
			n := segments()
			disk.mu.Lock()
			for _, s := range disk.streams {
				if want := (n + tc.perFile - 1) / tc.perFile; s.files < want-1 || s.files > want+1 {
					t.Errorf("%s: %d files made for %d segments, want ~%d", s.id, s.files, n, want)
				}
			}
			disk.mu.Unlock()
			ents, err := os.ReadDir(disk.Directory)
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) < 2 || len(ents) > 2*tc.keep {
				t.Fatalf("%d files on disk, want 2..%d", len(ents), 2*tc.keep)
			}
			pl := leadingPlaylist(t, disk)
			served := 0
			for _, sg := range pl.Segments {
				if sg.Gap {
					continue
				}
				name := strings.TrimPrefix(sg.URI, disk.prefix)
				d, m := get(disk, disk.prefix+name), get(mem, mem.prefix+name)
				if d.code != 200 || len(d.body) == 0 || !bytes.Equal(d.body, m.body) {
					t.Fatalf("%s: %d, %d bytes from disk, %d from memory", name, d.code, len(d.body), len(m.body))
				}
				served++
			}
			for _, p := range pl.Parts {
				name := strings.TrimPrefix(p.URI, disk.prefix)
				if d, m := get(disk, disk.prefix+name), get(mem, mem.prefix+name); !bytes.Equal(d.body, m.body) {
					t.Fatalf("part %s: %d bytes from disk, %d from memory", name, len(d.body), len(m.body))
				}
			}
			if served < 7 {
				t.Fatalf("%d segments compared", served)
			}
			disk.Close()
			if ents, _ := os.ReadDir(disk.Directory); len(ents) != 0 {
				t.Fatalf("%d files left after Close", len(ents))
			}
		})
	}
}
