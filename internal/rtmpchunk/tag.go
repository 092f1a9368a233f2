package rtmpchunk

// The FLV tag shapes of RTMP video and audio message bodies that carry a
// coded frame, which is nearly every message of a publication. Each reader
// accepts exactly what gortmplib's decoder (pkg/message v1.0.2) decodes
// into the same frame and refuses everything else, so a caller can hand
// whatever is refused to that decoder and see the same result:
//
//	legacy video     byte 0: frame type<<4 | codec id (7 AVC, 12 HEVC); byte 1: 1 (NALU);
//	                 bytes 2-4: composition time, signed ms; 5-: AVCC length-prefixed NAL units
//	enhanced video   byte 0: 0x80 | frame type<<4 | packet type (1 CodedFrames, 3 CodedFramesX);
//	                 bytes 1-4: FourCC (avc1, hvc1); CodedFrames: bytes 5-7 composition time; then AVCC
//	legacy AAC       byte 0: 10<<4 | rate, size, channels; byte 1: 1 (raw); 2-: one AAC frame
//
// Sequence headers, end of sequence, metadata, multitrack and other codecs
// are refused: they are rare and gortmplib's decoder handles them.

// Video packet types of enhanced RTMP (VideoPacketType).
const (
	videoExCodedFrames  = 1
	videoExCodedFramesX = 3
)

const (
	fourCCAVC  = 'a'<<24 | 'v'<<16 | 'c'<<8 | '1'
	fourCCHEVC = 'h'<<24 | 'v'<<16 | 'c'<<8 | '1'
)

// VideoFrame reads an AVC or HEVC coded frame from a video message body:
// its composition time (PTS - DTS) in milliseconds and its AVCC data
// (aliasing body). ok is false for any other body.
func VideoFrame(body []byte) (cts int32, avcc []byte, ok bool) {
	if len(body) < 6 {
		return 0, nil, false
	}
	if body[0]&0x80 == 0 { // legacy FLV
		if c := body[0] & 0x0f; c != 7 && c != 12 || body[1] != 1 {
			return 0, nil, false
		}
		return int32(uint32(body[2])<<24|uint32(body[3])<<16|uint32(body[4])<<8) >> 8, body[5:], true
	}
	fourCC := uint32(body[1])<<24 | uint32(body[2])<<16 | uint32(body[3])<<8 | uint32(body[4])
	if fourCC != fourCCAVC && fourCC != fourCCHEVC {
		return 0, nil, false
	}
	switch body[0] & 0x0f {
	case videoExCodedFrames:
		if len(body) < 9 {
			return 0, nil, false
		}
		return int32(uint32(body[5])<<24|uint32(body[6])<<16|uint32(body[7])<<8) >> 8, body[8:], true
	case videoExCodedFramesX:
		return 0, body[5:], true
	}
	return 0, nil, false
}

// AACFrame reads an AAC frame from a legacy FLV audio message body
// (aliasing body). ok is false for any other body.
func AACFrame(body []byte) (frame []byte, ok bool) {
	if len(body) < 3 || body[0]>>4 != 10 || body[1] != 1 {
		return nil, false
	}
	return body[2:], true
}
