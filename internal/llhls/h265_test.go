package llhls

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// h265AU is one H265 access unit of h265Clip: its NAL units and PTS (90 kHz).
type h265AU struct {
	pts   int64
	nalus [][]byte
}

// h265Clip encodes 4 s of a test pattern in H265 (1 s GOP, B-frames, so the
// muxers' DTS extraction is exercised) with ffmpeg and returns its access
// units, delimiters dropped, and its parameter sets.
func h265Clip(t *testing.T) (aus []h265AU, vps, sps, pps []byte) {
	t.Helper()
	ffmpeg := testkit.RequireFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", "testsrc2=size=320x240:rate=25", "-t", "4", "-c:v", "libx265", "-preset", "ultrafast",
		"-x265-params", "keyint=25:min-keyint=25:bframes=2:log-level=error", "-f", "mpegts", "-").Output()
	if err != nil {
		if testkit.CI() {
			t.Fatalf("ffmpeg with libx265: %v", err)
		}
		t.Skipf("ffmpeg cannot encode H265 (libx265): %v", err)
	}
	r := &mpegts.Reader{R: bytes.NewReader(out)}
	if err := r.Initialize(); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, tr := range r.Tracks() {
		if _, ok := tr.Codec.(*tscodecs.H265); ok && !found {
			found = true
			r.OnDataH265(tr, func(pts, _ int64, au [][]byte) error {
				var kept [][]byte
				for _, n := range au {
					if len(n) == 0 {
						continue
					}
					switch h265.NALUType((n[0] >> 1) & 0x3f) {
					case h265.NALUType_AUD_NUT:
						continue
					case h265.NALUType_VPS_NUT:
						vps = cmpOr(vps, n)
					case h265.NALUType_SPS_NUT:
						sps = cmpOr(sps, n)
					case h265.NALUType_PPS_NUT:
						pps = cmpOr(pps, n)
					}
					kept = append(kept, slices.Clone(n))
				}
				aus = append(aus, h265AU{pts: pts, nalus: kept})
				return nil
			})
		}
	}
	if !found {
		t.Fatal("ffmpeg's output has no H265 track")
	}
	for {
		if err := r.Read(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if len(aus) < 90 || vps == nil || sps == nil || pps == nil {
		t.Fatalf("%d access units, parameter sets %v/%v/%v", len(aus), vps != nil, sps != nil, pps != nil)
	}
	return aus, vps, sps, pps
}

func cmpOr(have, n []byte) []byte {
	if have != nil {
		return have
	}
	return slices.Clone(n)
}

// TestSameOutputAsGohlslibH265: H265 with B-frames (DTS from the slice
// headers, CRA/IDR random access) through gohlslib's muxer and this one
// gives the same playlists, init, segments and parts, byte for byte.
func TestSameOutputAsGohlslibH265(t *testing.T) {
	aus, vps, sps, pps := h265Clip(t)
	for _, tc := range []struct {
		name    string
		variant gohlslib.MuxerVariant
	}{{"low-latency", gohlslib.MuxerVariantLowLatency}, {"fmp4", gohlslib.MuxerVariantFMP4}} {
		variant := tc.variant
		t.Run(tc.name, func(t *testing.T) {
			newTrack := func() *gohlslib.Track {
				return &gohlslib.Track{Codec: &codecs.H265{VPS: vps, SPS: sps, PPS: pps}, ClockRate: 90000}
			}
			rt, ot := newTrack(), newTrack()
			ref := &gohlslib.Muxer{Tracks: []*gohlslib.Track{rt}, Variant: variant, SegmentCount: 9, SegmentMinDuration: time.Second, PartMinDuration: 200 * time.Millisecond, OnEncodeError: func(error) {}}
			our := &Muxer{Tracks: []*gohlslib.Track{ot}, Variant: variant, SegmentCount: 9, SegmentMinDuration: time.Second, PartMinDuration: 200 * time.Millisecond}
			startPair(t, ref, our)
			base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			first := aus[0].pts
			const clipTicks = 4 * 90000
			for pass := range 3 {
				for _, au := range aus {
					pts := au.pts - first + int64(pass)*clipTicks
					ntp := base.Add(time.Duration(pts) * time.Second / 90000)
					if err := ref.WriteH265(rt, ntp, pts, au.nalus); err != nil {
						t.Fatal(err)
					}
					if err := our.WriteH265(ot, ntp, pts, au.nalus); err != nil {
						t.Fatal(err)
					}
				}
				compareMuxers(t, ref, our)
			}
		})
	}
}
