package transcode

import (
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// fakeFFmpeg writes an executable shell script standing in for ffmpeg.
func fakeFFmpeg(t *testing.T, script string) string {
	t.Helper()
	return testkit.WriteTempFile(t, "ffmpeg", []byte("#!/bin/sh\n"+script+"\n"), 0o755)
}

var oneRendition = Ladder{Renditions: []Rendition{{Name: "low", Width: 256, Height: 144, Bitrate: 100_000}}}

var (
	idrAU    = [][]byte{{0x67, 0x4d, 0x00, 0x1e}, {0x68, 0xee}, {0x65, 0x88, 0x84}}
	sliceAU  = [][]byte{{0x41, 0x9a, 0x02}}
	aacFrame = [][]byte{{0x21, 0x10, 0x04}}
)

func TestEnqueueDrops(t *testing.T) {
	tr := &Transcoder{
		Source: SourceInfo{AudioCodec: media.CodecAAC, AudioConfig: testAAC},
		queue:  media.NewQueue[*packet](2),
		now:    time.Now,
	}
	write := func(au [][]byte) {
		t.Helper()
		if err := tr.WriteVideo(0, 0, au, media.IsRandomAccess(media.CodecH264, au)); err != nil {
			t.Fatal(err)
		}
	}
	write(idrAU)
	write(sliceAU)
	write(sliceAU) // queue full: dropped, wait for a keyframe
	if err := tr.WriteAudio(0, aacFrame); err != nil {
		t.Fatal(err)
	}
	if got := tr.Stats(); got.Dropped != 2 || got.VideoIn != 2 || got.AudioIn != 0 {
		t.Fatalf("after overflow: %+v", got)
	}
	tr.queue.Pop()
	tr.queue.Pop()
	write(sliceAU)                                     // room again, but not a keyframe
	if err := tr.WriteAudio(0, aacFrame); err != nil { // audio does not wait
		t.Fatal(err)
	}
	if got := tr.Stats(); got.Dropped != 3 || got.AudioIn != 1 || tr.queue.Len() != 1 {
		t.Fatalf("while waiting for a keyframe: %+v, queued %d", got, tr.queue.Len())
	}
	write(idrAU)
	write(sliceAU) // the queue is full again (audio + IDR)
	tr.queue.Pop()
	tr.queue.Pop()
	write(sliceAU)
	if got := tr.Stats(); got.VideoIn != 3 || got.Dropped != 5 {
		t.Fatalf("after the keyframe: %+v", got)
	}

	// The input is copied: the caller may reuse its buffers.
	au := [][]byte{{0x65, 1, 2, 3}}
	write(au)
	au[0][1] = 9
	if p, _ := tr.queue.Pop(); p.data[0][1] != 1 || !p.key {
		t.Errorf("queued packet %+v shares the caller's buffer or lost its keyframe flag", p)
	}

	if err := tr.WriteVideo(0, 0, nil, false); err == nil {
		t.Error("empty access unit accepted")
	}
	noAudio := &Transcoder{queue: media.NewQueue[*packet](1), now: time.Now}
	if err := noAudio.WriteAudio(0, aacFrame); !errors.Is(err, ErrNoAudio) {
		t.Errorf("audio without an audio source: %v", err)
	}
	var unstarted Transcoder
	if err := unstarted.WriteVideo(0, 0, idrAU, true); !errors.Is(err, ErrClosed) {
		t.Errorf("write before Start: %v", err)
	}
	unstarted.Close() // harmless
}

func TestStartErrors(t *testing.T) {
	clip := sampleClip(t)
	good := func() *Transcoder {
		return &Transcoder{FFmpeg: fakeFFmpeg(t, "exec sleep 30"), Ladder: oneRendition, Encoder: EncoderX264,
			Source: clipSource(clip), OnVideo: func(int, int64, int64, [][]byte) {}}
	}
	tests := []struct {
		name string
		mod  func(*Transcoder)
		want string
	}{
		{"bad ladder", func(tr *Transcoder) { tr.Ladder.Renditions[0].Width = 3 }, "renditions[0].width"},
		{"passthrough only", func(tr *Transcoder) { tr.Ladder = Ladder{Passthrough: true} }, "no rendition"},
		{"unresolved encoder", func(tr *Transcoder) { tr.Encoder = EncoderAuto }, "Choose"},
		{"bad source", func(tr *Transcoder) { tr.Source.AudioConfig = nil }, "AudioConfig"},
		{"no OnVideo", func(tr *Transcoder) { tr.OnVideo = nil }, "OnVideo"},
		{"missing ffmpeg", func(tr *Transcoder) { tr.FFmpeg = filepath.Join(t.TempDir(), "none") }, "start ffmpeg"},
	}
	for _, tc := range tests {
		tr := good()
		tr.Ladder.Renditions = append([]Rendition(nil), tr.Ladder.Renditions...)
		tc.mod(tr)
		err := tr.Start()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Start() = %v, want an error about %q", tc.name, err, tc.want)
		}
		tr.Close()
	}
	tr := good()
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(); err == nil {
		t.Error("second Start accepted")
	}
	tr.Close()
}

// startFakeTranscoder starts a one-rendition Transcoder whose "ffmpeg" is the
// shell script, reporting to rec; tune sets what the test is about first.
// The caller closes it.
func startFakeTranscoder(t *testing.T, script string, rec *recorder, tune func(*Transcoder)) *Transcoder {
	t.Helper()
	tr := &Transcoder{
		FFmpeg:    fakeFFmpeg(t, script),
		Ladder:    oneRendition,
		Encoder:   EncoderX264,
		Source:    SourceInfo{},
		OnVideo:   rec.onVideo,
		OnRestart: rec.onRestart,
		Log:       testkit.Logger(t),
	}
	tune(tr)
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestRestartBackoff runs an "ffmpeg" that dies at once: the transcoder keeps
// restarting it with a growing backoff, reports each attempt, and Close
// interrupts the backoff.
func TestRestartBackoff(t *testing.T) {
	defer goleak.VerifyNone(t)
	rec := newRecorder(1)
	tr := startFakeTranscoder(t, "echo 'boom: no such codec' >&2; exit 1", rec, func(tr *Transcoder) {
		tr.BackoffMin = 20 * time.Millisecond
		tr.BackoffMax = 80 * time.Millisecond
	})
	testkit.WaitFor(t, 10*time.Second, "five restarts", func() bool { return rec.restartCount() >= 5 })
	tr.Close()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i, a := range rec.attempts[:5] {
		if a != i+1 {
			t.Errorf("attempts %v, want 1, 2, 3, ...", rec.attempts)
			break
		}
	}
	for _, err := range rec.restarts {
		if !strings.Contains(err.Error(), "exit status 1") || !strings.Contains(err.Error(), "boom: no such codec") {
			t.Errorf("restart error %q lacks the exit status or ffmpeg's last words", err)
		}
	}
	if got := tr.backoff(1); got != 20*time.Millisecond {
		t.Errorf("backoff(1) = %v", got)
	}
	if got := tr.backoff(3); got != 80*time.Millisecond {
		t.Errorf("backoff(3) = %v", got)
	}
	if got := tr.backoff(30); got != 80*time.Millisecond {
		t.Errorf("backoff(30) = %v", got)
	}
	if s := tr.Stats(); s.Running || s.Restarts < 5 {
		t.Errorf("stats after Close: %+v", s)
	}
}

// TestStall runs an "ffmpeg" that never reads its input nor writes output:
// the queue overflows (drops counted) and the watchdog restarts it.
func TestStall(t *testing.T) {
	defer goleak.VerifyNone(t)
	rec := newRecorder(1)
	tr := startFakeTranscoder(t, "exec sleep 30", rec, func(tr *Transcoder) {
		tr.QueueSize = 8
		tr.StallTimeout = 300 * time.Millisecond
		tr.BackoffMin = 10 * time.Millisecond
	})
	defer tr.Close()
	big := [][]byte{append([]byte{0x65}, make([]byte, 16<<10)...)} // 16 KiB keyframes fill the pipe
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := int64(0); !stop.Load() && i < 1000; i++ {
			_ = tr.WriteVideo(i*3600, i*3600, big, true)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	testkit.WaitFor(t, 10*time.Second, "a stall restart", func() bool { return rec.restartCount() >= 1 })
	stop.Store(true)
	<-done
	rec.mu.Lock()
	err, attempt := rec.restarts[0], rec.attempts[0]
	rec.mu.Unlock()
	if !errors.Is(err, ErrStalled) || attempt != 1 {
		t.Errorf("OnRestart(%d, %v), want attempt 1 and ErrStalled", attempt, err)
	}
	if s := tr.Stats(); s.Dropped == 0 {
		t.Errorf("no drops counted with a blocked ffmpeg: %+v", s)
	}
}
