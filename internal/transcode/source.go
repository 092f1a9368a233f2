package transcode

import (
	"fmt"
	"math"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/streamgrid/streamgrid/internal/media"
)

// SourceInfo describes the stream fed to a Transcoder. Unknown numbers may be
// left 0; ffmpeg then works them out itself, at the cost of less predictable
// output sizes and a 1 s keyframe interval.
type SourceInfo struct {
	// Codec is the video codec: media.CodecH264 (the default when 0) or
	// media.CodecH265.
	Codec media.Codec
	// Width and Height of the source picture.
	Width, Height int
	// FPS is the source frame rate, rounded.
	FPS int
	// GOPFrames is the distance between the source's keyframes in frames.
	GOPFrames int
	// AudioCodec is the audio codec: media.CodecInvalid (0) for none,
	// media.CodecAAC or media.CodecOpus.
	AudioCodec media.Codec
	// AudioConfig is the AAC configuration (required with media.CodecAAC).
	AudioConfig *mpeg4audio.AudioSpecificConfig
	// AudioChannels is the Opus channel count (1 or 2; default 2).
	AudioChannels int
}

// ParseSPS fills Width, Height and, when the SPS carries timing information,
// FPS from a sequence parameter set of the source's codec (NAL unit without
// start code).
func (s *SourceInfo) ParseSPS(sps []byte) error {
	var w, h int
	var fps float64
	if s.videoCodec() == media.CodecH265 {
		var p h265.SPS
		if err := p.Unmarshal(sps); err != nil {
			return fmt.Errorf("parse H265 SPS: %w", err)
		}
		w, h, fps = p.Width(), p.Height(), p.FPS()
	} else {
		var p h264.SPS
		if err := p.Unmarshal(sps); err != nil {
			return fmt.Errorf("parse H264 SPS: %w", err)
		}
		w, h, fps = p.Width(), p.Height(), p.FPS()
	}
	s.Width, s.Height = w, h
	if fps > 0 && fps <= maxFPS*4 {
		s.FPS = int(math.Round(fps))
	}
	return nil
}

// validate checks what the transcoder needs to write the source to ffmpeg.
func (s SourceInfo) validate() error {
	switch s.Codec {
	case media.CodecInvalid, media.CodecH264, media.CodecH265:
	default:
		return fmt.Errorf("source video codec %v is not H264 or H265", s.Codec)
	}
	switch s.AudioCodec {
	case media.CodecInvalid, media.CodecOpus:
	case media.CodecAAC:
		if s.AudioConfig == nil {
			return fmt.Errorf("source audio is AAC but AudioConfig is nil")
		}
		if s.AudioConfig.SampleRate <= 0 {
			return fmt.Errorf("source AAC sample rate %d is invalid", s.AudioConfig.SampleRate)
		}
	default:
		return fmt.Errorf("source audio codec %v is not AAC or Opus", s.AudioCodec)
	}
	if s.Width < 0 || s.Height < 0 || s.FPS < 0 || s.GOPFrames < 0 || s.AudioChannels < 0 {
		return fmt.Errorf("source has negative numbers: %dx%d, %d fps, GOP %d, %d channels",
			s.Width, s.Height, s.FPS, s.GOPFrames, s.AudioChannels)
	}
	return nil
}

func (s SourceInfo) videoCodec() media.Codec {
	if s.Codec == media.CodecH265 {
		return media.CodecH265
	}
	return media.CodecH264
}

func (s SourceInfo) hasAudio() bool {
	return s.AudioCodec == media.CodecAAC || s.AudioCodec == media.CodecOpus
}

// audioChannels returns the source's channel count (0 when unknown).
func (s SourceInfo) audioChannels() int {
	switch s.AudioCodec {
	case media.CodecAAC:
		if s.AudioConfig != nil {
			if s.AudioConfig.ChannelConfig > 0 {
				return int(s.AudioConfig.ChannelConfig)
			}
			return s.AudioConfig.ChannelCount //nolint:staticcheck // set by older parsers
		}
	case media.CodecOpus:
		if s.AudioChannels > 0 {
			return s.AudioChannels
		}
		return 2
	}
	return 0
}
