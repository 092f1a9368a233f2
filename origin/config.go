package origin

import (
	"fmt"
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

// DefaultHLS is the packaging an HLSConfig's zero fields get.
func DefaultHLS() HLSConfig {
	return HLSConfig{
		Variant:         VariantLowLatency,
		SegmentDuration: time.Second,
		PartDuration:    200 * time.Millisecond,
		SegmentCount:    7,
		IdleTimeout:     10 * time.Second,
		Muxer:           MuxerBuiltin,
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
	case v == gohlslib.MuxerVariantLowLatency && h.SegmentCount < 7:
		return 0, &FieldError{"SegmentCount", fmt.Sprintf("Low-Latency HLS needs at least 7, got %d", h.SegmentCount)}
	case h.SegmentCount < 3:
		return 0, &FieldError{"SegmentCount", fmt.Sprintf("at least 3 are needed, got %d", h.SegmentCount)}
	case h.PartDuration >= h.SegmentDuration:
		return 0, &FieldError{"PartDuration", fmt.Sprintf("%v must be shorter than the segment duration %v", h.PartDuration, h.SegmentDuration)}
	}
	return v, nil
}
