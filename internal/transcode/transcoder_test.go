package transcode

import (
	"errors"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// TestTranscoderLadder feeds the sample clip through a three-rendition x264
// ladder and checks the outputs; then kills ffmpeg and checks that the
// transcoder restarts it and the outputs resume.
func TestTranscoderLadder(t *testing.T) {
	ffmpeg := ffmpegTest(t)

	clip := sampleClip(t)
	ladder := Ladder{Renditions: []Rendition{
		{Name: "240p", Width: 426, Bitrate: 300_000},
		{Name: "180p", Width: 320, Height: 180, Bitrate: 200_000, FPS: 15},
		{Name: "144p", Width: 256, Height: 144, Bitrate: 120_000},
	}}
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg, prometheus.Labels{"node": "n1", "role": "origin"})
	if err != nil {
		t.Fatal(err)
	}
	defer metrics.Unregister()

	rec := newRecorder(len(ladder.Renditions))
	tr := &Transcoder{
		FFmpeg:    ffmpeg,
		Ladder:    ladder,
		Encoder:   EncoderX264,
		Source:    clipSource(clip),
		OnVideo:   rec.onVideo,
		OnAudio:   rec.onAudio,
		OnRestart: rec.onRestart,
		Log:       testkit.Logger(t),
		Metrics:   metrics,
		Stream:    "live/cam1",
	}
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	defer tr.Close()

	// A large base checks that output timestamps are mapped back onto the
	// input's 64-bit timeline, far beyond MPEG-TS's 33 bits.
	const base = int64(1) << 40
	f := &feeder{tr: tr, clip: clip, base: base}

	// Phase 1: two loops (8 s of media) as fast as ffmpeg takes them.
	start := time.Now()
	f.feed(t, 2, false)
	wantFull, wantCapped := f.video, f.video*15/clip.FPS
	testkit.WaitFor(t, 20*time.Second, "the renditions' frames", func() bool {
		c := rec.counts()
		return c[0] >= wantFull-3 && c[1] >= wantCapped-3 && c[2] >= wantFull-3
	})
	wall := time.Since(start)
	media := time.Duration(f.loops) * clip.Duration
	t.Logf("3-rendition x264 ladder: %v of media in %v: real-time factor %.2f (speed gauge %.2f)",
		media, wall.Round(time.Millisecond), media.Seconds()/wall.Seconds(), tr.Stats().Speed)

	outs := ladder.Outputs(tr.Source)
	wantSize := [][2]int{{426, 240}, {320, 180}, {256, 144}}
	var idrs [][]int64
	for i := range ladder.Renditions {
		name := ladder.Renditions[i].Name
		frames := rec.frames(i)
		if outs[i].Width != wantSize[i][0] || outs[i].Height != wantSize[i][1] {
			t.Errorf("%s: Outputs says %dx%d, want %v", name, outs[i].Width, outs[i].Height, wantSize[i])
		}
		if !frames[0].idr || frames[0].sps == nil {
			t.Fatalf("%s: first frame is not an IDR with SPS", name)
		}
		w, h, err := spsSize(frames[0].sps)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if w != wantSize[i][0] || h != wantSize[i][1] {
			t.Errorf("%s: SPS says %dx%d, want %v", name, w, h, wantSize[i])
		}
		checkMonotonic(t, name, frames)
		if frames[0].pts != base {
			t.Errorf("%s: first PTS %d, want the first input PTS %d", name, frames[0].pts, base)
		}
		if i != 1 { // the uncapped renditions keep the input's timestamps exactly
			for _, fr := range frames {
				if !f.videoPTS[fr.pts] {
					t.Fatalf("%s: output PTS %d is no input PTS", name, fr.pts)
				}
			}
		}
		for _, fr := range frames {
			if fr.idr && fr.sps == nil {
				t.Errorf("%s: IDR at %d without in-band SPS", name, fr.pts)
			}
		}
		idrs = append(idrs, idrPTS(frames))
		if n := rec.audioCount(i); n < f.audio*9/10 {
			t.Errorf("%s: %d audio frames, fed %d", name, n, f.audio)
		}
	}
	// Keyframes aligned: every rendition has its IDRs at the same PTS, one per
	// second (the source GOP). The renditions may differ by the last GOP.
	common := min(len(idrs[0]), len(idrs[1]), len(idrs[2]))
	if common < 7 {
		t.Fatalf("only %d IDRs in common in 8 s: %v", common, idrs)
	}
	for i := range idrs {
		if !slices.Equal(idrs[i][:common], idrs[0][:common]) {
			t.Fatalf("IDRs not aligned:\n%s: %v\n%s: %v", ladder.Renditions[0].Name, idrs[0],
				ladder.Renditions[i].Name, idrs[i])
		}
	}
	for k := 1; k < common; k++ {
		if gap := idrs[0][k] - idrs[0][k-1]; gap != 90000 {
			t.Errorf("IDR spacing %d ticks between %d and %d, want 90000", gap, idrs[0][k-1], idrs[0][k])
		}
	}
	st := tr.Stats()
	if st.Dropped != 0 || st.Restarts != 0 || !st.Running {
		t.Errorf("stats after phase 1: %+v", st)
	}

	// Phase 2: kill ffmpeg; the transcoder restarts it and calls OnRestart.
	pid := tr.pid()
	if pid == 0 {
		t.Fatal("no ffmpeg running")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "OnRestart", func() bool { return rec.restartCount() == 1 })
	if tr.pid() == pid || tr.pid() == 0 {
		t.Fatalf("ffmpeg pid %d after restart (was %d)", tr.pid(), pid)
	}
	rec.mu.Lock()
	attempt, restartErr := rec.attempts[0], rec.restarts[0]
	rec.mu.Unlock()
	if attempt != 1 || restartErr == nil || errors.Is(restartErr, ErrDiscontinuity) {
		t.Errorf("OnRestart(%d, %v), want attempt 1 and ffmpeg's exit", attempt, restartErr)
	}
	// The third loop goes in real time, to see the latency of the pipeline.
	before := rec.counts()
	rec.mu.Lock()
	rec.arrivals = make(map[int64]time.Time)
	rec.mu.Unlock()
	feedStart := time.Now()
	f.feed(t, 1, true)
	testkit.WaitFor(t, 20*time.Second, "frames after the restart", func() bool {
		c := rec.counts()
		return c[0] >= before[0]+clip.FPS*3 && c[2] >= before[2]+clip.FPS*3 && c[1] >= before[1]+15*3
	})
	var resumed []int64
	for i := range ladder.Renditions {
		frames := rec.frames(i)[before[i]:]
		if !frames[0].idr {
			t.Errorf("%s: first frame after the restart is not an IDR", ladder.Renditions[i].Name)
		}
		if frames[0].pts <= rec.frames(i)[before[i]-1].pts {
			t.Errorf("%s: timestamps went back across the restart", ladder.Renditions[i].Name)
		}
		resumed = append(resumed, frames[0].pts)
	}
	if resumed[0] != resumed[1] || resumed[0] != resumed[2] {
		t.Errorf("renditions resumed at different PTS: %v", resumed)
	}
	// Latency: when a frame came out of rendition 0 versus when its input
	// was due on the real-time schedule.
	rec.mu.Lock()
	loopStart := base + ticks(time.Duration(f.loops-1)*clip.Duration)
	var first, worst time.Duration
	var sum time.Duration
	for pts, at := range rec.arrivals {
		due := feedStart.Add(time.Duration(pts-loopStart) * time.Second / 90000)
		lat := at.Sub(due)
		sum += lat
		worst = max(worst, lat)
		if pts == resumed[0] {
			first = lat
		}
	}
	n := len(rec.arrivals)
	rec.mu.Unlock()
	t.Logf("real-time feed after the restart: first frame %v after its input, mean latency %v, worst %v over %d frames",
		first.Round(time.Millisecond), (sum / time.Duration(max(n, 1))).Round(time.Millisecond), worst.Round(time.Millisecond), n)
	if got := testkit.MetricSum(t, reg, "streamgrid_transcode_restarts_total", map[string]string{"stream": "live/cam1"}); got != 1 {
		t.Errorf("restarts metric %v, want 1", got)
	}
	if got := testkit.MetricSum(t, reg, "streamgrid_transcode_output_frames_total", map[string]string{"stream": "live/cam1", "rendition": "144p"}); got < float64(before[2]) {
		t.Errorf("frames metric %v, want at least %d", got, before[2])
	}

	tr.Close()
	tr.Close()
	if tr.pid() != 0 {
		t.Error("ffmpeg still registered after Close")
	}
	if err := tr.WriteVideo(0, 0, clip.Video[0].NALUs, true); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteVideo after Close: %v, want ErrClosed", err)
	}
	if n := seriesCount(t, reg, "streamgrid_transcode_output_frames_total"); n != 0 {
		t.Errorf("%d frame series left after Close", n)
	}
}
