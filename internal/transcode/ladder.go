package transcode

import (
	"cmp"
	"fmt"
	"regexp"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/streamgrid/streamgrid/internal/media"
)

// Video codecs of a rendition.
const (
	CodecH264 = "h264"
	CodecH265 = "h265"
)

// Audio modes of a ladder.
const (
	// AudioCopy passes the source's audio through unchanged (the default).
	AudioCopy = "copy"
	// AudioAAC encodes the source's audio to AAC-LC (for sources whose audio
	// the packager cannot carry, such as Opus in MPEG-TS HLS).
	AudioAAC = "aac"
)

// Limits checked by Validate.
const (
	MaxRenditions      = 8
	maxNameLength      = 32
	minDimension       = 16
	maxWidth           = 7680
	maxHeight          = 4320
	minBitrate         = 16_000
	maxBitrate         = 200_000_000
	maxFPS             = 240
	minKeyframeGap     = 100 * time.Millisecond
	maxKeyframeGap     = 10 * time.Second
	minAudioBitrate    = 16_000
	maxAudioBitrate    = 512_000
	defaultAudioRate   = 128_000
	maxRateNum         = 6 // default MaxRate = 1.2 × Bitrate
	maxRateDen         = 5
	defaultKeyframeGap = time.Second
	maxDerivedGOP      = 2 * time.Second
	minDerivedGOP      = 500 * time.Millisecond
)

var renditionName = regexp.MustCompile(`^[a-z0-9_-]+$`)

// Rendition is one output of the ladder.
type Rendition struct {
	// Name identifies the rendition in URLs and metrics: [a-z0-9_-]+, at most
	// 32 characters, unique in the ladder.
	Name string `yaml:"name"`
	// Width and Height of the output picture, even. One of them may be 0: it
	// is then derived from the source's aspect ratio (rounded to an even
	// number). Both 0 keeps the source size.
	Width  int `yaml:"width"`
	Height int `yaml:"height"`
	// Bitrate is the target video bitrate in bits/s (required).
	Bitrate int `yaml:"bitrate"`
	// MaxRate caps the video bitrate in bits/s; it defaults to 1.2 × Bitrate.
	// The rate-control buffer is MaxRate bits (one second).
	MaxRate int `yaml:"max_rate"`
	// FPS caps the frame rate; 0 keeps the source's rate. A cap at or above the
	// source rate does nothing.
	FPS int `yaml:"fps"`
	// Codec is "h264" (the default) or "h265".
	Codec string `yaml:"codec"`
}

// Ladder is the set of renditions one stream is transcoded to.
type Ladder struct {
	// Renditions, best first. At least one unless Passthrough is set (a
	// passthrough-only ladder needs no transcoder).
	Renditions []Rendition `yaml:"renditions"`
	// Passthrough also offers the source itself as the top rendition. The
	// transcoder ignores it: the origin packages the source directly.
	Passthrough bool `yaml:"passthrough"`
	// Audio is "copy" (the default: the source's audio, AAC or Opus, goes into
	// every rendition unchanged) or "aac" (encoded to AAC-LC at AudioBitrate).
	Audio string `yaml:"audio"`
	// AudioBitrate is the AAC bitrate for Audio "aac" in bits/s; default 128000.
	AudioBitrate int `yaml:"audio_bitrate"`
	// KeyframeInterval is the distance between the IDR frames of every
	// rendition. 0 derives it from the source GOP: the source GOP itself when
	// it lies between 0.5 s and 2 s; when it is longer, the source GOP divided
	// into the fewest equal parts of at most 2 s (so that the source's
	// keyframes, and with them a passthrough rendition's, stay on the
	// transcoded ones' grid); 1 s when the source GOP is unknown or shorter.
	KeyframeInterval time.Duration `yaml:"keyframe_interval"`
}

// FieldError is a validation error naming the offending field, for example
// "renditions[1].width".
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Validate checks the ladder and returns a *FieldError naming the first bad
// field.
func (l Ladder) Validate() error {
	if len(l.Renditions) == 0 && !l.Passthrough {
		return fieldErr("renditions", "at least one rendition is needed (or passthrough)")
	}
	if len(l.Renditions) > MaxRenditions {
		return fieldErr("renditions", "at most %d renditions, got %d", MaxRenditions, len(l.Renditions))
	}
	seen := make(map[string]bool, len(l.Renditions))
	for i, r := range l.Renditions {
		if err := r.validate(fmt.Sprintf("renditions[%d]", i)); err != nil {
			return err
		}
		if seen[r.Name] {
			return fieldErr(fmt.Sprintf("renditions[%d].name", i), "duplicate name %q", r.Name)
		}
		seen[r.Name] = true
	}
	switch l.Audio {
	case "", AudioCopy, AudioAAC:
	default:
		return fieldErr("audio", "%q is not one of copy, aac", l.Audio)
	}
	if l.AudioBitrate != 0 && (l.AudioBitrate < minAudioBitrate || l.AudioBitrate > maxAudioBitrate) {
		return fieldErr("audio_bitrate", "must be between %d and %d, got %d", minAudioBitrate, maxAudioBitrate, l.AudioBitrate)
	}
	if l.KeyframeInterval != 0 && (l.KeyframeInterval < minKeyframeGap || l.KeyframeInterval > maxKeyframeGap) {
		return fieldErr("keyframe_interval", "must be between %v and %v, got %v", minKeyframeGap, maxKeyframeGap, l.KeyframeInterval)
	}
	return nil
}

func (r Rendition) validate(prefix string) error {
	switch {
	case r.Name == "":
		return fieldErr(prefix+".name", "must not be empty")
	case len(r.Name) > maxNameLength:
		return fieldErr(prefix+".name", "%q is longer than %d characters", r.Name, maxNameLength)
	case !renditionName.MatchString(r.Name):
		return fieldErr(prefix+".name", "%q may hold only a-z, 0-9, '_' and '-'", r.Name)
	}
	if err := checkDimension(prefix+".width", r.Width, maxWidth); err != nil {
		return err
	}
	if err := checkDimension(prefix+".height", r.Height, maxHeight); err != nil {
		return err
	}
	if r.Bitrate < minBitrate || r.Bitrate > maxBitrate {
		return fieldErr(prefix+".bitrate", "must be between %d and %d bits/s, got %d", minBitrate, maxBitrate, r.Bitrate)
	}
	if r.MaxRate != 0 && (r.MaxRate < r.Bitrate || r.MaxRate > maxBitrate) {
		return fieldErr(prefix+".max_rate", "must be at least the bitrate (%d) and at most %d, got %d", r.Bitrate, maxBitrate, r.MaxRate)
	}
	if r.FPS < 0 || r.FPS > maxFPS {
		return fieldErr(prefix+".fps", "must be between 0 (source rate) and %d, got %d", maxFPS, r.FPS)
	}
	switch r.Codec {
	case "", CodecH264, CodecH265:
	default:
		return fieldErr(prefix+".codec", "%q is not one of h264, h265", r.Codec)
	}
	return nil
}

func checkDimension(field string, v, limit int) error {
	switch {
	case v == 0:
		return nil
	case v < minDimension || v > limit:
		return fieldErr(field, "must be 0 (derived) or between %d and %d, got %d", minDimension, limit, v)
	case v%2 != 0:
		return fieldErr(field, "must be even, got %d", v)
	}
	return nil
}

// codec returns the rendition's codec with the default applied.
func (r Rendition) codec() string {
	return cmp.Or(r.Codec, CodecH264)
}

// maxRate returns MaxRate with the default applied.
func (r Rendition) maxRate() int {
	if r.MaxRate > 0 {
		return r.MaxRate
	}
	return r.Bitrate * maxRateNum / maxRateDen
}

// audioMode returns Audio with the default applied.
func (l Ladder) audioMode() string {
	return cmp.Or(l.Audio, AudioCopy)
}

// audioBitrate returns AudioBitrate with the default applied.
func (l Ladder) audioBitrate() int {
	if l.AudioBitrate > 0 {
		return l.AudioBitrate
	}
	return defaultAudioRate
}

// Codecs reports which video codecs the ladder encodes to.
func (l Ladder) Codecs() (h264, h265 bool) {
	for _, r := range l.Renditions {
		if r.codec() == CodecH265 {
			h265 = true
		} else {
			h264 = true
		}
	}
	return h264, h265
}

// KeyframeGap returns the keyframe interval the ladder uses for src (see
// KeyframeInterval).
func (l Ladder) KeyframeGap(src SourceInfo) time.Duration {
	if l.KeyframeInterval > 0 {
		return l.KeyframeInterval
	}
	if src.GOPFrames <= 0 || src.FPS <= 0 {
		return defaultKeyframeGap
	}
	gop := time.Duration(src.GOPFrames) * time.Second / time.Duration(src.FPS)
	switch {
	case gop < minDerivedGOP:
		return defaultKeyframeGap
	case gop <= maxDerivedGOP:
		return gop
	}
	parts := (gop + maxDerivedGOP - 1) / maxDerivedGOP
	return gop / parts
}

// Output describes what one rendition produces for a given source.
type Output struct {
	Rendition Rendition
	// Codec is media.CodecH264 or media.CodecH265.
	Codec media.Codec
	// Width and Height of the encoded picture; 0 when they depend on a source
	// size that is unknown.
	Width, Height int
	// FPS is the output frame rate; 0 when the source rate is unknown and the
	// rendition sets no cap.
	FPS int

	capped bool // an fps filter enforces the rendition's cap
}

// Outputs returns what each rendition of the ladder produces from src, in
// rendition order.
func (l Ladder) Outputs(src SourceInfo) []Output {
	out := make([]Output, len(l.Renditions))
	for i, r := range l.Renditions {
		o := Output{Rendition: r, Codec: media.CodecH264, FPS: src.FPS}
		if r.codec() == CodecH265 {
			o.Codec = media.CodecH265
		}
		o.Width, o.Height = outputSize(r.Width, r.Height, src.Width, src.Height)
		if r.FPS > 0 && (src.FPS == 0 || r.FPS < src.FPS) {
			o.FPS = r.FPS
			o.capped = true
		}
		out[i] = o
	}
	return out
}

// outputSize resolves a rendition size against the source size; a result of
// 0 means "let ffmpeg derive it" (source size unknown).
func outputSize(w, h, srcW, srcH int) (int, int) {
	switch {
	case w > 0 && h > 0:
		return w, h
	case srcW <= 0 || srcH <= 0:
		return w, h
	case w == 0 && h == 0:
		return even(srcW), even(srcH)
	case h == 0:
		return w, evenRound(float64(w) * float64(srcH) / float64(srcW))
	default:
		return evenRound(float64(h) * float64(srcW) / float64(srcH)), h
	}
}

func even(v int) int { return v &^ 1 }

func evenRound(v float64) int {
	n := int(v/2+0.5) * 2
	return max(n, 2)
}

// AudioOutput returns the audio every rendition carries for src: the codec
// (media.CodecInvalid when there is none) and, for AAC, its configuration.
// With Audio "aac" the output is AAC-LC at the source's sample rate (48 kHz
// for Opus or a rate AAC lacks) with at most two channels.
func (l Ladder) AudioOutput(src SourceInfo) (media.Codec, *mpeg4audio.AudioSpecificConfig) {
	if !src.hasAudio() {
		return media.CodecInvalid, nil
	}
	if l.audioMode() == AudioCopy {
		return src.AudioCodec, src.AudioConfig
	}
	rate, channels := aacParams(src)
	return media.CodecAAC, &mpeg4audio.AudioSpecificConfig{
		Type:          mpeg4audio.ObjectTypeAACLC,
		SampleRate:    rate,
		ChannelConfig: uint8(channels),
		ChannelCount:  channels,
	}
}

// aacRates are the sampling frequencies AAC signals by index.
var aacRates = []int{96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}

// aacParams returns the sample rate and channel count of an AAC encode of
// src's audio.
func aacParams(src SourceInfo) (rate, channels int) {
	rate, channels = 48000, 2
	if src.AudioCodec == media.CodecAAC && src.AudioConfig != nil {
		for _, r := range aacRates {
			if r == src.AudioConfig.SampleRate {
				rate = r
			}
		}
		if c := src.audioChannels(); c == 1 {
			channels = 1
		}
	} else if src.audioChannels() == 1 {
		channels = 1
	}
	return rate, channels
}
