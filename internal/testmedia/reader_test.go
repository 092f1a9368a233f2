package testmedia

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	hlscodecs "github.com/bluenviron/gohlslib/v2/pkg/codecs"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// feedMuxer writes the clip into the muxer the way a live origin would: the
// first passes at once (so the playlist already holds segments when the reader
// starts), then in real time, looping with continuous timestamps, until ctx
// ends. Every access unit is stamped with its write time. live is closed when
// the backlog is written.
func feedMuxer(ctx context.Context, t *testing.T, m *gohlslib.Muxer, vt, at *gohlslib.Track, clip *Clip,
	backlog int, live chan<- struct{},
) {
	defer func() {
		if live != nil {
			close(live)
		}
	}()
	sched := (&Camera{Clip: clip}).schedule(true)
	start := time.Now().Add(-time.Duration(backlog) * clip.Duration)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for loop := 0; ; loop++ {
		offset := time.Duration(loop) * clip.Duration
		for _, s := range sched {
			due := start.Add(offset + s.at)
			if d := time.Until(due); d > 0 {
				if live != nil {
					close(live)
					live = nil
				}
				timer.Reset(d)
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
			}
			var err error
			if s.video != nil {
				au := WithSEITimestamp(s.video.NALUs, time.Now())
				err = m.WriteH264(vt, due, durationToTicks(s.video.PTS+offset, 90000), au)
			} else {
				err = m.WriteMPEG4Audio(at, due, durationToTicks(s.audio.PTS+offset, int64(at.ClockRate)), [][]byte{s.audio.Data})
			}
			if err != nil {
				t.Errorf("muxer write: %v", err)
				return
			}
		}
	}
}

func TestReaderPlaysMuxer(t *testing.T) {
	t.Parallel()
	clip := mustLoad(t)
	for _, tc := range []struct {
		name    string
		variant gohlslib.MuxerVariant
		gaps    int
		slow    bool // skipped under -short: low latency covers the reader there
	}{
		// gohlslib's LL-HLS client always jumps to the newest preload hint: when
		// it falls more than a part (200 ms) behind, as under -race on a busy
		// machine, it skips the parts in between.
		{"low latency", gohlslib.MuxerVariantLowLatency, 3, false},
		{"fmp4", gohlslib.MuxerVariantFMP4, 0, true},
		{"mpegts", gohlslib.MuxerVariantMPEGTS, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.slow {
				testkit.Slow(t)
			}
			t.Parallel()
			vt := &gohlslib.Track{Codec: &hlscodecs.H264{SPS: clip.SPS, PPS: clip.PPS}, ClockRate: 90000}
			at := &gohlslib.Track{
				Codec:     &hlscodecs.MPEG4Audio{Config: *clip.AudioConfig},
				ClockRate: clip.AudioConfig.SampleRate,
			}
			m := &gohlslib.Muxer{
				Tracks:             []*gohlslib.Track{vt, at},
				Variant:            tc.variant,
				SegmentCount:       7,
				SegmentMinDuration: time.Second,
				OnEncodeError:      func(err error) { t.Errorf("muxer: %v", err) },
			}
			if err := m.Start(); err != nil {
				t.Fatal(err)
			}
			// 404 until the backlog is in the muxer: a live LL-HLS client follows
			// preload hints only, so it would skip the parts written while it
			// starts. The reader retries meanwhile.
			var open atomic.Bool
			var refused atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if !open.Load() {
					refused.Add(1)
					http.NotFound(w, req)
					return
				}
				m.Handle(w, req)
			}))
			transport := &http.Transport{}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			var wg sync.WaitGroup
			defer func() {
				cancel()
				wg.Wait()
				m.Close() // releases blocked LL-HLS requests before the server waits for them
				srv.Close()
				transport.CloseIdleConnections()
			}()

			live := make(chan struct{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				feedMuxer(ctx, t, m, vt, at, clip, 2, live)
			}()

			chk := &Check{RequireSEI: true, MaxGaps: tc.gaps}
			r := &Reader{
				URL:        srv.URL + "/index.m3u8",
				HTTPClient: &http.Client{Transport: transport},
				OnVideo:    chk.Video,
				OnAudio:    chk.Audio,
				// the reader may ask before the muxer holds 3 segments
				RetryInterval: 100 * time.Millisecond,
			}
			runCtx, stopRun := context.WithCancel(ctx)
			runErr := make(chan error, 1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				runErr <- r.Run(runCtx)
			}()

			select {
			case <-live:
			case <-ctx.Done():
				t.Fatal("muxer backlog not written")
			}
			for refused.Load() < 2 { // the reader failed and retried
				if ctx.Err() != nil {
					t.Fatal("reader did not retry")
				}
				time.Sleep(10 * time.Millisecond)
			}
			open.Store(true)

			waitCtx, stopWait := context.WithCancel(ctx)
			go func() {
				select {
				case err := <-runErr:
					runErr <- err // Run ended early: stop waiting, report below
					stopWait()
				case <-waitCtx.Done():
				}
			}()
			waitErr := chk.WaitFrames(waitCtx, 40)
			stopWait()
			stopRun()
			if err := <-runErr; err != nil {
				t.Fatalf("Run: %v", err)
			}
			if waitErr != nil {
				t.Fatal(waitErr)
			}

			s := chk.Summary()
			if err := s.Err(); err != nil {
				t.Fatalf("check: %v\n%+v", err, s)
			}
			if s.Keyframes < 1 || s.Audio < 40 || s.Stamped != s.Frames {
				t.Errorf("summary %+v", s)
			}
			if s.LatencyMin <= 0 || s.LatencyMax < s.LatencyMin || s.FirstFrame.IsZero() {
				t.Errorf("latency %v..%v, first frame %v", s.LatencyMin, s.LatencyMax, s.FirstFrame)
			}
			t.Logf("%d frames, latency %v/%v/%v", s.Frames, s.LatencyMin, s.LatencyAvg, s.LatencyMax)
		})
	}
}

func TestReaderErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := &Reader{URL: srv.URL + "/live/none/index.m3u8", HTTPClient: &http.Client{Transport: transport}}
	if err := r.Run(ctx); err == nil {
		t.Fatal("Run succeeded on a missing playlist")
	}

	// ending the context is a clean stop
	stopped, stop := context.WithCancel(context.Background())
	stop()
	r = &Reader{URL: srv.URL + "/index.m3u8", HTTPClient: &http.Client{Transport: transport}}
	if err := r.Run(stopped); err != nil {
		t.Fatalf("Run with an ended context: %v", err)
	}
}
