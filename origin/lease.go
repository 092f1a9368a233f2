package origin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamgrid/streamgrid/bus"
)

const (
	// stateReserveSpan is how much media the stored NextMSN reserves ahead
	// of what was shown: the playlist state is written when the reserve runs
	// out (about once per span per stream) or the discontinuity sequence
	// moves, and a successor taking over after a crash jumps forward by at
	// most this much (with a discontinuity), never backwards.
	stateReserveSpan = 30 * time.Second
	// kvTimeout bounds one registry operation.
	kvTimeout = 2 * time.Second
)

// ownership is a stream's owner record, and the playlist state that the
// record's epoch fences in the registry. The record is not renewed: it
// holds while the origin's node liveness does (bus.Liveness); the stream
// learns it lost the record from the owner watch (a newer epoch, or the
// record gone) or from the origin's own liveness lapsing.
//
// Invariants:
//   - lease and acquiredAt are set once by claim, before anything else runs,
//     and not changed after (only lease.Rev, when a release recovers it).
//   - serving is true exactly while the record is held and packets flow;
//     epoch and since describe that record. HTTP answers also need the
//     node's liveness (serves).
//   - stopCh closes once; mode is the first stop asked for. lostCh holds
//     at most one reason: the first lease loss wins.
//   - Playlist-state writes are serialised by stateMu; persisted is the last
//     one the registry accepted. While the stream runs, the stored numbers
//     never go back (see persist).
type ownership struct {
	lease      *bus.Lease
	acquiredAt time.Time
	serving    atomic.Bool // lease held: HTTP requests are answered
	epoch      atomic.Uint64
	since      atomic.Pointer[time.Time]

	stopCh   chan struct{}
	stopOnce sync.Once
	mode     atomic.Int32
	lostCh   chan error

	stateMu      sync.Mutex
	persisted    bus.PlaylistState
	stateFailing atomic.Bool

	// target is the stream's keyframe interval as a target duration in
	// seconds (bus.PlaylistState.TargetDuration): read with the playlist
	// state, then measured on the source muxer being fed (storeSnapshot),
	// and cleared when it turns out too short; 0: not known.
	target atomic.Int64
}

// stop asks the stream to end; the first mode asked wins.
func (s *stream) stop(mode stopMode) {
	s.stopOnce.Do(func() {
		s.mode.Store(int32(mode))
		close(s.stopCh)
	})
}

func (s *stream) signalLost(err error) {
	select {
	case s.lostCh <- err:
	default:
	}
}

// observeOwner is told every owner record of the stream's path: a newer
// epoch than ours means another origin holds the stream now; nil, that the
// record was removed (not by us while we serve).
func (s *stream) observeOwner(o *bus.Owner) {
	e := s.epoch.Load()
	switch {
	case e == 0:
	case o == nil:
		s.signalLost(fmt.Errorf("%w: owner record removed", bus.ErrLeaseLost))
	case o.Epoch > e:
		s.signalLost(fmt.Errorf("%w: taken over by %s (epoch %d)", bus.ErrLeaseLost, o.Node, o.Epoch))
	}
}

// serves says whether HTTP requests for the stream are answered: the record
// is held and the node's liveness has not lapsed (a paused origin that
// wakes answers nothing until it has heard whether its streams are still its).
func (s *stream) serves() bool {
	return s.serving.Load() && s.o.live.Alive()
}

// kvContext bounds one registry operation.
func kvContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), kvTimeout)
}

// loadState reads the playlist state a previous owner left, so this owner
// continues its media sequence after a discontinuity.
func (s *stream) loadState() error {
	ctx, cancel := kvContext()
	st, _, err := s.o.Registry.State(ctx, s.path)
	cancel()
	switch {
	case errors.Is(err, bus.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("claim: read playlist state: %w", err)
	}
	s.mu.Lock()
	s.baseNext, s.baseDisc, s.visible = st.NextMSN, st.Discontinuity, true
	s.mu.Unlock()
	s.timelineEnd.Store(st.NextTime)
	s.target.Store(int64(max(st.TargetDuration, 0)))
	return nil
}

// release gives the lease up, so another origin may claim the stream at
// once; a lease the registry no longer has (expired, or taken) is left be.
func (s *stream) release() {
	ctx, cancel := kvContext()
	err := s.o.Registry.ReleaseOwner(ctx, s.lease)
	cancel()
	if errors.Is(err, bus.ErrLeaseLost) && s.recoverLease() {
		ctx, cancel := kvContext()
		err = s.o.Registry.ReleaseOwner(ctx, s.lease)
		cancel()
	}
	if err != nil && !errors.Is(err, bus.ErrLeaseLost) {
		s.log.Warn("releasing the lease failed; it will expire", "err", err)
	}
}

// recoverLease handles a renewal the registry applied but whose reply was
// lost (see bus.Registry.RecoverOwner); true when the lease is still ours
// and its revision was refreshed.
func (s *stream) recoverLease() bool {
	ctx, cancel := kvContext()
	defer cancel()
	return s.o.Registry.RecoverOwner(ctx, s.lease) == nil
}

// persist writes st unless it is what was written last. Writes are
// serialised, and while the stream runs the stored numbers never move
// backwards (a reserve written for a newer snapshot stays); only the final
// write of a released stream (final) may lower NextMSN to exactly what was
// shown. Failures other than ErrFenced are counted and logged once per streak.
func (s *stream) persist(st bus.PlaylistState, final bool) error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if !final && s.persisted.Epoch == st.Epoch {
		st.NextMSN = max(st.NextMSN, s.persisted.NextMSN)
		st.Discontinuity = max(st.Discontinuity, s.persisted.Discontinuity)
	}
	return s.persistLocked(st)
}

func (s *stream) persistLocked(st bus.PlaylistState) error {
	if st == s.persisted {
		return nil
	}
	ctx, cancel := kvContext()
	err := s.o.Registry.PutState(ctx, s.path, st)
	cancel()
	switch {
	case err == nil:
		s.persisted = st
		s.stateFailing.Store(false)
	case errors.Is(err, bus.ErrFenced):
	default:
		s.o.m.stateErrors.Inc()
		if !s.stateFailing.Swap(true) {
			s.log.Warn("writing the playlist state failed; retrying", "err", err)
		}
	}
	return err
}

// reserve makes sure the stored NextMSN is past every media sequence number
// snapshot sn shows, and the stored discontinuity count at sn's, before sn
// is published: a successor taking over after a crash must never reuse a
// number a viewer may have seen. It writes only when sn goes past the
// reserve (about once per stateReserveSpan) or opens a discontinuity. False when the
// write was fenced: the stream is no longer ours and sn must not be shown.
func (s *stream) reserve(i *instance, sn *snapshot) bool {
	if i.rend != 0 {
		return true // renditions follow the source's numbers, which are reserved
	}
	need := uint64(sn.lastUsed() + 1)
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	target := int(s.target.Load())
	if need <= s.persisted.NextMSN && i.disc <= s.persisted.Discontinuity && s.persisted.Epoch != 0 &&
		target == s.persisted.TargetDuration {
		return true
	}
	st := bus.PlaylistState{NextMSN: need + s.reserveSegments(), Discontinuity: i.disc,
		Epoch: s.lease.Owner.Epoch, Node: s.o.Node, NextTime: s.nextTime(), TargetDuration: target}
	if err := s.persistLocked(st); errors.Is(err, bus.ErrFenced) {
		s.signalLost(err)
		return false
	}
	return true // on other errors availability wins; the next snapshot retries
}

// reserveSegments is how far ahead of what was produced NextMSN is stored:
// stateReserveSpan's worth of segments, and two more.
func (s *stream) reserveSegments() uint64 {
	seg := s.hls.SegmentDuration
	return uint64((stateReserveSpan+seg-1)/seg) + 2
}

// state is the playlist state to persist. With reserve, NextMSN is set a few
// segments ahead of what was produced, so a successor taking over after a
// crash never reuses a number viewers may have seen since the last write.
func (s *stream) state(reserve bool) bus.PlaylistState {
	next, disc := s.nextMSN()
	if reserve {
		next += s.reserveSegments()
	}
	return bus.PlaylistState{NextMSN: next, Discontinuity: disc, Epoch: s.lease.Owner.Epoch, Node: s.o.Node,
		NextTime: s.nextTime(), TargetDuration: int(s.target.Load())}
}

// nextTime is the timestamp a successor's output starts at, for the
// playlist state: the latest one fed plus the duration of the segments
// NextMSN is reserved ahead by.
func (s *stream) nextTime() int64 {
	end := time.Duration(s.timelineEnd.Load())
	return int64(end + time.Duration(s.reserveSegments()+1)*s.hls.SegmentDuration)
}
