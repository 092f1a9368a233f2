package origin

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamgrid/streamgrid/bus"
)

// muxerSet is every muxer instance of a stream and what they publish: the
// source set (rend 0) and, for a transcoded stream, one set per rendition.
// HTTP handlers read it under mu; the run goroutine adds and retires
// instances; each instance's watcher publishes its snapshots here.
//
// Invariants (under mu unless noted):
//   - instances is oldest first; per rendition set, the last one not closed
//     is being fed unless frozen, and earlier ones are frozen: retired,
//     their snapshots final, kept while caches may still list them.
//   - baseNext and baseDisc fold in every instance no longer fed (and the
//     state read at claim): the next free media sequence number and the
//     discontinuity number of the latest segments; visible says whether
//     anything was ever published. Rendition sets keep theirs in rendState.
//   - Every change of what is served goes through bumpLocked: version
//     grows, rendered (the cached playlist renders) empties, and changed
//     is closed and replaced, waking waiting requests.
//   - timelineEnd (atomic, no lock) is the latest timestamp fed to any
//     instance, shifted (see timeShift); it only grows.
//   - iwg counts the instance watchers; the stream waits for them at the end.
type muxerSet struct {
	timelineEnd atomic.Int64

	mu        sync.Mutex
	instances []*instance
	baseNext  uint64
	baseDisc  uint64
	visible   bool
	version   uint64
	changed   chan struct{}
	rendered  map[renderKey][]byte
	iwg       sync.WaitGroup
}

type renderKey struct {
	name          string
	delta, compat bool
}

// addInstance publishes a started instance and starts its watcher.
func (s *stream) addInstance(i *instance) {
	s.mu.Lock()
	s.instances = append(s.instances, i)
	s.bumpLocked()
	s.mu.Unlock()
	s.iwg.Add(1)
	go i.watch()
}

// retire stops feeding an instance. One that never published anything is
// closed at once; otherwise its final playlists are read, its numbers folded
// into the stream's base, and it stays open for a grace period so what
// caches already list stays fetchable.
func (s *stream) retire(i *instance) {
	s.mu.Lock()
	if i.snap == nil {
		s.closeLocked(i)
		s.mu.Unlock()
		i.closeMuxer()
		return
	}
	i.frozen = true
	i.stopWatching()
	s.mu.Unlock()

	// The muxer has content, so this does not block; and since it is no
	// longer fed, this is its final state.
	final, err := i.fetchSnapshot()
	if err == nil && !s.reserve(i, final) {
		err = bus.ErrFenced
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		i.snap = final
	}
	n := uint64(i.snap.lastUsed() + 1)
	disc := i.disc
	if i.discStart && !hasReal(i.snap.media[i.snap.leading].pl.Segments) {
		// Retired from its first parts (a declared target duration that
		// turned out too short): no segment opened its discontinuity, and
		// its number stays free for the next instance's first segment,
		// which the placeholders in between are numbered after.
		disc--
	}
	if i.rend > 0 {
		rs := s.rends[i.rend-1]
		if n > rs.baseNext {
			rs.baseNext, rs.baseDisc = n, disc
		}
		rs.visible = true
	} else {
		if n > s.baseNext {
			s.baseNext, s.baseDisc = n, disc
		}
		s.visible = true
	}
	// Its last segments may stay listed (filling the next instance's gap
	// placeholders) until the next instance has filled the window; they
	// must then stay available for their duration plus the playlist's (RFC
	// 8216 §6.2.2). housekeep closes it once that time has passed.
	i.keepFor = time.Duration(s.hls.SegmentCount+2) * max(s.targetOf(i), s.hls.SegmentDuration)
	s.bumpLocked()
}

// targetOf is an instance's target duration.
func (s *stream) targetOf(i *instance) time.Duration {
	return time.Duration(i.snap.media[i.snap.leading].pl.TargetDuration) * time.Second
}

// unlistedLocked reports whether a frozen instance's segments have been out
// of the served playlist for keepFor: none of them is in the window of the
// newest instance of its rendition set. An instance that is still the
// newest (the publisher is gone) stays until the stream idles.
func (s *stream) unlistedLocked(i *instance, now time.Time) bool {
	head := s.headOfLocked(i.rend)
	if head == nil || head == i || i.snap == nil {
		return false
	}
	hl := head.snap.media[head.snap.leading]
	first := hl.offset + int64(hl.pl.MediaSequence) + int64(len(hl.pl.Segments)) - int64(s.hls.SegmentCount)
	if first <= i.snap.lastUsed() {
		return false
	}
	if i.unlistedAt.IsZero() {
		i.unlistedAt = now
	}
	return now.Sub(i.unlistedAt) >= i.keepFor
}

// closeLocked forgets an instance; the caller closes its muxer after unlocking.
func (s *stream) closeLocked(i *instance) {
	i.closed = true
	i.stopWatching()
	if k := slices.Index(s.instances, i); k >= 0 {
		s.instances = slices.Delete(s.instances, k, k+1)
	}
	s.bumpLocked()
}

// closeAll closes every instance (the current one without retiring it).
func (s *stream) closeAll() {
	s.mu.Lock()
	all := slices.Clone(s.instances)
	for _, i := range all {
		s.closeLocked(i)
	}
	s.mu.Unlock()
	for _, i := range all {
		i.closeMuxer()
	}
	s.cur = nil
	for _, rs := range s.rends {
		rs.cur = nil
	}
}

// housekeep closes retired instances whose grace period is over and
// handles idleness; true when the stream should be released.
func (s *stream) housekeep(now time.Time) bool {
	var expired []*instance
	s.mu.Lock()
	for _, i := range s.instances {
		if i.frozen && !i.closed && s.unlistedLocked(i, now) {
			expired = append(expired, i)
		}
	}
	for _, i := range expired {
		s.log.Debug("replaced HLS muxer closed", "prefix", i.snap.prefix, "unlisted_for", now.Sub(i.unlistedAt).Round(time.Millisecond))
		s.closeLocked(i)
	}
	s.mu.Unlock()
	for _, i := range expired {
		i.closeMuxer()
	}

	lastActivity := s.lastPacket
	if s.acquiredAt.After(lastActivity) {
		lastActivity = s.acquiredAt
	}
	if now.Sub(lastActivity) < s.hls.IdleTimeout {
		return false
	}
	if !s.idle {
		s.idle = true
		s.log.Info("stream idle; HLS muxer closed", "idle_for", now.Sub(lastActivity).Round(time.Millisecond))
		// Close everything now: gohlslib's blocking requests only end on Close.
		s.stopTranscoder()
		if s.cur != nil {
			s.retire(s.cur)
			s.cur = nil
		}
		s.closeAll()
	}
	return s.ended.Load()
}

// storeSnapshot publishes a watcher's snapshot; false once the instance is
// frozen or closed (the watcher then stops).
func (s *stream) storeSnapshot(i *instance, sn *snapshot) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i.closed || i.frozen {
		return false
	}
	if i.snap != nil && string(i.snap.leadingRaw) == string(sn.leadingRaw) &&
		string(i.snap.multivariant) == string(sn.multivariant) {
		return true
	}
	if t := sn.measuredTarget(); t > 0 && i.rend == 0 {
		// What the camera sends now: the next muxer may declare it.
		s.target.Store(int64(t))
	}
	i.snap = sn
	s.bumpLocked()
	return true
}

// bumpLocked marks a change of what is served: cached renders are dropped
// and waiting requests re-evaluate.
func (s *stream) bumpLocked() {
	s.version++
	s.rendered = nil
	close(s.changed)
	s.changed = make(chan struct{})
}

// headLocked is the newest source instance with published content.
func (s *stream) headLocked() *instance { return s.headOfLocked(0) }

// headOfLocked is the newest instance of rendition set rend with published
// content.
func (s *stream) headOfLocked(rend int) *instance {
	for k := len(s.instances) - 1; k >= 0; k-- {
		if i := s.instances[k]; i.rend == rend && !i.closed && i.snap != nil {
			return i
		}
	}
	return nil
}

// readyLocked says whether rendition set rend serves a playlist and how many
// real segments its window holds.
func (s *stream) readyLocked(rend int) (bool, int) {
	head := s.headOfLocked(rend)
	if head == nil {
		return false, 0
	}
	segs := head.snap.media[head.snap.leading].pl.Segments
	segs = segs[max(len(segs)-s.hls.SegmentCount, 0):] // the listed window
	n := 0
	for _, seg := range segs {
		if !seg.Gap {
			n++
		}
	}
	return true, n
}

// nextMSN is the next free media sequence number and the current
// discontinuity number.
func (s *stream) nextMSN() (uint64, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next, disc := s.baseNext, s.baseDisc
	for _, i := range s.instances {
		if i.rend != 0 || i.frozen || i.closed || i.snap == nil {
			continue
		}
		if n := uint64(i.snap.lastUsed() + 1); n > next {
			next, disc = n, i.disc
		}
	}
	return next, disc
}

// timeShift is what is added to the timestamps of a new instance whose
// first packet has timestamp pts, so that its output continues right after
// the latest timestamp of the instances before it (on this origin, or the
// previous owner's per the playlist state) instead of going back to the
// publisher's zero. VLC 3 keeps one clock for a stream's separate audio and
// video playlists across an EXT-X-DISCONTINUITY: timestamps that go back
// there stall it for good (docs/players.md). The first instance of a stream
// keeps its timestamps.
func (s *stream) timeShift(pts time.Duration) time.Duration {
	end := time.Duration(s.timelineEnd.Load())
	if end == 0 {
		return 0
	}
	return end + timelineStep - pts
}

// timelineStep separates the last timestamp of an instance from the first
// of the next one: about a frame.
const timelineStep = 40 * time.Millisecond

// extendTimeline records the latest timestamp fed, on the stream's timeline.
func (s *stream) extendTimeline(t time.Duration) {
	for {
		end := s.timelineEnd.Load()
		if int64(t) <= end || s.timelineEnd.CompareAndSwap(end, int64(t)) {
			return
		}
	}
}
