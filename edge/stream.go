package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/gop"
	"github.com/streamgrid/streamgrid/internal/media"
)

// registryTimeout bounds one registry operation.
const registryTimeout = 5 * time.Second

// minParamRenewGap spaces registry updates triggered by parameter-set changes
// (a stream alternating between two PPS must not hammer the registry).
const minParamRenewGap = time.Second

// StreamStatus describes a live stream for the REST API.
type StreamStatus struct {
	Path     string `json:"path"`
	Protocol string `json:"protocol"` // rtsp, rtmp or pull
	// Remote is the publisher's address; for a pull, the camera URL without credentials.
	Remote     string        `json:"remote"`
	Tracks     []TrackStatus `json:"tracks"`
	Generation uint64        `json:"generation"`
	Started    time.Time     `json:"started"`
	// Bytes counts the access-unit bytes received from the publisher.
	Bytes uint64 `json:"bytes"`
	// Packets counts the packets (access units) published on the bus.
	Packets uint64 `json:"packets"`
	// VideoFrames counts the video access units received (for a frame rate).
	VideoFrames uint64 `json:"video_frames"`
	// Dropped counts the access units the normalizer dropped (see
	// streamgrid_edge_packets_dropped_total for the reasons).
	Dropped uint64 `json:"dropped"`
}

// TrackStatus describes one track of a live stream.
type TrackStatus struct {
	ID        uint8  `json:"id"`
	Codec     string `json:"codec"`
	ClockRate int    `json:"clock_rate"`
	Channels  int    `json:"channels,omitempty"`
	// Width and Height come from the video SPS when it parses.
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
}

// streamRequest describes a publication that is about to start.
type streamRequest struct {
	path     string
	protocol string
	remote   string
	tracks   []bus.TrackInfo
	// kick disconnects the publisher; it must not block for long.
	kick func()
}

// stream is one live publication: it normalises the publisher's access
// units, publishes them on the bus, keeps the GOP cache, answers GOP
// requests and keeps the stream's registry record alive. Every ingest path
// (RTSP, RTMP, pull) feeds one through writeVideo/writeAudio.
type stream struct {
	e          *Edge
	path       string
	protocol   string
	remote     string
	generation uint64
	started    time.Time
	log        *slog.Logger
	kick       func()
	pub        bus.MediaPublisher

	mPacketsIn, mBytesIn, mDecodeErrors, mLost prometheus.Counter

	mu            sync.Mutex
	norm          *normalizer
	gop           *gop.Cache
	closed        bool
	publishFailed bool
	seen          struct{ discont, dtsErr, params uint64 }

	bytesIn     atomic.Uint64
	packetsOut  atomic.Uint64
	videoFrames atomic.Uint64
	dropped     atomic.Uint64
	lastMedia   atomic.Int64 // unix nanoseconds of the last access unit received

	// rev is the registry revision; run owns it while it runs.
	rev uint64
	// instance is the edge liveness instance the record names (run
	// writes it, watchLiveness reads it).
	instance atomic.Pointer[string]
	changed  chan struct{}
	cancel   context.CancelFunc
	done     chan struct{}
	gopSub   *nats.Subscription

	closeOnce sync.Once
}

var errEdgeClosing = errors.New("edge is shutting down")

// openStream registers a new publication: it reserves the path locally,
// claims it in the registry (bus.ErrStreamBusy when another publisher holds
// it anywhere in the cluster), starts answering GOP requests and starts the
// record's renewal. The caller feeds the stream and closes it when the
// publisher goes.
func (e *Edge) openStream(req streamRequest) (*stream, error) {
	gen := e.nextGeneration()
	norm, err := newNormalizer(req.tracks, gen)
	if err != nil {
		return nil, err
	}
	s := &stream{
		e:             e,
		path:          req.path,
		protocol:      req.protocol,
		remote:        req.remote,
		generation:    gen,
		started:       time.Now().UTC(),
		kick:          req.kick,
		mPacketsIn:    e.m.packetsIn.WithLabelValues(req.protocol),
		mBytesIn:      e.m.bytesIn.WithLabelValues(req.protocol),
		mDecodeErrors: e.m.decodeErrors.WithLabelValues(req.protocol),
		mLost:         e.m.packetsLost.WithLabelValues(req.protocol),
		norm:          norm,
		gop:           gop.NewCache(norm.primary, gop.DefaultBytes, e.gopBudget),
		changed:       make(chan struct{}, 1),
		done:          make(chan struct{}),
	}
	s.log = e.log.With("stream", req.path, "protocol", req.protocol, "remote", req.remote, "generation", gen)
	s.lastMedia.Store(time.Now().UnixNano())

	if err := e.reserve(s); err != nil {
		return nil, err
	}
	s.pub = e.Media.NewPublisher(req.path) // closed by removeStream

	info := s.info(true)
	ctx, cancel := context.WithTimeout(e.ctx, registryTimeout)
	var rev uint64
	if req.protocol == ProtocolPull {
		// The source lease makes this edge the camera's only puller.
		rev, err = e.Registry.ReplaceStream(ctx, &info)
	} else {
		rev, err = e.Registry.ClaimStream(ctx, &info, e.deadRecord)
	}
	cancel()
	if err != nil {
		e.removeStream(s)
		if !errors.Is(err, bus.ErrStreamBusy) {
			e.m.registryErrors.Inc()
		}
		return nil, err
	}
	s.rev = rev
	s.instance.Store(&info.Instance)

	sub, err := bus.ServeGOP(e.NC, req.path, s.gopSnapshot)
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
		_ = e.Registry.ReleaseStream(ctx, req.path, rev) // best effort: it dies with this edge's liveness anyway
		cancel()
		e.removeStream(s)
		return nil, err
	}
	s.gopSub = sub

	var runCtx context.Context
	runCtx, s.cancel = context.WithCancel(e.ctx)
	go s.run(runCtx)

	e.m.publishers.WithLabelValues(req.protocol).Inc()
	s.log.Info("publish started", "tracks", describeTracks(info.Tracks))
	e.emit(Event{Kind: EventReady, Path: s.path, Protocol: s.protocol, Remote: req.remote,
		Generation: info.Generation, Tracks: trackCodecs(s)})
	return s, nil
}

// reserve puts s in the edge's table, unless the edge is closing, the path
// is live here or MaxPublishers are (pulls do not count).
func (e *Edge) reserve(s *stream) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		return errEdgeClosing
	}
	if _, busy := e.streams[s.path]; busy {
		return bus.ErrStreamBusy
	}
	if s.protocol != ProtocolPull {
		if e.MaxPublishers > 0 && e.pushers >= e.MaxPublishers {
			return errTooManyPublishers
		}
		e.pushers++
	}
	e.streams[s.path] = s
	e.wg.Add(1) // under mu, so that Close never waits while a stream is being added
	return nil
}

// removeStream drops s from the edge's table and releases its place in e.wg.
func (e *Edge) removeStream(s *stream) {
	e.mu.Lock()
	if e.streams[s.path] == s {
		delete(e.streams, s.path)
	}
	if s.protocol != ProtocolPull {
		e.pushers--
	}
	e.mu.Unlock()
	s.pub.Close()
	e.wg.Done()
}

// nextGeneration returns a fresh generation: the wall clock in nanoseconds,
// bumped when two publications start within the same nanosecond.
func (e *Edge) nextGeneration() uint64 {
	for {
		last := e.lastGen.Load()
		g := max(uint64(time.Now().UnixNano()), last+1)
		if e.lastGen.CompareAndSwap(last, g) {
			return g
		}
	}
}

func describeTracks(tracks []bus.TrackInfo) string {
	parts := make([]string, len(tracks))
	for i, t := range tracks {
		parts[i] = fmt.Sprintf("%d:%s/%d", t.ID, t.Codec, t.ClockRate)
	}
	return strings.Join(parts, ",")
}

// info returns the stream's registry record with the current parameter sets.
func (s *stream) info(clearChanged bool) bus.StreamInfo {
	s.mu.Lock()
	tracks, _ := s.norm.trackInfos(clearChanged)
	s.mu.Unlock()
	return bus.StreamInfo{
		Path:       s.path,
		Generation: s.generation,
		Edge:       s.e.Node,
		Instance:   s.e.live.Instance(),
		Protocol:   s.protocol,
		Tracks:     tracks,
		Started:    s.started,
	}
}

// deadRecord says whether a stream record's edge instance is dead: a
// publisher that reconnects here after its edge died takes the path over.
func (e *Edge) deadRecord(info *bus.StreamInfo) bool { return !e.live.HoldsStream(info) }

// registeredAs is the edge instance the stream's record names.
func (s *stream) registeredAs() string {
	if p := s.instance.Load(); p != nil {
		return *p
	}
	return ""
}

// poke makes run rewrite the record (new parameter sets, a new instance).
func (s *stream) poke() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// run writes the registry record when it changes: new parameter sets
// (at most every minParamRenewGap), and a new edge instance after this
// edge's liveness lapsed (its records then count as dead everywhere). The
// record is never renewed otherwise: it holds while the edge's liveness
// does. A record that was removed meanwhile is claimed again; when another
// publisher took the path, this one is kicked. A failed write is retried
// every second. A publisher that sends no media for MediaTimeout is kicked
// too: its keepalives would otherwise hold a path and an origin slot
// forever.
func (s *stream) run(ctx context.Context) {
	defer close(s.done)
	idle := time.NewTicker(max(s.e.MediaTimeout/4, 10*time.Millisecond))
	defer idle.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var last time.Time
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-idle.C:
			if silent := time.Since(time.Unix(0, s.lastMedia.Load())); silent > s.e.MediaTimeout {
				s.e.m.rejected.WithLabelValues(s.protocol, rejectNoMedia).Inc()
				s.log.Warn("no media received; disconnecting the publisher", "silent", silent.Round(time.Millisecond))
				s.kick()
				return
			}
			continue
		case <-retry.C:
		case <-s.changed:
			if gap := time.Since(last); gap < minParamRenewGap && s.registeredAs() == s.e.live.Instance() {
				retry.Reset(minParamRenewGap - gap) // a parameter change: carried a little later
				continue
			}
		}
		if !s.e.live.Alive() {
			retry.Reset(s.e.live.TTL / 4) // not before this edge is alive again, with its new instance
			continue
		}
		last = time.Now()
		err := s.update(ctx)
		switch {
		case err == nil:
			if failing {
				s.log.Info("stream record written again")
				failing = false
			}
		case ctx.Err() != nil:
			return
		case errors.Is(err, bus.ErrStreamBusy):
			s.log.Warn("another publisher took the path while the record was lost; disconnecting")
			s.kick()
			return
		default:
			s.e.m.registryErrors.Inc()
			if !failing {
				s.log.Warn("stream record update failed", "err", err)
				failing = true
			}
			retry.Reset(time.Second)
		}
	}
}

// update writes the stream's record with the current parameter sets and
// edge instance.
func (s *stream) update(ctx context.Context) error {
	info := s.info(true)
	ctx, cancel := context.WithTimeout(ctx, registryTimeout)
	defer cancel()
	rev, err := s.e.Registry.UpdateStream(ctx, &info, s.rev)
	switch {
	case !errors.Is(err, bus.ErrLeaseLost):
	case s.protocol == ProtocolPull:
		// The edge that took the camera over wrote the record.
		return bus.ErrStreamBusy
	default:
		rev, err = s.e.Registry.ClaimStream(ctx, &info, s.e.deadRecord)
		if err == nil {
			s.log.Info("stream record had been removed; claimed again")
		}
	}
	if err != nil {
		return err // the next write carries the current parameter sets
	}
	s.rev = rev
	s.instance.Store(&info.Instance)
	return nil
}

// close ends the publication: it stops the renewal and the GOP service,
// removes the registry record and logs the end once. reason is why the
// publisher went (nil for a clean end).
func (s *stream) close(reason error) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		<-s.done
		_ = s.gopSub.Unsubscribe() // fails only when the connection is closed
		s.mu.Lock()
		s.gop.Reset() // its bytes go back to the edge's GOP budget
		s.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
		err := s.e.Registry.ReleaseStream(ctx, s.path, s.rev)
		cancel()
		if err != nil && !errors.Is(err, bus.ErrLeaseLost) {
			s.e.m.registryErrors.Inc()
			s.log.Warn("stream record not removed; it counts as gone once this edge's liveness ends", "err", err)
		}

		s.e.m.publishers.WithLabelValues(s.protocol).Dec()
		s.e.removeStream(s)
		attrs := []any{
			"duration", time.Since(s.started).Round(time.Millisecond),
			"packets", s.packetsOut.Load(), "bytes", s.bytesIn.Load(),
		}
		ev := Event{Kind: EventGone, Path: s.path, Protocol: s.protocol, Remote: s.remote,
			Generation: s.generation, Duration: time.Since(s.started)}
		if reason != nil {
			attrs = append(attrs, "err", reason)
			ev.Reason = reason.Error()
		}
		s.log.Info("publish stopped", attrs...)
		s.e.emit(ev)
	})
}

// writeVideo feeds one H264/H265 access unit (NAL units without start codes)
// of track idx; pts (and dts when hasDTS) are on the source's 64-bit timeline
// in the track's clock rate.
func (s *stream) writeVideo(idx int, pts, dts int64, hasDTS bool, au [][]byte) {
	wall := time.Now()
	size := auSize(au)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.countIn(size)
	s.videoFrames.Add(1)
	pkt, reason := s.norm.pushVideo(idx, pts, dts, hasDTS, au, wall)
	s.afterPush(pkt, reason)
}

// writeAudio feeds one audio frame of track idx; pts is on the source's
// 64-bit timeline in the track's clock rate.
func (s *stream) writeAudio(idx int, pts int64, frame []byte) {
	wall := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.countIn(len(frame))
	pkt, reason := s.norm.pushAudio(idx, pts, frame, wall)
	s.afterPush(pkt, reason)
}

func (s *stream) countIn(size int) {
	s.lastMedia.Store(time.Now().UnixNano())
	s.bytesIn.Add(uint64(size))
	s.mPacketsIn.Inc()
	s.mBytesIn.Add(float64(size))
}

// afterPush publishes what the normalizer emitted and accounts for it. It
// runs under s.mu, so packets reach the bus in sequence order.
func (s *stream) afterPush(pkt *media.Packet, reason dropReason) {
	m := s.e.m
	n := s.norm
	if d := n.Discontinuities - s.seen.discont; d > 0 {
		m.discontinuities.Add(float64(d))
		s.seen.discont = n.Discontinuities
	}
	if d := n.DTSErrors - s.seen.dtsErr; d > 0 {
		s.mDecodeErrors.Add(float64(d))
		s.seen.dtsErr = n.DTSErrors
	}
	if d := n.ParamChanges - s.seen.params; d > 0 {
		m.paramChanges.Add(float64(d))
		s.seen.params = n.ParamChanges
	}
	if n.paramsChanged() {
		s.poke()
	}
	if pkt == nil {
		s.dropped.Add(1)
		m.droppedBy[reason].Inc()
		if reason == dropOversized {
			m.oversized.Inc()
		}
		return
	}
	if s.protocol == ProtocolPull && !s.e.live.Alive() {
		// Fenced: this edge's liveness lapsed, so another edge may pull the
		// camera by now; what this one still receives goes nowhere.
		return
	}
	if err := s.pub.Publish(pkt); err != nil {
		m.publishErrors.Inc()
		if !s.publishFailed {
			s.publishFailed = true
			s.log.Warn("publishing on the bus failed; further failures are only counted", "err", err)
		}
	} else {
		s.packetsOut.Add(1)
		m.published.Inc()
	}
	s.gop.Add(pkt)
}

// decodeError counts a packet the ingest could not decode.
func (s *stream) decodeError() { s.mDecodeErrors.Inc() }

// lost counts packets lost between the publisher and the edge.
func (s *stream) lost(n uint64) { s.mLost.Add(float64(n)) }

func (s *stream) gopSnapshot() []*media.Packet {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The origin asking subscribed just before: from the next packet on,
	// the publisher must see its interest.
	s.pub.Recheck()
	return s.gop.Snapshot()
}

func (s *stream) status() StreamStatus {
	infos := s.info(false).Tracks
	st := StreamStatus{
		Path:        s.path,
		Protocol:    s.protocol,
		Remote:      s.remote,
		Generation:  s.generation,
		Started:     s.started,
		Bytes:       s.bytesIn.Load(),
		Packets:     s.packetsOut.Load(),
		VideoFrames: s.videoFrames.Load(),
		Dropped:     s.dropped.Load(),
		Tracks:      make([]TrackStatus, len(infos)),
	}
	for i, t := range infos {
		ts := TrackStatus{ID: t.ID, Codec: t.Codec.String(), ClockRate: t.ClockRate, Channels: t.Channels}
		ts.Width, ts.Height = videoSize(t)
		st.Tracks[i] = ts
	}
	return st
}

// videoSize reads the picture size from a video track's SPS; 0, 0 when unknown.
func videoSize(t bus.TrackInfo) (w, h int) {
	if len(t.SPS) == 0 {
		return 0, 0
	}
	defer func() {
		if recover() != nil {
			w, h = 0, 0
		}
	}()
	switch t.Codec {
	case media.CodecH264:
		var sps h264.SPS
		if sps.Unmarshal(t.SPS) == nil {
			return sps.Width(), sps.Height()
		}
	case media.CodecH265:
		var sps h265.SPS
		if sps.Unmarshal(t.SPS) == nil {
			return sps.Width(), sps.Height()
		}
	}
	return 0, 0
}
