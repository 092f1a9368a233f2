package testmedia

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestSampleSize(t *testing.T) {
	fi, err := os.Stat("sample.ts")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 300<<10 {
		t.Fatalf("sample.ts is %d bytes, keep it under 300 KB", fi.Size())
	}
	if !bytes.Equal(sampleTS, mustReadFile(t, "sample.ts")) {
		t.Fatal("embedded sample differs from sample.ts")
	}
}

func mustReadFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mustLoad is Load for tests: the sample clip, or the test fails.
func mustLoad(t *testing.T) *Clip {
	t.Helper()
	clip, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	return clip
}

func TestLoad(t *testing.T) {
	clip := mustLoad(t)
	again, err := Load()
	if err != nil || again != clip {
		t.Fatalf("Load is not cached: %p %p %v", clip, again, err)
	}

	if clip.Width != 640 || clip.Height != 360 || clip.FPS != 25 {
		t.Errorf("geometry %dx%d@%d, want 640x360@25", clip.Width, clip.Height, clip.FPS)
	}
	if clip.Duration != 4*time.Second {
		t.Errorf("Duration %v, want 4s", clip.Duration)
	}
	if clip.FrameInterval() != 40*time.Millisecond {
		t.Errorf("FrameInterval %v, want 40ms", clip.FrameInterval())
	}
	if len(clip.Video) != 100 {
		t.Fatalf("%d video frames, want 100", len(clip.Video))
	}
	if len(clip.SPS) == 0 || len(clip.PPS) == 0 {
		t.Fatal("missing SPS/PPS")
	}

	for i, f := range clip.Video {
		if want := time.Duration(i) * 40 * time.Millisecond; f.DTS != want || f.PTS != want {
			t.Fatalf("frame %d: PTS %v DTS %v, want %v", i, f.PTS, f.DTS, want)
		}
		if f.Keyframe != (i%25 == 0) {
			t.Errorf("frame %d: Keyframe %v, want a keyframe every 25 frames", i, f.Keyframe)
		}
		if f.Data != nil {
			t.Errorf("frame %d: video frame with Data", i)
		}
		var hasSPS, hasPPS, hasSlice bool
		for _, nalu := range f.NALUs {
			switch h264.NALUType(nalu[0] & 0x1f) {
			case h264.NALUTypeAccessUnitDelimiter:
				t.Errorf("frame %d: AUD left in", i)
			case h264.NALUTypeSEI:
				t.Errorf("frame %d: SEI in the sample (gen.sh strips them)", i)
			case h264.NALUTypeSPS:
				hasSPS = true
			case h264.NALUTypePPS:
				hasPPS = true
			case h264.NALUTypeIDR, h264.NALUTypeNonIDR:
				hasSlice = true
			}
			if bytes.HasPrefix(nalu, []byte{0, 0, 1}) || bytes.HasPrefix(nalu, []byte{0, 0, 0, 1}) {
				t.Errorf("frame %d: NAL unit with start code", i)
			}
		}
		if !hasSlice {
			t.Errorf("frame %d: no slice", i)
		}
		if f.Keyframe && (!hasSPS || !hasPPS) {
			t.Errorf("frame %d: IDR without in-band SPS/PPS", i)
		}
	}

	if clip.AudioConfig == nil {
		t.Fatal("no audio config")
	}
	if clip.AudioConfig.Type != mpeg4audio.ObjectTypeAACLC || clip.AudioConfig.SampleRate != 44100 ||
		clip.AudioConfig.ChannelConfig != 2 {
		t.Errorf("audio config %+v, want AAC-LC 44100 Hz stereo", clip.AudioConfig)
	}
	// 4 s at 1024 samples per frame and 44100 Hz is 172.3 frames.
	if n := len(clip.Audio); n < 170 || n > 174 {
		t.Errorf("%d audio frames, want about 172", n)
	}
	frameDur := time.Second * mpeg4audio.SamplesPerAccessUnit / 44100
	for i, f := range clip.Audio {
		if f.PTS < 0 || f.PTS >= clip.Duration || f.DTS != f.PTS || len(f.Data) == 0 || f.NALUs != nil {
			t.Fatalf("audio frame %d: %+v", i, f)
		}
		if i > 0 {
			if d := f.PTS - clip.Audio[i-1].PTS; d < frameDur-time.Millisecond || d > frameDur+time.Millisecond {
				t.Fatalf("audio frame %d: spacing %v, want %v", i, d, frameDur)
			}
		}
	}
}

func TestClipHead(t *testing.T) {
	clip := mustLoad(t)
	for _, tc := range []struct {
		gops   int
		frames int
		dur    time.Duration
	}{
		{1, 25, time.Second},
		{2, 50, 2 * time.Second},
		{4, 100, 4 * time.Second},
		{10, 100, 4 * time.Second},
	} {
		h := clip.Head(tc.gops)
		if len(h.Video) != tc.frames || h.Duration != tc.dur {
			t.Errorf("Head(%d): %d frames, %v; want %d, %v", tc.gops, len(h.Video), h.Duration, tc.frames, tc.dur)
		}
		for _, f := range h.Audio {
			if f.PTS >= h.Duration {
				t.Errorf("Head(%d): audio at %v beyond %v", tc.gops, f.PTS, h.Duration)
			}
		}
		if len(h.Audio) == 0 || len(h.Audio) > len(clip.Audio) {
			t.Errorf("Head(%d): %d audio frames", tc.gops, len(h.Audio))
		}
	}
	if len(clip.Video) != 100 {
		t.Fatal("Head modified the clip")
	}
}

func TestParseClipErrors(t *testing.T) {
	for name, in := range map[string][]byte{
		"empty":     nil,
		"garbage":   bytes.Repeat([]byte{0x47, 1, 2, 3}, 200),
		"truncated": sampleTS[:188*3],
	} {
		if _, err := ParseClip(bytes.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestTicksConversion(t *testing.T) {
	for _, d := range []time.Duration{0, 40 * time.Millisecond, -23 * time.Millisecond, 49 * 24 * time.Hour, 10 * 365 * 24 * time.Hour} {
		ticks := durationToTicks(d, 90000)
		if back := ticksToDuration(ticks, 90000); back-d > time.Microsecond*12 || d-back > time.Microsecond*12 {
			t.Errorf("%v -> %d -> %v", d, ticks, back)
		}
	}
	if got := durationToTicks(10*365*24*time.Hour, 90000); got != 10*365*24*3600*90000 {
		t.Errorf("10 years = %d ticks", got)
	}
}
