package edge

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/media"
)

// rtmpIngest feeds one RTMP publication into its stream. Its callbacks all
// run on the connection's goroutine.
type rtmpIngest struct {
	s     *stream
	clock msUnwrapper
}

// ticks maps an RTMP timestamp (milliseconds, wrapping at 2^32) onto the
// 64-bit timeline in rate units.
func (in *rtmpIngest) ticks(ts time.Duration, rate int) int64 {
	return multiplyAndDivide(in.clock.unwrap(uint32(ts.Milliseconds())), int64(rate), 1000)
}

// tracks registers a callback for every track the Reader found (gortmplib
// requires one for each) and describes the supported ones.
func (in *rtmpIngest) tracks(rd *gortmplib.Reader) (infos []bus.TrackInfo, ignored []string, err error) {
	for _, t := range rd.Tracks() {
		idx := len(infos)
		supported := len(infos) < maxTracks
		switch c := t.Codec.(type) {
		case *codecs.H264:
			if supported {
				infos = append(infos, bus.TrackInfo{ID: uint8(idx), Codec: media.CodecH264, ClockRate: 90000, SPS: c.SPS, PPS: c.PPS})
			}
			rd.OnDataH264(t, in.video(idx, supported))
		case *codecs.H265:
			if supported {
				infos = append(infos, bus.TrackInfo{ID: uint8(idx), Codec: media.CodecH265, ClockRate: 90000, VPS: c.VPS, SPS: c.SPS, PPS: c.PPS})
			}
			rd.OnDataH265(t, in.video(idx, supported))
		case *codecs.MPEG4Audio:
			info, _, ok := aacTrackInfo(c.Config)
			supported = supported && ok
			if supported {
				info.ID = uint8(idx)
				infos = append(infos, info)
			} else {
				ignored = append(ignored, "MPEG-4 Audio")
			}
			rd.OnDataMPEG4Audio(t, in.audio(idx, info.ClockRate, supported))
		case *codecs.Opus:
			if supported {
				ch := 2
				if c.IDHeader != nil {
					ch = int(c.IDHeader.ChannelCount)
				}
				infos = append(infos, bus.TrackInfo{ID: uint8(idx), Codec: media.CodecOpus, ClockRate: 48000, Channels: ch})
			}
			rd.OnDataOpus(t, in.audio(idx, 48000, supported))
		case *codecs.AV1:
			ignored = append(ignored, "AV1")
			rd.OnDataAV1(t, func(time.Duration, [][]byte) {})
		case *codecs.VP9:
			ignored = append(ignored, "VP9")
			rd.OnDataVP9(t, func(time.Duration, []byte) {})
		case *codecs.FLAC:
			ignored = append(ignored, "FLAC")
			rd.OnDataFLAC(t, func(time.Duration, []byte) {})
		case *codecs.MPEG1Audio:
			ignored = append(ignored, "MPEG-1 Audio")
			rd.OnDataMPEG1Audio(t, func(time.Duration, []byte) {})
		case *codecs.AC3:
			ignored = append(ignored, "AC-3")
			rd.OnDataAC3(t, func(time.Duration, []byte) {})
		case *codecs.G711:
			ignored = append(ignored, "G711")
			rd.OnDataG711(t, func(time.Duration, []byte) {})
		case *codecs.LPCM:
			ignored = append(ignored, "LPCM")
			rd.OnDataLPCM(t, func(time.Duration, []byte) {})
		default:
			return nil, ignored, fmt.Errorf("unknown RTMP codec %T", t.Codec)
		}
	}
	return infos, ignored, nil
}

func (in *rtmpIngest) video(idx int, use bool) gortmplib.OnDataH26xFunc {
	if !use {
		return func(time.Duration, time.Duration, [][]byte) {}
	}
	return func(pts, dts time.Duration, au [][]byte) {
		d := in.ticks(dts, 90000)
		p := d + multiplyAndDivide((pts-dts).Milliseconds(), 90000, 1000)
		in.s.writeVideo(idx, p, d, true, au)
	}
}

func (in *rtmpIngest) audio(idx, rate int, use bool) func(time.Duration, []byte) {
	if !use {
		return func(time.Duration, []byte) {}
	}
	return func(pts time.Duration, frame []byte) {
		in.s.writeAudio(idx, in.ticks(pts, rate), frame)
	}
}

// readLoop reads until the publisher goes. Undecodable messages are counted
// and skipped; a run of them, or a connection error, ends the publication.
// It returns nil for a normal end.
func (in *rtmpIngest) readLoop(rd *gortmplib.Reader) error {
	errorsInRow := 0
	for {
		err := rd.Read()
		if err == nil {
			errorsInRow = 0
			continue
		}
		var ne net.Error
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
			return nil
		case errors.As(err, &ne):
			return err
		}
		in.s.decodeError()
		errorsInRow++
		if errorsInRow >= maxRTMPDecodeErrors {
			return fmt.Errorf("%d undecodable messages in a row, last: %w", errorsInRow, err)
		}
	}
}
