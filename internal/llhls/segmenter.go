package llhls

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"

	"github.com/streamgrid/streamgrid/internal/fmp4w"
)

// track is the write-side state of one track. Only the writing goroutine
// touches it.
type track struct {
	*gohlslib.Track
	stream  *stream
	leading bool

	randomAccessSeen bool
	dts              dtsExtractor // a video track's, from its first random-access unit

	// The newest sample waits here until the next one gives its duration.
	hasNext     bool
	next        pendingSample
	nextPayload []byte // reused

	// The current part's samples and payloads (reused across parts).
	samples  []fmp4w.Sample
	data     []byte
	partBase int64 // decode time of the part's first sample
}

type pendingSample struct {
	dts       int64
	ntp       time.Time
	ptsOffset int32
	nonSync   bool
}

// segmenter decides where segments and parts end.
type segmenter struct {
	m               *Muxer
	sampleDurations map[time.Duration]struct{} // Low-Latency: every sample duration of the leading track
	partDuration    time.Duration              // the adjusted part duration
	partFrozen      bool                       // no more adjustment after the first segment
}

func toDuration(ts int64, rate int) time.Duration {
	r := int64(rate)
	return time.Duration(ts/r*int64(time.Second) + ts%r*int64(time.Second)/r)
}

func toTimestamp(d time.Duration, rate int) int64 {
	r := int64(rate)
	return int64(d)/int64(time.Second)*r + int64(d)%int64(time.Second)*r/int64(time.Second)
}

func (m *Muxer) trackOf(t *gohlslib.Track) (*track, error) {
	if m.exceeded {
		return nil, ErrTargetExceeded
	}
	tr := m.tracks[t]
	if tr == nil {
		return nil, fmt.Errorf("llhls: unknown track")
	}
	return tr, nil
}

// WriteH264 writes an H264 access unit (NAL units without start codes).
func (m *Muxer) WriteH264(t *gohlslib.Track, ntp time.Time, pts int64, au [][]byte) error {
	tr, err := m.trackOf(t)
	if err != nil {
		return err
	}
	codec, ok := tr.Codec.(*codecs.H264)
	if !ok {
		return fmt.Errorf("llhls: not an H264 track")
	}
	idr, nonIDR := false, false
	for _, nalu := range au {
		if len(nalu) == 0 {
			continue
		}
		switch h264.NALUType(nalu[0] & 0x1f) {
		case h264.NALUTypeIDR:
			idr = true
		case h264.NALUTypeNonIDR:
			nonIDR = true
		case h264.NALUTypeSPS:
			if !tr.stream.hasInit() && !bytes.Equal(codec.SPS, nalu) {
				codec.SPS = nalu
			}
		case h264.NALUTypePPS:
			if !tr.stream.hasInit() && !bytes.Equal(codec.PPS, nalu) {
				codec.PPS = nalu
			}
		}
	}
	if !idr && !nonIDR {
		return nil
	}
	return m.writeVideo(tr, ntp, pts, au, idr, func() dtsExtractor {
		d := &h264.DTSExtractor{}
		d.Initialize()
		return d
	})
}

// dtsExtractor is h264's or h265's DTSExtractor.
type dtsExtractor interface {
	Extract(au [][]byte, pts int64) (int64, error)
}

// writeVideo hands a video access unit to the segmenter with its decode
// time; a track starts at its first random-access unit (ra), where its
// extractor is made by newDTS.
func (m *Muxer) writeVideo(tr *track, ntp time.Time, pts int64, au [][]byte, ra bool, newDTS func() dtsExtractor) error {
	if !tr.randomAccessSeen {
		if !ra {
			return nil
		}
		tr.randomAccessSeen = true
		tr.dts = newDTS()
	}
	dts, err := tr.dts.Extract(au, pts)
	if err != nil {
		return fmt.Errorf("unable to extract DTS: %w", err)
	}
	return m.seg.write(tr, ra, dts, ntp, int32(pts-dts), au, true)
}

// WriteH265 writes an H265 access unit (NAL units without start codes).
func (m *Muxer) WriteH265(t *gohlslib.Track, ntp time.Time, pts int64, au [][]byte) error {
	tr, err := m.trackOf(t)
	if err != nil {
		return err
	}
	codec, ok := tr.Codec.(*codecs.H265)
	if !ok {
		return fmt.Errorf("llhls: not an H265 track")
	}
	ra := false
	for _, nalu := range au {
		if len(nalu) == 0 {
			continue
		}
		switch h265.NALUType((nalu[0] >> 1) & 0x3f) {
		case h265.NALUType_IDR_W_RADL, h265.NALUType_IDR_N_LP, h265.NALUType_CRA_NUT:
			ra = true
		case h265.NALUType_VPS_NUT:
			if !tr.stream.hasInit() && !bytes.Equal(codec.VPS, nalu) {
				codec.VPS = nalu
			}
		case h265.NALUType_SPS_NUT:
			if !tr.stream.hasInit() && !bytes.Equal(codec.SPS, nalu) {
				codec.SPS = nalu
			}
		case h265.NALUType_PPS_NUT:
			if !tr.stream.hasInit() && !bytes.Equal(codec.PPS, nalu) {
				codec.PPS = nalu
			}
		}
	}
	return m.writeVideo(tr, ntp, pts, au, ra, func() dtsExtractor {
		d := &h265.DTSExtractor{}
		d.Initialize()
		return d
	})
}

// WriteMPEG4Audio writes AAC access units; the i-th starts 1024*i samples after pts.
func (m *Muxer) WriteMPEG4Audio(t *gohlslib.Track, ntp time.Time, pts int64, aus [][]byte) error {
	tr, err := m.trackOf(t)
	if err != nil {
		return err
	}
	for i, au := range aus {
		d := time.Duration(i) * mpeg4audio.SamplesPerAccessUnit * time.Second / time.Duration(tr.ClockRate)
		if err := m.seg.write(tr, true, pts+int64(i)*mpeg4audio.SamplesPerAccessUnit, ntp.Add(d), 0, [][]byte{au}, false); err != nil {
			return err
		}
	}
	return nil
}

// WriteOpus writes Opus packets, each starting where the previous one ends.
func (m *Muxer) WriteOpus(t *gohlslib.Track, ntp time.Time, pts int64, packets [][]byte) error {
	tr, err := m.trackOf(t)
	if err != nil {
		return err
	}
	for _, p := range packets {
		if err := m.seg.write(tr, true, pts, ntp, 0, [][]byte{p}, false); err != nil {
			return err
		}
		d := opus.PacketDuration2(p)
		ntp = ntp.Add(toDuration(d, 48000))
		pts += d
	}
	return nil
}

// write queues one sample on its track. The previous sample of the track,
// whose duration is now known, goes into the current part; then the new
// sample decides whether a segment or part ends before it.
func (g *segmenter) write(tr *track, randomAccess bool, dts int64, ntp time.Time, ptsOffset int32, payload [][]byte, avcc bool) error {
	dts += toTimestamp(startDTS, tr.ClockRate)
	if dts < 0 {
		return fmt.Errorf("sample timestamp is impossible to handle")
	}
	s := tr.stream
	if tr.hasNext {
		prev := tr.next
		dur := dts - prev.dts
		if dur < 0 {
			dts, dur = prev.dts, 0
		}
		if err := g.place(tr, prev, uint32(dur)); err != nil {
			tr.setNext(randomAccess, dts, ntp, ptsOffset, payload, avcc)
			return err
		}
	}
	tr.setNext(randomAccess, dts, ntp, ptsOffset, payload, avcc)
	if !tr.leading || s.cur == nil {
		return nil
	}
	next := toDuration(dts, tr.ClockRate)
	if g.m.early() && !g.fits(next-s.cur.startDTS) {
		// The segment, ended here or later, would be longer than the
		// target declared in playlists already served.
		g.m.exceeded = true
		return ErrTargetExceeded
	}
	switch {
	case randomAccess && next-s.cur.startDTS >= g.m.SegmentMinDuration:
		g.m.rotateSegments(next, ntp)
		g.partFrozen = true
	case g.m.lowLatency() && next-s.partStart >= g.partDuration:
		g.m.rotateParts(next)
		// Served from the first part: PART-TARGET is out, keep it.
		g.partFrozen = g.partFrozen || g.m.early()
	}
	return nil
}

// fits says whether a segment of duration d keeps to the declared target:
// its EXTINF rounded to the nearest second is at most TargetDuration.
func (g *segmenter) fits(d time.Duration) bool {
	return d < time.Duration(g.m.TargetDuration)*time.Second+time.Second/2
}

// place adds a sample whose duration is known to its stream's current part.
func (g *segmenter) place(tr *track, smp pendingSample, dur uint32) error {
	s := tr.stream
	if s.cur == nil {
		if !tr.leading {
			return nil // wait for the leading track's first segment
		}
		g.m.createFirstSegment(toDuration(smp.dts, tr.ClockRate), smp.ntp)
		if s.cur == nil {
			return nil // closed
		}
	}
	if tr.leading {
		g.adjustPartDuration(toDuration(int64(dur), tr.ClockRate))
	}
	size := uint64(len(tr.nextPayload))
	if s.cur.media+size > g.m.SegmentMaxSize {
		return ErrMaxSegmentSize
	}
	s.cur.media += size
	if len(tr.samples) == 0 {
		tr.partBase = smp.dts
	}
	if !smp.nonSync {
		s.partIndependent = true
	}
	tr.samples = append(tr.samples, fmp4w.Sample{Duration: dur, PTSOffset: smp.ptsOffset, NonSync: smp.nonSync, Size: uint32(size)})
	tr.data = append(tr.data, tr.nextPayload...)
	return nil
}

// setNext stores the newest sample, its payload written in MP4 form
// (length-prefixed NAL units for video) into the track's reused buffer.
func (tr *track) setNext(randomAccess bool, dts int64, ntp time.Time, ptsOffset int32, payload [][]byte, avcc bool) {
	tr.hasNext = true
	tr.next = pendingSample{dts: dts, ntp: ntp, ptsOffset: ptsOffset, nonSync: !randomAccess}
	b := tr.nextPayload[:0]
	for _, p := range payload {
		if avcc {
			b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		}
		b = append(b, p...)
	}
	tr.nextPayload = b
}

// adjustPartDuration finds the shortest part duration, from
// PartMinDuration up in 5 ms steps, into which every sample duration seen
// so far fits with parts of at least 85 % of it (Low-Latency only, until
// the first segment is complete).
func (g *segmenter) adjustPartDuration(d time.Duration) {
	if !g.m.lowLatency() || g.partFrozen || d == 0 {
		return
	}
	if _, ok := g.sampleDurations[d]; ok {
		return
	}
	g.sampleDurations[d] = struct{}{}
	p := g.m.PartMinDuration
	for ; p < 5*time.Second; p += 5 * time.Millisecond {
		if g.fitsAll(p) {
			break
		}
	}
	g.partDuration = p
}

// longestPart bounds the parts to come, rounded up to the millisecond: a
// part closes at the first sample boundary at or after the part duration,
// so with samples of one duration d every part lasts ceil(p/d)*d, and with
// several it stays under the part duration plus the longest of them.
func (g *segmenter) longestPart() time.Duration {
	p := g.partDuration
	var longest time.Duration
	for d := range g.sampleDurations {
		longest = max(longest, d)
	}
	switch {
	case longest == 0:
	case len(g.sampleDurations) == 1:
		p = (p + longest - 1) / longest * longest
	default:
		p += longest
	}
	return (p + time.Millisecond - 1) / time.Millisecond * time.Millisecond
}

func (g *segmenter) fitsAll(p time.Duration) bool {
	for d := range g.sampleDurations {
		if d > p {
			return false
		}
		// the part holds whole samples: ceil(p/d) of them
		n := (p + d - 1) / d
		if p <= n*d*85/100 {
			return false
		}
	}
	return true
}
