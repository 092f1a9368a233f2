package testmedia

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpmpeg4audio"
	"github.com/pion/rtp"
)

const rtspVideoClockRate = 90000

// rtpTracks is a Clip's RTP side, shared by the RTSP publisher (which
// announces it) and the camera server (which describes it): the H264 track,
// the AAC track when there is audio, their encoders and random initial
// timestamps (RFC 3550 5.1).
type rtpTracks struct {
	video     *description.Media
	audio     *description.Media // nil without audio
	videoEnc  *rtph264.Encoder
	audioEnc  *rtpmpeg4audio.Encoder
	videoBase uint32
	audioBase uint32
	audioRate int64
}

func newRTPTracks(clip *Clip, audio bool) (*rtpTracks, error) {
	t := &rtpTracks{}
	videoFormat := &format.H264{
		PayloadTyp:        96,
		SPS:               clip.SPS,
		PPS:               clip.PPS,
		PacketizationMode: 1,
	}
	t.video = &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{videoFormat}}
	var err error
	if t.videoEnc, err = videoFormat.CreateEncoder(); err != nil {
		return nil, fmt.Errorf("create H264 RTP encoder: %w", err)
	}
	t.videoBase = randomUint32()
	if !audio {
		return t, nil
	}
	audioFormat := &format.MPEG4Audio{
		PayloadTyp:       97,
		ProfileLevelID:   1,
		Config:           clip.AudioConfig,
		SizeLength:       13,
		IndexLength:      3,
		IndexDeltaLength: 3,
	}
	t.audio = &description.Media{Type: description.MediaTypeAudio, Formats: []format.Format{audioFormat}}
	if t.audioEnc, err = audioFormat.CreateEncoder(); err != nil {
		return nil, fmt.Errorf("create AAC RTP encoder: %w", err)
	}
	t.audioBase = randomUint32()
	t.audioRate = int64(audioFormat.ClockRate())
	return t, nil
}

// session is the session description of the tracks.
func (t *rtpTracks) session() *description.Session {
	desc := &description.Session{Medias: []*description.Media{t.video}}
	if t.audio != nil {
		desc.Medias = append(desc.Medias, t.audio)
	}
	return desc
}

// videoPackets packetizes an H264 access unit presented at pts.
func (t *rtpTracks) videoPackets(au [][]byte, pts time.Duration) ([]*rtp.Packet, error) {
	pkts, err := t.videoEnc.Encode(au)
	if err != nil {
		return nil, fmt.Errorf("encode H264 RTP: %w", err)
	}
	addTimestamp(pkts, t.videoBase+uint32(durationToTicks(pts, rtspVideoClockRate)))
	return pkts, nil
}

// audioPackets packetizes an AAC frame presented at pts.
func (t *rtpTracks) audioPackets(frame []byte, pts time.Duration) ([]*rtp.Packet, error) {
	pkts, err := t.audioEnc.Encode([][]byte{frame})
	if err != nil {
		return nil, fmt.Errorf("encode AAC RTP: %w", err)
	}
	addTimestamp(pkts, t.audioBase+uint32(durationToTicks(pts, t.audioRate)))
	return pkts, nil
}

func addTimestamp(pkts []*rtp.Packet, ts uint32) {
	for _, pkt := range pkts {
		pkt.Timestamp += ts
	}
}

func randomUint32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return binary.BigEndian.Uint32(b[:])
}
