package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/gop"
)

// Edge ingests camera streams (RTSP and RTMP publishers, pulled RTSP
// cameras) and publishes them on the bus. Fill in the fields, then Start.
type Edge struct {
	// Node is this node's name; it goes into StreamInfo.Edge and the source
	// leases. Default: the host name.
	Node string
	// NC is the bus connection. Required.
	NC *nats.Conn
	// Media carries the packets to the origins: a *bus.Hub hands them to
	// origins of this process directly (streamgrid run) and puts them on
	// NATS only for subscribers elsewhere. Default: bus.NATSMedia on NC.
	Media bus.Media
	// Registry is the cluster registry, started. Required.
	Registry *bus.Registry
	// Live is the process' node liveness, started, with RoleEdge among its
	// roles, when another role of the process shares it (streamgrid run):
	// the edge's stream records and camera leases hold while it does. Nil:
	// the edge runs a Liveness of its own (NodeTTL), stopped by Close.
	Live *bus.Liveness
	// NodeTTL is the own Liveness' TTL (bus.node_ttl) when Live is nil.
	// Default bus.DefaultNodeTTL.
	NodeTTL time.Duration

	// RTSPAddress is the RTSP listen address, e.g. ":8554"; "" disables RTSP.
	RTSPAddress string
	// UDPRTPAddress and UDPRTCPAddress enable RTSP over UDP, e.g. ":8000" and
	// ":8001" (an even port and the next one); both "" disable it.
	UDPRTPAddress, UDPRTCPAddress string
	// RTMPAddress is the RTMP listen address, e.g. ":1935"; "" disables RTMP.
	RTMPAddress string
	// TLSCert and TLSKey, both set, are PEM files: the edge then also
	// accepts RTSPS on RTSPSAddress and RTMPS on RTMPSAddress. They are read
	// once, at Start.
	TLSCert, TLSKey string
	// RTSPSAddress is the RTSPS (RTSP over TLS, TCP-interleaved transport
	// only) listen address, e.g. ":8322"; used only with TLSCert, "" disables it.
	RTSPSAddress string
	// RTMPSAddress is the RTMPS (RTMP over TLS) listen address, e.g.
	// ":1936"; used only with TLSCert, "" disables it.
	RTMPSAddress string
	// Sources are the cameras this edge may pull (each one is pulled by one
	// edge of the cluster at a time, through a lease).
	Sources []Source

	// Auth decides who may publish; nil lets everyone publish.
	Auth Authenticator
	// RTSPAuthMethods are the RTSP authentication schemes offered:
	// RTSPAuthBasic and RTSPAuthDigest. Digest cannot check hashed
	// passwords or consult an external authorizer. Default: both.
	RTSPAuthMethods []string

	// ReadTimeout drops a publisher (or camera) that sends nothing for this
	// long, and bounds handshakes (RTSP until RECORD, RTMP until the publish
	// command). Default 10 s.
	ReadTimeout time.Duration
	// MediaTimeout drops a publisher (or camera) that sends no media for
	// this long, however busy it keeps its connection. Default 10 s.
	MediaTimeout time.Duration
	// ReadInterval spaces the socket reads of a running RTSP (TCP) or RTMP
	// publication: after a read that emptied the socket, the next waits
	// until this long after it, so that one read takes a frame's chunks
	// and the audio between frames (readPacer). 0 reads as data arrives.
	// At most MaxReadInterval.
	ReadInterval time.Duration
	// MaxPublishers bounds the RTSP and RTMP publishers of this edge;
	// pulled cameras are not counted. 0 means no limit.
	MaxPublishers int
	// GOPBudget bounds the bytes the GOP caches of all streams hold
	// together (each also holds at most 16 MiB); a node sets it to its
	// share of node.memory_limit. 0: no bound beyond each stream's.
	GOPBudget int64

	// OnEvent, when set, is called with publications that start and end and
	// publishers that are refused (for webhooks). It runs on the ingest path
	// and must not block: copy and enqueue.
	OnEvent func(Event)

	// Log receives the edge's events. Default slog.Default().
	Log *slog.Logger
	// Metrics receives the edge's collectors (labelled node and role="edge").
	// Default: a private registry, i.e. not exported.
	Metrics prometheus.Registerer

	log     *slog.Logger
	m       *metrics
	ctx     context.Context
	cancel  context.CancelFunc
	rtsp    *rtspServer
	rtmp    *rtmpServer
	rtsps   *rtspServer // RTSP over TLS
	rtmps   *rtmpServer // RTMP over TLS
	lastGen atomic.Uint64
	// gopBudget is GOPBudget, shared by every stream's GOP cache.
	gopBudget *gop.Budget

	// live is Live, or the edge's own liveness (ownLive).
	live    *bus.Liveness
	ownLive bool

	// pmu guards pullers, which SetSources replaces while the edge runs.
	pmu     sync.Mutex
	pullers []*puller
	// bgWG counts watchSources and watchLiveness.
	bgWG sync.WaitGroup
	// srcMu guards sources: the camera leases as the watch last showed them.
	srcMu   sync.Mutex
	sources map[string]sourceRecord

	mu      sync.Mutex
	streams map[string]*stream
	pushers int // streams that are not pulls, for MaxPublishers
	closing bool
	// wg counts live streams; Add only under mu while !closing.
	wg sync.WaitGroup

	started   bool
	closeOnce sync.Once
}

// Start validates the configuration, opens every listener (a port clash fails
// here, with nothing left running), then starts serving and pulling.
func (e *Edge) Start() error {
	if e.started {
		return errors.New("edge: already started")
	}
	if err := e.applyDefaults(); err != nil {
		return err
	}
	pullers, err := e.newPullers()
	if err != nil {
		return err
	}

	e.m = newMetrics(e.Node)
	e.gopBudget = &gop.Budget{Limit: e.GOPBudget, Shed: e.m.gopShed}
	e.m.gopBytes = e.gopBudget.Bytes
	e.m.all = append(e.m.all, streamCollector{e})
	if err := e.m.register(e.Metrics); err != nil {
		return err
	}
	e.streams = make(map[string]*stream)
	e.sources = make(map[string]sourceRecord)
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.live, e.ownLive = e.Live, e.Live == nil
	if e.ownLive {
		e.live = &bus.Liveness{NC: e.NC, Node: e.Node, Roles: []string{bus.RoleEdge}, TTL: e.NodeTTL, Log: e.Log}
		if err := e.live.Start(); err != nil {
			e.cancel()
			e.m.unregister(e.Metrics)
			return fmt.Errorf("edge: %w", err)
		}
	}
	fail := func(err error) error {
		e.cancel()
		if e.ownLive {
			e.live.Close()
		}
		e.m.unregister(e.Metrics)
		return err
	}
	lapsed := e.live.Watch()
	if err := e.listen(); err != nil {
		return fail(err)
	}
	for _, rs := range []*rtmpServer{e.rtmp, e.rtmps} {
		if rs != nil {
			rs.start()
		}
	}
	for i, p := range pullers {
		if err := p.start(); err != nil {
			for _, q := range pullers[:i] {
				q.close()
			}
			e.closeListeners()
			return fail(err)
		}
	}
	e.pullers = pullers
	e.started = true
	e.bgWG.Add(2)
	go e.watchSources()
	go e.watchLiveness(lapsed)
	e.log.Info("edge started", "node", e.Node, "rtsp", addrString(e.RTSPAddr()),
		"rtmp", addrString(e.RTMPAddr()), "rtsps", addrString(e.RTSPSAddr()),
		"rtmps", addrString(e.RTMPSAddr()), "sources", len(e.pullers))
	return nil
}

// applyDefaults checks the required fields and fills in the defaults.
func (e *Edge) applyDefaults() error {
	if e.NC == nil {
		return errors.New("edge: NC is required")
	}
	if e.Registry == nil {
		return errors.New("edge: Registry is required")
	}
	if e.Node == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("edge: Node not set and no host name: %w", err)
		}
		e.Node = host
	}
	if e.ReadTimeout <= 0 {
		e.ReadTimeout = DefaultReadTimeout
	}
	if e.MediaTimeout <= 0 {
		e.MediaTimeout = DefaultMediaTimeout
	}
	e.log = e.Log
	if e.log == nil {
		e.log = slog.Default()
	}
	e.log = e.log.With("component", "edge")
	if e.Metrics == nil {
		e.Metrics = prometheus.NewRegistry()
	}
	if e.Media == nil {
		e.Media = bus.NATSMedia{NC: e.NC}
	}
	return e.Validate()
}

// listen opens the listeners: nothing runs until every port is ours. The
// RTMP(S) servers get their sockets and are started by Start; the RTSP(S)
// servers start serving as they bind, so they come last. On failure
// nothing is left open.
func (e *Edge) listen() (err error) {
	defer func() {
		if err != nil {
			e.closeListeners()
			e.rtsp, e.rtsps, e.rtmp, e.rtmps = nil, nil, nil, nil
		}
	}()
	var tlsConf *tls.Config
	if e.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(e.TLSCert, e.TLSKey)
		if err != nil {
			return fmt.Errorf("edge: TLS certificate: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if e.RTMPAddress != "" {
		ln, err := net.Listen("tcp", e.RTMPAddress)
		if err != nil {
			return fmt.Errorf("edge: rtmp: %w", err)
		}
		e.rtmp = &rtmpServer{e: e, ln: ln}
	}
	if tlsConf != nil && e.RTMPSAddress != "" {
		ln, err := net.Listen("tcp", e.RTMPSAddress)
		if err != nil {
			return fmt.Errorf("edge: rtmps: %w", err)
		}
		e.rtmps = &rtmpServer{e: e, ln: tls.NewListener(ln, tlsConf)}
	}
	if e.RTSPAddress != "" {
		rs := &rtspServer{e: e}
		if err := rs.start(); err != nil {
			return fmt.Errorf("edge: rtsp: %w", err)
		}
		e.rtsp = rs
	}
	if tlsConf != nil && e.RTSPSAddress != "" {
		rs := &rtspServer{e: e, tls: tlsConf}
		if err := rs.start(); err != nil {
			return fmt.Errorf("edge: rtsps: %w", err)
		}
		e.rtsps = rs
	}
	return nil
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// Close disconnects every publisher, stops the camera pulls (releasing their
// leases), removes the stream records and waits for everything the edge
// started. Calling it twice, or without Start, is harmless.
func (e *Edge) Close() {
	if !e.started {
		return
	}
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closing = true
		e.mu.Unlock()
		e.cancel() // fails registry calls of publications still starting

		e.pmu.Lock()
		pullers := e.pullers
		e.pullers = nil
		e.pmu.Unlock()
		for _, p := range pullers {
			p.close()
		}
		e.closeListeners()
		e.wg.Wait()
		e.bgWG.Wait()
		if e.ownLive {
			e.live.Close()
		}
		e.m.unregister(e.Metrics)
		e.log.Info("edge stopped")
	})
}

// closeListeners stops the RTSP(S) and RTMP(S) servers, disconnecting their
// clients.
func (e *Edge) closeListeners() {
	for _, rs := range []*rtspServer{e.rtsp, e.rtsps} {
		if rs != nil {
			rs.close()
		}
	}
	for _, rs := range []*rtmpServer{e.rtmp, e.rtmps} {
		if rs != nil {
			rs.close()
		}
	}
}

// RTSPAddr is the bound RTSP address; nil when RTSP is disabled.
func (e *Edge) RTSPAddr() net.Addr { return e.rtsp.addr() }

// RTMPAddr is the bound RTMP address; nil when RTMP is disabled.
func (e *Edge) RTMPAddr() net.Addr { return e.rtmp.addr() }

// RTSPSAddr is the bound RTSPS address; nil when RTSPS is disabled.
func (e *Edge) RTSPSAddr() net.Addr { return e.rtsps.addr() }

// RTMPSAddr is the bound RTMPS address; nil when RTMPS is disabled.
func (e *Edge) RTMPSAddr() net.Addr { return e.rtmps.addr() }

// Streams lists the live streams of this edge, sorted by path.
func (e *Edge) Streams() []StreamStatus {
	e.mu.Lock()
	live := make([]*stream, 0, len(e.streams))
	for _, s := range e.streams {
		live = append(live, s)
	}
	e.mu.Unlock()
	out := make([]StreamStatus, len(live))
	for i, s := range live {
		out[i] = s.status()
	}
	slices.SortFunc(out, func(a, b StreamStatus) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// Kick disconnects the publisher of path; it reports whether one was live.
// A pulled camera is reconnected after its backoff.
func (e *Edge) Kick(path string) bool {
	e.mu.Lock()
	s := e.streams[path]
	e.mu.Unlock()
	if s == nil {
		return false
	}
	s.log.Info("publisher kicked")
	s.kick()
	return true
}

// Pulls reports the state of the configured camera pulls, in Sources order.
func (e *Edge) Pulls() []SourceStatus {
	e.pmu.Lock()
	pullers := e.pullers
	e.pmu.Unlock()
	out := make([]SourceStatus, len(pullers))
	for i, p := range pullers {
		out[i] = p.status()
	}
	return out
}

// errTooManyPublishers refuses a publisher beyond MaxPublishers.
var errTooManyPublishers = errors.New("publisher limit of this edge reached")

// full reports whether MaxPublishers publishers are live: an early check,
// so a publisher is refused before it sends media; openStream decides.
func (e *Edge) full() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.MaxPublishers > 0 && e.pushers >= e.MaxPublishers
}

// pathBusy reports whether a publisher is live on path here or elsewhere in
// the cluster. It is an early check so that a second publisher is refused
// before it sends media; the registry claim decides in the end.
func (e *Edge) pathBusy(path string) bool {
	e.mu.Lock()
	_, local := e.streams[path]
	e.mu.Unlock()
	if local {
		return true
	}
	ctx, cancel := context.WithTimeout(e.ctx, registryTimeout)
	defer cancel()
	info, err := e.Registry.Stream(ctx, path)
	return err == nil && e.live.HoldsStream(info) // a dead edge's record is no obstacle (ClaimStream removes it)
}

// watchLiveness follows the nodes' liveness: a dead edge may hold a
// camera this edge stands by for, and this edge's own lapse (a new
// instance) fences its camera pulls and makes its streams register again.
func (e *Edge) watchLiveness(changed <-chan struct{}) {
	defer e.bgWG.Done()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-changed:
		}
		e.pmu.Lock()
		for _, p := range e.pullers {
			p.vacate()
		}
		e.pmu.Unlock()
		inst := e.live.Instance()
		e.mu.Lock()
		for _, s := range e.streams {
			if s.registeredAs() != inst {
				s.poke()
			}
		}
		e.mu.Unlock()
	}
}
