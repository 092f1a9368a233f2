package origin

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/llhls"
	"github.com/streamgrid/streamgrid/internal/media"
)

var (
	errInstanceClosed = errors.New("muxer closed")
	errUnknownTrack   = errors.New("packet for a track the muxer does not have")
)

// llFirstSegmentID is the id of gohlslib's first real Low-Latency segment:
// ids 0..6 are the EXT-X-GAP placeholders iOS needs.
const llFirstSegmentID = 7

// firstSegmentID is the id of a muxer's first real segment.
func firstSegmentID(v gohlslib.MuxerVariant) int64 {
	if v == gohlslib.MuxerVariantLowLatency {
		return llFirstSegmentID
	}
	return 0
}

// instance is one gohlslib muxer of a stream: one publisher generation (or
// part of one, when the muxer had to be re-created), with its own file-name
// prefix and its own media sequence numbering shifted by offset.
type instance struct {
	s       *stream
	muxer   hlsMuxer
	dir     string // the muxer's segment folder; "" in memory (segdir.go)
	variant gohlslib.MuxerVariant
	writers map[uint8]*trackWriter
	// rend is 0 for the source's instances, k+1 for ladder rendition k;
	// vtrack, vcodec and atrack are a rendition instance's tracks.
	rend       int
	vtrack     *gohlslib.Track
	vcodec     media.Codec
	atrack     *gohlslib.Track
	generation uint64
	// shift is added to the timestamps of the packets fed (see
	// stream.timeShift), set at the first packet.
	shift   time.Duration
	shifted bool
	// offset maps the muxer's local media sequence numbers to the stream's:
	// global = local + offset.
	offset int64
	// firstID is the local id of the muxer's first real segment.
	firstID int64
	// disc is the discontinuity sequence number of the instance's segments;
	// discStart says its first segment carries EXT-X-DISCONTINUITY.
	disc      uint64
	discStart bool
	// declared is the target duration (seconds) the muxer declares up
	// front, serving its playlists from the first part (llhls.Muxer's
	// TargetDuration); 0: learned from the first segment. assumed: it is
	// the segment duration, assumed for a fresh path (freshstart.go), until
	// the first segment completes (run goroutine).
	declared int
	assumed  bool

	// held counts the bytes fed to the muxer (the memory budget, window.go).
	held heldBytes

	// Run-goroutine state.
	errors    int // consecutive write errors
	written   uint64
	createdAt time.Time

	// Guarded by s.mu.
	snap   *snapshot
	frozen bool // no longer fed; snap is final
	closed bool // muxer closed, instance forgotten
	// keepFor is how long a frozen instance outlives the listing of its
	// last segment; unlistedAt is when that was first seen (housekeep).
	keepFor    time.Duration
	unlistedAt time.Time
	quit       chan struct{} // closed when frozen or closed: stops polling watchers
	quitOnce   sync.Once
}

// trackWriter feeds one bus track into the muxer.
type trackWriter struct {
	track   *gohlslib.Track
	codec   media.Codec
	srcRate int // clock rate of the packets' timestamps
}

// muxerTracks turns a stream's track list into gohlslib tracks, choosing the
// variant: MPEG-TS takes one H264 and one AAC track only, anything else
// falls back to fMP4 (fallback then says why). The first video track leads;
// further video tracks and undecodable tracks are left out (skipped says which).
func muxerTracks(info *bus.StreamInfo, want gohlslib.MuxerVariant) (
	tracks []*gohlslib.Track, writers map[uint8]*trackWriter, variant gohlslib.MuxerVariant, fallback string, skipped []string,
) {
	writers = map[uint8]*trackWriter{}
	var video *gohlslib.Track
	var audio []*gohlslib.Track
	tsOK := true
	for _, ti := range info.Tracks {
		var t *gohlslib.Track
		switch ti.Codec {
		case media.CodecH264:
			if video != nil {
				skipped = append(skipped, fmt.Sprintf("track %d: second video track", ti.ID))
				continue
			}
			t = &gohlslib.Track{Codec: &codecs.H264{SPS: ti.SPS, PPS: ti.PPS}, ClockRate: 90000}
			video = t
		case media.CodecH265:
			if video != nil {
				skipped = append(skipped, fmt.Sprintf("track %d: second video track", ti.ID))
				continue
			}
			t = &gohlslib.Track{Codec: &codecs.H265{VPS: ti.VPS, SPS: ti.SPS, PPS: ti.PPS}, ClockRate: 90000}
			video = t
			tsOK = false
		case media.CodecAAC:
			var cfg mpeg4audio.AudioSpecificConfig
			if err := cfg.Unmarshal(ti.AudioConfig); err != nil || cfg.SampleRate <= 0 {
				skipped = append(skipped, fmt.Sprintf("track %d: invalid AAC AudioSpecificConfig", ti.ID))
				continue
			}
			t = &gohlslib.Track{Codec: &codecs.MPEG4Audio{Config: cfg}, ClockRate: cfg.SampleRate}
			audio = append(audio, t)
		case media.CodecOpus:
			ch := ti.Channels
			if ch <= 0 {
				ch = 2
			}
			t = &gohlslib.Track{Codec: &codecs.Opus{ChannelCount: ch}, ClockRate: 48000}
			audio = append(audio, t)
			tsOK = false
		default:
			skipped = append(skipped, fmt.Sprintf("track %d: unsupported codec %v", ti.ID, ti.Codec))
			continue
		}
		rate := ti.ClockRate
		if rate <= 0 {
			rate = t.ClockRate
		}
		writers[ti.ID] = &trackWriter{track: t, codec: ti.Codec, srcRate: rate}
	}
	if video != nil {
		tracks = append(tracks, video)
	}
	tracks = append(tracks, audio...)
	variant = want
	if want == gohlslib.MuxerVariantMPEGTS && (!tsOK || len(audio) > 1) {
		variant = gohlslib.MuxerVariantFMP4
		fallback = "MPEG-TS carries one H264 and one AAC track only"
	}
	return tracks, writers, variant, fallback, skipped
}

// retainedSegments is how many segments the muxer keeps beyond the listed
// window (the served playlist shows the newest listed ones; see buildView).
// RFC 8216 §6.2.2: a segment that left the playlist stays available for its
// duration plus the duration of the longest playlist that listed it, i.e.
// about listed+1 segment durations, during which as many new segments
// complete (each completion drops the muxer's oldest segment). One more
// covers segments of uneven length. The cost is the media of listed+2
// segments per stream and rendition, in memory (docs/players.md).
func retainedSegments(listed int) int { return listed + 2 }

// hlsMuxer is what the origin uses of an HLS muxer: gohlslib.Muxer
// (mpegts, and any variant with HLSConfig.Muxer "gohlslib") or llhls.Muxer
// (the fMP4 variants by default). Both answer Handle the same way (see
// internal/llhls): the origin's watcher, probeWriter and serveObject rely on it.
type hlsMuxer interface {
	Start() error
	Close()
	WriteH264(track *gohlslib.Track, ntp time.Time, pts int64, au [][]byte) error
	WriteH265(track *gohlslib.Track, ntp time.Time, pts int64, au [][]byte) error
	WriteMPEG4Audio(track *gohlslib.Track, ntp time.Time, pts int64, aus [][]byte) error
	WriteOpus(track *gohlslib.Track, ntp time.Time, pts int64, packets [][]byte) error
	Handle(w http.ResponseWriter, r *http.Request)
}

var (
	_ hlsMuxer = (*gohlslib.Muxer)(nil)
	_ hlsMuxer = (*llhls.Muxer)(nil)
)

// builtinMuxer says whether variant is packaged by internal/llhls.
func builtinMuxer(cfg HLSConfig, variant gohlslib.MuxerVariant) bool {
	return variant != gohlslib.MuxerVariantMPEGTS && cfg.Muxer != MuxerGohlslib
}

// start creates and starts the muxer.
func (i *instance) start(tracks []*gohlslib.Track) error {
	cfg := i.s.hls
	onEncodeError := func(error) {
		i.s.encodeErrs.Add(1)
		i.s.o.m.encodeErrors.Inc()
	}
	dir, err := i.s.o.segmentDir(i.s.path, builtinMuxer(cfg, i.variant))
	if err != nil {
		return err
	}
	i.dir = dir
	g := &gohlslib.Muxer{
		Tracks:             tracks,
		Variant:            i.variant,
		SegmentCount:       cfg.SegmentCount + retainedSegments(cfg.SegmentCount),
		SegmentMinDuration: cfg.SegmentDuration,
		PartMinDuration:    cfg.PartDuration,
		Directory:          dir,
		OnEncodeError:      onEncodeError,
	}
	i.muxer = g
	if builtinMuxer(cfg, i.variant) {
		m := llhls.Like(g)
		if i.variant == gohlslib.MuxerVariantLowLatency {
			m.TargetDuration = i.declared
		} else {
			i.declared, i.assumed = 0, false
		}
		i.muxer = m
	} else {
		i.declared, i.assumed = 0, false
	}
	if err := i.muxer.Start(); err != nil {
		if dir != "" {
			_ = os.RemoveAll(dir)
		}
		return fmt.Errorf("start HLS muxer: %w", err)
	}
	i.quit = make(chan struct{})
	i.createdAt = time.Now()
	return nil
}

// write feeds one packet to the muxer.
func (i *instance) write(p *media.Packet) error {
	tw := i.writers[p.Track]
	if tw == nil || tw.codec != p.Codec {
		return errUnknownTrack
	}
	ntp := i.s.packetTime(p, tw.srcRate)
	at := time.Duration(rescale(p.PTS, tw.srcRate, int(time.Second)))
	if !i.shifted {
		i.shifted = true
		i.shift = i.s.timeShift(at)
	}
	i.s.extendTimeline(at + i.shift)
	i.held.add(time.Now(), len(p.Payload))
	pts := rescale(p.PTS, tw.srcRate, tw.track.ClockRate) + rescale(int64(i.shift), int(time.Second), tw.track.ClockRate)
	switch tw.codec {
	case media.CodecH264, media.CodecH265:
		var au h264.AVCC
		if err := au.Unmarshal(p.Payload); err != nil {
			return fmt.Errorf("access unit: %w", err)
		}
		if tw.codec == media.CodecH264 {
			return i.muxer.WriteH264(tw.track, ntp, pts, au)
		}
		return i.muxer.WriteH265(tw.track, ntp, pts, au)
	case media.CodecAAC:
		return i.muxer.WriteMPEG4Audio(tw.track, ntp, pts, [][]byte{p.Payload})
	case media.CodecOpus:
		return i.muxer.WriteOpus(tw.track, ntp, pts, [][]byte{p.Payload})
	}
	return errUnknownTrack
}

// rescale converts a timestamp between clock rates without overflowing.
func rescale(v int64, from, to int) int64 {
	if from == to || from <= 0 {
		return v
	}
	f, t := int64(from), int64(to)
	return v/f*t + v%f*t/f
}

func (i *instance) stopWatching() {
	i.quitOnce.Do(func() { close(i.quit) })
}

// watch keeps the instance's playlist snapshot current until the muxer is
// closed or frozen. Low-Latency: it waits on gohlslib's own preload-hint
// request, which returns when the next part is complete, then re-reads the
// playlists. Other variants have no such signal and are polled.
func (i *instance) watch() {
	defer i.s.iwg.Done()
	ll := i.variant == gohlslib.MuxerVariantLowLatency
	poll := min(max(i.s.hls.SegmentDuration/10, 50*time.Millisecond), 200*time.Millisecond)
	warned := false
	started, first := time.Now(), true
	for {
		snap, err := i.fetchSnapshot()
		if first && err == nil {
			// The first playlist waits inside the muxer for a complete
			// segment (after a take-over, for the camera's next keyframe),
			// or for the first part when the target duration is declared.
			first = false
			i.s.log.Debug("HLS muxer has its first playlist", "after", time.Since(started).Round(time.Millisecond))
		}
		if errors.Is(err, errInstanceClosed) {
			return
		}
		if err != nil {
			if !warned {
				i.s.log.Warn("reading the muxer's playlists failed; retrying", "err", err)
				warned = true
			}
			if !i.sleep(500 * time.Millisecond) {
				return
			}
			continue
		}
		i.s.refreshes.Add(1)
		if !i.s.reserve(i, snap) || !i.s.storeSnapshot(i, snap) {
			return
		}
		hint := ""
		if ll {
			if pl := snap.media[snap.leading]; pl != nil && pl.pl.PreloadHint != nil {
				hint = pl.pl.PreloadHint.URI
			}
		}
		if hint == "" {
			if !i.sleep(poll) {
				return
			}
			continue
		}
		if demand := i.s.demandSignal(); !i.s.watched() {
			// Nobody fetches the playlists: refresh them (and the state
			// they reserve) once a second, until a request comes.
			if !i.idle(demand, unwatchedRefresh) {
				return
			}
			continue
		}
		// Blocks inside gohlslib until the hinted part is complete or the muxer closes.
		switch code := i.fetchDiscard(hint); code {
		case http.StatusOK:
		case http.StatusNotFound:
			return
		default:
			if !i.sleep(poll) {
				return
			}
		}
	}
}

// idle waits d, or until demand is closed by a request for the stream;
// false once the instance is closed.
func (i *instance) idle(demand <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-demand:
	case <-i.quit:
		return false
	}
	return true
}

func (i *instance) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-i.quit:
		return false
	}
}
