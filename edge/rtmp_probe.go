package edge

import (
	"errors"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/message"
)

// rtmpProbe learns an RTMP publication's tracks as soon as their sequence
// headers are in, instead of after gortmplib's analyze period (2 s of media,
// rtmpAnalyzePeriod): encoders announce their tracks in onMetaData
// (videocodecid, audiocodecid) and send the sequence headers before the
// first frame, so the tracks are known with the first messages.
//
// The tracks themselves are still found by gortmplib's Reader, from the
// same messages: the probe hands the messages it read to Reader.Initialize,
// followed by two that end the analyze period (access units stamped with
// the last timestamp and rtmpAnalyzePeriod after it, never delivered), then
// gives the Reader the messages again, without those, ahead of the
// connection.
//
// The probe waits the whole analyze period, as gortmplib does, when it
// cannot tell that every track is known: no onMetaData and only one of
// video and audio so far, a track announced but not yet configured, or an
// enhanced-RTMP multitrack message.
type rtmpProbe struct {
	meta                 bool // onMetaData seen
	wantVideo, wantAudio bool // announced by onMetaData
	video, audio         bool // a track that gortmplib would configure was seen
	multitrack           bool
	media                bool // any media message seen
	first, last          time.Duration
}

// maxProbeMessages bounds the messages held before the tracks are known,
// as gortmplib does (its maxRecordedSize).
const maxProbeMessages = 5000

// newRTMPReader reads the publication's first messages from conn until its
// tracks are known and returns gortmplib's Reader over them, and whether
// an enhanced-RTMP multitrack message came among them. The caller has
// accepted the publish command (ServerConn.AcceptAction).
func newRTMPReader(conn gortmplib.Conn) (*gortmplib.Reader, bool, error) {
	var p rtmpProbe
	var msgs []message.Message
	for !p.done() {
		if len(msgs) >= maxProbeMessages {
			return nil, false, errors.New("max recorded size exceeded")
		}
		msg, err := conn.Read()
		if err != nil {
			return nil, false, err
		}
		msgs = append(msgs, msg)
		p.see(msg)
	}
	// Two access units that end gortmplib's analyze period (the first
	// starts it when no media came yet: sequence headers do not); when the
	// probe ran the whole period, gortmplib stops at the same message and
	// never reads them.
	end := []message.Message{
		&message.Video{Codec: message.CodecH264, Type: message.VideoTypeAU, DTS: p.last},
		&message.Video{Codec: message.CodecH264, Type: message.VideoTypeAU, DTS: p.last + rtmpAnalyzePeriod},
	}
	rd := &gortmplib.Reader{Conn: &replayConn{Conn: conn, msgs: append(msgs[:len(msgs):len(msgs)], end...)}}
	if err := rd.Initialize(); err != nil {
		return nil, false, err
	}
	// Initialize recorded what it read to rewind it; replace that with the
	// messages without the end marker.
	rd.Conn = &replayConn{Conn: conn, msgs: msgs}
	return rd, p.multitrack, nil
}

// done reports whether the tracks are known, or the analyze period is over.
func (p *rtmpProbe) done() bool {
	if p.media && p.last-p.first >= rtmpAnalyzePeriod {
		return true
	}
	if p.multitrack || !p.video && !p.audio {
		return false
	}
	if !p.meta {
		return p.video && p.audio
	}
	return (p.video || !p.wantVideo) && (p.audio || !p.wantAudio)
}

// see follows gortmplib's track detection (Reader.readTracks) far enough to
// tell when every announced track is configured.
func (p *rtmpProbe) see(msg message.Message) {
	switch m := msg.(type) {
	case *message.DataAMF0:
		p.metadata(m.Payload)
	case *message.Video:
		p.at(m.DTS)
		if m.Type == message.VideoTypeConfig &&
			(m.Codec == message.CodecH264 && m.AVCConfig != nil || m.Codec == message.CodecH265) {
			p.video = true
		}
	case *message.VideoExSequenceStart:
		p.video = true
	case *message.VideoExCodedFrames:
		p.at(m.DTS)
	case *message.VideoExFramesX:
		p.at(m.DTS)
	case *message.Audio:
		p.at(m.DTS)
		if m.Codec != message.CodecMPEG4Audio || m.AACType == message.AudioAACTypeConfig && m.AACConfig != nil {
			p.audio = true
		}
	case *message.AudioExCodedFrames:
		// gortmplib configures an enhanced audio track on its first frame
		p.at(m.DTS)
		p.audio = true
	case *message.VideoExMultitrack, *message.AudioExMultitrack:
		p.multitrack = true
	}
}

// at notes a media timestamp.
func (p *rtmpProbe) at(dts time.Duration) {
	if !p.media {
		p.media, p.first, p.last = true, dts, dts
		return
	}
	p.last = max(p.last, dts)
}

// metadata reads onMetaData (or @setDataFrame onMetaData): a track is
// announced by a non-zero codec id, a number or a FourCC string.
func (p *rtmpProbe) metadata(d amf0.Data) {
	for k, v := range d {
		if s, ok := v.(string); !ok || s != "onMetaData" || k+1 >= len(d) {
			continue
		}
		var entries []amf0.ObjectEntry
		switch o := d[k+1].(type) {
		case amf0.Object:
			entries = o
		case amf0.ECMAArray:
			entries = o
		default:
			return
		}
		p.meta = true
		for _, e := range entries {
			switch e.Key {
			case "videocodecid":
				p.wantVideo = announced(e.Value)
			case "audiocodecid":
				p.wantAudio = announced(e.Value)
			}
		}
		return
	}
}

// announced reads a codec id of onMetaData.
func announced(v any) bool {
	switch x := v.(type) {
	case float64:
		return x != 0
	case string:
		return x != "" && x != "0"
	case nil:
		return false
	}
	return true // an unexpected type: assume the track may come
}

// replayConn gives its messages before the connection's.
type replayConn struct {
	gortmplib.Conn
	msgs []message.Message
}

func (c *replayConn) Read() (message.Message, error) {
	if len(c.msgs) > 0 {
		m := c.msgs[0]
		c.msgs[0] = nil
		c.msgs = c.msgs[1:]
		return m, nil
	}
	return c.Conn.Read()
}
