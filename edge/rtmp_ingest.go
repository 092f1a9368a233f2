package edge

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/rtmpchunk"
)

// rtmpIngest feeds one RTMP publication into its stream. Its callbacks all
// run on the connection's goroutine.
//
// The media are read on a fast path where it can (readFast): the coded
// frames of the first video track (H264, H265) and AAC frames of the first
// audio track are read straight from the chunk stream (rtmpConn's
// rtmpchunk reader) and given to the same callbacks gortmplib's Reader
// would call, with the same arguments; every other message goes through
// gortmplib's Reader as before. The frames alias the reader's buffers: the
// stream copies what it keeps (the normalizer marshals a new payload and
// clones parameter sets and audio frames).
type rtmpIngest struct {
	s     *stream
	clock msUnwrapper

	// The callbacks of video and audio track 0, when the fast path may
	// take their frames: H264/H265, and AAC.
	fastVideo gortmplib.OnDataH26xFunc
	fastAAC   func(time.Duration, []byte)
	// multitrack: the probe saw an enhanced-RTMP multitrack message, so a
	// track may have another id than 0: no fast path.
	multitrack bool
	fastFrames uint64 // frames taken on the fast path
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
			cb := in.video(idx, supported)
			rd.OnDataH264(t, cb)
			in.fastVideo = cb
		case *codecs.H265:
			if supported {
				infos = append(infos, bus.TrackInfo{ID: uint8(idx), Codec: media.CodecH265, ClockRate: 90000, VPS: c.VPS, SPS: c.SPS, PPS: c.PPS})
			}
			cb := in.video(idx, supported)
			rd.OnDataH265(t, cb)
			in.fastVideo = cb
		case *codecs.MPEG4Audio:
			info, _, ok := aacTrackInfo(c.Config)
			supported = supported && ok
			if supported {
				info.ID = uint8(idx)
				infos = append(infos, info)
			} else {
				ignored = append(ignored, "MPEG-4 Audio")
			}
			cb := in.audio(idx, info.ClockRate, supported)
			rd.OnDataMPEG4Audio(t, cb)
			in.fastAAC = cb
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
// It returns nil for a normal end. With rc, and a publication whose tracks
// are all track 0 of their kind (no enhanced-RTMP multitrack while the
// tracks were probed), it takes the fast path.
func (in *rtmpIngest) readLoop(rd *gortmplib.Reader, rc *rtmpConn) error {
	fast := rc != nil && rc.fast() && !in.multitrack
	if fast {
		rc.takeover = true
	} else {
		in.fastVideo, in.fastAAC = nil, nil
	}
	errorsInRow := 0
	for {
		var err error
		if fast && !replaying(rd) {
			err = in.readFast(rd, rc)
		} else {
			err = rd.Read()
		}
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
		case errors.Is(err, rtmpchunk.ErrProtocol):
			in.s.decodeError() // the chunk stream cannot be read past it: once, and the end
			return err
		}
		in.s.decodeError()
		errorsInRow++
		if errorsInRow >= maxRTMPDecodeErrors {
			return fmt.Errorf("%d undecodable messages in a row, last: %w", errorsInRow, err)
		}
	}
}

// replaying reports whether the Reader still has messages the probe read.
func replaying(rd *gortmplib.Reader) bool {
	rc, ok := rd.Conn.(*replayConn)
	return ok && len(rc.msgs) > 0
}

// readFast reads one message from the chunk stream: a coded frame of a
// fast track goes to its callback, a message rtmpchunk applied (chunk
// size, abort, window) stops here, anything else goes to gortmplib's
// Reader.
func (in *rtmpIngest) readFast(rd *gortmplib.Reader, rc *rtmpConn) error {
	m, err := rc.chunks.Read()
	if err != nil {
		return err
	}
	dts := time.Duration(m.Timestamp) * time.Millisecond
	switch m.Type {
	case rtmpchunk.TypeVideo:
		if in.fastVideo == nil {
			break
		}
		if cts, data, ok := rtmpchunk.VideoFrame(m.Body); ok {
			var au h264.AVCC
			if err := au.Unmarshal(data); err != nil {
				if errors.Is(err, h264.ErrAVCCNoNALUs) {
					return nil
				}
				return fmt.Errorf("unable to decode AVCC: %w", err) // gortmplib's words
			}
			in.fastVideo(dts+time.Duration(cts)*time.Millisecond, dts, au)
			in.fastFrames++
			return nil
		}
	case rtmpchunk.TypeAudio:
		if in.fastAAC == nil {
			break
		}
		if frame, ok := rtmpchunk.AACFrame(m.Body); ok {
			in.fastAAC(dts, frame)
			in.fastFrames++
			return nil
		}
	}
	if rtmpConsumed(m) {
		return nil
	}
	rc.pending = m
	return rd.Read()
}
