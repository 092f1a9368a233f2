package transcode

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/bluenviron/gohlslib/v2/pkg/codecparams"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/streamgrid/streamgrid/internal/media"
)

// multivariantVersion is the EXT-X-VERSION of MasterPlaylist's output; it
// covers every tag and attribute the playlist uses.
const multivariantVersion = 6

// Variant is one EXT-X-STREAM-INF entry of a multivariant playlist.
type Variant struct {
	// URI of the variant's media playlist, relative to the multivariant one.
	URI string
	// Bandwidth is the peak bitrate in bits/s, audio included (required).
	Bandwidth int
	// AverageBandwidth in bits/s; 0 leaves it out.
	AverageBandwidth int
	// Width and Height; 0 leaves RESOLUTION out.
	Width, Height int
	// FrameRate; 0 leaves FRAME-RATE out.
	FrameRate float64
	// Codecs in RFC 6381 form, video first (see CodecString and
	// AudioCodecString), e.g. {"avc1.4d401f", "mp4a.40.2"} (required).
	Codecs []string
	// AudioGroup names the AudioMedia group (GroupID) that carries this
	// variant's audio; "" when the audio is muxed into the variant or absent.
	AudioGroup string
}

// AudioMedia is an EXT-X-MEDIA TYPE=AUDIO rendition: audio in its own media
// playlist, shared by the variants that name its group.
type AudioMedia struct {
	// GroupID and Name are required.
	GroupID, Name string
	// URI of the audio media playlist (required).
	URI string
	// Language (RFC 5646), optional.
	Language string
	// Default marks the rendition to play without a user choice.
	Default bool
	// Channels, 0 to leave CHANNELS out.
	Channels int
}

// MasterPlaylist renders an HLS multivariant playlist with one
// EXT-X-STREAM-INF per variant (in the given order, best first by
// convention) and one EXT-X-MEDIA per audio rendition.
func MasterPlaylist(variants []Variant, audio []AudioMedia) ([]byte, error) {
	if len(variants) == 0 {
		return nil, errors.New("transcode: a multivariant playlist needs at least one variant")
	}
	pl := &playlist.Multivariant{Version: multivariantVersion, IndependentSegments: true}
	groups := make(map[string]bool, len(audio))
	for i, a := range audio {
		if a.GroupID == "" || a.Name == "" || a.URI == "" {
			return nil, fmt.Errorf("transcode: audio rendition %d: GroupID, Name and URI are required", i)
		}
		groups[a.GroupID] = true
		r := &playlist.MultivariantRendition{
			Type:       playlist.MultivariantRenditionTypeAudio,
			GroupID:    a.GroupID,
			Name:       a.Name,
			Language:   a.Language,
			Autoselect: true,
			Default:    a.Default,
			URI:        new(a.URI),
		}
		if a.Channels > 0 {
			r.Channels = new(strconv.Itoa(a.Channels))
		}
		pl.Renditions = append(pl.Renditions, r)
	}
	for i, v := range variants {
		switch {
		case v.URI == "":
			return nil, fmt.Errorf("transcode: variant %d: URI is required", i)
		case v.Bandwidth <= 0:
			return nil, fmt.Errorf("transcode: variant %d (%s): Bandwidth is required", i, v.URI)
		case len(v.Codecs) == 0:
			return nil, fmt.Errorf("transcode: variant %d (%s): Codecs is required", i, v.URI)
		case v.AudioGroup != "" && !groups[v.AudioGroup]:
			return nil, fmt.Errorf("transcode: variant %d (%s): unknown audio group %q", i, v.URI, v.AudioGroup)
		}
		mv := &playlist.MultivariantVariant{
			URI:       v.URI,
			Bandwidth: v.Bandwidth,
			Codecs:    v.Codecs,
			Audio:     v.AudioGroup,
		}
		if v.AverageBandwidth > 0 {
			mv.AverageBandwidth = new(v.AverageBandwidth)
		}
		if v.Width > 0 && v.Height > 0 {
			mv.Resolution = strconv.Itoa(v.Width) + "x" + strconv.Itoa(v.Height)
		}
		if v.FrameRate > 0 {
			mv.FrameRate = new(v.FrameRate)
		}
		pl.Variants = append(pl.Variants, mv)
	}
	return pl.Marshal()
}

// CodecString returns the RFC 6381 codec string of a video stream from its
// SPS (NAL unit without start code): "avc1.PPCCLL" for H264 (profile,
// constraint flags, level), "hvc1...." for H265. It returns "" for anything
// else or a SPS it cannot parse.
func CodecString(sps []byte) string {
	if len(sps) < 4 {
		return ""
	}
	switch {
	case sps[0]&0x1f == 7: // H264 nal_unit_type 7
		return codecparams.Marshal(&codecs.H264{SPS: sps})
	case (sps[0]>>1)&0x3f == 33: // H265 nal_unit_type 33
		return codecparams.Marshal(&codecs.H265{SPS: sps})
	}
	return ""
}

// AudioCodecString returns the RFC 6381 codec string of an audio stream:
// "mp4a.40.N" for AAC (N the object type), "opus" for Opus, "" otherwise.
func AudioCodecString(codec media.Codec, conf *mpeg4audio.AudioSpecificConfig) string {
	switch codec {
	case media.CodecAAC:
		if conf == nil {
			return "mp4a.40.2"
		}
		return codecparams.Marshal(&codecs.MPEG4Audio{Config: *conf})
	case media.CodecOpus:
		return "opus"
	}
	return ""
}
