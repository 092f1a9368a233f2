package transcode

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// tsUnit is one access unit read from an MPEG-TS file.
type tsUnit struct {
	audio    bool
	pts, dts int64
	data     [][]byte
}

// generateTS encodes a synthetic clip with ffmpeg and returns its access
// units in file order, timestamps unwrapped.
func generateTS(t testing.TB, ffmpeg string, args ...string) []tsUnit {
	t.Helper()
	out := filepath.Join(t.TempDir(), "in.ts")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ffmpeg, append(append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"}, args...),
		"-f", "mpegts", "-y", out)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generate input: %v: %s", err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &mpegts.Reader{R: bufio.NewReader(f)}
	if err := r.Initialize(); err != nil {
		t.Fatal(err)
	}
	var td mpegts.TimeDecoder
	td.Initialize()
	var units []tsUnit
	for _, track := range r.Tracks() {
		switch track.Codec.(type) {
		case *tscodecs.H264:
			r.OnDataH264(track, func(pts, dts int64, au [][]byte) error {
				units = append(units, tsUnit{pts: td.Decode(pts), dts: td.Decode(dts), data: au})
				return nil
			})
		case *tscodecs.Opus:
			r.OnDataOpus(track, func(pts int64, packets [][]byte) error {
				units = append(units, tsUnit{audio: true, pts: td.Decode(pts), data: packets})
				return nil
			})
		}
	}
	testkit.ReadToEOF(t, r.Read)
	return units
}

// TestTranscoderH265FromOpus transcodes an H264 + Opus source to an H265
// rendition with AAC audio.
func TestTranscoderH265FromOpus(t *testing.T) {
	ffmpeg := ffmpegTest(t)
	units := generateTS(t, ffmpeg,
		"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", "2", "-c:v", "libx264", "-profile:v", "main", "-bf", "0", "-g", "25", "-sc_threshold", "0", "-b:v", "200k",
		"-c:a", "libopus", "-b:a", "48k", "-ac", "2")

	ladder := Ladder{Audio: AudioAAC, Renditions: []Rendition{{Name: "hevc", Width: 256, Height: 144, Bitrate: 100_000, Codec: CodecH265}}}
	src := SourceInfo{Codec: media.CodecH264, Width: 320, Height: 180, FPS: 25, GOPFrames: 25,
		AudioCodec: media.CodecOpus, AudioChannels: 2}
	rec := newRecorder(1)
	rec.h265 = true
	tr := &Transcoder{FFmpeg: ffmpeg, Ladder: ladder, Encoder: EncoderX264, Source: src,
		OnVideo: rec.onVideo, OnAudio: rec.onAudio, Log: testkit.Logger(t)}
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	video, audio := 0, 0
	for _, u := range units {
		var err error
		if u.audio {
			err = tr.WriteAudio(u.pts, u.data)
			audio += len(u.data)
		} else {
			err = tr.WriteVideo(u.pts, u.dts, u.data, media.IsRandomAccess(tr.Source.videoCodec(), u.data))
			video++
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 30*time.Second, "the H265 frames", func() bool { return rec.counts()[0] >= video-3 })
	frames := rec.frames(0)
	if frames[0].sps == nil || !frames[0].idr {
		t.Fatal("first H265 frame is no IRAP with SPS")
	}
	if cs := CodecString(frames[0].sps); !strings.HasPrefix(cs, "hvc1.1.") {
		t.Errorf("CodecString(H265 SPS) = %q, want hvc1.1.* (Main)", cs)
	}
	checkMonotonic(t, "hevc", frames)
	if frames[0].pts != units[0].pts {
		t.Errorf("first PTS %d, want %d", frames[0].pts, units[0].pts)
	}
	if idrs := idrPTS(frames); len(idrs) < 2 || idrs[1]-idrs[0] != 90000 {
		t.Errorf("H265 IRAP frames at %v, want one per second", idrs)
	}
	// 2 s of 48 kHz audio is ~94 AAC frames of 1024 samples.
	testkit.WaitFor(t, 10*time.Second, "the AAC frames", func() bool { return rec.audioCount(0) >= 80 })
	codec, conf := ladder.AudioOutput(src)
	if codec != media.CodecAAC || conf.SampleRate != 48000 || AudioCodecString(codec, conf) != "mp4a.40.2" {
		t.Errorf("AudioOutput = %v %+v", codec, conf)
	}
	t.Logf("%d H265 frames from %d H264 frames, %d AAC frames from %d Opus packets", len(frames), video, rec.audioCount(0), audio)
}

// TestTranscoderDiscontinuity feeds a timeline that jumps back (a publisher
// reconnecting): ffmpeg is restarted at once, OnRestart gets attempt 0 and
// ErrDiscontinuity, and the output follows the new timeline.
func TestTranscoderDiscontinuity(t *testing.T) {
	ffmpeg := ffmpegTest(t)
	sample := sampleClip(t)
	clip := sample.Head(2)
	rec := newRecorder(1)
	tr := startX264(t, ffmpeg, clipSource(clip), rec)

	first := &feeder{tr: tr, clip: clip, base: 50 * 90000}
	first.feed(t, 1, false)
	testkit.WaitFor(t, 20*time.Second, "the first timeline", func() bool { return rec.counts()[0] >= first.video-3 })
	before := rec.counts()[0]

	second := &feeder{tr: tr, clip: clip, base: 5 * 90000} // back by 45 s
	second.feed(t, 1, false)
	testkit.WaitFor(t, 20*time.Second, "the restart", func() bool { return rec.restartCount() == 1 })
	testkit.WaitFor(t, 20*time.Second, "the second timeline", func() bool { return rec.counts()[0] >= before+second.video-6 })

	rec.mu.Lock()
	attempt, restartErr := rec.attempts[0], rec.restarts[0]
	rec.mu.Unlock()
	if attempt != 0 || !errors.Is(restartErr, ErrDiscontinuity) {
		t.Errorf("OnRestart(%d, %v), want 0 and ErrDiscontinuity", attempt, restartErr)
	}
	frames := rec.frames(0)
	jump := 1
	for jump < len(frames) && frames[jump].dts > frames[jump-1].dts {
		jump++
	}
	if jump < first.video-3 || jump == len(frames) {
		t.Fatalf("timeline jumps back at frame %d of %d (fed %d before the jump)", jump, len(frames), first.video)
	}
	if !frames[jump].idr || frames[jump].pts != 5*90000 {
		t.Errorf("first frame after the jump: %+v, want an IDR at %d", frames[jump], 5*90000)
	}
	checkMonotonic(t, "first timeline", frames[:jump])
	checkMonotonic(t, "second timeline", frames[jump:])
	if !h264.IsRandomAccess(clip.Video[0].NALUs) {
		t.Fatal("clip does not start with an IDR")
	}
}

// TestTranscoderDeclaredAudioAbsent feeds a source that declares AAC but
// sends none: the transcoder goes on video only, and back to audio when it
// comes.
func TestTranscoderDeclaredAudioAbsent(t *testing.T) {
	ffmpeg := ffmpegTest(t)
	clip := sampleClip(t)
	rec := newRecorder(1)
	tr := startX264(t, ffmpeg, clipSource(clip), rec)
	if !tr.Stats().Audio {
		t.Error("the first run does not expect the declared audio")
	}

	f := &feeder{tr: tr, clip: clip, noAudio: true}
	f.feed(t, 1, false) // as fast as it goes: all of it into the first run
	testkit.WaitFor(t, 20*time.Second, "the switch to video only", func() bool { return rec.restartCount() == 1 })
	f.feed(t, 1, false)
	testkit.WaitFor(t, 20*time.Second, "video-only output", func() bool { return rec.counts()[0] >= 50 })
	if s := tr.Stats(); s.Audio || s.Restarts != 1 {
		t.Errorf("without audio: %+v", s)
	}
	rec.mu.Lock()
	attempt, restartErr := rec.attempts[0], rec.restarts[0]
	rec.mu.Unlock()
	if attempt != 0 || !errors.Is(restartErr, ErrAudioChanged) {
		t.Errorf("OnRestart(%d, %v), want 0 and ErrAudioChanged", attempt, restartErr)
	}

	f.noAudio = false
	f.feed(t, 2, false)
	testkit.WaitFor(t, 20*time.Second, "audio again", func() bool { return rec.audioCount(0) > 50 })
	if s := tr.Stats(); !s.Audio || s.Restarts != 2 {
		t.Errorf("with audio back: %+v", s)
	}
	checkMonotonic(t, "video", rec.frames(0))
}
