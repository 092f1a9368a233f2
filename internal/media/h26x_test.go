package media

import "testing"

func TestClassifyNAL(t *testing.T) {
	cases := []struct {
		codec Codec
		nalu  []byte
		want  NALClass
	}{
		{CodecH264, []byte{0x09, 0xf0}, NALDrop},    // access unit delimiter
		{CodecH264, []byte{0x0c}, NALDrop},          // filler
		{CodecH264, []byte{0x67, 0x42}, NALSPS},     // SPS
		{CodecH264, []byte{0x68, 0xce}, NALPPS},     // PPS
		{CodecH264, []byte{0x65, 0x88}, NALPicture}, // IDR slice
		{CodecH264, []byte{0x41, 0x9a}, NALPicture}, // non-IDR slice
		{CodecH264, []byte{0x06, 0x05}, NALOther},   // SEI
		{CodecH265, []byte{0x40, 0x01}, NALVPS},     // type 32
		{CodecH265, []byte{0x42, 0x01}, NALSPS},     // type 33
		{CodecH265, []byte{0x44, 0x01}, NALPPS},     // type 34
		{CodecH265, []byte{0x46, 0x01}, NALDrop},    // type 35: AUD
		{CodecH265, []byte{0x4c, 0x01}, NALDrop},    // type 38: filler
		{CodecH265, []byte{0x26, 0x01}, NALPicture}, // type 19: IDR_W_RADL
		{CodecH265, []byte{0x02, 0x01}, NALPicture}, // type 1: TRAIL_R
		{CodecH265, []byte{0x4e, 0x01}, NALOther},   // type 39: prefix SEI
	}
	for _, c := range cases {
		if got := ClassifyNAL(c.codec, c.nalu); got != c.want {
			t.Errorf("%v %#x: class %d, want %d", c.codec, c.nalu[0], got, c.want)
		}
	}
}

func TestParameterSetsAndRandomAccess(t *testing.T) {
	sps, pps, idr, slice := []byte{0x67, 1}, []byte{0x68, 2}, []byte{0x65, 3}, []byte{0x41, 4}
	vps, s, p := ParameterSets(CodecH264, [][]byte{{}, sps, pps, idr})
	if vps != nil || string(s) != string(sps) || string(p) != string(pps) {
		t.Fatalf("H.264 parameter sets: %x %x %x", vps, s, p)
	}
	if !IsRandomAccess(CodecH264, [][]byte{sps, pps, idr}) || IsRandomAccess(CodecH264, [][]byte{slice}) {
		t.Fatal("H.264 random access misjudged")
	}
	hv, hs, hp, hidr := []byte{0x40, 1}, []byte{0x42, 1}, []byte{0x44, 1}, []byte{0x26, 1}
	vps, s, p = ParameterSets(CodecH265, [][]byte{hv, hs, hp, hidr})
	if string(vps) != string(hv) || string(s) != string(hs) || string(p) != string(hp) {
		t.Fatalf("H.265 parameter sets: %x %x %x", vps, s, p)
	}
	if !IsRandomAccess(CodecH265, [][]byte{hv, hs, hp, hidr}) || IsRandomAccess(CodecH265, [][]byte{{0x02, 1}}) {
		t.Fatal("H.265 random access misjudged")
	}
}
