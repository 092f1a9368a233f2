package transcode

import (
	"bytes"
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/internal/testmedia"
)

// BenchmarkLadder measures the real-time factor (media seconds transcoded
// per wall-clock second, fed as fast as ffmpeg takes it) of a 720p source to
// a 720p/480p/360p x264 ladder with AAC passed through. Run it with
//
//	go test -run '^$' -bench BenchmarkLadder -benchtime 3x ./internal/transcode/
func BenchmarkLadder(b *testing.B) {
	ffmpeg := testkit.RequireFFmpeg(b)
	clip := generate720p(b, ffmpeg)
	ladder := Ladder{Renditions: []Rendition{
		{Name: "720p", Width: 1280, Height: 720, Bitrate: 2_500_000},
		{Name: "480p", Height: 480, Bitrate: 1_200_000},
		{Name: "360p", Height: 360, Bitrate: 700_000},
	}}
	var media, wall time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec := newRecorder(len(ladder.Renditions))
		tr := &Transcoder{FFmpeg: ffmpeg, Ladder: ladder, Encoder: EncoderX264, Source: clipSource(clip),
			OnVideo: rec.onVideo, OnAudio: rec.onAudio}
		start := time.Now()
		if err := tr.Start(); err != nil {
			b.Fatal(err)
		}
		f := &feeder{tr: tr, clip: clip}
		f.feed(b, 1, false)
		testkit.WaitFor(b, 5*time.Minute, "the ladder's frames", func() bool {
			for _, n := range rec.counts() {
				if n < f.video-3 {
					return false
				}
			}
			return true
		})
		wall += time.Since(start)
		media += clip.Duration
		tr.Close()
	}
	b.ReportMetric(media.Seconds()/wall.Seconds(), "rtf")
}

// generate720p encodes 5 s of 1280x720 25 fps H264 (1 s GOP, no B-frames)
// with AAC, the shape of a camera stream.
func generate720p(b *testing.B, ffmpeg string) *testmedia.Clip {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
		"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", "5", "-ac", "2",
		"-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-bf", "0", "-g", "25", "-sc_threshold", "0", "-b:v", "3M",
		"-c:a", "aac", "-b:a", "128k", "-f", "mpegts", "-")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("generate the 720p source: %v: %s", err, stderr.String())
	}
	clip, err := testmedia.ParseClip(&out)
	if err != nil {
		b.Fatal(err)
	}
	return clip
}
