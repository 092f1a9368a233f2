package origin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gohlslib/v2"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/media"
)

const (
	// A stream's idle check and the closing of its retired muxers run
	// every tenth of origin.hls.idle_timeout, between minHousekeep and
	// maxHousekeep: 1 s with the default 10 s. Neither needs more precision,
	// and a ticker per owned stream at 100 ms was 10 wake-ups a second per
	// stream whatever the stream did (100 000 a second in a control-plane
	// simulation of 10 000 streams).
	minHousekeep = 100 * time.Millisecond
	maxHousekeep = time.Second
	// gopTimeout bounds the wait for the edge's last GOP on claim.
	gopTimeout = time.Second
)

// stopMode says how a stream ends.
type stopMode int32

const (
	stopLost    stopMode = iota // the lease was lost: neither persist nor release
	stopRelease                 // persist the playlist state and release the lease
	stopAbandon                 // neither (tests: simulates a crashed origin)
)

// stream is one stream the origin owns or is claiming. Its run goroutine
// claims the lease, packages the stream's packets into muxer instances
// until it must end, and gives the lease up; HTTP handlers read what the
// instances publish.
//
// Its state is split by concern, each part a small type in its own file:
//   - ownership (lease.go): the lease, the stop signals and the playlist
//     state written to the registry;
//   - intake (intake.go): the packet queue, and procMu, which lets one
//     goroutine at a time package;
//   - packager (packager.go): the current muxer instance and what packaging
//     carries from one packet to the next;
//   - transcodeRun (rendition.go): the transcoder and its rendition sets;
//   - muxerSet (muxerset.go): every muxer instance and what it publishes;
//   - requestDemand (demand.go): when caches last asked for the stream.
//
// Invariants:
//   - packager and transcodeRun are touched only under procMu (the run
//     goroutine, or a subscription goroutine packaging inline).
//   - procMu is taken before stateMu or mu; stateMu and mu are never held
//     together, so the registry's latency never holds up HTTP handlers.
//   - The counters and the atomics below are read without locks (status).
type stream struct {
	o    *Origin
	path string
	log  *slog.Logger
	// hls and baseVariant are the origin's packaging settings when the
	// stream was claimed: a reload changes them for later streams only.
	hls         HLSConfig
	baseVariant gohlslib.MuxerVariant

	// plan is the stream's ladder, set before its goroutine starts; nil
	// for passthrough.
	plan *ladderPlan
	// takeover, set before its goroutine starts, is the record of a dead
	// node this stream takes the path from (nil: a fresh claim).
	takeover *ownerRecord
	// handover, set before its goroutine starts, is the origin that
	// released the path within FailoverWindow (a fresh claim after it).
	handover string
	// claimDone, set before its goroutine starts, is called once when the
	// claim is over (won or not), so the claimer can start the next
	// (maxClaimsInFlight); nil: nobody waits.
	claimDone func()

	info       atomic.Pointer[bus.StreamInfo]
	ended      atomic.Bool
	generation atomic.Uint64
	variant    atomic.Int32

	packets, dropped, writeErrs, encodeErrs, recreations atomic.Uint64
	// refreshes counts playlist snapshots taken by the instance watchers.
	refreshes atomic.Uint64

	ownership
	intake
	packager
	transcodeRun
	muxerSet
	requestDemand
}

func newStream(o *Origin, path string, info *bus.StreamInfo) *stream {
	s := &stream{o: o, path: path, log: o.Log.With("stream", path)}
	s.stopCh = make(chan struct{})
	s.lostCh = make(chan error, 1)
	s.demand = make(chan struct{})
	s.changed = make(chan struct{})
	s.queue = media.NewQueue[*media.Packet](queueSize)
	s.tcVideo, s.tcAudioTrack = -1, -1
	h := o.hls.Load()
	s.hls, s.baseVariant = h.cfg, h.variant
	s.info.Store(info)
	s.variant.Store(int32(h.variant))
	return s
}

func (s *stream) setInfo(info *bus.StreamInfo) { s.info.Store(info) }

func (s *stream) setEnded(v bool) { s.ended.Store(v) }

func (s *stream) run() {
	err := s.runInner()
	if err != nil {
		s.log.Warn("stream ended", "err", err)
	}
	s.claimOver()
	s.o.removeStream(s)
	s.o.swg.Done()
}

// claimOver tells the claimer the claim is over, once (on the run goroutine).
func (s *stream) claimOver() {
	if f := s.claimDone; f != nil {
		s.claimDone = nil
		f()
	}
}

// runInner claims the stream, packages it until told to stop, the lease is
// lost or the stream is gone, and cleans up.
func (s *stream) runInner() error {
	select {
	case <-s.stopCh:
		return nil
	default:
	}
	initial, err := s.claim()
	s.claimOver()
	if err != nil || s.lease == nil {
		return err
	}

	// Live packets wait in the queue until the GOP is packaged.
	s.procMu.Lock()
	s.inline.Store(s.plan == nil) // stopping a transcoder may take seconds: never on an edge's goroutine
	sub, warm, err := s.subscribe()
	if err != nil {
		s.procMu.Unlock()
		s.release()
		return fmt.Errorf("claim: %w", err)
	}
	s.announce(initial)

	s.feedGOP(warm)
	s.drain(false)
	s.procMu.Unlock()
	reason, mode := s.loop()

	sub.Close()
	s.procMu.Lock() // a packet being packaged on a subscription goroutine
	s.inline.Store(false)
	s.finish(mode, reason)
	s.procMu.Unlock()
	s.o.m.streams.Dec()
	return nil
}

// claim takes the owner record (a new one, or by compare-and-set from a
// dead node's), reads the playlist state a previous owner left and writes
// it back at once, which fences that owner should it still be running. It
// returns the state written; with a nil lease and no error when another
// origin owns the stream.
func (s *stream) claim() (bus.PlaylistState, error) {
	if !s.o.live.Alive() {
		return bus.PlaylistState{}, nil // the claimer tries again once this node is alive
	}
	me := bus.Owner{Node: s.o.Node, Instance: s.o.live.Instance(), HTTP: s.o.AdvertiseHTTP}
	began := time.Now()
	ctx, cancel := kvContext()
	var lease *bus.Lease
	var err error
	if t := s.takeover; t != nil {
		lease, err = s.o.Registry.TakeOverOwner(ctx, s.path, t.owner, t.rev, me)
	} else {
		lease, err = s.o.Registry.AcquireOwner(ctx, s.path, me)
	}
	cancel()
	if errors.Is(err, bus.ErrOwned) {
		s.o.m.claimConflicts.Inc()
		s.o.ownerStale(s.path)
		s.log.Debug("stream already owned elsewhere")
		return bus.PlaylistState{}, nil
	}
	if err != nil {
		s.o.m.claimErrors.Inc()
		return bus.PlaylistState{}, fmt.Errorf("claim: %w", err)
	}
	s.lease = lease
	s.acquiredAt = time.Now()
	s.log.Debug("owner record written", "takeover", s.takeover != nil, "took", s.acquiredAt.Sub(began))

	if err := s.loadState(); err != nil {
		s.release()
		return bus.PlaylistState{}, err
	}
	s.initRenditions()
	initial := s.state(true)
	if err := s.persist(initial, false); errors.Is(err, bus.ErrFenced) {
		s.o.m.losses.Inc()
		return initial, fmt.Errorf("claim: %w", err)
	}
	return initial, nil
}

// subscribe starts the stream's packets flowing into the queue. When this
// origin was the stream's warm standby, it adopts the standby's
// subscription and returns the GOPs the standby kept (warm): the live
// packets follow them without a gap. Otherwise it subscribes and makes sure
// the server has the subscription before the GOP is asked for, so nothing
// falls between the GOP and the live packets.
func (s *stream) subscribe() (sub bus.MediaSubscription, warm []*media.Packet, err error) {
	if sub, warm, ok := s.o.standby.adopt(s.path, s.enqueue); ok {
		return sub, warm, nil
	}
	sub, err = s.o.Media.SubscribeMedia(s.path, s.enqueue)
	if err != nil {
		return nil, nil, err
	}
	if err := s.o.NC.FlushTimeout(time.Second); err != nil {
		s.log.Debug("bus flush after subscribing failed", "err", err)
	}
	return sub, nil, nil
}

// announce starts answering requests for the claimed stream.
func (s *stream) announce(initial bus.PlaylistState) {
	since := s.lease.Owner.Since
	s.since.Store(&since)
	s.epoch.Store(s.lease.Owner.Epoch)
	s.serving.Store(true)
	s.o.m.claims.Inc()
	s.o.m.streams.Inc()
	s.o.poke(s.o.metaChanged)
	s.log.Info("stream claimed", "epoch", s.lease.Owner.Epoch, "next_msn", initial.NextMSN,
		"discontinuity", initial.Discontinuity)
	if f := s.o.OnFailover; f != nil {
		if prev := s.previousOrigin(); prev != "" {
			f(s.path, prev, s.lease.Owner.Epoch)
		}
	}
}

// feedGOP packages the last GOPs first, so the stream starts without
// waiting for the next keyframe: those the warm standby kept (warm), else
// the edge's, asked for on the bus. Live packets they already held are
// skipped.
func (s *stream) feedGOP(warm []*media.Packet) {
	if len(warm) > 0 {
		s.o.m.standbyTakeovers.Inc()
		s.log.Debug("GOP from the warm standby", "packets", len(warm))
		for _, p := range warm {
			s.handlePacket(p, true)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), gopTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	asked := time.Now()
	gop, err := bus.FetchGOP(ctx, s.o.NC, s.path)
	if err != nil {
		s.log.Debug("no GOP from the edge", "err", err)
		return
	}
	s.log.Debug("GOP from the edge", "packets", len(gop), "after", time.Since(asked).Round(time.Millisecond))
	for _, p := range gop {
		s.handlePacket(p, true)
	}
}

// housekeepInterval is how often a stream with this idle timeout looks
// for idleness and retired muxers.
func housekeepInterval(idle time.Duration) time.Duration {
	return min(max(idle/10, minHousekeep), maxHousekeep)
}

// loop runs until the stream must end and says why and how.
func (s *stream) loop() (string, stopMode) {
	tick := time.NewTicker(housekeepInterval(s.hls.IdleTimeout))
	defer tick.Stop()
	for {
		select {
		case <-s.stopCh:
			return "stopped", stopMode(s.mode.Load())
		case err := <-s.lostCh:
			s.log.Warn("ownership lost, packaging stopped", "err", err)
			return "lease lost", stopLost
		case <-s.queue.Ready():
			s.procMu.Lock()
			s.drain(false)
			s.procMu.Unlock()
		case <-s.transcodedReady():
			s.procMu.Lock()
			s.handleTranscodedQueue()
			s.procMu.Unlock()
		case now := <-tick.C:
			s.procMu.Lock()
			ended := s.housekeep(now)
			s.procMu.Unlock()
			if ended {
				return "ended", stopRelease
			}
		}
	}
}

// finish tears the stream down. stopRelease: the final state is written and
// the lease given up so another origin can take over at once. stopLost
// and stopAbandon: neither.
func (s *stream) finish(mode stopMode, reason string) {
	s.stopTranscoder()
	if mode == stopRelease {
		if s.cur != nil {
			s.retire(s.cur)
			s.cur = nil
		}
		// Exact, without reserve: the successor continues right after what was shown.
		if err := s.persist(s.state(false), true); errors.Is(err, bus.ErrFenced) {
			mode = stopLost // a newer owner exists: the lease is not ours to release
		}
	}
	s.serving.Store(false)
	switch mode {
	case stopRelease:
		s.release()
		s.o.m.releases.Inc()
	case stopLost:
		s.o.m.losses.Inc()
	}
	s.closeAll()
	s.iwg.Wait()
	s.log.Info("stream released", "reason", reason)
}

func (s *stream) drop() {
	s.dropped.Add(1)
	s.o.m.packetsDropped.Inc()
}

// status reports the stream; false while it is not (yet) owned.
func (s *stream) status() (StreamStatus, bool) {
	if !s.serving.Load() {
		return StreamStatus{}, false
	}
	next, disc := s.nextMSN()
	st := StreamStatus{
		Path:          s.path,
		Generation:    s.generation.Load(),
		Epoch:         s.epoch.Load(),
		Variant:       variantName(gohlslib.MuxerVariant(s.variant.Load())),
		NextMSN:       next,
		Discontinuity: disc,
		Packets:       s.packets.Load(),
		Dropped:       s.dropped.Load(),
		WriteErrors:   s.writeErrs.Load(),
		EncodeErrors:  s.encodeErrs.Load(),
		Recreations:   s.recreations.Load(),
	}
	if t := s.since.Load(); t != nil {
		st.Since = *t
	}
	if s.plan != nil {
		st.Encoder = string(s.plan.encoder)
		if tc := s.tcPtr.Load(); tc != nil {
			ts := tc.Stats()
			st.TranscodeRestarts, st.TranscodeSpeed = ts.Restarts, ts.Speed
		}
	}
	s.mu.Lock()
	st.Ready, st.Segments = s.readyLocked(0)
	for k, rs := range s.rends {
		r := RenditionStatus{Name: rs.name}
		r.Ready, r.Segments = s.readyLocked(k + 1)
		if head := s.headOfLocked(k + 1); head != nil {
			r.Playlist = rs.prefix + head.snap.leading
		}
		st.Renditions = append(st.Renditions, r)
	}
	s.mu.Unlock()
	return st, true
}
