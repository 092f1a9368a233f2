package origin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/gop"
	"github.com/streamgrid/streamgrid/internal/gossip"
)

// StreamStatus describes one stream held by the origin.
type StreamStatus struct {
	Path       string    `json:"path"`
	Generation uint64    `json:"generation"` // publisher generation being packaged (0 before the first packet)
	Epoch      uint64    `json:"epoch"`      // ownership lease epoch (fencing token)
	Since      time.Time `json:"since"`      // when the lease was acquired
	Variant    string    `json:"variant"`    // lowLatency, fmp4 or mpegts
	Ready      bool      `json:"ready"`      // a playlist is being served
	// Segments is the number of segments in the current playlist window.
	Segments int `json:"segments"`
	// NextMSN is the next media sequence number; Discontinuity the current
	// discontinuity sequence number.
	NextMSN       uint64 `json:"next_msn"`
	Discontinuity uint64 `json:"discontinuity"`
	Packets       uint64 `json:"packets"`
	Dropped       uint64 `json:"dropped"`
	WriteErrors   uint64 `json:"write_errors"`
	EncodeErrors  uint64 `json:"encode_errors"`
	Recreations   uint64 `json:"recreations"`
	// Refused, when set, says why this origin left a live stream unclaimed
	// (a ladder matches it and it cannot be transcoded here); the other
	// fields are then zero.
	Refused string `json:"refused,omitempty"`
	// Encoder transcodes the stream (nvenc or x264); empty for passthrough.
	Encoder string `json:"encoder,omitempty"`
	// Renditions of a transcoded stream, in the master playlist's order.
	Renditions []RenditionStatus `json:"renditions,omitempty"`
	// TranscodeRestarts counts ffmpeg restarts; TranscodeSpeed is its last
	// reported speed (media seconds per second).
	TranscodeRestarts uint64  `json:"transcode_restarts,omitempty"`
	TranscodeSpeed    float64 `json:"transcode_speed,omitempty"`
}

// RenditionStatus is one rendition of a transcoded stream.
type RenditionStatus struct {
	Name     string `json:"name"`
	Playlist string `json:"playlist,omitempty"` // media playlist file name, once ready
	Ready    bool   `json:"ready"`
	Segments int    `json:"segments"`
}

// Origin claims streams, packages them as HLS and serves them to caches.
// Fill in the fields, then Start.
type Origin struct {
	// Node is this node's name; it goes in the ownership leases. Required.
	Node string
	// NC is the bus connection. Required.
	NC *nats.Conn
	// Media brings the packets from the edges: a *bus.Hub takes them from
	// edges of this process directly (streamgrid run), and from other edges
	// through NATS. Default: bus.NATSMedia on NC.
	Media bus.Media
	// Registry is the started cluster registry. Required.
	Registry *bus.Registry
	// Gossip, when set (and started), gets its Meta.Load, Capacity,
	// Draining and Transcode updated after claims and releases; the other
	// fields are kept. Placement reads the other origins' records from it.
	Gossip *gossip.Node
	// HTTPAddress is the listen address for caches, e.g. ":8889". Port 0 picks one.
	HTTPAddress string
	// AdvertiseHTTP is the host:port caches dial. Default: the bound address,
	// with 127.0.0.1 for an unspecified host.
	AdvertiseHTTP string
	// Capacity is the most streams owned at once. Default 100.
	Capacity int
	// NodeTTL is this origin's liveness TTL (bus.node_ttl): it sends a
	// heartbeat every NodeTTL/4, counts itself dead (and gives its streams
	// up) NodeTTL after the last one the bus confirmed, and the other
	// origins take its streams over NodeTTL after the last one they heard.
	// Default bus.DefaultNodeTTL.
	NodeTTL time.Duration
	// Live is the process' node liveness, started, with RoleOrigin among
	// its roles, when another role of the process shares it (streamgrid
	// run: the edge): one heartbeat per node name. Nil: the origin runs a
	// Liveness of its own (NodeTTL), stopped by Close.
	Live *bus.Liveness
	// MemoryBudget bounds what the streams' segment windows hold, in bytes
	// (window.go); past it the origin claims no new stream. A node sets it
	// to its share of node.memory_limit. 0: no bound.
	MemoryBudget int64
	// SegmentDir, when set, is where finished segments and parts are kept, as
	// files (segdir.go); empty keeps them in the Go heap.
	SegmentDir string
	// SegmentAuto narrows SegmentDir to where it pays (segment_store auto):
	// only the builtin muxer keeps its segments there (gohlslib's costs ~45 %
	// more CPU on disk), and a SegmentDir that cannot be made keeps every
	// segment in memory, with a warning, instead of failing Start (a
	// read-only root file system).
	SegmentAuto bool
	// HLS configures packaging.
	HLS HLSConfig
	// Transcode configures ABR-ladder transcoding; no ladders: passthrough.
	Transcode TranscodeConfig
	// Standby lists the path patterns (path.Match on the path or its leading
	// elements: "*" is every path) of the streams this origin keeps a warm
	// standby for (standby.go): where it is the origin that would take the
	// stream over, it subscribes to the stream's packets and keeps its last
	// two GOPs, and packages them at once when it takes over. Empty: none
	// (internal/config's default, origin.standby, is every path).
	Standby []string
	// OnFailover, when set, is called when this origin took a stream from
	// another origin: a take-over of a dead origin's record, or a claim
	// within FailoverWindow of another origin releasing it (a hand-over).
	// previous is the origin the stream came from, epoch the new lease's.
	// Called on the stream's goroutine; it must not block.
	OnFailover func(path, previous string, epoch uint64)
	// Secret, when set, is the cluster's shared credential: every request
	// must carry it in hlsproto.HeaderAuth (caches add it), else it gets 403, so that
	// the origin port cannot bypass the caches' signed URLs. Empty: open.
	Secret string
	// Log. Default slog.Default().
	Log *slog.Logger
	// Metrics receives the origin's collectors. Default: a private registry.
	Metrics prometheus.Registerer

	// blockTimeout, when set, replaces the computed bound of blocking waits (tests).
	blockTimeout time.Duration
	secret       []byte // Secret, nil when empty

	variant     gohlslib.MuxerVariant
	hls         atomic.Pointer[hlsSettings] // for streams claimed from now on; see SetHLS
	ln          net.Listener
	srv         *http.Server
	m           *metrics
	ctx         context.Context
	cancel      context.CancelFunc
	live        *bus.Liveness
	ownLive     bool
	liveChanged <-chan struct{}
	done        chan struct{} // closed by Close: wakes waiting HTTP handlers
	rescan      chan struct{} // capacity freed or settings changed: look for claimable streams again
	metaChanged chan struct{} // load changed: update gossip metadata
	draining    atomic.Bool
	// budgetLogged: the over-budget warning was logged since the windows
	// last had room (logged once per episode).
	budgetLogged atomic.Bool
	// segRoot is this process's segment folder under SegmentDir ("": none).
	segRoot string

	tr transcoding
	// standby is the streams this origin is the warm standby of.
	standby standbys

	mu      sync.RWMutex
	streams map[string]*stream

	// follow is the claimer's watch of the owner records (ownerwindow.go),
	// for a claim that found its record stale to read it again.
	follow atomic.Pointer[bus.OwnerFollow]

	// watchedFor: see the constant; tests shorten it.
	watchedFor time.Duration
	refused    map[string]string // path → why it was left unclaimed

	wg        sync.WaitGroup // run loop, HTTP server, metadata loop
	swg       sync.WaitGroup // stream goroutines
	started   bool
	closeOnce sync.Once
}

func (o *Origin) applyDefaults() error {
	if o.watchedFor == 0 {
		o.watchedFor = watchedFor
	}
	if o.Node == "" {
		return errors.New("origin: Node is required")
	}
	if o.NC == nil {
		return errors.New("origin: NC is required")
	}
	if o.Media == nil {
		o.Media = bus.NATSMedia{NC: o.NC}
	}
	if o.Registry == nil {
		return errors.New("origin: Registry is required")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.Log = o.Log.With("component", "origin")
	if o.Capacity <= 0 {
		o.Capacity = DefaultCapacity
	}
	for _, p := range o.Standby {
		if _, err := path.Match(p, "x"); err != nil || p == "" {
			return fmt.Errorf("origin: Standby: bad pattern %q", p)
		}
	}
	o.HLS = o.HLS.withDefaults()
	v, err := o.HLS.validate()
	if err != nil {
		return err
	}
	o.variant = v
	if o.Metrics == nil {
		o.Metrics = prometheus.NewRegistry()
	}
	o.hls.Store(&hlsSettings{cfg: o.HLS, variant: o.variant})
	return nil
}

// Start listens for caches, then starts watching the registry and claiming
// streams. On failure it undoes what it did.
func (o *Origin) Start() error {
	if err := o.applyDefaults(); err != nil {
		return err
	}
	streamsCh, ownersCh, err := o.acquire()
	if err != nil {
		return err
	}
	o.done = make(chan struct{})
	o.rescan = make(chan struct{}, 1)
	o.metaChanged = make(chan struct{}, 1)
	o.mu.Lock() // the metrics registered by acquire may be scraped already
	o.streams = map[string]*stream{}
	o.refused = map[string]string{}
	o.mu.Unlock()
	o.srv = o.newServer()
	if o.Secret != "" {
		o.secret = []byte(o.Secret)
	}
	o.started = true

	o.wg.Add(3)
	go o.serve()
	go o.metaLoop()
	c := &claimer{o: o, streams: streamsCh, owners: ownersCh}
	go c.run()

	o.Log.Info("origin started", "http", o.ln.Addr().String(), "advertise", o.AdvertiseHTTP,
		"variant", variantName(o.variant), "capacity", o.Capacity)
	o.poke(o.metaChanged)
	return nil
}

// acquire does Start's fallible steps: it listens, makes the segment folder,
// sets up transcoding, registers the metrics, starts the node's liveness
// (unless Live shares one) and opens the registry watches the claimer
// follows. When a step fails it undoes the ones before, last first.
func (o *Origin) acquire() (streams <-chan bus.StreamEvent, owners <-chan bus.OwnerEvent, err error) {
	var undo []func()
	defer func() {
		if err != nil {
			for _, f := range slices.Backward(undo) {
				f()
			}
		}
	}()
	ln, err := net.Listen("tcp", o.HTTPAddress)
	if err != nil {
		return nil, nil, fmt.Errorf("origin: listen %q: %w", o.HTTPAddress, err)
	}
	undo = append(undo, func() { ln.Close() })
	if o.AdvertiseHTTP == "" {
		o.AdvertiseHTTP = advertiseAddr(ln.Addr())
	}
	if o.SegmentDir != "" {
		if o.segRoot, err = segmentRoot(o.SegmentDir, o.Node); err != nil {
			if !o.SegmentAuto {
				return nil, nil, fmt.Errorf("origin: %w", err)
			}
			o.Log.Warn("segments stay in memory: their folder cannot be made (origin.segment_store auto)", "dir", o.SegmentDir, "err", err)
		}
	}
	undo = append(undo, o.removeSegments)
	o.m = newMetrics(o.Node)
	o.standby = standbys{media: o.Media, budget: &gop.Budget{Limit: o.MemoryBudget / 4},
		onCount: func(n int) { o.m.standbys.Set(float64(n)) }}
	if err := o.setupTranscode(); err != nil {
		return nil, nil, err
	}
	undo = append(undo, func() { o.tr.metrics.Unregister() })
	if err := o.m.register(o.Metrics); err != nil {
		return nil, nil, err
	}
	undo = append(undo, func() { o.m.unregister(o.Metrics) })
	o.ctx, o.cancel = context.WithCancel(context.Background())
	undo = append(undo, o.cancel)
	o.live, o.ownLive = o.Live, o.Live == nil
	if o.ownLive {
		o.live = &bus.Liveness{NC: o.NC, Node: o.Node, Roles: []string{bus.RoleOrigin}, TTL: o.NodeTTL, Log: o.Log, OnLapse: o.lapsed}
		if err := o.live.Start(); err != nil {
			return nil, nil, fmt.Errorf("origin: %w", err)
		}
	} else {
		o.live.AddLapseHook(o.lapsed)
	}
	undo = append(undo, o.closeLive)
	o.liveChanged = o.live.Watch()
	streams, owners, err = o.watchRegistry()
	if err != nil {
		return nil, nil, fmt.Errorf("origin: %w", err)
	}
	o.ln = ln
	return streams, owners, nil
}

// newServer returns the caches' HTTP server.
func (o *Origin) newServer() *http.Server {
	return &http.Server{
		Handler:           o.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		// Longer than the caches' 90 s idle keep-alive, so that the cache,
		// not the origin, closes an idle connection (no request races a close).
		IdleTimeout: 120 * time.Second,
		// Blocking playlist and part requests are held up to blockTimeout
		// (three target durations and a part) before the answer is written.
		WriteTimeout: o.writeTimeout(),
		ErrorLog:     slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
	}
}

// watchRegistry opens the watches the claimer follows.
func (o *Origin) watchRegistry() (<-chan bus.StreamEvent, <-chan bus.OwnerEvent, error) {
	streams, err := o.Registry.WatchStreams(o.ctx)
	if err != nil {
		return nil, nil, err
	}
	follow, err := o.Registry.FollowOwners(o.ctx)
	if err != nil {
		return nil, nil, err
	}
	o.follow.Store(follow)
	return streams, follow.Events(), nil
}

// unregisterMetrics removes the origin's collectors and the transcoders'.
func (o *Origin) unregisterMetrics() {
	o.m.unregister(o.Metrics)
	o.tr.metrics.Unregister()
}

// advertiseAddr turns a bound address into one other hosts can dial when the
// host part is unspecified.
func advertiseAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	host := tcp.IP.String()
	if tcp.IP == nil || tcp.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}

func (o *Origin) serve() {
	defer o.wg.Done()
	err := o.srv.Serve(o.ln)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		o.Log.Error("origin HTTP server stopped", "err", err)
	}
}

// HTTPAddr is the address the HTTP server is bound to.
func (o *Origin) HTTPAddr() net.Addr {
	if o.ln == nil {
		return nil
	}
	return o.ln.Addr()
}

// Handler is the origin's HTTP handler (the listener serves it too).
func (o *Origin) Handler() http.Handler { return http.HandlerFunc(o.serveHTTP) }

// Drain gives every lease up so other origins take the streams over, and
// stops claiming new ones. It returns when all streams are released, or
// with an error when ctx ends first.
func (o *Origin) Drain(ctx context.Context) error {
	if !o.started {
		return nil
	}
	if !o.draining.Swap(true) {
		o.Log.Info("origin draining")
		o.poke(o.metaChanged)
		o.poke(o.rescan) // the claimer drops the standbys: a draining origin takes nothing over
	}
	for _, s := range o.snapshotStreams() {
		s.stop(stopRelease)
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for o.load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("origin: drain: %d streams not released: %w", o.load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Close releases every lease (so another origin can take over at once),
// closes the muxers and the HTTP server, and waits. Calling it twice is harmless.
func (o *Origin) Close() { o.shutdown(stopRelease) }

// shutdown stops everything; mode says whether streams release their leases
// (tests use stopAbandon to simulate a crashed origin).
func (o *Origin) shutdown(mode stopMode) {
	if !o.started {
		return
	}
	o.closeOnce.Do(func() {
		o.draining.Store(true)
		if mode == stopAbandon {
			o.closeLive() // a crash: the heartbeats stop first
		}
		o.cancel()
		close(o.done)
		for _, s := range o.snapshotStreams() {
			s.stop(mode)
		}
		o.swg.Wait()
		o.closeLive()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := o.srv.Shutdown(ctx); err != nil {
			_ = o.srv.Close()
		}
		cancel()
		o.wg.Wait()
		o.unregisterMetrics()
		o.removeSegments()
		o.Log.Info("origin closed")
	})
}

// closeLive stops the origin's own liveness (a shared one is its process').
func (o *Origin) closeLive() {
	if o.ownLive {
		o.live.Close()
	}
}

// lapsed is told that this node's liveness lapsed: the other origins may
// take its streams over from now on, so every one is given up (as lost: no
// state write, no release; the records name an instance that is dead now).
func (o *Origin) lapsed() {
	for _, s := range o.snapshotStreams() {
		s.signalLost(fmt.Errorf("%w: this node's liveness lapsed", bus.ErrLeaseLost))
	}
}

// Streams lists the streams held, then the live streams this origin refused
// to claim because it cannot transcode them (Refused set).
func (o *Origin) Streams() []StreamStatus {
	var out []StreamStatus
	for _, s := range o.snapshotStreams() {
		if st, ok := s.status(); ok {
			out = append(out, st)
		}
	}
	o.mu.RLock()
	for p, why := range o.refused {
		out = append(out, StreamStatus{Path: p, Refused: why})
	}
	o.mu.RUnlock()
	return out
}

func (o *Origin) snapshotStreams() []*stream {
	o.mu.RLock()
	defer o.mu.RUnlock()
	out := make([]*stream, 0, len(o.streams))
	for _, s := range o.streams {
		out = append(out, s)
	}
	return out
}

func (o *Origin) lookup(path string) *stream {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.streams[path]
}

func (o *Origin) load() int {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return len(o.streams)
}

// addStream registers a stream being claimed; false when at capacity, or
// when the stream needs a transcode this origin cannot run now (the refusal
// is recorded).
func (o *Origin) addStream(s *stream) bool {
	if over, held := o.overBudget(); over {
		o.m.overBudget.Inc()
		if o.budgetLogged.CompareAndSwap(false, true) {
			o.Log.Warn("memory budget of the origin's windows reached; new streams are left to other origins until some end",
				"stream", s.path, "held", held, "budget", o.MemoryBudget)
		}
		return false
	}
	o.budgetLogged.Store(false)
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.streams) >= o.Capacity || o.streams[s.path] != nil {
		return false
	}
	if reason, msg := o.admitLocked(s.plan); reason != "" {
		o.noteRefusedLocked(s.path, reason, msg)
		return false
	}
	delete(o.refused, s.path)
	o.streams[s.path] = s
	o.swg.Add(1)
	o.updateSlotGaugesLocked()
	return true
}

// removeStream forgets a stream whose goroutine ended.
func (o *Origin) removeStream(s *stream) {
	o.mu.Lock()
	if o.streams[s.path] == s {
		delete(o.streams, s.path)
	}
	o.updateSlotGaugesLocked()
	o.mu.Unlock()
	o.poke(o.rescan)
	o.poke(o.metaChanged)
}

func (o *Origin) poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// metaLoop publishes the origin's load in gossip metadata. SetMeta may wait
// for memberlist, so it runs here rather than on the claim path.
func (o *Origin) metaLoop() {
	defer o.wg.Done()
	if o.Gossip == nil {
		return
	}
	for {
		select {
		case <-o.ctx.Done():
			return
		case <-o.metaChanged:
			// Read-modify-write of this node's own metadata; the origin owns
			// HTTP (what caches dial), Load, Capacity, Draining and Transcode.
			meta := o.Gossip.CurrentMeta()
			meta.HTTP = o.AdvertiseHTTP
			meta.Load = o.owned()
			meta.Capacity = o.capacity()
			meta.Draining = o.draining.Load()
			meta.Transcode = o.transcodeRecord()
			if err := o.Gossip.SetMeta(meta); err != nil {
				o.Log.Warn("gossip metadata update failed", "err", err)
			}
		}
	}
}

// owned counts the streams whose lease is held (not those still being claimed).
func (o *Origin) owned() int {
	n := 0
	for _, s := range o.snapshotStreams() {
		if s.serving.Load() {
			n++
		}
	}
	return n
}
