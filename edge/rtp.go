package edge

import (
	"errors"
	"fmt"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpfragmented"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpmpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/media"
)

// rtpSource is what the RTSP server session (a publisher) and the RTSP
// client (a pulled camera) have in common: RTP callbacks per format and the
// decoding of RTP timestamps onto a 64-bit timeline shared by the tracks.
type rtpSource interface {
	OnPacketRTP(medi *description.Media, forma format.Format, cb gortsplib.OnPacketRTPFunc)
	PacketPTS(medi *description.Media, pkt *rtp.Packet) (int64, bool)
}

// rtpTrack is one supported format of an RTSP session description.
type rtpTrack struct {
	media  *description.Media
	format format.Format
	info   bus.TrackInfo
	// samplesPerFrame is the duration of one AAC frame in samples.
	samplesPerFrame int64
}

// rtpTracks picks, for each media of desc, its first supported format (H264,
// H265, AAC as RFC 3640 or LATM, Opus). It returns the names of the formats
// of medias it could not use.
func rtpTracks(desc *description.Session) (tracks []rtpTrack, ignored []string) {
	for _, medi := range desc.Medias {
		found := false
		for _, forma := range medi.Formats {
			if tr, ok := rtpTrackOf(medi, forma); ok {
				if len(tracks) < maxTracks {
					tracks = append(tracks, tr)
				}
				found = true
				break
			}
		}
		if !found {
			for _, forma := range medi.Formats {
				ignored = append(ignored, forma.Codec())
			}
		}
	}
	for i := range tracks {
		tracks[i].info.ID = uint8(i)
	}
	return tracks, ignored
}

func rtpTrackOf(medi *description.Media, forma format.Format) (rtpTrack, bool) {
	tr := rtpTrack{media: medi, format: forma}
	switch f := forma.(type) {
	case *format.H264:
		sps, pps := f.SafeParams()
		tr.info = bus.TrackInfo{Codec: media.CodecH264, ClockRate: 90000, SPS: sps, PPS: pps}
	case *format.H265:
		vps, sps, pps := f.SafeParams()
		tr.info = bus.TrackInfo{Codec: media.CodecH265, ClockRate: 90000, VPS: vps, SPS: sps, PPS: pps}
	case *format.MPEG4Audio:
		if f.Config == nil || f.ClockRate() <= 0 {
			return tr, false
		}
		info, spf, ok := aacTrackInfo(f.Config)
		if !ok {
			return tr, false
		}
		tr.info, tr.samplesPerFrame = info, spf
	case *format.MPEG4AudioLATM:
		// With cpresent=1 the configuration travels in-band on a 90 kHz
		// clock: not supported. Only a single program and layer is used.
		if f.CPresent || f.StreamMuxConfig == nil || len(f.StreamMuxConfig.Programs) != 1 ||
			len(f.StreamMuxConfig.Programs[0].Layers) != 1 {
			return tr, false
		}
		info, spf, ok := aacTrackInfo(f.StreamMuxConfig.Programs[0].Layers[0].AudioSpecificConfig)
		if !ok {
			return tr, false
		}
		tr.info, tr.samplesPerFrame = info, spf
	case *format.Opus:
		tr.info = bus.TrackInfo{Codec: media.CodecOpus, ClockRate: 48000, Channels: f.ChannelCount}
	default:
		return tr, false
	}
	return tr, true
}

// aacTrackInfo describes an AAC track from its AudioSpecificConfig.
func aacTrackInfo(conf *mpeg4audio.AudioSpecificConfig) (bus.TrackInfo, int64, bool) {
	if conf == nil || conf.SampleRate <= 0 {
		return bus.TrackInfo{}, 0, false
	}
	asc, err := conf.Marshal()
	if err != nil {
		return bus.TrackInfo{}, 0, false
	}
	spf := int64(mpeg4audio.SamplesPerAccessUnit)
	if conf.FrameLengthFlag {
		spf = 960
	}
	return bus.TrackInfo{
		Codec:       media.CodecAAC,
		ClockRate:   conf.SampleRate,
		AudioConfig: asc,
		Channels:    aacChannels(conf),
	}, spf, true
}

// aacChannels returns the channel count of an AAC configuration; 0 when a
// program config element defines it.
func aacChannels(conf *mpeg4audio.AudioSpecificConfig) int {
	switch {
	case conf.ChannelConfig >= 1 && conf.ChannelConfig <= 6:
		return int(conf.ChannelConfig)
	case conf.ChannelConfig == 7:
		return 8
	}
	return 0
}

// trackInfos returns the track descriptions of tracks.
func trackInfos(tracks []rtpTrack) []bus.TrackInfo {
	out := make([]bus.TrackInfo, len(tracks))
	for i, tr := range tracks {
		out[i] = tr.info
	}
	return out
}

// attachVideo feeds the access units decode (an H264 or H265 depacketiser)
// returns to s. Errors in wait are an access unit still incomplete, not a
// decoding error.
func (tr rtpTrack) attachVideo(src rtpSource, f format.Format, s *stream, idx int,
	decode func(*rtp.Packet) ([][]byte, error), wait ...error) {
	src.OnPacketRTP(tr.media, f, func(pkt *rtp.Packet) {
		pts, ok := src.PacketPTS(tr.media, pkt)
		au, err := decode(pkt)
		if err != nil {
			for _, w := range wait {
				if errors.Is(err, w) {
					return
				}
			}
			s.decodeError()
			return
		}
		if ok {
			s.writeVideo(idx, pts, 0, false, au)
		}
	})
}

// attachLATM feeds the AAC frames of an MPEG-4 audio LATM track to s.
func (tr rtpTrack) attachLATM(src rtpSource, f *format.MPEG4AudioLATM, s *stream, idx int) error {
	dec, err := f.CreateDecoder()
	if err != nil {
		return fmt.Errorf("LATM decoder: %w", err)
	}
	conf := f.StreamMuxConfig
	spf := tr.samplesPerFrame
	src.OnPacketRTP(tr.media, f, func(pkt *rtp.Packet) {
		pts, ok := src.PacketPTS(tr.media, pkt)
		payload, err := dec.Decode(pkt)
		if err != nil {
			if !errors.Is(err, rtpfragmented.ErrMorePacketsNeeded) {
				s.decodeError()
			}
			return
		}
		ame := mpeg4audio.AudioMuxElement{StreamMuxConfig: conf}
		if err := ame.Unmarshal(payload); err != nil {
			s.decodeError()
			return
		}
		if !ok {
			return
		}
		for i, sub := range ame.Payloads {
			if len(sub) > 0 && len(sub[0]) > 0 {
				s.writeAudio(idx, pts+int64(i)*spf, sub[0][0])
			}
		}
	})
	return nil
}

// attach decodes track idx of src into s. Every RTP packet goes through
// PacketPTS first so that the timestamp decoder sees each one.
func (tr rtpTrack) attach(src rtpSource, s *stream, idx int) error {
	medi := tr.media
	switch f := tr.format.(type) {
	case *format.H264:
		dec, err := f.CreateDecoder()
		if err != nil {
			return fmt.Errorf("H264 decoder: %w", err)
		}
		tr.attachVideo(src, f, s, idx, dec.Decode, rtph264.ErrMorePacketsNeeded, rtph264.ErrNonStartingPacketAndNoPrevious)
	case *format.H265:
		dec, err := f.CreateDecoder()
		if err != nil {
			return fmt.Errorf("H265 decoder: %w", err)
		}
		tr.attachVideo(src, f, s, idx, dec.Decode, rtph265.ErrMorePacketsNeeded, rtph265.ErrNonStartingPacketAndNoPrevious)
	case *format.MPEG4Audio:
		dec, err := f.CreateDecoder()
		if err != nil {
			return fmt.Errorf("AAC decoder: %w", err)
		}
		spf := tr.samplesPerFrame
		src.OnPacketRTP(medi, f, func(pkt *rtp.Packet) {
			pts, ok := src.PacketPTS(medi, pkt)
			aus, err := dec.Decode(pkt)
			if err != nil {
				if !errors.Is(err, rtpmpeg4audio.ErrMorePacketsNeeded) {
					s.decodeError()
				}
				return
			}
			if ok {
				for i, au := range aus {
					s.writeAudio(idx, pts+int64(i)*spf, au)
				}
			}
		})
	case *format.MPEG4AudioLATM:
		return tr.attachLATM(src, f, s, idx)
	case *format.Opus:
		dec, err := f.CreateDecoder()
		if err != nil {
			return fmt.Errorf("Opus decoder: %w", err)
		}
		src.OnPacketRTP(medi, f, func(pkt *rtp.Packet) {
			pts, ok := src.PacketPTS(medi, pkt)
			frame, err := dec.Decode(pkt)
			if err != nil {
				s.decodeError()
				return
			}
			if ok {
				s.writeAudio(idx, pts, frame)
			}
		})
	default:
		return fmt.Errorf("unsupported format %s", tr.format.Codec())
	}
	return nil
}
