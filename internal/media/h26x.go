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

// NAL unit classes by type; a type not listed is NALOther.
var (
	h264Classes = [32]NALClass{
		h264.NALUTypeAccessUnitDelimiter: NALDrop,
		h264.NALUTypeFillerData:          NALDrop,
		h264.NALUTypeSPS:                 NALSPS,
		h264.NALUTypePPS:                 NALPPS,
		h264.NALUTypeNonIDR:              NALPicture,
		h264.NALUTypeDataPartitionA:      NALPicture,
		h264.NALUTypeDataPartitionB:      NALPicture,
		h264.NALUTypeDataPartitionC:      NALPicture,
		h264.NALUTypeIDR:                 NALPicture,
	}
	h265Classes = func() (c [64]NALClass) {
		for typ := range 32 {
			c[typ] = NALPicture // VCL types are 0..31
		}
		c[h265.NALUType_VPS_NUT] = NALVPS
		c[h265.NALUType_SPS_NUT] = NALSPS
		c[h265.NALUType_PPS_NUT] = NALPPS
		c[h265.NALUType_AUD_NUT] = NALDrop
		c[h265.NALUType_FD_NUT] = NALDrop
		return c
	}()
)

// ClassifyNAL says what a non-empty NAL unit is for.
func ClassifyNAL(codec Codec, nalu []byte) NALClass {
	if codec == CodecH265 {
		return h265Classes[NALType(codec, nalu)]
	}
	return h264Classes[NALType(codec, nalu)]
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
