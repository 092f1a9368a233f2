// Package testmedia holds the media that streamgrid's integration tests and load
// generator push through the cluster: an embedded 4 s sample clip (H264 + AAC,
// see gen.sh), synthetic cameras that publish it in real time over RTSP or RTMP
// (Camera), an HLS reader that plays a stream back (Reader) and a checker that
// verifies what came back (Check).
//
// Glass-to-glass latency is measured with an H264 SEI user_data_unregistered
// message that a Camera stamps in front of every access unit (Camera.StampSEI,
// MarshalSEITimestamp) and a reader recovers (ParseSEITimestamp, AUTimestamp).
package testmedia

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
)

//go:embed sample.ts
var sampleTS []byte

// mpegtsClockRate is the clock rate of MPEG-TS timestamps.
const mpegtsClockRate = 90000

// Clip is a short H264 (+ AAC) recording held in memory, ready to be paced out
// by a Camera or fed to a muxer. All timestamps start at 0 (the first video
// frame's DTS). A Clip is read-only once built: it may be shared by any number
// of cameras.
type Clip struct {
	// Video holds the H264 access units in decode order: NAL units without start
	// codes and without access unit delimiters. IDR access units carry SPS and PPS
	// in band.
	Video []Frame
	// Audio holds raw AAC frames (one AAC access unit each) in presentation order,
	// all with 0 <= PTS < Duration. Empty when the clip has no audio.
	Audio []Frame
	// SPS and PPS are the H264 parameter sets (also found in front of every IDR).
	SPS, PPS []byte
	// AudioConfig describes the AAC track; nil when the clip has no audio.
	AudioConfig *mpeg4audio.AudioSpecificConfig
	// Width, Height and FPS come from the SPS (FPS from the frame spacing when the
	// SPS carries no timing information).
	Width, Height, FPS int
	// Duration is the length of one pass of the clip: the number of video frames
	// times the frame interval. A looping camera adds n*Duration to the
	// timestamps of the n-th pass, so the timeline stays continuous.
	Duration time.Duration
}

// Frame is one video access unit or one audio frame of a Clip.
type Frame struct {
	// PTS and DTS relative to the start of the clip. For audio DTS == PTS.
	PTS, DTS time.Duration
	// Keyframe is true for IDR access units (and for every audio frame).
	Keyframe bool
	// NALUs is the video access unit (nil for audio).
	NALUs [][]byte
	// Data is the raw AAC frame (nil for video).
	Data []byte
}

// FrameInterval returns the time between two video frames.
func (c *Clip) FrameInterval() time.Duration {
	if len(c.Video) == 0 {
		return 0
	}
	return c.Duration / time.Duration(len(c.Video))
}

// Head returns a clip made of the first n GOPs of c (all of c when it has fewer),
// sharing c's frame data. Tests use it to loop a 1 s clip instead of the full
// sample.
func (c *Clip) Head(n int) *Clip {
	end := len(c.Video)
	gops := 0
	for i, f := range c.Video {
		if f.Keyframe {
			if gops == n {
				end = i
				break
			}
			gops++
		}
	}
	if end == len(c.Video) {
		return c
	}

	out := *c
	out.Video = c.Video[:end:end]
	out.Duration = c.FrameInterval() * time.Duration(end)
	out.Audio = nil
	for _, f := range c.Audio {
		if f.PTS < out.Duration {
			out.Audio = append(out.Audio, f)
		}
	}
	return &out
}

var loadSample = sync.OnceValues(func() (*Clip, error) {
	return ParseClip(bytes.NewReader(sampleTS))
})

// sourceDefaults fills in what a Camera and a CameraServer default alike:
// a logger that discards, and the sample clip when clip is nil (checked
// for video either way).
func sourceDefaults(log **slog.Logger, clip **Clip) error {
	if *log == nil {
		*log = slog.New(slog.DiscardHandler)
	}
	c, err := clipOrSample(*clip)
	if err != nil {
		return err
	}
	*clip = c
	return nil
}

// clipOrSample returns clip, or the sample clip (Load) when clip is nil, and
// checks that it has video.
func clipOrSample(clip *Clip) (*Clip, error) {
	if clip == nil {
		var err error
		if clip, err = Load(); err != nil {
			return nil, fmt.Errorf("load sample clip: %w", err)
		}
	}
	if len(clip.Video) == 0 || clip.Duration <= 0 {
		return nil, errors.New("clip has no video")
	}
	return clip, nil
}

// Load returns the embedded sample clip (sample.ts: 640x360 H264 at 25 fps with
// a 1 s GOP, AAC-LC 44.1 kHz stereo, 4 s). It is parsed on the first call and
// the same read-only *Clip is returned to every caller.
func Load() (*Clip, error) {
	return loadSample()
}

// ParseClip reads an MPEG-TS stream holding one H264 track and optionally one
// AAC track. The H264 track must have no B-frames (PTS == DTS order), start
// with an IDR and carry SPS/PPS in band. Audio outside the video's time span is
// dropped so that a looping publisher never sends audio timestamps out of order.
func ParseClip(r io.Reader) (*Clip, error) {
	tr := &mpegts.Reader{R: r}
	if err := tr.Initialize(); err != nil {
		return nil, fmt.Errorf("read MPEG-TS tables: %w", err)
	}
	var decodeErr error
	tr.OnDecodeError(func(err error) {
		if decodeErr == nil {
			decodeErr = err
		}
	})
	// One decoder for all tracks: it unwraps the 33-bit timestamps into a single
	// timeline, so the tracks stay comparable.
	cr := &clipReader{td: &mpegts.TimeDecoder{}}
	cr.td.Initialize()
	if err := cr.attach(tr); err != nil {
		return nil, err
	}
	for {
		err := tr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read MPEG-TS: %w", err)
		}
	}
	if decodeErr != nil {
		return nil, fmt.Errorf("decode MPEG-TS: %w", decodeErr)
	}
	if err := cr.clip.finish(cr.rawVideo, cr.rawAudio); err != nil {
		return nil, err
	}
	return &cr.clip, nil
}

// clipReader collects a clip's frames as the MPEG-TS reader decodes them.
type clipReader struct {
	td       *mpegts.TimeDecoder
	clip     Clip
	rawVideo []Frame // timestamps not yet rebased to the first video DTS
	rawAudio []Frame
}

// attach sets the reader's callbacks for the first H264 track and the first
// AAC track.
func (cr *clipReader) attach(tr *mpegts.Reader) error {
	videoFound := false
	for _, track := range tr.Tracks() {
		switch codec := track.Codec.(type) {
		case *tscodecs.H264:
			if !videoFound {
				videoFound = true
				tr.OnDataH264(track, cr.onH264)
			}
		case *tscodecs.MPEG4Audio:
			if cr.clip.AudioConfig != nil {
				continue
			}
			conf := codec.Config
			cr.clip.AudioConfig = &conf
			if conf.SampleRate <= 0 {
				return fmt.Errorf("invalid AAC sample rate %d", conf.SampleRate)
			}
			tr.OnDataMPEG4Audio(track, func(pts int64, aus [][]byte) error {
				cr.onAAC(conf.SampleRate, pts, aus)
				return nil
			})
		}
	}
	if !videoFound {
		return errors.New("no H264 track")
	}
	return nil
}

// onH264 keeps one access unit without its delimiters, and the first SPS and
// PPS seen.
func (cr *clipReader) onH264(pts, dts int64, au [][]byte) error {
	dtsD := ticksToDuration(cr.td.Decode(dts), mpegtsClockRate)
	ptsD := ticksToDuration(cr.td.Decode(pts), mpegtsClockRate)
	nalus := make([][]byte, 0, len(au))
	for _, nalu := range au {
		if len(nalu) == 0 {
			continue
		}
		switch h264.NALUType(nalu[0] & 0x1f) {
		case h264.NALUTypeAccessUnitDelimiter:
			continue
		case h264.NALUTypeSPS:
			if cr.clip.SPS == nil {
				cr.clip.SPS = slices.Clone(nalu)
			}
		case h264.NALUTypePPS:
			if cr.clip.PPS == nil {
				cr.clip.PPS = slices.Clone(nalu)
			}
		}
		nalus = append(nalus, slices.Clone(nalu))
	}
	if len(nalus) > 0 {
		cr.rawVideo = append(cr.rawVideo, Frame{PTS: ptsD, DTS: dtsD, Keyframe: h264.IsRandomAccess(nalus), NALUs: nalus})
	}
	return nil
}

// onAAC keeps the AAC frames of one PES: several ADTS frames may share it and
// its PTS, each following the one before by a frame's samples.
func (cr *clipReader) onAAC(sampleRate int, pts int64, aus [][]byte) {
	ptsD := ticksToDuration(cr.td.Decode(pts), mpegtsClockRate)
	for i, au := range aus {
		at := ptsD + ticksToDuration(int64(i)*mpeg4audio.SamplesPerAccessUnit, int64(sampleRate))
		cr.rawAudio = append(cr.rawAudio, Frame{PTS: at, DTS: at, Keyframe: true, Data: slices.Clone(au)})
	}
}

// finish rebases the timestamps to the first video DTS, checks the video and
// derives the clip's geometry and duration.
func (c *Clip) finish(rawVideo, rawAudio []Frame) error {
	if len(rawVideo) < 2 {
		return fmt.Errorf("clip has %d video frames, need at least 2", len(rawVideo))
	}
	if !rawVideo[0].Keyframe {
		return errors.New("clip does not start with an IDR")
	}
	if c.SPS == nil || c.PPS == nil {
		return errors.New("clip carries no in-band SPS/PPS")
	}

	base := rawVideo[0].DTS
	for i := range rawVideo {
		f := rawVideo[i]
		f.PTS -= base
		f.DTS -= base
		if i > 0 && f.DTS <= c.Video[i-1].DTS {
			return fmt.Errorf("video frame %d: DTS %v not after %v", i, f.DTS, c.Video[i-1].DTS)
		}
		if f.PTS != f.DTS {
			return fmt.Errorf("video frame %d: PTS %v != DTS %v (B-frames are not supported)", i, f.PTS, f.DTS)
		}
		c.Video = append(c.Video, f)
	}

	last := c.Video[len(c.Video)-1].DTS
	interval := last / time.Duration(len(c.Video)-1)
	c.Duration = last + interval

	var sps h264.SPS
	if err := sps.Unmarshal(c.SPS); err != nil {
		return fmt.Errorf("parse SPS: %w", err)
	}
	c.Width = sps.Width()
	c.Height = sps.Height()
	if fps := sps.FPS(); fps > 0 {
		c.FPS = int(fps + 0.5)
	} else {
		c.FPS = int((time.Second + interval/2) / interval)
	}

	for _, f := range rawAudio {
		f.PTS -= base
		f.DTS = f.PTS
		if f.PTS < 0 || f.PTS >= c.Duration {
			continue
		}
		if n := len(c.Audio); n > 0 && f.PTS <= c.Audio[n-1].PTS {
			return fmt.Errorf("audio frame at %v not after %v", f.PTS, c.Audio[n-1].PTS)
		}
		c.Audio = append(c.Audio, f)
	}
	return nil
}

// ticksToDuration converts a timestamp in clock-rate units to a duration without
// overflowing for long timelines.
func ticksToDuration(ticks int64, clockRate int64) time.Duration {
	secs := ticks / clockRate
	rem := ticks % clockRate
	return time.Duration(secs)*time.Second + time.Duration(rem)*time.Second/time.Duration(clockRate)
}

// durationToTicks converts a duration to clock-rate units without overflowing
// for long timelines.
func durationToTicks(d time.Duration, clockRate int64) int64 {
	secs := int64(d / time.Second)
	rem := int64(d % time.Second)
	return secs*clockRate + rem*clockRate/int64(time.Second)
}
