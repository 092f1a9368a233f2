package testmedia

import (
	"encoding/binary"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// SEI latency stamp, as written by MarshalSEITimestamp:
//
//	NAL header 0x06 (nal_ref_idc 0, nal_unit_type 6 = SEI)
//	sei_message: payloadType 5 (user_data_unregistered), payloadSize 24
//	  uuid_iso_iec_11578   16 bytes  seiUUID
//	  send time            8 bytes   Unix nanoseconds, big-endian, two's complement
//	rbsp_trailing_bits     0x80
//
// with emulation prevention bytes inserted over everything after the NAL header
// (ITU-T H.264 7.4.1), so the NAL unit is valid H.264 whatever the time value.

// seiUUID is the user_data_unregistered UUID that marks streamgrid's send-time
// stamp. Other user data SEI (x264's banner, captions) is ignored by the parser.
var seiUUID = [16]byte{
	0x73, 0x67, 0x72, 0x64, 0x2d, 0x6c, 0x61, 0x74, // "sgrd-lat"
	0x9a, 0x41, 0x5e, 0x27, 0xc4, 0x1b, 0x8d, 0xf3,
}

const (
	seiPayloadTypeUserDataUnregistered = 5
	seiStampPayloadSize                = 16 + 8
)

// MarshalSEITimestamp returns an H264 SEI NAL unit (no start code) carrying t
// as a user_data_unregistered message identified by streamgrid's fixed UUID
// (73 67 72 64 2d 6c 61 74 9a 41 5e 27 c4 1b 8d f3).
func MarshalSEITimestamp(t time.Time) []byte {
	rbsp := make([]byte, 0, 2+seiStampPayloadSize+1)
	rbsp = append(rbsp, seiPayloadTypeUserDataUnregistered, seiStampPayloadSize)
	rbsp = append(rbsp, seiUUID[:]...)
	rbsp = binary.BigEndian.AppendUint64(rbsp, uint64(t.UnixNano()))
	rbsp = append(rbsp, 0x80) // rbsp_stop_one_bit + alignment

	nalu := make([]byte, 1, 1+len(rbsp)+len(rbsp)/2)
	nalu[0] = byte(h264.NALUTypeSEI)
	return appendEmulationPrevention(nalu, rbsp)
}

// ParseSEITimestamp returns the send time carried by nalu when nalu is an SEI
// NAL unit (without start code) holding a user_data_unregistered message with
// streamgrid's UUID; other SEI messages in the same NAL unit are skipped. It
// never panics on malformed input.
func ParseSEITimestamp(nalu []byte) (time.Time, bool) {
	if len(nalu) < 2 || h264.NALUType(nalu[0]&0x1f) != h264.NALUTypeSEI {
		return time.Time{}, false
	}
	rbsp := h264.EmulationPreventionRemove(nalu[1:])

	pos := 0
	for pos < len(rbsp) {
		// the last byte of an SEI RBSP is the stop bit (0x80)
		if pos == len(rbsp)-1 && rbsp[pos] == 0x80 {
			break
		}
		payloadType, ok := readSEIValue(rbsp, &pos)
		if !ok {
			break
		}
		payloadSize, ok := readSEIValue(rbsp, &pos)
		if !ok || payloadSize > len(rbsp)-pos {
			break
		}
		payload := rbsp[pos : pos+payloadSize]
		pos += payloadSize

		if payloadType == seiPayloadTypeUserDataUnregistered &&
			len(payload) >= seiStampPayloadSize &&
			[16]byte(payload[:16]) == seiUUID {
			ns := int64(binary.BigEndian.Uint64(payload[16:24]))
			return time.Unix(0, ns), true
		}
	}
	return time.Time{}, false
}

// AUTimestamp returns the send time of the first SEI stamp found in an access
// unit.
func AUTimestamp(au [][]byte) (time.Time, bool) {
	for _, nalu := range au {
		if t, ok := ParseSEITimestamp(nalu); ok {
			return t, true
		}
	}
	return time.Time{}, false
}

// WithSEITimestamp returns a copy of the access unit (the slice, not the NAL
// units) with an SEI stamp carrying t in front of its first slice: after any
// access unit delimiter, SPS and PPS, as H.264 7.4.1.2.3 orders them.
func WithSEITimestamp(au [][]byte, t time.Time) [][]byte {
	at := len(au)
	for i, nalu := range au {
		if len(nalu) > 0 && isVCL(h264.NALUType(nalu[0]&0x1f)) {
			at = i
			break
		}
	}
	out := make([][]byte, 0, len(au)+1)
	out = append(out, au[:at]...)
	out = append(out, MarshalSEITimestamp(t))
	return append(out, au[at:]...)
}

func isVCL(typ h264.NALUType) bool {
	return typ >= h264.NALUTypeNonIDR && typ <= h264.NALUTypeIDR
}

// readSEIValue reads a payloadType or payloadSize: a run of 0xFF bytes, each
// adding 255, closed by a byte below 0xFF.
func readSEIValue(buf []byte, pos *int) (int, bool) {
	v := 0
	for *pos < len(buf) {
		b := buf[*pos]
		*pos++
		v += int(b)
		if b != 0xff {
			return v, true
		}
		if v > 1<<20 { // far beyond any NAL unit this package handles
			return 0, false
		}
	}
	return 0, false
}

// appendEmulationPrevention appends rbsp to dst, inserting an
// emulation_prevention_three_byte after every two zero bytes that are followed
// by a byte <= 3.
func appendEmulationPrevention(dst, rbsp []byte) []byte {
	zeros := 0
	for _, b := range rbsp {
		if zeros >= 2 && b <= 3 {
			dst = append(dst, 3)
			zeros = 0
		}
		dst = append(dst, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return dst
}
