package origin

import (
	"errors"
	"slices"
	"time"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/llhls"
	"github.com/streamgrid/streamgrid/internal/media"
)

const (
	// maxConsecutiveWriteErrors re-creates a muxer that keeps refusing input.
	maxConsecutiveWriteErrors = 10
	// minRecreateInterval stops an error storm from re-creating muxers in a loop.
	minRecreateInterval = time.Second
	// infoRefreshInterval limits registry reads for a generation the watch has not shown yet.
	infoRefreshInterval = time.Second
	// staleGenerations is how many replaced generations are remembered, so
	// late packets of an old publisher do not flip the muxer back.
	staleGenerations = 8
)

// packager is what packaging carries from one packet to the next: the
// muxer instance being fed and the bookkeeping that decides when to start
// a new one. Only the goroutine holding procMu touches it.
//
// Invariants:
//   - cur is nil or the newest source instance (rend 0), not frozen.
//   - A packet of a generation in staleGens (the last staleGenerations
//     replaced ones) is dropped, so late packets of an old publisher never
//     flip the muxer back.
//   - gopGen/gopSeq is the last packet fed from the edge's GOP: live
//     packets up to it were fed already and are skipped.
//   - The clock* fields anchor packetTime: a wall-clock time and the
//     timestamp it dates, for one publisher generation.
type packager struct {
	cur           *instance
	lastPacket    time.Time
	lastRecreate  time.Time
	gopGen        uint64
	gopSeq        uint64
	gopValid      bool
	staleGens     []uint64
	badInfo       *bus.StreamInfo
	infoRefreshed time.Time
	fallbackNoted bool
	idle          bool
	// first: what the current instance was fed while its target duration
	// is assumed (freshstart.go); learnTarget: a muxer of this stream
	// outgrew its declared target, so the next ones learn it.
	first       firstGOP
	learnTarget bool

	clockSet  bool
	clockGen  uint64
	clockWall time.Time
	clockPTS  time.Duration
}

// handlePacket packages one packet, switching muxer instances on a new
// generation, a flagged discontinuity or repeated write errors.
func (s *stream) handlePacket(p *media.Packet, fromGOP bool) {
	if fromGOP {
		s.gopGen, s.gopSeq, s.gopValid = p.Generation, p.Seq, true
	} else if s.gopValid && p.Generation == s.gopGen && p.Seq <= s.gopSeq {
		return // already fed from the GOP
	}
	s.packets.Add(1)
	s.o.m.packets.Inc()
	s.lastPacket = time.Now()
	if slices.Contains(s.staleGens, p.Generation) {
		s.drop()
		return
	}
	if s.cur != nil {
		switch {
		case p.Generation != s.cur.generation:
			s.log.Info("publisher generation changed", "from", s.cur.generation, "to", p.Generation)
			s.staleGens = append(s.staleGens, s.cur.generation)
			if len(s.staleGens) > staleGenerations {
				s.staleGens = s.staleGens[1:]
			}
			s.replace()
		case p.Flags&media.FlagDiscontinuity != 0 && s.cur.written > 0:
			s.log.Debug("timestamp discontinuity flagged by the edge")
			s.replace()
		}
	}
	if s.cur == nil {
		s.cur = s.newInstance(p.Generation)
		if s.cur == nil {
			s.drop()
			return
		}
	}
	err := s.cur.write(p)
	if errors.Is(err, llhls.ErrTargetExceeded) {
		// The camera's keyframe interval grew past the target the muxer
		// declared (it was reconfigured): a new muxer, after a
		// discontinuity, learns it from its first segment.
		// A fresh path's first muxer (an assumed target) is replaced by
		// one fed the same first GOP again.
		s.log.Info("keyframe interval longer than the declared target duration; muxer restarted",
			"target", s.cur.declared, "assumed", s.cur.assumed)
		first := s.takeFirstGOP()
		s.replace()
		s.target.Store(0)
		s.learnTarget = true
		if s.cur = s.newInstance(p.Generation); s.cur == nil {
			s.drop()
			return
		}
		s.replay(first)
		err = s.cur.write(p)
	}
	switch {
	case err == nil:
		s.cur.errors = 0
		s.cur.written++
		s.feedTranscoder(p)
		s.keepForReplay(p)
	case errors.Is(err, errUnknownTrack):
		s.drop()
	default:
		s.writeErrs.Add(1)
		s.o.m.writeErrors.Inc()
		s.cur.errors++
		if s.cur.errors >= maxConsecutiveWriteErrors && time.Since(s.lastRecreate) >= minRecreateInterval {
			s.log.Warn("HLS muxer keeps refusing input; re-creating it", "err", err)
			s.replace()
		}
	}
}

// maxClockDrift bounds how far packetTime's dates may drift from the
// edge's wall clock before they are re-anchored.
const maxClockDrift = 2 * time.Second

// packetTime dates a packet for EXT-X-PROGRAM-DATE-TIME. Dates follow the
// packets' timestamps from an anchor (the edge's wall clock at receipt of
// the generation's first packet), so consecutive segments are dated exactly
// their durations apart: the receipt time itself jitters with the network
// and the publisher's pacing by hundreds of milliseconds. The anchor is
// reset for a new generation and when the dates drift from the wall clock
// by more than maxClockDrift. Called under procMu.
func (s *stream) packetTime(p *media.Packet, rate int) time.Time {
	wall := time.Now()
	if p.WallClock != 0 {
		wall = time.Unix(0, p.WallClock)
	}
	if rate <= 0 {
		return wall
	}
	pts := time.Duration(rescale(p.PTS, rate, int(time.Second)))
	if !s.clockSet || s.clockGen != p.Generation {
		s.clockSet, s.clockGen, s.clockWall, s.clockPTS = true, p.Generation, wall, pts
		return wall
	}
	t := s.clockWall.Add(pts - s.clockPTS)
	if d := wall.Sub(t); d > maxClockDrift || d < -maxClockDrift {
		s.clockWall, s.clockPTS = wall, pts
		return wall
	}
	return t
}

// maxDeclaredTarget (seconds) bounds a remembered target duration: a
// keyframe interval longer than this is not declared up front (the
// blocking-reload timeouts and hold-back grow with the target).
const maxDeclaredTarget = 30

// replace retires the current instance; the next packet starts a new one.
func (s *stream) replace() {
	s.stopTranscoder()
	s.retire(s.cur)
	s.cur = nil
	s.lastRecreate = time.Now()
	s.recreations.Add(1)
	s.o.m.recreations.Inc()
}

// recordStale says whether a new instance for generation gen reads the
// stream's record first: the watch has not shown gen yet, and the last read
// was over infoRefreshInterval ago.
func (s *stream) recordStale(gen uint64) bool {
	info := s.info.Load()
	return (info == nil || info.Generation != gen) && time.Since(s.infoRefreshed) >= infoRefreshInterval
}

// needsRecord says whether packaging p would read the stream's record from
// the registry (a new instance for a generation the watch has not shown):
// the packet waits for the run goroutine then (intake).
func (s *stream) needsRecord(p *media.Packet) bool {
	if s.cur != nil && s.cur.generation == p.Generation || slices.Contains(s.staleGens, p.Generation) {
		return false // the common case first: a packet of the instance being fed
	}
	return s.recordStale(p.Generation)
}

// newInstance creates the muxer for a generation, numbered to follow what
// the stream has published so far.
func (s *stream) newInstance(gen uint64) *instance {
	info := s.info.Load()
	if s.recordStale(gen) {
		// Packets of a generation the watch has not shown yet: read the record.
		s.infoRefreshed = time.Now()
		ctx, cancel := kvContext()
		fresh, err := s.o.Registry.Stream(ctx, s.path)
		cancel()
		if err == nil {
			s.info.Store(fresh)
			info = fresh
		}
	}
	if info == nil || info == s.badInfo {
		return nil
	}
	tracks, writers, variant, fallback, skipped := muxerTracks(info, s.baseVariant)
	for _, sk := range skipped {
		s.log.Warn("track not packaged", "reason", sk)
	}
	if fallback != "" && !s.fallbackNoted {
		s.fallbackNoted = true
		s.log.Warn("packaging as fmp4 instead of mpegts", "reason", fallback)
	}
	if len(tracks) == 0 {
		s.badInfo = info
		s.log.Warn("stream has no track that can be packaged", "generation", info.Generation)
		return nil
	}
	firstID := firstSegmentID(variant)
	s.mu.Lock()
	i := &instance{
		s:          s,
		variant:    variant,
		writers:    writers,
		generation: gen,
		firstID:    firstID,
		offset:     max(int64(s.baseNext)-firstID, 0),
	}
	if s.visible {
		i.disc, i.discStart = s.baseDisc+1, true
	}
	s.mu.Unlock()
	i.declared, i.assumed = s.declaredTarget()
	s.first = firstGOP{}
	if err := i.start(tracks); err != nil {
		s.badInfo = info
		s.log.Warn("cannot package stream", "err", err)
		return nil
	}
	s.addInstance(i)
	s.generation.Store(gen)
	s.variant.Store(int32(variant))
	if i.discStart {
		s.o.m.discontinuities.Inc()
	}
	s.idle = false
	s.log.Debug("HLS muxer started", "generation", gen, "variant", variantName(variant),
		"first_msn", i.offset+firstID, "discontinuity", i.disc)
	return i
}
