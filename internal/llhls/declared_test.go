package llhls

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/streamgrid/streamgrid/internal/testmedia"
)

// slowFeed writes the clip's video, looped, from frame from on, with every
// timestamp stretched by factor (a factor 2 turns its 1 s GOP into a 2 s
// one), frame by frame, until an error or until stop says so; it returns
// the number of the next frame.
func slowFeed(m *Muxer, c *testmedia.Clip, factor, from int, stop func(*Muxer) bool) (int, error) {
	v := m.Tracks[0]
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for n := from; ; n++ {
		pass, f := n/len(c.Video), c.Video[n%len(c.Video)]
		pts := (time.Duration(pass)*c.Duration + f.PTS) * time.Duration(factor)
		if err := m.WriteH264(v, base.Add(pts), int64(pts*90000/time.Second), f.NALUs); err != nil {
			return n, err
		}
		if stop(m) {
			return n + 1, nil
		}
	}
}

func hasContent(m *Muxer) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leading.hasContent()
}

func completeSegments(m *Muxer) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, sg := range m.leading.segments {
		if !sg.gap {
			n++
		}
	}
	return n
}

func videoMuxer(t *testing.T, c *testmedia.Clip, target int) *Muxer {
	t.Helper()
	_, _, all := tracksFor(c, true, false)
	m := &Muxer{Tracks: all, SegmentCount: 9, TargetDuration: target}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// TestDeclaredTargetServesTheFirstPart: with the target duration declared,
// the playlists are served as soon as the first part is complete, before
// the first segment, with that target, the gap placeholders and the init
// section; without it, only once the first segment is complete.
func TestDeclaredTargetServesTheFirstPart(t *testing.T) {
	c := loadClip(t)
	fps := time.Second / c.FrameInterval()

	learned := videoMuxer(t, c, 0)
	n, err := slowFeed(learned, c, 1, 0, hasContent)
	if err != nil {
		t.Fatal(err)
	}
	if n <= int(fps) || completeSegments(learned) != 1 {
		t.Fatalf("learned target: playlist after %d frames with %d segments, want the first segment (%d frames)", n, completeSegments(learned), fps)
	}

	m := videoMuxer(t, c, 1)
	n, err = slowFeed(m, c, 1, 0, hasContent)
	if err != nil {
		t.Fatal(err)
	}
	if n > int(fps)/2 || completeSegments(m) != 0 {
		t.Fatalf("declared target: playlist after %d frames with %d segments, want it from the first part", n, completeSegments(m))
	}
	pl := leadingPlaylist(t, m)
	if pl.TargetDuration != 1 || len(pl.Parts) == 0 || pl.PreloadHint == nil || pl.PartInf == nil || pl.Map == nil {
		t.Fatalf("first playlist: target %d, %d parts, hint %v, part-inf %v, map %v", pl.TargetDuration, len(pl.Parts), pl.PreloadHint, pl.PartInf, pl.Map)
	}
	if len(pl.Segments) != gapCount {
		t.Fatalf("first playlist lists %d segments, want the %d gap placeholders", len(pl.Segments), gapCount)
	}
	for _, s := range pl.Segments {
		if !s.Gap || s.Duration != time.Second {
			t.Fatalf("placeholder %+v, want a 1 s gap", s)
		}
	}
	if a := get(m, pl.Map.URI); a.code != 200 || len(a.body) == 0 {
		t.Fatalf("init section: %d, %d bytes", a.code, len(a.body))
	}
	if a := get(m, pl.Parts[0].URI); a.code != 200 || len(a.body) == 0 {
		t.Fatalf("first part: %d, %d bytes", a.code, len(a.body))
	}
	mv := get(m, "index.m3u8")
	if mv.code != 200 || !strings.Contains(string(mv.body), "BANDWIDTH=") || strings.Contains(string(mv.body), "BANDWIDTH=0,") {
		t.Fatalf("multivariant playlist: %d\n%s", mv.code, mv.body)
	}
	partTarget := pl.PartInf.PartTarget

	// Later playlists keep the target and the part target, and every
	// segment fits.
	if _, err := slowFeed(m, c, 1, n, func(m *Muxer) bool { return completeSegments(m) >= 3 }); err != nil {
		t.Fatal(err)
	}
	pl = leadingPlaylist(t, m)
	if pl.TargetDuration != 1 || pl.PartInf.PartTarget != partTarget {
		t.Fatalf("target %d, part target %v; want 1 and %v", pl.TargetDuration, pl.PartInf.PartTarget, partTarget)
	}
	checkTargets(t, pl)
}

func checkTargets(t *testing.T, pl *playlist.Media) {
	t.Helper()
	for _, s := range pl.Segments {
		if r := int(math.Round(s.Duration.Seconds())); r > pl.TargetDuration {
			t.Fatalf("segment %s lasts %v, over the target %d", s.URI, s.Duration, pl.TargetDuration)
		}
	}
}

// TestDeclaredTargetExceeded: a keyframe interval longer than the declared
// target (a camera reconfigured since the target was learned) makes the
// muxer refuse further writes before any segment outgrows the target; one
// that fits is taken as it is.
func TestDeclaredTargetExceeded(t *testing.T) {
	c := loadClip(t)
	m := videoMuxer(t, c, 1)
	_, err := slowFeed(m, c, 2, 0, func(*Muxer) bool { return false })
	if !errors.Is(err, ErrTargetExceeded) {
		t.Fatalf("a 2 s GOP under a declared 1 s target: %v, want ErrTargetExceeded", err)
	}
	if completeSegments(m) != 0 {
		t.Fatalf("%d segments completed", completeSegments(m))
	}
	pl := leadingPlaylist(t, m)
	checkTargets(t, pl)
	if len(pl.Parts) == 0 {
		t.Fatal("no parts listed before the target was exceeded")
	}
	var d time.Duration
	for _, p := range pl.Parts {
		d += p.Duration
	}
	if d >= 1500*time.Millisecond {
		t.Fatalf("the segment being built was listed with %v of parts", d)
	}
	if err := m.WriteH264(m.Tracks[0], time.Now(), 0, c.Video[0].NALUs); !errors.Is(err, ErrTargetExceeded) {
		t.Fatalf("a later write: %v", err)
	}

	fits := videoMuxer(t, c, 2)
	if _, err := slowFeed(fits, c, 2, 0, func(m *Muxer) bool { return completeSegments(m) >= 3 }); err != nil {
		t.Fatal(err)
	}
	pl = leadingPlaylist(t, fits)
	if pl.TargetDuration != 2 {
		t.Fatalf("target %d, want 2", pl.TargetDuration)
	}
	checkTargets(t, pl)
}

func TestDeclaredTargetNeedsLowLatency(t *testing.T) {
	c := loadClip(t)
	_, _, all := tracksFor(c, true, false)
	for _, m := range []*Muxer{
		{Tracks: all, Variant: gohlslib.MuxerVariantFMP4, TargetDuration: 1},
		{Tracks: all, TargetDuration: -1},
	} {
		if err := m.Start(); err == nil {
			t.Errorf("variant %v, target %d: started", m.Variant, m.TargetDuration)
		}
	}
}

// TestDeclaredTargetUnevenFrames: with frame durations that jitter (RTMP
// millisecond timestamps of a camera whose clock wavers: 39 to 41 ms at
// 25 fps), parts of the same part duration differ by a frame, and the
// PART-TARGET that goes out with the first part already covers every
// later part.
func TestDeclaredTargetUnevenFrames(t *testing.T) {
	c := loadClip(t)
	_, _, all := tracksFor(c, true, false)
	m := &Muxer{Tracks: all, SegmentCount: 9, TargetDuration: 1}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var pts time.Duration
	var partTarget time.Duration
	jitter := []time.Duration{40, 40, 39, 41, 40, 39, 41}
	for n := range 4 * 25 {
		f := c.Video[n%len(c.Video)] // the clip's own 1 s GOP
		if err := m.WriteH264(m.Tracks[0], base.Add(pts), int64(pts*90000/time.Second), f.NALUs); err != nil {
			t.Fatal(err)
		}
		pts += jitter[n%len(jitter)] * time.Millisecond
		if !hasContent(m) {
			continue
		}
		pl := leadingPlaylist(t, m)
		if partTarget == 0 {
			partTarget = pl.PartInf.PartTarget
		}
		if pl.PartInf.PartTarget != partTarget {
			t.Fatalf("PART-TARGET changed from %v to %v", partTarget, pl.PartInf.PartTarget)
		}
		for _, p := range pl.Parts {
			if p.Duration > partTarget {
				t.Fatalf("part of %v over PART-TARGET %v", p.Duration, partTarget)
			}
		}
	}
	if partTarget == 0 || completeSegments(m) < 2 {
		t.Fatalf("part target %v, %d segments", partTarget, completeSegments(m))
	}
}
