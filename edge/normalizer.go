package edge

import (
	"bytes"
	"fmt"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/media"
)

// Limits on one access unit. They match what the origin's AVCC decoder
// (mediacommon) accepts, so a unit the edge publishes is never refused there.
const (
	maxAUSize  = h264.MaxAccessUnitSize     // bytes of NAL units (8 MiB)
	maxAUNALUs = h264.MaxNALUsPerAccessUnit // NAL units per access unit
)

// maxTimestampJump is how far a track's timestamps may run ahead of (or lag)
// the wall clock between two of its units before the edge treats the jump as
// a source discontinuity and re-anchors the track on the wall clock.
const maxTimestampJump = 10 * time.Second

// dropReason says why the normalizer did not emit a unit. It is the "reason"
// label of the dropped-units metric.
type dropReason uint8

const (
	dropNone         dropReason = iota
	dropNotStarted              // before the stream's first video keyframe
	dropWaitKeyframe            // a video track waiting for a keyframe (start, after an error)
	dropNoPicture               // no picture in the unit (parameter sets only, empty)
	dropNoParams                // a keyframe arrived before its parameter sets
	dropOversized               // larger than maxAUSize or more than maxAUNALUs NAL units
	dropTimestamp               // DTS could not be derived
)

var dropReasonNames = [...]string{
	dropNone:         "none",
	dropNotStarted:   "not_started",
	dropWaitKeyframe: "wait_keyframe",
	dropNoPicture:    "no_picture",
	dropNoParams:     "no_params",
	dropOversized:    "oversized",
	dropTimestamp:    "timestamp",
}

func (r dropReason) String() string { return dropReasonNames[r] }

// normTrack is the per-track state of a normalizer.
type normTrack struct {
	info  bus.TrackInfo
	video bool

	h264DTS *h264.DTSExtractor
	h265DTS *h265.DTSExtractor

	// needKey: a video track drops units until its next keyframe.
	needKey bool
	// paramsChanged: info's parameter sets changed since the flag was cleared.
	paramsChanged bool

	// adj is added to every source timestamp: it grows or shrinks at each
	// discontinuity so that the output timeline continues smoothly.
	adj int64
	// lastIn/lastWall: the previous source timestamp (adjusted) and its wall clock.
	lastIn   int64
	lastWall time.Time
	haveLast bool
	// discont: mark the next emitted unit as a discontinuity.
	discont bool

	// lastPTS/lastDTS: the previous emitted timestamps on the output timeline.
	lastPTS, lastDTS int64
	emitted          bool
}

// normalizer turns the access units of one publication into bus packets: it
// keeps parameter sets and puts them in front of every keyframe, drops access
// unit delimiters and filler, derives DTS, rebases every track onto one
// 64-bit timeline starting at 0 with the stream's first video keyframe, keeps
// DTS strictly increasing, and numbers the units. It does no I/O and is not
// safe for concurrent use.
type normalizer struct {
	tracks     []*normTrack
	generation uint64

	// primary is the first video track, or -1 for an audio-only stream.
	primary int
	started bool
	// base is the source timestamp (in baseRate units) that maps to 0.
	base     int64
	baseRate int
	seq      uint64

	// Discontinuities counts timeline re-anchors, DTSErrors failed DTS
	// derivations, ParamChanges in-band parameter sets replacing known ones.
	Discontinuities uint64
	DTSErrors       uint64
	ParamChanges    uint64
}

// newNormalizer builds a normalizer for tracks, which must have clock rates > 0.
func newNormalizer(tracks []bus.TrackInfo, generation uint64) (*normalizer, error) {
	n := &normalizer{generation: generation, primary: -1}
	if len(tracks) == 0 || len(tracks) > maxTracks {
		return nil, fmt.Errorf("edge: %d tracks (1..%d supported)", len(tracks), maxTracks)
	}
	for i, ti := range tracks {
		if ti.ClockRate <= 0 {
			return nil, fmt.Errorf("edge: track %d: clock rate %d", i, ti.ClockRate)
		}
		ti.ID = uint8(i)
		ti.VPS = bytes.Clone(ti.VPS)
		ti.SPS = bytes.Clone(ti.SPS)
		ti.PPS = bytes.Clone(ti.PPS)
		t := &normTrack{info: ti, video: ti.Codec.IsVideo()}
		if t.video {
			t.needKey = true
			t.resetDTS()
			if n.primary < 0 {
				n.primary = i
			}
		}
		n.tracks = append(n.tracks, t)
	}
	return n, nil
}

// maxTracks bounds the tracks of one stream.
const maxTracks = 16

func (t *normTrack) resetDTS() {
	switch t.info.Codec {
	case media.CodecH264:
		t.h264DTS = &h264.DTSExtractor{}
		t.h264DTS.Initialize()
	case media.CodecH265:
		t.h265DTS = &h265.DTSExtractor{}
		t.h265DTS.Initialize()
	}
}

// extractDTS runs the codec's DTS extractor. mediacommon parses slice headers
// there; a panic on a corrupt header is turned into an error so that one
// hostile stream cannot take the edge down.
func (t *normTrack) extractDTS(au [][]byte, pts int64) (dts int64, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("DTS extractor panic: %v", r)
		}
	}()
	if t.info.Codec == media.CodecH265 {
		return t.h265DTS.Extract(au, pts)
	}
	return t.h264DTS.Extract(au, pts)
}

// trackInfos returns a copy of the current track descriptions (parameter sets
// included) and clears the changed flags when clear is true.
func (n *normalizer) trackInfos(clear bool) (infos []bus.TrackInfo, changed bool) {
	infos = make([]bus.TrackInfo, len(n.tracks))
	for i, t := range n.tracks {
		infos[i] = t.info
		changed = changed || t.paramsChanged
		if clear {
			t.paramsChanged = false
		}
	}
	return infos, changed
}

// paramsChanged reports whether a track's parameter sets changed since the
// last trackInfos(true).
func (n *normalizer) paramsChanged() bool {
	for _, t := range n.tracks {
		if t.paramsChanged {
			return true
		}
	}
	return false
}

// multiplyAndDivide computes v*m/d without overflowing for large v.
func multiplyAndDivide(v, m, d int64) int64 {
	secs := v / d
	dec := v % d
	return secs*m + dec*m/d
}

// offset is the source timestamp of t that maps to 0 on the output timeline.
func (n *normalizer) offset(t *normTrack) int64 {
	return multiplyAndDivide(n.base, int64(t.info.ClockRate), int64(n.baseRate))
}

// checkJump re-anchors t when its timestamps jump: backwards by more than a
// second, or away from the wall clock by more than maxTimestampJump. in is the
// adjusted source timestamp; the re-anchored value is returned.
func (n *normalizer) checkJump(t *normTrack, in int64, wall time.Time) (int64, bool) {
	rate := int64(t.info.ClockRate)
	if !t.haveLast {
		t.haveLast = true
		t.lastIn, t.lastWall = in, wall
		return in, false
	}
	delta := in - t.lastIn
	wallTicks := multiplyAndDivide(int64(max(wall.Sub(t.lastWall), 0)), rate, int64(time.Second))
	limit := multiplyAndDivide(int64(maxTimestampJump), rate, int64(time.Second))
	jumped := delta < -rate || delta-wallTicks > limit
	if jumped {
		expected := t.lastIn + max(wallTicks, 1)
		t.adj += expected - in
		in = expected
		t.discont = true
		n.Discontinuities++
		if t.video {
			t.resetDTS()
			t.needKey = true
		}
	}
	t.lastIn, t.lastWall = in, wall
	return in, jumped
}

// NAL unit classes, named for the normalizer; media classifies.
const (
	nalDrop    = media.NALDrop
	nalVPS     = media.NALVPS
	nalSPS     = media.NALSPS
	nalPPS     = media.NALPPS
	nalPicture = media.NALPicture
)

func classify(codec media.Codec, nalu []byte) media.NALClass { return media.ClassifyNAL(codec, nalu) }

// filterAU drops empty NAL units, delimiters and filler, records in-band
// parameter sets in t.info, and reports whether the unit holds a picture,
// which parameter sets it carries and how many known ones it replaced.
func (t *normTrack) filterAU(au [][]byte) (out [][]byte, picture bool, has [3]bool, replaced int) {
	out = make([][]byte, 0, len(au)+3)
	for _, nalu := range au {
		if len(nalu) == 0 {
			continue
		}
		c := classify(t.info.Codec, nalu)
		switch c {
		case nalDrop:
			continue
		case nalVPS:
			has[0] = true
			replaced += t.setParam(&t.info.VPS, nalu)
		case nalSPS:
			has[1] = true
			replaced += t.setParam(&t.info.SPS, nalu)
		case nalPPS:
			has[2] = true
			replaced += t.setParam(&t.info.PPS, nalu)
		case nalPicture:
			picture = true
		}
		out = append(out, nalu)
	}
	return out, picture, has, replaced
}

// setParam stores a parameter set; it returns 1 when it replaced a different known one.
func (t *normTrack) setParam(dst *[]byte, nalu []byte) int {
	if bytes.Equal(*dst, nalu) {
		return 0
	}
	known := len(*dst) > 0
	*dst = bytes.Clone(nalu)
	t.paramsChanged = true
	if known {
		return 1
	}
	return 0
}

// withParams returns a keyframe with the track's parameter sets in front when
// it lacks any of them: the unit's own parameter sets are kept (all of them,
// for streams with several PPS), moved in front in VPS, SPS, PPS order, and
// the stored ones fill what is missing. It returns nil when a required
// parameter set is unknown.
func (t *normTrack) withParams(au [][]byte, has [3]bool) [][]byte {
	h265 := t.info.Codec == media.CodecH265
	if has[1] && has[2] && (!h265 || has[0]) {
		return au
	}
	if len(t.info.SPS) == 0 || len(t.info.PPS) == 0 || (h265 && len(t.info.VPS) == 0) {
		return nil
	}
	var vps, sps, pps, rest [][]byte
	for _, nalu := range au {
		switch classify(t.info.Codec, nalu) {
		case nalVPS:
			vps = append(vps, nalu)
		case nalSPS:
			sps = append(sps, nalu)
		case nalPPS:
			pps = append(pps, nalu)
		default:
			rest = append(rest, nalu)
		}
	}
	if h265 && len(vps) == 0 {
		vps = [][]byte{t.info.VPS}
	}
	if len(sps) == 0 {
		sps = [][]byte{t.info.SPS}
	}
	if len(pps) == 0 {
		pps = [][]byte{t.info.PPS}
	}
	out := make([][]byte, 0, len(vps)+len(sps)+len(pps)+len(rest))
	out = append(out, vps...)
	out = append(out, sps...)
	out = append(out, pps...)
	return append(out, rest...)
}

func auSize(au [][]byte) int {
	n := 0
	for _, nalu := range au {
		n += len(nalu)
	}
	return n
}

// pushVideo normalises one H264/H265 access unit of track idx. pts (and dts
// when hasDTS) are on the source's 64-bit timeline in the track's clock rate;
// without a DTS it is derived from the bitstream.
func (n *normalizer) pushVideo(idx int, pts, dts int64, hasDTS bool, au [][]byte, wall time.Time) (*media.Packet, dropReason) {
	t := n.tracks[idx]
	au, picture, has, replaced := t.filterAU(au)
	n.ParamChanges += uint64(replaced)
	if !picture {
		return nil, dropNoPicture
	}

	in, _ := n.checkJump(t, pts+t.adj, wall)
	dts += t.adj

	key := media.IsRandomAccess(t.info.Codec, au)
	if !key {
		if !n.started {
			return nil, dropNotStarted
		}
		if t.needKey {
			return nil, dropWaitKeyframe
		}
	} else {
		if !n.started && idx != n.primary {
			return nil, dropNotStarted
		}
		au = t.withParams(au, has)
		if au == nil {
			return nil, dropNoParams
		}
	}

	if len(au) > maxAUNALUs || auSize(au) > maxAUSize {
		// Whatever follows until the next keyframe refers to this unit.
		t.needKey = true
		return nil, dropOversized
	}

	if hasDTS {
		dts = min(dts, in)
	} else {
		var err error
		dts, err = t.extractDTS(au, in)
		if err != nil {
			n.DTSErrors++
			t.resetDTS()
			t.needKey = true
			return nil, dropTimestamp
		}
	}

	if !n.started {
		n.started = true
		n.base, n.baseRate = dts, t.info.ClockRate
	}
	off := n.offset(t)
	outPTS, outDTS := in-off, dts-off
	if t.emitted && outDTS <= t.lastDTS {
		outDTS = t.lastDTS + 1
	}
	outPTS = max(outPTS, outDTS)

	payload, err := h264.AVCC(au).Marshal()
	if err != nil {
		return nil, dropOversized
	}
	t.needKey = false
	return n.emit(idx, t, outPTS, outDTS, key, payload, wall), dropNone
}

// pushAudio normalises one audio frame (an AAC access unit or an Opus packet)
// of track idx; pts is on the source's timeline in the track's clock rate.
// The payload is copied.
func (n *normalizer) pushAudio(idx int, pts int64, frame []byte, wall time.Time) (*media.Packet, dropReason) {
	t := n.tracks[idx]
	if len(frame) == 0 {
		return nil, dropNoPicture
	}
	if len(frame) > maxAUSize {
		return nil, dropOversized
	}
	in, _ := n.checkJump(t, pts+t.adj, wall)
	if !n.started {
		if n.primary >= 0 {
			return nil, dropNotStarted
		}
		n.started = true
		n.base, n.baseRate = in, t.info.ClockRate
	}
	out := in - n.offset(t)
	if !t.emitted && out < 0 {
		// Audio from before the first video keyframe.
		return nil, dropNotStarted
	}
	if t.emitted && out <= t.lastPTS {
		out = t.lastPTS + 1
	}
	// Every audio frame can be decoded on its own: each one is a keyframe.
	return n.emit(idx, t, out, out, true, bytes.Clone(frame), wall), dropNone
}

func (n *normalizer) emit(idx int, t *normTrack, pts, dts int64, key bool, payload []byte, wall time.Time) *media.Packet {
	var flags media.Flags
	if key {
		flags |= media.FlagKeyframe
	}
	if t.discont {
		flags |= media.FlagDiscontinuity
		t.discont = false
	}
	t.lastPTS, t.lastDTS, t.emitted = pts, dts, true
	p := &media.Packet{
		Track:      uint8(idx),
		Codec:      t.info.Codec,
		Flags:      flags,
		PTS:        pts,
		DTS:        dts,
		WallClock:  wall.UnixNano(),
		Generation: n.generation,
		Seq:        n.seq,
		Payload:    payload,
	}
	n.seq++
	return p
}
