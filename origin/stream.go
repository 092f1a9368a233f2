package origin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gohlslib/v2"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/transcode"
)

const (
	// queueSize bounds the packets waiting to be packaged per stream.
	queueSize = 1024
	// housekeepInterval paces idle checks and the closing of retired muxers.
	housekeepInterval = 100 * time.Millisecond
	// statePersistInterval paces playlist-state writes while the state changes.
	statePersistInterval = time.Second
	// maxConsecutiveWriteErrors re-creates a muxer that keeps refusing input.
	maxConsecutiveWriteErrors = 10
	// minRecreateInterval stops an error storm from re-creating muxers in a loop.
	minRecreateInterval = time.Second
	// gopTimeout bounds the wait for the edge's last GOP on claim.
	gopTimeout = time.Second
	// kvTimeout bounds one registry operation.
	kvTimeout = 2 * time.Second
	// infoRefreshInterval limits registry reads for a generation the watch has not shown yet.
	infoRefreshInterval = time.Second
	// watchedFor is how long after a request for a stream its Low-Latency
	// playlists are re-read after every part; afterwards, with nobody
	// fetching them, once per unwatchedRefresh until a request comes.
	watchedFor       = 30 * time.Second
	unwatchedRefresh = time.Second
	// freshWait bounds how long the first request after a quiet spell waits
	// for playlists refreshed at once instead of up to unwatchedRefresh ago.
	freshWait = 100 * time.Millisecond
	// staleGenerations is how many replaced generations are remembered, so
	// late packets of an old publisher do not flip the muxer back.
	staleGenerations = 8
)

// stopMode says how a stream ends.
type stopMode int32

const (
	stopNone    stopMode = iota
	stopRelease          // persist the playlist state and release the lease
	stopAbandon          // neither (tests: simulates a crashed origin)
)

// stream is one stream the origin owns or is claiming. Its goroutine holds
// the lease, feeds packets into the current muxer instance and manages the
// instances' lifecycle; HTTP handlers read the instances under mu.
type stream struct {
	o    *Origin
	path string
	log  *slog.Logger
	// hls and baseVariant are the origin's packaging settings when the
	// stream was claimed: a reload changes them for later streams only.
	hls         HLSConfig
	baseVariant gohlslib.MuxerVariant

	info       atomic.Pointer[bus.StreamInfo]
	ended      atomic.Bool
	serving    atomic.Bool // lease held: HTTP requests are answered
	epoch      atomic.Uint64
	since      atomic.Pointer[time.Time]
	generation atomic.Uint64
	variant    atomic.Int32

	// lastRequest is when a cache last asked for the stream (Unix ns).
	// demand is closed and replaced, under demandMu, by the first request
	// after a quiet spell: it wakes the instance watchers.
	lastRequest atomic.Int64
	demandMu    sync.Mutex
	demand      chan struct{}

	stopCh   chan struct{}
	stopOnce sync.Once
	mode     atomic.Int32
	lostCh   chan error

	// Packets waiting to be packaged, oldest first, at most queueSize, under
	// qmu; after a drop, video waits for a keyframe (needKey). The
	// subscription's goroutine (an edge's, for the in-process hub) packages
	// them itself when procMu is free and the stream does not transcode, so
	// a packet needs no goroutine hand-off; otherwise kick tells the run
	// goroutine. procMu guards the run-goroutine state below.
	qmu     sync.Mutex
	queue   []*media.Packet
	spare   []*media.Packet // under procMu
	needKey bool
	kick    chan struct{}
	procMu  sync.Mutex
	inline  atomic.Bool

	packets, dropped, writeErrs, encodeErrs, recreations atomic.Uint64
	// refreshes counts playlist snapshots taken by the instance watchers.
	refreshes atomic.Uint64

	// Run-goroutine state (held under procMu while the stream runs).
	lease         *bus.Lease
	cur           *instance
	acquiredAt    time.Time
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
	// The anchor of packetTime: a wall-clock time and the timestamp it
	// dates, per publisher generation.
	clockSet  bool
	clockGen  uint64
	clockWall time.Time
	clockPTS  time.Duration

	// Transcoding (run goroutine, see rendition.go); plan is nil for
	// passthrough streams. tcPtr publishes tc to status readers; tcSrc is
	// written under mu (the master playlist reads it).
	plan         *ladderPlan
	rends        []*rendState
	tc           *transcode.Transcoder
	tcPtr        atomic.Pointer[transcode.Transcoder]
	tcOut        chan *tcPacket
	tcState      tcState
	tcSrc        transcode.SourceInfo
	tcVideo      int // source track fed to the transcoder; -1 until known
	tcAudioTrack int // -1: none
	gopStart     int64
	gopDur       int64
	gopFrames    int
	cuts         []segCut
	srcPTS       int64
	srcNTP       time.Time
	srcClock     bool

	// stateMu serialises playlist-state writes; persisted is the last one written.
	stateMu      sync.Mutex
	persisted    bus.PlaylistState
	stateFailing atomic.Bool

	// timelineEnd is the latest timestamp (ns) fed to any instance, shifted
	// (see timeShift). Atomic: every packet raises it, and the packet path
	// must not queue behind playlist requests on mu.
	timelineEnd atomic.Int64

	mu        sync.Mutex
	instances []*instance // oldest first; the last one is being fed unless frozen
	// baseNext and baseDisc fold in every instance no longer fed (and the
	// state read at claim): the next free media sequence number and the
	// discontinuity number of the latest segments. visible says whether
	// anything was ever published for the stream.
	baseNext uint64
	baseDisc uint64
	visible  bool
	version  uint64
	changed  chan struct{} // closed and replaced on every change of what is served
	rendered map[renderKey][]byte
	iwg      sync.WaitGroup // instance watchers
}

type renderKey struct {
	name          string
	delta, compat bool
}

func newStream(o *Origin, path string, info *bus.StreamInfo) *stream {
	s := &stream{
		o:       o,
		path:    path,
		log:     o.Log.With("stream", path),
		stopCh:  make(chan struct{}),
		demand:  make(chan struct{}),
		lostCh:  make(chan error, 1),
		kick:    make(chan struct{}, 1),
		changed: make(chan struct{}),

		tcVideo:      -1,
		tcAudioTrack: -1,
	}
	h := o.hls.Load()
	s.hls, s.baseVariant = h.cfg, h.variant
	s.info.Store(info)
	s.variant.Store(int32(h.variant))
	return s
}

func (s *stream) setInfo(info *bus.StreamInfo) { s.info.Store(info) }

// touch records a request for the stream. On a Low-Latency stream nobody
// asked for in watchedFor, it wakes the instance watchers, so playlists
// follow every part again, and waits up to freshWait for the refreshed ones.
func (s *stream) touch() {
	now := time.Now().UnixNano()
	if now-s.lastRequest.Swap(now) < int64(s.o.watchedFor) {
		return // the watchers follow every part already
	}
	if s.variant.Load() != int32(gohlslib.MuxerVariantLowLatency) {
		return // other variants are polled at their own pace
	}
	s.mu.Lock()
	changed := s.changed
	s.mu.Unlock()
	s.demandMu.Lock()
	close(s.demand)
	s.demand = make(chan struct{})
	s.demandMu.Unlock()
	t := time.NewTimer(freshWait)
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
	}
}

// demandSignal returns the channel the next touch after a quiet spell closes.
func (s *stream) demandSignal() <-chan struct{} {
	s.demandMu.Lock()
	defer s.demandMu.Unlock()
	return s.demand
}

// watched reports whether a cache asked for the stream lately.
func (s *stream) watched() bool {
	return time.Now().UnixNano()-s.lastRequest.Load() < int64(s.o.watchedFor)
}

func (s *stream) setEnded(v bool) { s.ended.Store(v) }

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
// epoch than ours means another origin holds the lease now.
func (s *stream) observeOwner(o bus.Owner) {
	if e := s.epoch.Load(); e != 0 && o.Epoch > e {
		s.signalLost(fmt.Errorf("%w: taken over by %s (epoch %d)", bus.ErrLeaseLost, o.Node, o.Epoch))
	}
}

func (s *stream) run() {
	err := s.runInner()
	if err != nil {
		s.log.Warn("stream ended", "err", err)
	}
	s.o.removeStream(s)
	s.o.swg.Done()
}

func kvContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), kvTimeout)
}

// runInner claims the stream, packages it until told to stop, the lease is
// lost or the stream is gone, and cleans up.
func (s *stream) runInner() error {
	select {
	case <-s.stopCh:
		return nil
	default:
	}
	ctx, cancel := kvContext()
	lease, err := s.o.Registry.AcquireOwner(ctx, s.path, bus.Owner{Node: s.o.Node, HTTP: s.o.AdvertiseHTTP})
	cancel()
	if errors.Is(err, bus.ErrOwned) {
		s.log.Debug("stream already owned elsewhere")
		return nil
	}
	if err != nil {
		return fmt.Errorf("claim: %w", err)
	}
	s.lease = lease
	s.acquiredAt = time.Now()

	if err := s.loadState(); err != nil {
		s.release()
		return err
	}
	s.initRenditions()
	// Writing at once fences a previous owner that may still be running.
	initial := s.state(true)
	if err := s.persist(initial, false); errors.Is(err, bus.ErrFenced) {
		s.o.m.losses.Inc()
		return fmt.Errorf("claim: %w", err)
	}

	// Live packets wait in the queue until the GOP is packaged.
	s.procMu.Lock()
	s.inline.Store(s.plan == nil) // stopping a transcoder may take seconds: never on an edge's goroutine
	var sub *bus.Subscription
	if s.o.Hub != nil {
		sub, err = s.o.Hub.SubscribeMedia(s.path, s.enqueue)
	} else {
		sub, err = bus.SubscribeMedia(s.o.NC, s.path, s.enqueue)
	}
	if err != nil {
		s.procMu.Unlock()
		s.release()
		return fmt.Errorf("claim: %w", err)
	}
	// Make sure the server has the subscription before asking for the GOP,
	// so nothing falls between the GOP and the live packets.
	if err := s.o.NC.FlushTimeout(time.Second); err != nil {
		s.log.Debug("bus flush after subscribing failed", "err", err)
	}

	since := lease.Owner.Since
	s.since.Store(&since)
	s.epoch.Store(lease.Owner.Epoch)
	s.serving.Store(true)
	s.o.m.claims.Inc()
	s.o.m.streams.Inc()
	s.o.poke(s.o.metaKick)
	s.log.Info("stream claimed", "epoch", lease.Owner.Epoch, "next_msn", initial.NextMSN,
		"discontinuity", initial.Discontinuity)

	keepStop, keepDone := make(chan struct{}), make(chan struct{})
	go s.keep(keepStop, keepDone)

	s.feedGOP()
	s.drain()
	s.procMu.Unlock()
	reason, mode := s.loop()

	sub.Close()
	close(keepStop)
	<-keepDone
	s.procMu.Lock() // a packet being packaged on a subscription goroutine
	s.inline.Store(false)
	s.finish(mode, reason)
	s.procMu.Unlock()
	s.o.m.streams.Dec()
	return nil
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
	return nil
}

// feedGOP packages the edge's last GOP first, so the stream starts without
// waiting for the next keyframe. Live packets it already held are skipped.
func (s *stream) feedGOP() {
	ctx, cancel := context.WithTimeout(context.Background(), gopTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	gop, err := bus.FetchGOP(ctx, s.o.NC, s.path)
	if err != nil {
		s.log.Debug("no GOP from the edge", "err", err)
		return
	}
	for _, p := range gop {
		s.handlePacket(p, true)
	}
}

// loop runs until the stream must end and says why and how.
func (s *stream) loop() (string, stopMode) {
	tick := time.NewTicker(housekeepInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.stopCh:
			return "stopped", stopMode(s.mode.Load())
		case err := <-s.lostCh:
			s.log.Warn("ownership lost, packaging stopped", "err", err)
			return "lease lost", stopNone
		case <-s.kick:
			s.procMu.Lock()
			s.drain()
			s.procMu.Unlock()
		case p := <-s.tcOut:
			s.procMu.Lock()
			s.handleTranscoded(p)
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
// the lease given up so another origin can take over at once. stopNone (lost)
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
			mode = stopNone // a newer owner exists: the lease is not ours to release
		}
	}
	s.serving.Store(false)
	switch mode {
	case stopRelease:
		s.release()
		s.o.m.releases.Inc()
	case stopNone:
		s.o.m.losses.Inc()
	}
	s.closeAll()
	s.iwg.Wait()
	s.log.Info("stream released", "reason", reason)
}

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

// keep renews the lease every LeaseTTL/3 and writes the playlist state about
// once per second while it changes. A lost lease or a fenced write stops the
// stream.
func (s *stream) keep(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	ttl := s.o.Registry.LeaseTTL
	renew := time.NewTicker(ttl / 3)
	defer renew.Stop()
	persist := time.NewTicker(statePersistInterval)
	defer persist.Stop()
	lastRenew := time.Now()
	renewFailing := false
	for {
		select {
		case <-stop:
			return
		case <-renew.C:
			ctx, cancel := context.WithTimeout(context.Background(), ttl/3)
			err := s.o.Registry.RenewOwner(ctx, s.lease)
			cancel()
			switch {
			case err == nil:
				lastRenew, renewFailing = time.Now(), false
			case errors.Is(err, bus.ErrLeaseLost) && s.recoverLease():
				lastRenew, renewFailing = time.Now(), false
			case errors.Is(err, bus.ErrLeaseLost):
				s.signalLost(err)
				return
			case time.Since(lastRenew) >= ttl:
				s.signalLost(fmt.Errorf("%w: not renewed for %v: %w", bus.ErrLeaseLost, ttl, err))
				return
			case !renewFailing:
				renewFailing = true
				s.log.Warn("lease renewal failed; retrying", "err", err)
			}
		case <-persist.C:
			if err := s.persist(s.state(true), false); errors.Is(err, bus.ErrFenced) {
				s.signalLost(err)
				return
			}
		}
	}
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
// snapshot sn shows, before sn is published: a successor taking over after a
// crash must never reuse a number a viewer may have seen. It writes only
// when sn goes past the reserve, i.e. every few segments. False when the
// write was fenced: the stream is no longer ours and sn must not be shown.
func (s *stream) reserve(i *instance, sn *snapshot) bool {
	if i.rend != 0 {
		return true // renditions follow the source's numbers, which are reserved
	}
	need := uint64(sn.lastUsed() + 1)
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if need <= s.persisted.NextMSN && s.persisted.Epoch != 0 {
		return true
	}
	st := bus.PlaylistState{NextMSN: need + s.reserveSegments(), Discontinuity: i.disc,
		Epoch: s.lease.Owner.Epoch, Node: s.o.Node, NextTime: s.nextTime()}
	if err := s.persistLocked(st); errors.Is(err, bus.ErrFenced) {
		s.signalLost(err)
		return false
	}
	return true // on other errors availability wins; the keeper retries
}

// reserveSegments is how far ahead of what was produced NextMSN is stored:
// more than the segments one persist interval can produce.
func (s *stream) reserveSegments() uint64 {
	seg := s.hls.SegmentDuration
	return uint64((statePersistInterval+seg-1)/seg) + 2
}

// recoverLease handles a renewal the registry applied but whose reply was
// lost (a timeout): the lease's revision is then stale although the record
// still names this node with this epoch. Epochs are creation revisions, so
// an equal epoch means nobody acquired the lease in between. True when the
// lease is ours and its revision was refreshed.
func (s *stream) recoverLease() bool {
	ctx, cancel := kvContext()
	defer cancel()
	kv, err := s.o.Registry.JS.KeyValue(ctx, bus.BucketOwners)
	if err != nil {
		return false
	}
	e, err := kv.Get(ctx, bus.EncodePath(s.path))
	if err != nil {
		return false
	}
	var cur bus.Owner
	if json.Unmarshal(e.Value(), &cur) != nil || cur.Node != s.o.Node || cur.Epoch != s.lease.Owner.Epoch {
		return false
	}
	s.lease.Rev = e.Revision()
	return true
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
		NextTime: s.nextTime()}
}

// nextTime is the timestamp a successor's output starts at, for the
// playlist state: the latest one fed plus the duration of the segments
// NextMSN is reserved ahead by.
func (s *stream) nextTime() int64 {
	end := time.Duration(s.timelineEnd.Load())
	return int64(end + time.Duration(s.reserveSegments()+1)*s.hls.SegmentDuration)
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

// enqueue runs on the subscription's goroutine. It never blocks: a full
// queue drops the packet (counted), and video then waits for a keyframe.
func (s *stream) enqueue(p *media.Packet) {
	video := p.Codec.IsVideo()
	s.qmu.Lock()
	switch {
	case s.needKey && video && !p.Keyframe():
		s.qmu.Unlock()
		s.drop()
		return
	case len(s.queue) >= queueSize:
		s.needKey = true
		s.qmu.Unlock()
		s.drop()
		return
	}
	s.queue = append(s.queue, p)
	if video {
		s.needKey = false
	}
	s.qmu.Unlock()
	if s.inline.Load() && s.procMu.TryLock() {
		if s.inline.Load() {
			s.drain()
			s.procMu.Unlock()
			return
		}
		s.procMu.Unlock()
	}
	select {
	case s.kick <- struct{}{}:
	default: // the run goroutine has been told already
	}
}

// drain packages every queued packet. Called under procMu.
func (s *stream) drain() {
	for {
		s.qmu.Lock()
		batch := s.queue
		s.queue = s.spare[:0]
		s.qmu.Unlock()
		if len(batch) == 0 {
			s.spare = batch
			return
		}
		for i, p := range batch {
			s.handlePacket(p, false)
			batch[i] = nil
		}
		s.spare = batch[:0]
	}
}

func (s *stream) drop() {
	s.dropped.Add(1)
	s.o.m.packetsDropped.Inc()
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
	switch {
	case err == nil:
		s.cur.errors = 0
		s.cur.written++
		s.feedTranscoder(p)
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

// replace retires the current instance; the next packet starts a new one.
func (s *stream) replace() {
	s.stopTranscoder()
	s.retire(s.cur)
	s.cur = nil
	s.lastRecreate = time.Now()
	s.recreations.Add(1)
	s.o.m.recreations.Inc()
}

// newInstance creates the muxer for a generation, numbered to follow what
// the stream has published so far.
func (s *stream) newInstance(gen uint64) *instance {
	info := s.info.Load()
	if (info == nil || info.Generation != gen) && time.Since(s.infoRefreshed) >= infoRefreshInterval {
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
	firstID := int64(0)
	if variant == gohlslib.MuxerVariantLowLatency {
		firstID = llFirstSegmentID
	}
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
	if err := i.start(tracks); err != nil {
		s.badInfo = info
		s.log.Warn("cannot package stream", "err", err)
		return nil
	}
	s.mu.Lock()
	s.instances = append(s.instances, i)
	s.bumpLocked()
	s.mu.Unlock()
	s.iwg.Add(1)
	go i.watch()

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

// retire stops feeding an instance. One that never published anything is
// closed at once; otherwise its final playlists are read, its numbers folded
// into the stream's base, and it stays open for a grace period so what
// caches already list stays fetchable.
func (s *stream) retire(i *instance) {
	s.mu.Lock()
	if i.snap == nil {
		s.closeLocked(i)
		s.mu.Unlock()
		i.muxer.Close()
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
	if i.rend > 0 {
		rs := s.rends[i.rend-1]
		if n > rs.baseNext {
			rs.baseNext, rs.baseDisc = n, i.disc
		}
		rs.visible = true
	} else {
		if n > s.baseNext {
			s.baseNext, s.baseDisc = n, i.disc
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
		i.muxer.Close()
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
		i.muxer.Close()
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
