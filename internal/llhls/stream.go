package llhls

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	mp4codecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/streamgrid/streamgrid/internal/fmp4w"
)

// stream is one media playlist: one track, its segments and parts.
// Fields below "guarded" change under Muxer.mu; the writing goroutine may
// read them without it.
type stream struct {
	m         *Muxer
	id        string
	track     *track
	leading   bool
	rendition bool
	isDefault bool
	name      string
	language  string

	playlistName string
	initName     string
	contentType  string

	partStart       time.Duration // start of the current part (writer only)
	partIndependent bool          // writer only
	// scratch is the part buffer reused while segments go to files (writer
	// only): a part written to its file is not kept.
	scratch []byte

	// guarded
	init           []byte // nil until the first segment is complete
	segments       []*segment
	deleted        int // segments dropped from the front (EXT-X-MEDIA-SEQUENCE)
	nextSegID      uint64
	nextPartID     uint64
	cur            *segment
	targetDuration int
	partTarget     time.Duration
	// With Directory: the file segments are appended to, and the number of
	// files made so far (for their names).
	file  *segFile
	files int
}

// segFile is a file of Directory that holds consecutive segments of one
// stream, each part appended with one write. A stream starts a new file
// when its current one is older than fileSpan, and removes a file once
// every segment in it was dropped.
//
// Why several segments per file: creating a file is what costs on disk
// (ext4 on the benchmark machine: 30-370 us of CPU per create, against
// ~15 us to open an existing file and ~7 us to remove an empty one; a file
// per segment and track was 13 % of the node's CPU at 25 cameras,
// docs/benchmarks.md). Why not reuse files instead: the kernel writes a
// file's dirty pages back once they are older than vm.dirty_expire_centisecs
// (30 s by default); a file removed before that is never written to the
// disk at all, a reused one is, every 30 s (measured: ~1.4 MB/s more disk
// writes at 25 cameras).
type segFile struct {
	path    string
	f       *os.File // open while it is the stream's current file
	size    int64    // bytes written
	segs    int      // its segments not dropped yet
	created time.Time
}

// fileSpan is how long a stream appends its segments to one file: short
// enough that the file is removed before the kernel writes it back. A file
// lives fileSpan plus the time its last segment is kept (SegmentCount+1
// segments); that has to stay within 80 % of the dirty expiry. Zero or less:
// a file per segment.
func (m *Muxer) fileSpan(segment time.Duration) time.Duration {
	kept := time.Duration(m.SegmentCount+1) * max(segment, m.SegmentMinDuration)
	return min(maxFileSpan, dirtyExpiry()*8/10-kept)
}

// maxFileSpan bounds a file's span (what its removal frees at once).
const maxFileSpan = 10 * time.Second

// dirtyExpiry is vm.dirty_expire_centisecs (30 s where it cannot be read).
var dirtyExpiry = sync.OnceValue(func() time.Duration {
	b, err := os.ReadFile("/proc/sys/vm/dirty_expire_centisecs")
	if err != nil {
		return 30 * time.Second
	}
	cs, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || cs <= 0 {
		return 30 * time.Second
	}
	return time.Duration(cs) * 10 * time.Millisecond
})

// segmentFile gives a new segment the file to append to, starting a new
// one when the current one spans fileSpan (last: the duration of the
// segment just completed). Called with mu held.
func (s *stream) segmentFile(last time.Duration) (*segFile, error) {
	if cf := s.file; cf != nil {
		if s.m.now().Sub(cf.created) < s.m.fileSpan(last) {
			return cf, nil
		}
		s.file = nil
		if err := cf.f.Close(); err != nil {
			s.m.OnEncodeError(err)
		}
		cf.f = nil
		if cf.segs == 0 {
			_ = os.Remove(cf.path)
		}
	}
	path := filepath.Join(s.m.Directory, s.m.prefix+"_"+s.id+"_file"+strconv.Itoa(s.files)+".mp4")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	s.files++
	s.file = &segFile{path: path, f: f, created: s.m.now()}
	return s.file, nil
}

// segment is a media segment, or a gap placeholder.
type segment struct {
	id       uint64
	gap      bool
	name     string
	startNTP time.Time
	startDTS time.Duration
	endDTS   time.Duration // set when complete; a gap's duration
	parts    []*part
	media    uint64   // payload bytes (SegmentMaxSize)
	size     int64    // bytes of the segment (its parts)
	file     *segFile // with Directory; nil in memory
}

func (sg *segment) duration() time.Duration {
	if sg.gap {
		return sg.endDTS
	}
	return sg.endDTS - sg.startDTS
}

// part is a complete part: its bytes in data, or at off in its segment's file.
type part struct {
	id          uint64
	name        string
	startDTS    time.Duration
	endDTS      time.Duration
	independent bool
	data        []byte
	off, size   int64
	seg         *segment
}

func (s *stream) initialize() {
	s.playlistName = s.id + "_stream.m3u8"
	s.initName = s.m.prefix + "_" + s.id + "_init.mp4"
	s.contentType = "video/mp4"
	if !s.track.isVideo() {
		s.contentType = "audio/mp4"
	}
}

func (t *track) isVideo() bool { return t.Codec.IsVideo() }

func (s *stream) hasInit() bool {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	return s.init != nil
}

func (s *stream) segName(id uint64) string {
	return s.m.prefix + "_" + s.id + "_seg" + strconv.FormatUint(id, 10) + ".mp4"
}

func (s *stream) partName(id uint64) string {
	return s.m.prefix + "_" + s.id + "_part" + strconv.FormatUint(id, 10) + ".mp4"
}

// newSegment starts the segment being built. Called with mu held.
// last is the duration of the segment before (zero for the first).
func (s *stream) newSegment(dts time.Duration, ntp time.Time, last time.Duration) error {
	sg := &segment{id: s.nextSegID, name: s.segName(s.nextSegID), startNTP: ntp, startDTS: dts}
	if s.m.Directory != "" {
		f, err := s.segmentFile(last)
		if err != nil {
			return err
		}
		f.segs++
		sg.file = f
	}
	s.cur = sg
	s.partStart = dts
	s.partIndependent = false
	return nil
}

func (m *Muxer) createFirstSegment(dts time.Duration, ntp time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	for _, s := range m.streams {
		if m.early() {
			// Declared up front: the placeholders go out with the first part.
			s.addGaps(time.Duration(m.TargetDuration) * time.Second)
		}
		if err := s.newSegment(dts, ntp, 0); err != nil {
			m.OnEncodeError(err)
			// keep going in memory rather than stop the stream
			s.cur = &segment{id: s.nextSegID, name: s.segName(s.nextSegID), startNTP: ntp, startDTS: dts}
		}
	}
}

// rotateParts closes every stream's current part at dts.
func (m *Muxer) rotateParts(dts time.Duration) {
	m.rotate(false, func(s *stream) { s.closePart(dts, true) })
}

// rotateSegments closes every stream's current segment at dts and starts
// the next one.
func (m *Muxer) rotateSegments(dts time.Duration, ntp time.Time) {
	m.rotate(true, func(s *stream) { s.closeSegment(dts, ntp) })
}

// rotate runs closeCur on the leading stream, then on the others, which take
// the leading stream's part target (and target duration, at a segment), and
// wakes the requests waiting for content.
func (m *Muxer) rotate(segment bool, closeCur func(*stream)) {
	m.mu.Lock()
	if !m.closed {
		closeCur(m.leading)
		for _, s := range m.streams {
			if s != m.leading {
				closeCur(s)
				if segment {
					s.targetDuration = m.leading.targetDuration
				}
				s.partTarget = m.leading.partTarget
			}
		}
	}
	m.mu.Unlock()
	m.cond.Broadcast()
}

// closePart writes the current part's fragment and keeps it. Called with mu held.
func (s *stream) closePart(dts time.Duration, startNext bool) {
	tr := s.track
	id := s.nextPartID
	s.nextPartID++
	var tracks [1]fmp4w.Track
	n := 0
	if len(tr.samples) > 0 {
		tracks[0] = fmp4w.Track{ID: 1, BaseTime: uint64(tr.partBase), Samples: tr.samples, Data: tr.data}
		n = 1
	}
	sg := s.cur
	size := fmp4w.Size(tracks[:n])
	dst := s.scratch[:0]
	if sg.file == nil || cap(dst) < size {
		dst = make([]byte, 0, size)
	}
	buf, err := fmp4w.Append(dst, uint32(id), tracks[:n])
	if err != nil {
		s.m.OnEncodeError(err)
		buf = nil
	}
	tr.samples, tr.data = tr.samples[:0], tr.data[:0]
	p := &part{id: id, name: s.partName(id), startDTS: s.partStart, endDTS: dts, independent: s.partIndependent, seg: sg, size: int64(len(buf))}
	if sf := sg.file; sf != nil {
		p.off = sf.size
		s.scratch = buf
		n, err := sf.f.Write(buf)
		sf.size += int64(n)
		if err != nil {
			s.m.OnEncodeError(fmt.Errorf("writing a part: %w", err))
			p.data = buf // keep it in memory instead
			s.scratch = nil
		}
	} else {
		p.data = buf
	}
	sg.size += int64(len(buf))
	sg.parts = append(sg.parts, p)
	if s.init == nil && s.m.early() {
		// Served from the first part: the parameter sets are those of the
		// first keyframe.
		s.setInit()
	}
	if startNext {
		s.partStart = dts
		s.partIndependent = false
	}
	if s.leading {
		pt := s.maxPartDuration()
		if s.m.early() {
			// PART-TARGET goes out with the first part: it covers the
			// longest part the sample durations seen so far can make.
			pt = max(pt, s.partTarget, s.m.seg.longestPart())
		}
		if s.partTarget != 0 && pt != s.partTarget {
			s.m.OnEncodeError(fmt.Errorf("part duration changed from %v to %v - this will cause an error in iOS clients", s.partTarget, pt))
		}
		s.partTarget = pt
	}
}

// maxPartDuration is the longest part held, rounded up to the millisecond.
func (s *stream) maxPartDuration() time.Duration {
	var d time.Duration
	for _, sg := range append(s.segments, s.cur) {
		for _, p := range sg.parts {
			d = max(d, p.endDTS-p.startDTS)
		}
	}
	return time.Millisecond * time.Duration(math.Ceil(float64(d)/float64(time.Millisecond)))
}

// closeSegment completes the current segment, drops the oldest beyond
// SegmentCount and starts the next. Called with mu held.
func (s *stream) closeSegment(dts time.Duration, ntp time.Time) {
	s.closePart(dts, false)
	s.nextSegID++
	sg := s.cur
	sg.endDTS = dts
	if s.m.lowLatency() && len(s.segments) == 0 {
		s.addGaps(sg.duration())
	}
	s.segments = append(s.segments, sg)
	if len(s.segments) > s.m.SegmentCount {
		s.segments[0].drop(s)
		s.segments[0] = nil
		s.segments = s.segments[1:]
		s.deleted++
	}
	if s.init == nil {
		s.setInit()
	}
	if err := s.newSegment(dts, ntp, sg.duration()); err != nil {
		s.m.OnEncodeError(err)
		s.cur = &segment{id: s.nextSegID, name: s.segName(s.nextSegID), startNTP: ntp, startDTS: dts}
	}
	if s.leading {
		td := 0
		for _, sg := range s.segments {
			td = max(td, int(math.Round(sg.duration().Seconds())))
		}
		if s.targetDuration != 0 && td > s.targetDuration {
			s.m.OnEncodeError(fmt.Errorf("segment duration changed from %ds to %ds - this will cause an error in iOS clients", s.targetDuration, td))
		}
		if s.targetDuration == 0 || td > s.targetDuration {
			s.targetDuration = td
		}
	}
}

// addGaps puts the Low-Latency gap placeholders, each lasting d, in front
// of the first segment. Called with mu held.
func (s *stream) addGaps(d time.Duration) {
	for range gapCount {
		s.segments = append(s.segments, &segment{gap: true, endDTS: d})
	}
}

// drop forgets a segment's media; its file goes with its last segment
// once the stream appends to another. Called with mu held.
func (sg *segment) drop(s *stream) {
	for _, p := range sg.parts {
		p.data = nil
	}
	if sf := sg.file; sf != nil {
		sg.file = nil
		sf.segs--
		if sf.segs == 0 && sf != s.file {
			_ = os.Remove(sf.path) // the muxer's folder is removed with it anyway
		}
	}
}

// release drops every segment and removes the stream's files (Close).
// Called with mu held.
func (s *stream) release() {
	for _, sg := range s.segments {
		sg.drop(s)
	}
	if s.cur != nil {
		s.cur.drop(s)
	}
	if cf := s.file; cf != nil {
		s.file = nil
		_ = cf.f.Close()
		_ = os.Remove(cf.path)
	}
}

// setInit makes the initialization section. Called with mu held.
func (s *stream) setInit() {
	init, err := s.marshalInit()
	if err != nil {
		s.m.OnEncodeError(err)
		return
	}
	s.init = init
}

// marshalInit writes the initialization section (ftyp + moov) with
// mediacommon: once per stream, not on the hot path.
func (s *stream) marshalInit() ([]byte, error) {
	var c mp4codecs.Codec
	switch v := s.track.Codec.(type) {
	case *codecs.H264:
		c = &mp4codecs.H264{SPS: v.SPS, PPS: v.PPS}
	case *codecs.H265:
		c = &mp4codecs.H265{VPS: v.VPS, SPS: v.SPS, PPS: v.PPS}
	case *codecs.MPEG4Audio:
		c = &mp4codecs.MPEG4Audio{Config: v.Config}
	case *codecs.Opus:
		c = &mp4codecs.Opus{ChannelCount: v.ChannelCount}
	default:
		return nil, fmt.Errorf("llhls: unsupported codec %T", v)
	}
	init := fmp4.Init{Tracks: []*fmp4.InitTrack{{ID: 1, TimeScale: uint32(s.track.ClockRate), Codec: c}}}
	var b seekablebuffer.Buffer
	if err := init.Marshal(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
