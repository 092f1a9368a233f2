package testmedia

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	hlscodecs "github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
)

// Reader plays an HLS stream (MPEG-TS, fMP4 or Low-Latency HLS) the way a
// player does, with gohlslib's client, and hands every decoded frame to its
// callbacks. Like a player, the client releases frames at their presentation
// pace, so a receive time minus an SEI send time is the latency a viewer sees.
//
// On Low-Latency HLS the client follows the newest EXT-X-PRELOAD-HINT: a reader
// that falls more than one part behind (a starved CPU) skips the parts in
// between, which a Check reports as a gap. Traditional HLS is read segment by
// segment and has no such skips.
type Reader struct {
	// URL of the multivariant or media playlist, e.g. http://host:8888/live/cam1/index.m3u8.
	URL string
	// HTTPClient used for every request. It defaults to a client with a cookie
	// jar and no timeout (playlist requests of LL-HLS block by design).
	HTTPClient *http.Client
	// OnVideo is called for every H264 or H265 access unit of the first video
	// track, in decode order. pts is relative to the start of playback.
	OnVideo func(pts time.Duration, nalus [][]byte, recv time.Time)
	// OnAudio is called for every frame (AAC access unit or Opus packet) of the
	// first audio track.
	OnAudio func(pts time.Duration, recv time.Time)
	// RetryInterval, when positive, makes Run start over after a failure that
	// happens before the first frame arrived (playlist not there yet, fewer
	// segments than the client's start distance of 3): a viewer started together
	// with its camera waits for the stream instead of failing. Failures after the
	// first frame are returned. 0 (the default) returns every failure.
	RetryInterval time.Duration
	// Log receives decode errors, downloads and retries at Debug level. It
	// defaults to discarding.
	Log *slog.Logger
}

// Run plays the stream until ctx ends (it then returns nil) or the client fails
// (a missing playlist, an unsupported codec, a stalled stream...; see
// RetryInterval). Callbacks are called from Run's goroutines and are done when
// Run returns.
func (r *Reader) Run(ctx context.Context) error {
	if _, err := url.Parse(r.URL); err != nil {
		return fmt.Errorf("parse HLS URL: %w", err)
	}
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var gotFrame atomic.Bool
	for {
		err := r.runOnce(ctx, log, &gotFrame)
		if err == nil || r.RetryInterval <= 0 || gotFrame.Load() {
			return err
		}
		log.Debug("HLS reader retrying", "url", r.URL, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.RetryInterval):
		}
	}
}

func (r *Reader) runOnce(ctx context.Context, log *slog.Logger, gotFrame *atomic.Bool) error {
	client := &gohlslib.Client{
		URI:        r.URL,
		HTTPClient: r.HTTPClient,
		OnDownloadPrimaryPlaylist: func(u string) {
			log.Debug("HLS download primary playlist", "url", u)
		},
		OnDownloadStreamPlaylist: func(u string) {
			log.Debug("HLS download stream playlist", "url", u)
		},
		OnDownloadSegment: func(u string) {
			log.Debug("HLS download segment", "url", u)
		},
		OnDownloadPart: func(u string) {
			log.Debug("HLS download part", "url", u)
		},
		OnDecodeError: func(err error) {
			log.Debug("HLS decode error", "err", err)
		},
	}
	client.OnTracks = func(tracks []*gohlslib.Track) error {
		return r.setupTracks(client, tracks, gotFrame)
	}

	if err := client.Start(); err != nil {
		return fmt.Errorf("start HLS client: %w", err)
	}
	errCh := make(chan error, 1)
	go func() { errCh <- client.Wait2() }()

	select {
	case <-ctx.Done():
		client.Close()
		<-errCh
		return nil
	case err := <-errCh:
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("HLS client %s: %w", r.URL, err)
	}
}

func (r *Reader) setupTracks(client *gohlslib.Client, tracks []*gohlslib.Track, gotFrame *atomic.Bool) error {
	var haveVideo, haveAudio bool
	for _, track := range tracks {
		clockRate := int64(track.ClockRate)
		if clockRate <= 0 {
			continue
		}
		switch track.Codec.(type) {
		case *hlscodecs.H264, *hlscodecs.H265:
			if haveVideo {
				continue
			}
			haveVideo = true
			client.OnDataH26x(track, func(pts, _ int64, au [][]byte) {
				gotFrame.Store(true)
				if r.OnVideo != nil {
					r.OnVideo(ticksToDuration(pts, clockRate), au, time.Now())
				}
			})

		case *hlscodecs.MPEG4Audio, *hlscodecs.Opus:
			if haveAudio {
				continue
			}
			haveAudio = true
			r.readAudio(client, track, clockRate, gotFrame)
		}
	}
	if !haveVideo && !haveAudio {
		return errors.New("no H264, H265, AAC or Opus track in the stream")
	}
	return nil
}

// readAudio hands OnAudio the frames of an AAC or Opus track, one call per
// frame.
func (r *Reader) readAudio(client *gohlslib.Client, track *gohlslib.Track, clockRate int64, gotFrame *atomic.Bool) {
	// frames reports n frames, the first at pts ticks, each following the
	// one before by duration(i) ticks.
	frames := func(pts int64, n int, duration func(i int) int64) {
		gotFrame.Store(true)
		if r.OnAudio == nil {
			return
		}
		now := time.Now()
		for i := range n {
			r.OnAudio(ticksToDuration(pts, clockRate), now)
			pts += duration(i)
		}
	}
	if _, ok := track.Codec.(*hlscodecs.Opus); ok {
		client.OnDataOpus(track, func(pts int64, packets [][]byte) {
			// in 1/48000 s, Opus' clock rate
			frames(pts, len(packets), func(i int) int64 { return opus.PacketDuration2(packets[i]) })
		})
		return
	}
	client.OnDataMPEG4Audio(track, func(pts int64, aus [][]byte) {
		frames(pts, len(aus), func(int) int64 { return mpeg4audio.SamplesPerAccessUnit })
	})
}
