package origin

import (
	"fmt"
	"strings"
	"time"

	"github.com/bluenviron/gohlslib/v2"
)

// The defaults of the origin's configuration fields, and the rules they must
// follow: Start and SetHLS apply them, and internal/config starts from the
// same defaults and checks a file with the same rules, so that a
// configuration that loads is one the origin accepts.

const (
	// DefaultCapacity is Origin.Capacity when it is not set.
	DefaultCapacity = 100
	// DefaultFFmpeg is TranscodeConfig.FFmpeg when it is not set.
	DefaultFFmpeg = "ffmpeg"
)

// HLSConfig says how streams are packaged.
type HLSConfig struct {
	// Variant is "lowLatency" (default), "fmp4" or "mpegts". MPEG-TS carries
	// only H264 and AAC: other streams fall back to fmp4.
	Variant string
	// SegmentDuration is the minimum segment duration; a segment ends at the
	// first keyframe after it. Default 1 s.
	SegmentDuration time.Duration
	// PartDuration is the minimum Low-Latency part duration. Default 200 ms.
	PartDuration time.Duration
	// SegmentCount is the playlist length in segments. Default 7; Low-Latency
	// needs at least 7, the other variants at least 3.
	SegmentCount int
	// IdleTimeout closes a stream's muxer this long after its last packet;
	// a stream that has also left the registry is then released. Default 10 s.
	IdleTimeout time.Duration
	// Muxer packages the fMP4 variants (lowLatency, fmp4): "builtin"
	// (default: internal/llhls) or "gohlslib". mpegts always uses gohlslib.
	Muxer string
	// FreshStart is how a Low-Latency playlist of a path with no known
	// keyframe interval starts (builtin muxer): "part" (default) assumes
	// the interval is SegmentDuration, declares it as the target duration
	// and serves from the first part, restarting the muxer once, from the
	// same keyframe, if the first GOP turns out longer; "segment" serves
	// nothing before the first complete segment, which sets the target.
	FreshStart string
}

// FreshStart values.
const (
	FreshStartPart    = "part"
	FreshStartSegment = "segment"
)

// Variant names accepted in HLSConfig.Variant.
const (
	VariantLowLatency = "lowLatency"
	VariantFMP4       = "fmp4"
	VariantMPEGTS     = "mpegts"
)

func parseVariant(s string) (gohlslib.MuxerVariant, error) {
	switch strings.ToLower(s) {
	case "", "lowlatency", "low-latency", "ll":
		return gohlslib.MuxerVariantLowLatency, nil
	case "fmp4":
		return gohlslib.MuxerVariantFMP4, nil
	case "mpegts", "ts":
		return gohlslib.MuxerVariantMPEGTS, nil
	}
	return 0, fmt.Errorf("origin: unknown HLS variant %q (lowLatency, fmp4 or mpegts)", s)
}

// Muxer names accepted in HLSConfig.Muxer.
const (
	MuxerBuiltin  = "builtin"
	MuxerGohlslib = "gohlslib"
)

func variantName(v gohlslib.MuxerVariant) string {
	switch v {
	case gohlslib.MuxerVariantFMP4:
		return VariantFMP4
	case gohlslib.MuxerVariantMPEGTS:
		return VariantMPEGTS
	}
	return VariantLowLatency
}

// DefaultHLS is the packaging an HLSConfig's zero fields get.
func DefaultHLS() HLSConfig {
	return HLSConfig{
		Variant:         VariantLowLatency,
		SegmentDuration: time.Second,
		PartDuration:    200 * time.Millisecond,
		SegmentCount:    7,
		IdleTimeout:     10 * time.Second,
		Muxer:           MuxerBuiltin,
		FreshStart:      FreshStartPart,
	}
}

// withDefaults returns h with its unset (zero or negative) fields defaulted.
func (h HLSConfig) withDefaults() HLSConfig {
	d := DefaultHLS()
	if h.SegmentDuration <= 0 {
		h.SegmentDuration = d.SegmentDuration
	}
	if h.PartDuration <= 0 {
		h.PartDuration = d.PartDuration
	}
	if h.SegmentCount <= 0 {
		h.SegmentCount = d.SegmentCount
	}
	if h.IdleTimeout <= 0 {
		h.IdleTimeout = d.IdleTimeout
	}
	if h.Muxer == "" {
		h.Muxer = d.Muxer
	}
	if h.FreshStart == "" {
		h.FreshStart = d.FreshStart
	}
	return h
}

// FieldError is a refused configuration value; Field names the HLSConfig
// field ("PartDuration").
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return "origin: HLS." + e.Field + ": " + e.Problem }

// Validate checks h as given (Start defaults its unset fields first, SetHLS
// does not) and returns a *FieldError for the first bad field.
func (h HLSConfig) Validate() error {
	_, err := h.validate()
	return err
}

// validate is Validate, also returning the parsed variant.
func (h HLSConfig) validate() (gohlslib.MuxerVariant, error) {
	v, err := parseVariant(h.Variant)
	if err != nil {
		return 0, &FieldError{"Variant", fmt.Sprintf("%q is not one of lowLatency, fmp4, mpegts", h.Variant)}
	}
	switch {
	case h.Muxer != "" && h.Muxer != MuxerBuiltin && h.Muxer != MuxerGohlslib:
		return 0, &FieldError{"Muxer", fmt.Sprintf("%q is not one of builtin, gohlslib", h.Muxer)}
	case h.FreshStart != "" && h.FreshStart != FreshStartPart && h.FreshStart != FreshStartSegment:
		return 0, &FieldError{"FreshStart", fmt.Sprintf("%q is not one of part, segment", h.FreshStart)}
	case v == gohlslib.MuxerVariantLowLatency && h.SegmentCount < 7:
		return 0, &FieldError{"SegmentCount", fmt.Sprintf("Low-Latency HLS needs at least 7, got %d", h.SegmentCount)}
	case h.SegmentCount < 3:
		return 0, &FieldError{"SegmentCount", fmt.Sprintf("at least 3 are needed, got %d", h.SegmentCount)}
	case h.PartDuration >= h.SegmentDuration:
		return 0, &FieldError{"PartDuration", fmt.Sprintf("%v must be shorter than the segment duration %v", h.PartDuration, h.SegmentDuration)}
	}
	return v, nil
}
