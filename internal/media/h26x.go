package media

import (
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
)

// H.264 and H.265 helpers the roles share: what a NAL unit is for, and
// whether an access unit can start decoding.
//
// A NAL unit here is one without start code or length prefix; an access
// unit is the NAL units of one picture, in decode order. Nothing is copied:
// results alias the input. Codecs other than CodecH265 are read as H.264.

// NALClass is what a NAL unit is for, in terms both codecs share.
type NALClass uint8

// NAL unit classes.
const (
	NALOther   NALClass = iota // SEI and everything not listed below
	NALDrop                    // access unit delimiter, filler data: safe to drop
	NALVPS                     // H.265 video parameter set
	NALSPS                     // sequence parameter set
	NALPPS                     // picture parameter set
	NALPicture                 // VCL: a slice of a picture
)

// NALType returns the NAL unit type of a non-empty NAL unit.
func NALType(codec Codec, nalu []byte) uint8 {
	if codec == CodecH265 {
		return (nalu[0] >> 1) & 0x3F
	}
	return nalu[0] & 0x1F
}

// ClassifyNAL says what a non-empty NAL unit is for.
func ClassifyNAL(codec Codec, nalu []byte) NALClass {
	typ := NALType(codec, nalu)
	if codec == CodecH265 {
		switch h265.NALUType(typ) {
		case h265.NALUType_AUD_NUT, h265.NALUType_FD_NUT:
			return NALDrop
		case h265.NALUType_VPS_NUT:
			return NALVPS
		case h265.NALUType_SPS_NUT:
			return NALSPS
		case h265.NALUType_PPS_NUT:
			return NALPPS
		}
		if typ <= 31 {
			return NALPicture
		}
		return NALOther
	}
	switch h264.NALUType(typ) {
	case h264.NALUTypeAccessUnitDelimiter, h264.NALUTypeFillerData:
		return NALDrop
	case h264.NALUTypeSPS:
		return NALSPS
	case h264.NALUTypePPS:
		return NALPPS
	case h264.NALUTypeNonIDR, h264.NALUTypeDataPartitionA, h264.NALUTypeDataPartitionB,
		h264.NALUTypeDataPartitionC, h264.NALUTypeIDR:
		return NALPicture
	}
	return NALOther
}

// ParameterSets returns the last VPS, SPS and PPS of an access unit (nil
// for those it lacks; VPS is always nil for H.264). Empty NAL units are
// skipped.
func ParameterSets(codec Codec, au [][]byte) (vps, sps, pps []byte) {
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		switch ClassifyNAL(codec, n) {
		case NALVPS:
			vps = n
		case NALSPS:
			sps = n
		case NALPPS:
			pps = n
		}
	}
	return vps, sps, pps
}

// IsRandomAccess reports whether decoding can start at the access unit (an
// IDR, or for H.265 an IRAP picture). It inspects NAL units: code that has
// a Packet reads its FlagKeyframe instead, set once where the unit entered
// the cluster.
func IsRandomAccess(codec Codec, au [][]byte) bool {
	if codec == CodecH265 {
		return h265.IsRandomAccess(au)
	}
	return h264.IsRandomAccess(au)
}
