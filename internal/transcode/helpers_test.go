package transcode

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/internal/testmedia"
)

// ffmpegTest marks a test that runs ffmpeg: slow (skipped under -short),
// skipped without ffmpeg (failed under CI=true), and checked for leaked
// goroutines after its cleanups. It returns ffmpeg's path.
func ffmpegTest(t *testing.T) string {
	t.Helper()
	testkit.Slow(t)
	ffmpeg := testkit.RequireFFmpeg(t)
	t.Cleanup(func() { goleak.VerifyNone(t) })
	return ffmpeg
}

// startX264 starts a transcoder of src to the one-rendition x264 ladder,
// reporting to rec. It is closed at cleanup.
func startX264(t *testing.T, ffmpeg string, src SourceInfo, rec *recorder) *Transcoder {
	t.Helper()
	tr := &Transcoder{FFmpeg: ffmpeg, Ladder: oneRendition, Encoder: EncoderX264, Source: src,
		OnVideo: rec.onVideo, OnAudio: rec.onAudio, OnRestart: rec.onRestart, Log: testkit.Logger(t)}
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

// sampleClip is testmedia's sample clip.
func sampleClip(t testing.TB) *testmedia.Clip {
	t.Helper()
	clip, err := testmedia.Load()
	if err != nil {
		t.Fatal(err)
	}
	return clip
}

// clipSource describes the sample clip as a transcoder source.
func clipSource(clip *testmedia.Clip) SourceInfo {
	src := SourceInfo{
		Codec:       media.CodecH264,
		Width:       clip.Width,
		Height:      clip.Height,
		FPS:         clip.FPS,
		GOPFrames:   clip.FPS, // 1 s GOP
		AudioCodec:  media.CodecAAC,
		AudioConfig: clip.AudioConfig,
	}
	return src
}

func ticks(d time.Duration) int64 { return int64(d) * 90000 / int64(time.Second) }

// feeder pushes loops of a clip into a transcoder on one continuous timeline
// starting at base (90 kHz), as fast as the transcoder's queue drains.
type feeder struct {
	tr      *Transcoder
	clip    *testmedia.Clip
	base    int64
	loops   int  // loops fed so far
	noAudio bool // feed video only

	videoPTS map[int64]bool
	video    int
	audio    int
}

// feed pushes n more loops. With realtime it paces packets on the wall clock.
func (f *feeder) feed(t testing.TB, n int, realtime bool) {
	t.Helper()
	if f.videoPTS == nil {
		f.videoPTS = make(map[int64]bool)
	}
	type item struct {
		at    time.Duration
		frame testmedia.Frame
		audio bool
	}
	start := time.Now()
	for l := 0; l < n; l++ {
		offset := time.Duration(f.loops) * f.clip.Duration
		var items []item
		for _, v := range f.clip.Video {
			items = append(items, item{at: v.DTS + offset, frame: v})
		}
		for _, a := range f.clip.Audio {
			if !f.noAudio {
				items = append(items, item{at: a.PTS + offset, frame: a, audio: true})
			}
		}
		sort.SliceStable(items, func(i, j int) bool { return items[i].at < items[j].at })
		for _, it := range items {
			if realtime {
				if d := time.Duration(l)*f.clip.Duration + it.at - offset - time.Since(start); d > 0 {
					time.Sleep(d)
				}
			} else {
				testkit.WaitFor(t, 10*time.Second, "the transcoder queue to drain", func() bool {
					return f.tr.queued() < f.tr.QueueSize/2
				})
			}
			var err error
			if it.audio {
				err = f.tr.WriteAudio(f.base+ticks(it.frame.PTS+offset), [][]byte{it.frame.Data})
				f.audio++
			} else {
				pts := f.base + ticks(it.frame.PTS+offset)
				au := it.frame.NALUs
				err = f.tr.WriteVideo(pts, f.base+ticks(it.frame.DTS+offset), au, media.IsRandomAccess(f.tr.Source.videoCodec(), au))
				f.videoPTS[pts] = true
				f.video++
			}
			if err != nil {
				t.Fatalf("write: %v", err)
			}
		}
		f.loops++
	}
}

// outFrame is one video access unit received from a rendition.
type outFrame struct {
	pts, dts int64
	idr      bool
	sps      []byte
}

// recorder collects what a transcoder outputs.
type recorder struct {
	h265 bool

	mu       sync.Mutex
	video    [][]outFrame
	audio    [][]int64
	restarts []error
	attempts []int
	arrivals map[int64]time.Time // rendition 0's frames by PTS, when set
}

func newRecorder(n int) *recorder {
	return &recorder{video: make([][]outFrame, n), audio: make([][]int64, n)}
}

func (r *recorder) onVideo(i int, pts, dts int64, au [][]byte) {
	f := outFrame{pts: pts, dts: dts}
	for _, nalu := range au {
		if r.h265 {
			typ := h265.NALUType((nalu[0] >> 1) & 0x3f)
			if typ == h265.NALUType_SPS_NUT {
				f.sps = nalu
			}
		} else if h264.NALUType(nalu[0]&0x1f) == h264.NALUTypeSPS {
			f.sps = nalu
		}
	}
	if r.h265 {
		f.idr = h265.IsRandomAccess(au)
	} else {
		f.idr = h264.IsRandomAccess(au)
	}
	r.mu.Lock()
	r.video[i] = append(r.video[i], f)
	if i == 0 && r.arrivals != nil {
		r.arrivals[pts] = time.Now()
	}
	r.mu.Unlock()
}

func (r *recorder) onAudio(i int, pts int64, aus [][]byte) {
	r.mu.Lock()
	for range aus {
		r.audio[i] = append(r.audio[i], pts)
	}
	r.mu.Unlock()
}

func (r *recorder) onRestart(attempt int, err error) {
	r.mu.Lock()
	r.restarts = append(r.restarts, err)
	r.attempts = append(r.attempts, attempt)
	r.mu.Unlock()
}

// frames returns a copy of rendition i's video frames.
func (r *recorder) frames(i int) []outFrame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]outFrame(nil), r.video[i]...)
}

func (r *recorder) audioCount(i int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.audio[i])
}

func (r *recorder) restartCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.restarts)
}

// counts returns the number of video frames per rendition.
func (r *recorder) counts() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]int, len(r.video))
	for i := range r.video {
		out[i] = len(r.video[i])
	}
	return out
}

// idrPTS lists the PTS of rendition i's IDR frames from index from on.
func idrPTS(frames []outFrame) []int64 {
	var out []int64
	for _, f := range frames {
		if f.idr {
			out = append(out, f.pts)
		}
	}
	return out
}

// checkMonotonic fails when DTS does not strictly increase.
func checkMonotonic(t testing.TB, name string, frames []outFrame) {
	t.Helper()
	for i := 1; i < len(frames); i++ {
		if frames[i].dts <= frames[i-1].dts {
			t.Fatalf("%s: frame %d DTS %d not after %d", name, i, frames[i].dts, frames[i-1].dts)
		}
		if frames[i].pts < frames[i].dts {
			t.Fatalf("%s: frame %d PTS %d before DTS %d", name, i, frames[i].pts, frames[i].dts)
		}
	}
}

// spsSize parses a H264 SPS.
func spsSize(sps []byte) (int, int, error) {
	var s h264.SPS
	if err := s.Unmarshal(sps); err != nil {
		return 0, 0, fmt.Errorf("parse SPS: %w", err)
	}
	return s.Width(), s.Height(), nil
}

// seriesCount returns the number of series of family name.
func seriesCount(t testing.TB, reg *prometheus.Registry, name string) int {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range fams {
		if fam.GetName() == name {
			return len(fam.GetMetric())
		}
	}
	return 0
}
