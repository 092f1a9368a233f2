package origin

import (
	"math"

	"github.com/streamgrid/streamgrid/internal/media"
)

// maxFirstGOPBytes bounds the packets a fresh path's first muxer keeps for
// a restart (firstGOP): past it the muxer is restarted without them, at the
// next keyframe, as a muxer with a known target is.
const maxFirstGOPBytes = 8 << 20

// firstGOP holds what a muxer with an assumed target duration (a fresh path,
// HLSConfig.FreshStart "part") was fed since it started, until its first
// segment completes and measures the keyframe interval. If that first GOP
// turns out longer than assumed, the muxer that replaces it is fed the same
// packets again, so it starts from the same keyframe and completes its first
// segment at the camera's next one: as soon as a muxer that waited for its
// first segment would have.
type firstGOP struct {
	pkts  []*media.Packet
	bytes int
}

// declaredTarget is the target duration (seconds) a new source muxer
// declares up front, and whether it is assumed rather than measured:
//   - the stream's keyframe interval as last measured (this session, or a
//     previous one per the playlist state), never below the segment duration
//     rounded;
//   - for a path with none (or one past maxDeclaredTarget, a playlist-state
//     record this build cannot trust), the segment duration rounded,
//     assumed, when FreshStart is "part" and no muxer of this stream has
//     yet outgrown an assumption or a remembered interval;
//   - else 0: the muxer learns it from its first segment.
func (s *stream) declaredTarget() (target int, assumed bool) {
	seg := max(int(math.Round(s.hls.SegmentDuration.Seconds())), 1)
	t := int(s.target.Load())
	switch {
	case t > 0 && t <= maxDeclaredTarget:
		return max(t, seg), false
	case s.hls.FreshStart == FreshStartPart && !s.learnTarget:
		return seg, true
	}
	return 0, false
}

// keepForReplay keeps p, just fed to the current instance, while its target
// duration is an assumption its first segment has not confirmed yet.
func (s *stream) keepForReplay(p *media.Packet) {
	if !s.cur.assumed {
		return
	}
	if s.target.Load() > 0 || s.first.bytes+len(p.Payload) > maxFirstGOPBytes {
		// Measured (the first segment is complete), or too much to keep.
		s.cur.assumed = false
		s.first = firstGOP{}
		return
	}
	s.first.pkts = append(s.first.pkts, p)
	s.first.bytes += len(p.Payload)
}

// takeFirstGOP returns the kept packets of the current instance (none
// unless its target was assumed) and forgets them.
func (s *stream) takeFirstGOP() []*media.Packet {
	pkts := s.first.pkts
	if s.cur == nil || !s.cur.assumed {
		pkts = nil
	}
	s.first = firstGOP{}
	return pkts
}

// replay feeds a new instance what its predecessor was fed since its first
// packet (takeFirstGOP), the transcoder included.
func (s *stream) replay(pkts []*media.Packet) {
	for _, p := range pkts {
		if s.cur.write(p) == nil {
			s.cur.written++
			s.feedTranscoder(p)
		}
	}
	if len(pkts) > 0 {
		s.log.Info("first GOP longer than the assumed target duration; the new muxer starts from the same keyframe",
			"packets", len(pkts))
	}
}
