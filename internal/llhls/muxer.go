// Package llhls is streamgrid's own HLS muxer for the fMP4 variants
// (Low-Latency HLS and plain fMP4). It takes the same tracks and calls as
// gohlslib.Muxer and produces the same names, playlists and HTTP answers,
// which the origin relies on (origin/doc.go), but each part is written by
// internal/fmp4w into one exact-size slice when it closes, kept once, and a
// segment is served as the concatenation of its parts: no reflection, no
// buffer growth, no second copy per segment.
//
// What it reproduces of gohlslib v2.4.5 (the origin's contract):
//
//   - names: <12 hex prefix>_<stream>_init.mp4, _seg<N>.mp4, _part<N>.mp4,
//     <stream>_stream.m3u8 and index.m3u8; one stream per track ("video1",
//     "audio2", ...), audio as an EXT-X-MEDIA rendition beside video;
//   - segmentation: a segment starts on a random-access sample of the
//     leading track once SegmentMinDuration has passed; Low-Latency parts
//     close at a sample boundary once the part duration has passed, that
//     duration adjusted so that every sample duration seen fits it (iOS
//     needs parts of at least 85 % of the part target);
//   - Low-Latency: seven EXT-X-GAP placeholders before the first segment,
//     PART-INF, SERVER-CONTROL, EXT-X-PART for the last two segments and
//     the current one, and a PRELOAD-HINT whose GET blocks until the part
//     is complete (404 once the muxer is closed);
//   - answers: a name it does not hold gets nothing written; playlists wait
//     for content and carry the same Cache-Control; objects are
//     "public, max-age=3600".
//
// MPEG-TS is not handled here (the origin keeps gohlslib for it).
package llhls

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
)

const (
	// startDTS is added to every decode time so that base times are never
	// negative (gohlslib uses the same 10 s).
	startDTS          = 10 * time.Second
	gapCount          = 7
	objectMaxAge      = "3600"
	multivariantMaxAg = "30"
)

// ErrMaxSegmentSize is returned when a segment would exceed SegmentMaxSize.
var ErrMaxSegmentSize = errors.New("reached maximum segment size")

// ErrTargetExceeded is returned by every write once a segment would be
// longer than the declared TargetDuration allows.
var ErrTargetExceeded = errors.New("llhls: the keyframe interval exceeds the declared target duration")

// Muxer is an HLS muxer for the fMP4 variants. Fill in the fields, call
// Start, feed it with the Write methods from one goroutine, serve it with
// Handle from any number, and Close it.
type Muxer struct {
	// Tracks; required. At most one video track.
	Tracks []*gohlslib.Track
	// Variant: gohlslib.MuxerVariantLowLatency (default) or
	// gohlslib.MuxerVariantFMP4.
	Variant gohlslib.MuxerVariant
	// SegmentCount is how many segments are kept (gap placeholders
	// included); default 7, at least 7 for Low-Latency, 3 otherwise.
	SegmentCount int
	// SegmentMinDuration; default 1 s.
	SegmentMinDuration time.Duration
	// PartMinDuration; default 200 ms.
	PartMinDuration time.Duration
	// SegmentMaxSize caps the media bytes of a segment; default 50 MB.
	SegmentMaxSize uint64
	// Directory, when set, keeps finished segments in files there instead
	// of in memory: each part appended with one write, consecutive
	// segments of a stream to the same file for up to 10 s (segFile).
	// Close removes them.
	Directory string
	// OnEncodeError is called on non-fatal errors (target durations that
	// change); default: ignored.
	OnEncodeError func(error)
	// TargetDuration, in seconds, declares EXT-X-TARGETDURATION up front,
	// for a caller that knows the source's keyframe interval before the
	// first segment completes (Low-Latency only; 0, the default: the
	// target is learned from the first segment, and no playlist is served
	// before it is complete, as gohlslib does). The playlists are then
	// served from the first part, with seven gap placeholders of this
	// duration. A segment never exceeds it: once the segment being built
	// would be longer than TargetDuration rounded (RFC 8216 §4.3.3.1: the
	// keyframe interval grew), every write returns ErrTargetExceeded and
	// the muxer must be replaced.
	TargetDuration int

	// clock: time.Now; tests set their own.
	clock func() time.Time

	mu      sync.Mutex
	cond    *sync.Cond
	closed  bool
	prefix  string
	tracks  map[*gohlslib.Track]*track
	streams []*stream
	leading *stream
	seg     segmenter
	// exceeded: a segment outgrew TargetDuration (writer only).
	exceeded bool
}

// Like returns a Muxer with g's settings (the fields both types have), for
// a caller that chooses between gohlslib and this muxer at run time.
func Like(g *gohlslib.Muxer) *Muxer {
	return &Muxer{
		Tracks:             g.Tracks,
		Variant:            g.Variant,
		SegmentCount:       g.SegmentCount,
		SegmentMinDuration: g.SegmentMinDuration,
		PartMinDuration:    g.PartMinDuration,
		SegmentMaxSize:     g.SegmentMaxSize,
		Directory:          g.Directory,
		OnEncodeError:      g.OnEncodeError,
	}
}

// Start checks the configuration and prepares the muxer.
func (m *Muxer) Start() error {
	if err := m.setDefaults(); err != nil {
		return err
	}
	leadingIdx, hasDefault, err := m.checkTracks()
	if err != nil {
		return err
	}

	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	m.prefix = hex.EncodeToString(b[:])
	m.cond = sync.NewCond(&m.mu)
	m.tracks = make(map[*gohlslib.Track]*track, len(m.Tracks))
	m.seg = segmenter{m: m, sampleDurations: map[time.Duration]struct{}{}}

	defaultChosen := false
	for i, t := range m.Tracks {
		s := m.newStream(i, t, i == leadingIdx)
		if s.rendition {
			if hasDefault {
				s.isDefault = t.IsDefault
			} else if !defaultChosen {
				defaultChosen, s.isDefault = true, true
			}
		}
		tr := &track{Track: t, stream: s, leading: s.leading}
		s.track = tr
		s.initialize()
		s.targetDuration = m.TargetDuration
		m.tracks[t] = tr
		m.streams = append(m.streams, s)
		if s.leading {
			m.leading = s
		}
	}
	return nil
}

// setDefaults fills in the zero fields and checks the variant and the
// segment count.
func (m *Muxer) setDefaults() error {
	if m.Variant == 0 {
		m.Variant = gohlslib.MuxerVariantLowLatency
	}
	if m.Variant != gohlslib.MuxerVariantLowLatency && m.Variant != gohlslib.MuxerVariantFMP4 {
		return errors.New("llhls: only the Low-Latency and fMP4 variants are supported")
	}
	if m.SegmentCount == 0 {
		m.SegmentCount = 7
	}
	if m.SegmentMinDuration <= 0 {
		m.SegmentMinDuration = time.Second
	}
	if m.PartMinDuration <= 0 {
		m.PartMinDuration = 200 * time.Millisecond
	}
	if m.TargetDuration < 0 || m.TargetDuration > 0 && !m.lowLatency() {
		return errors.New("llhls: a declared target duration needs the Low-Latency variant and must be positive")
	}
	if m.SegmentMaxSize == 0 {
		m.SegmentMaxSize = 50 * 1024 * 1024
	}
	if m.OnEncodeError == nil {
		m.OnEncodeError = func(error) {}
	}
	if len(m.Tracks) == 0 {
		return errors.New("at least one track must be provided")
	}
	if m.lowLatency() && m.SegmentCount < gapCount {
		return errors.New("Low-Latency HLS requires at least 7 segments")
	}
	if !m.lowLatency() && m.SegmentCount < 3 {
		return errors.New("the minimum number of HLS segments is 3")
	}
	return nil
}

// checkTracks checks the tracks' codecs and returns the index of the leading
// track (the video track, else the first) and whether an audio track is
// marked as the default.
func (m *Muxer) checkTracks() (leadingIdx int, hasDefault bool, err error) {
	leadingIdx = -1
	hasVideo := false
	for i, t := range m.Tracks {
		if want := clockRate(t.Codec); want == 0 || t.ClockRate != want {
			return 0, false, fmt.Errorf("track %d: unsupported codec or clock rate %d", i, t.ClockRate)
		}
		if t.Codec.IsVideo() {
			if hasVideo {
				return 0, false, errors.New("only one video track is currently supported")
			}
			hasVideo = true
			leadingIdx = i
		} else if t.IsDefault {
			if hasDefault {
				return 0, false, errors.New("multiple default audio tracks are not supported")
			}
			hasDefault = true
		}
	}
	if leadingIdx < 0 {
		leadingIdx = 0
	}
	return leadingIdx, hasDefault, nil
}

// newStream is the stream of track t, the i-th; its default flag is set by
// Start, which sees all the renditions.
func (m *Muxer) newStream(i int, t *gohlslib.Track, leading bool) *stream {
	id := "audio" + strconv.Itoa(i+1)
	if t.Codec.IsVideo() {
		id = "video" + strconv.Itoa(i+1)
	}
	firstID := uint64(0)
	if m.lowLatency() {
		firstID = gapCount
	}
	s := &stream{
		m:         m,
		id:        id,
		leading:   leading,
		rendition: !leading || (!t.Codec.IsVideo() && len(m.Tracks) > 1),
		language:  t.Language,
		nextSegID: firstID,
	}
	if s.rendition {
		s.name = t.Name
		if s.name == "" {
			s.name = id
		}
	}
	return s
}

func (m *Muxer) now() time.Time {
	if m.clock != nil {
		return m.clock()
	}
	return time.Now()
}

func (m *Muxer) lowLatency() bool { return m.Variant == gohlslib.MuxerVariantLowLatency }

// early says whether playlists are served from the first part (a declared
// TargetDuration).
func (m *Muxer) early() bool { return m.TargetDuration > 0 }

// Close releases every segment; pending and later requests get 404 (or
// nothing, for objects), later writes are ignored. Calling it twice is harmless.
func (m *Muxer) Close() {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		for _, s := range m.streams {
			s.release()
		}
	}
	m.mu.Unlock()
	m.cond.Broadcast()
}

// clockRate is the clock rate gohlslib requires of a codec; 0 for codecs
// this muxer does not take.
func clockRate(c codecs.Codec) int {
	switch c := c.(type) {
	case *codecs.H264, *codecs.H265:
		return 90000
	case *codecs.Opus:
		return 48000
	case *codecs.MPEG4Audio:
		return c.Config.SampleRate
	}
	return 0
}
