// Package node assembles one streamgrid process from its configuration: the
// embedded NATS server where this node runs one, the bus connection and
// registry, gossip membership, the edge, origin and cache roles, and the
// per-node API (REST, /metrics, /healthz, the console).
//
// Roles: "run" (all-in-one: embedded NATS + edge + origin + cache), "bus",
// "edge", "origin", "cache".
package node

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/edge"
	"github.com/streamgrid/streamgrid/hlscache"
	"github.com/streamgrid/streamgrid/internal/auth"
	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/gossip"
	"github.com/streamgrid/streamgrid/internal/hooks"
	"github.com/streamgrid/streamgrid/internal/memlimit"
	"github.com/streamgrid/streamgrid/internal/transcode"
	"github.com/streamgrid/streamgrid/internal/version"
	"github.com/streamgrid/streamgrid/origin"
)

// Roles a node can run.
const (
	RoleRun    = "run"
	RoleBus    = "bus"
	RoleEdge   = "edge"
	RoleOrigin = "origin"
	RoleCache  = "cache"
)

// Node is one streamgrid process. Fill in the fields, then Start.
type Node struct {
	Config *config.Config
	Role   string
	Log    *slog.Logger
	// LogLevel, when set, is the level of Log: a reload changes it to the
	// new node.log_level.
	LogLevel *slog.LevelVar

	name     string
	metrics  *prometheus.Registry
	server   *bus.Server
	nc       *nats.Conn // media
	hub      *bus.Hub   // all-in-one: media between edge and origin in process
	regNC    *nats.Conn // registry
	registry *bus.Registry
	auth     *auth.Authenticator
	gossip   *gossip.Node
	edge     *edge.Edge
	origin   *origin.Origin
	cache    *hlscache.Cache
	api      *apiServer
	started  time.Time
	statsSub *nats.Subscription // answers the other nodes' statistics requests
	rates    rateMeter          // the edge's bit and frame rates
	draining atomic.Bool        // set by Drain; /healthz answers 503 from then on

	reload reloader // see reload.go
	// memLimit is the node's memory limit (node.memory_limit, see memory.go).
	memLimit memlimit.Limit
	hooks    *hooks.Notifier
	bg       context.CancelFunc // ends the node's own watchers
	bgWG     sync.WaitGroup

	closeOnce sync.Once
}

func (n *Node) has(role string) bool { return n.Role == RoleRun || n.Role == role }

// Name is the node's cluster name.
func (n *Node) Name() string { return n.name }

// Start brings every part up, in dependency order, and undoes the parts
// already started when a later one fails.
func (n *Node) Start() (err error) {
	switch n.Role {
	case RoleRun, RoleBus, RoleEdge, RoleOrigin, RoleCache:
	default:
		return fmt.Errorf("unknown role %q", n.Role)
	}
	if n.Log == nil {
		n.Log = slog.Default()
	}
	c := n.Config
	n.name = c.Node.Name
	if n.name == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "streamgrid"
		}
		n.name = host + "-" + n.Role
	}
	n.Log = n.Log.With("node", n.name)
	n.started = time.Now()
	n.metrics = prometheus.NewRegistry()
	n.reload.current = c
	// Role components label their own metrics with node and role (an
	// all-in-one node reports edge, origin and cache apart); the process-wide
	// collectors get the node's labels here.
	prometheus.WrapRegistererWith(prometheus.Labels{"node": n.name, "role": n.Role}, n.metrics).MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo())
	reg := n.metrics
	if err := n.startMemoryLimit(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	n.auth = &auth.Authenticator{Config: c.Auth, Node: n.name, Role: n.Role, Log: n.Log, Metrics: reg}
	if err := n.auth.Start(); err != nil {
		n.auth = nil
		return err
	}

	// Bus: embedded server for `bus`, and for `run` when no URLs are given.
	urls := c.Bus.URLs
	if n.Role == RoleBus || (n.Role == RoleRun && len(urls) == 0) {
		if err := n.startServer(); err != nil {
			return err
		}
		if len(urls) == 0 {
			urls = []string{n.server.ClientURL()}
		}
	}
	if len(urls) == 0 {
		return errors.New("bus.urls is required for this role (the NATS servers to join)")
	}
	if n.Role != RoleBus {
		opts := n.connOptions(urls)
		if n.nc, err = bus.Connect(opts); err != nil {
			return err
		}
		// The registry (leases, stream records) gets a connection of its own:
		// on one shared with the media, a lease renewal waits behind megabytes
		// of packets and a busy node loses its streams.
		opts.Name = n.name + "-registry"
		if n.regNC, err = bus.Connect(opts); err != nil {
			return err
		}
		js, err := jetstream.New(n.regNC)
		if err != nil {
			return fmt.Errorf("jetstream: %w", err)
		}
		n.registry = &bus.Registry{JS: js, Replicas: c.Bus.Replicas, LeaseTTL: c.Bus.LeaseTTL, StreamTTL: c.Bus.StreamTTL, StateTTL: c.Bus.StateTTL}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = n.registry.Start(ctx)
		cancel()
		if err != nil {
			return err
		}
		if err := n.startGossip(); err != nil {
			return err
		}
	}
	if n.Role != RoleBus {
		if err := n.startHooks(); err != nil {
			return err
		}
	}
	if n.Role == RoleRun {
		n.hub = &bus.Hub{NC: n.nc}
		if n.server != nil {
			n.hub.Interest = n.server.Interest
			n.hub.Subscriptions = n.server.Subscriptions
		}
	}
	if n.has(RoleOrigin) {
		n.origin = &origin.Origin{
			Node: n.name, NC: n.nc, Hub: n.hub, Registry: n.registry, Gossip: n.gossip,
			HTTPAddress: c.Origin.HTTPAddress, AdvertiseHTTP: c.Origin.AdvertiseHTTP,
			Capacity: c.Origin.Capacity,
			HLS: origin.HLSConfig{
				Variant: c.Origin.HLS.Variant, SegmentDuration: c.Origin.HLS.SegmentDuration,
				PartDuration: c.Origin.HLS.PartDuration, SegmentCount: c.Origin.HLS.SegmentCount,
				IdleTimeout: c.Origin.HLS.IdleTimeout,
			},
			Transcode: originTranscode(c.Origin.Transcode),
			Secret:    c.Auth.OriginSecret,
			Log:       n.Log, Metrics: reg,
		}
		if err := n.origin.Start(); err != nil {
			n.origin = nil
			return fmt.Errorf("origin: %w", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		owners, err := n.registry.WatchOwners(ctx)
		if err != nil {
			cancel()
			return fmt.Errorf("failover hooks: %w", err)
		}
		n.bg = cancel
		n.bgWG.Add(1)
		go func() {
			defer n.bgWG.Done()
			n.watchFailovers(ctx, owners)
		}()
	}
	if n.has(RoleCache) {
		n.cache = &hlscache.Cache{
			Node: n.name, Registry: n.registry, Gossip: n.gossip, Demander: bus.Demander{NC: n.nc},
			HTTPAddress: c.Cache.HTTPAddress, MaxBytes: memlimit.CacheBudget(c.Cache.MaxBytes, n.memLimit),
			UpstreamTimeout: c.Cache.UpstreamTimeout, AllowOrigin: c.Cache.AllowOrigin,
			MaxConnsPerIP: cmp.Or(c.Cache.MaxConnsPerIP, -1), MaxUpstreamConns: c.Cache.MaxUpstreamConns,
			TLSCert: c.Cache.TLSCert, TLSKey: c.Cache.TLSKey,
			OriginSecret: c.Auth.OriginSecret,
			Authorize:    n.cacheAuthorize,
			Log:          n.Log, Metrics: reg,
		}
		if c.Auth.SigningKey != "" {
			if n.cache.SigningKey, err = base64.StdEncoding.DecodeString(c.Auth.SigningKey); err != nil {
				return fmt.Errorf("auth.signing_key: %w", err)
			}
		}
		if err := n.cache.Start(); err != nil {
			n.cache = nil
			return fmt.Errorf("cache: %w", err)
		}
	}
	if n.has(RoleEdge) {
		n.edge = &edge.Edge{
			Node: n.name, NC: n.nc, Hub: n.hub, Registry: n.registry,
			RTSPAddress: c.Edge.RTSPAddress, UDPRTPAddress: c.Edge.RTPAddress, UDPRTCPAddress: c.Edge.RTCPAddress,
			RTMPAddress: c.Edge.RTMPAddress, Sources: edgeSources(c.Sources), ReadTimeout: c.Edge.ReadTimeout,
			TLSCert: c.Edge.TLSCert, TLSKey: c.Edge.TLSKey,
			RTSPSAddress: c.Edge.RTSPSAddress, RTMPSAddress: c.Edge.RTMPSAddress,
			MediaTimeout: c.Edge.MediaTimeout, MaxPublishers: c.Edge.MaxPublishers,
			Auth: n.auth, RTSPAuthMethods: c.Edge.RTSPAuthMethods, OnEvent: n.edgeEvent,
			Log: n.Log, Metrics: reg,
		}
		if err := n.edge.Start(); err != nil {
			n.edge = nil
			return fmt.Errorf("edge: %w", err)
		}
	}
	if n.nc != nil {
		if err := n.serveStats(); err != nil {
			return fmt.Errorf("stats: %w", err)
		}
	}
	if err := n.reload.start(n); err != nil {
		return err
	}
	if c.API.Address != "" {
		n.api = &apiServer{node: n, Address: c.API.Address}
		if err := n.api.start(); err != nil {
			n.api = nil
			return fmt.Errorf("api: %w", err)
		}
	}
	// Gossip started before the roles, so its metadata could not name their
	// addresses yet: announce them now that every listener is bound.
	if n.gossip != nil {
		if err := n.gossip.SetMeta(n.meta()); err != nil {
			return err
		}
	}
	n.Log.Info("streamgrid node started", "role", n.Role, "version", version.String(), "addrs", n.describeAddrs())
	return nil
}

// connOptions is how this node's roles reach the bus: bus.user/password,
// the user defaulting to the role's; on an all-in-one's own embedded server
// with role users and no client credentials, the run user (or admin).
func (n *Node) connOptions(urls []string) bus.ConnOptions {
	c := n.Config.Bus
	o := bus.ConnOptions{
		URLs: urls, Name: n.name, User: c.User, Password: c.Password,
		Token: c.Token, CredsFile: c.CredsFile, TLSCA: c.TLSCA, ConnectTimeout: c.ConnectTimeout, Log: n.Log,
	}
	if n.server != nil && o.TLSCA == "" {
		o.TLSCA = c.Server.TLSCA // an all-in-one on its own TLS server
	}
	if n.server != nil && o.User == "" && o.Password == "" && o.Token == "" {
		switch users := c.Server.Users; {
		case users.Run != "":
			o.User, o.Password = bus.UserRun, users.Run
		case users.Admin != "":
			o.User, o.Password = bus.UserAdmin, users.Admin
		}
	}
	if o.User == "" && o.Password != "" {
		o.User = n.Role // edge, origin, cache, run: the role users' names
	}
	switch o.User {
	case bus.UserEdge, bus.UserOrigin, bus.UserCache, bus.UserRun:
		// The role users may read only their own inboxes.
		o.InboxPrefix = bus.InboxPrefix(o.User)
	}
	return o
}

func (n *Node) startServer() error {
	bc := n.Config.Bus
	c := bc.Server
	host, port, err := splitPort(c.Listen)
	if err != nil {
		return fmt.Errorf("bus.server.listen: %w", err)
	}
	if bc.CredsFile != "" {
		return errors.New("bus.creds_file: the embedded NATS server cannot check a .creds file (that is for an external NATS with decentralized auth); use bus.server.users")
	}
	s := &bus.Server{
		Name: cmp.Or(c.Name, n.name), Host: host, Port: port,
		ClusterName: c.ClusterName, ClusterAdvertise: c.ClusterAdvertise, Routes: c.Routes,
		StoreDir: c.StoreDir, MaxPayload: int32(c.MaxPayload),
		Users: bus.Users{Edge: c.Users.Edge, Origin: c.Users.Origin, Cache: c.Users.Cache, Run: c.Users.Run, Admin: c.Users.Admin},
		Token: bc.Token, RoutePassword: c.ClusterPassword,
		Log: n.Log,
	}
	if c.TLSCert != "" {
		if s.TLS, err = bus.ServerTLS(c.TLSCert, c.TLSKey); err != nil {
			return fmt.Errorf("bus.server.tls_cert: %w", err)
		}
		if s.RouteTLS, err = bus.RouteTLS(c.TLSCert, c.TLSKey, c.TLSCA); err != nil {
			return fmt.Errorf("bus.server.tls_ca: %w", err)
		}
	}
	if !c.Users.Any() {
		// Without role users, bus.user/bus.password is the server's one user.
		s.User, s.Password = bc.User, bc.Password
	}
	if c.ClusterListen != "" {
		if s.ClusterHost, s.ClusterPort, err = splitPort(c.ClusterListen); err != nil {
			return fmt.Errorf("bus.server.cluster_listen: %w", err)
		}
	}
	if !c.Insecure {
		if !isLoopback(host) && !c.Users.Any() && s.User == "" && s.Token == "" {
			return fmt.Errorf("bus.server.listen %q is reachable from other hosts and the bus has no credentials: "+
				"set bus.server.users (see docs/security.md), or bus.server.insecure: true to run it open", c.Listen)
		}
		if s.ClusterPort != 0 && !isLoopback(s.ClusterHost) && c.ClusterPassword == "" && s.Password == "" {
			return fmt.Errorf("bus.server.cluster_listen %q is reachable from other hosts and routes have no password: "+
				"set bus.server.cluster_password, or bus.server.insecure: true", c.ClusterListen)
		}
	}
	if err := s.Start(); err != nil {
		return err
	}
	n.server = s
	// The NATS server's own monitoring figures, read at scrape time.
	if err := n.metrics.Register(s.Collector(prometheus.Labels{"node": n.name, "role": RoleBus})); err != nil {
		return fmt.Errorf("bus metrics: %w", err)
	}
	return nil
}

func (n *Node) startGossip() error {
	c := n.Config.Gossip
	host, port, err := splitPort(c.Bind)
	if err != nil {
		return fmt.Errorf("gossip.bind: %w", err)
	}
	if port < 0 {
		port = 0
	}
	if !isLoopback(host) && c.SecretKey == "" && !c.Insecure {
		return fmt.Errorf("gossip.bind %q is reachable from other hosts and gossip is not encrypted: "+
			"set gossip.secret_key (openssl rand -base64 32), or gossip.insecure: true to run it open", c.Bind)
	}
	g := &gossip.Node{Name: n.name, BindAddr: host, BindPort: port, Seeds: c.Seeds, Meta: n.meta(), Log: n.Log}
	if c.Advertise != "" {
		ah, ap, err := splitPort(c.Advertise)
		if err != nil {
			return fmt.Errorf("gossip.advertise: %w", err)
		}
		g.AdvertiseAddr, g.AdvertisePort = ah, max(ap, 0)
	} else if host == "" || host == "0.0.0.0" {
		// memberlist advertises a private address of its own choosing; leave it.
	} else {
		g.AdvertiseAddr = host
	}
	if g.SecretKey, err = c.Key(); err != nil {
		return fmt.Errorf("gossip.secret_key: %w", err)
	}
	if g.OldKeys, err = c.Keys(); err != nil {
		return fmt.Errorf("gossip.old_keys: %w", err)
	}
	if err := g.Start(); err != nil {
		return err
	}
	n.gossip = g
	return nil
}

// meta is what this node gossips about itself.
func (n *Node) meta() gossip.Meta {
	m := gossip.Meta{Role: n.Role, Version: version.String()}
	if n.origin != nil {
		m.HTTP = n.origin.AdvertiseHTTP
		m.Capacity = n.CurrentConfig().Origin.Capacity
		m.Load = len(n.origin.Streams())
	} else if n.cache != nil {
		m.HTTP = n.reachable(n.cache.HTTPAddr())
	}
	if n.cache != nil {
		m.Cache = n.reachable(n.cache.HTTPAddr())
	}
	if n.api != nil {
		m.API = n.reachable(n.api.addr())
	}
	return m
}

// reachable is a listener's address as other nodes can dial it: a wildcard
// host (":9997", "0.0.0.0:8888") becomes the host gossip advertises.
func (n *Node) reachable(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok || !ta.IP.IsUnspecified() || n.gossip == nil {
		return a.String()
	}
	host, _, err := net.SplitHostPort(n.gossip.Addr())
	if err != nil {
		return a.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(ta.Port))
}

// Drain prepares a graceful stop: the origin hands its streams to others, the
// cache finishes in-flight requests, the node leaves the membership.
func (n *Node) Drain(ctx context.Context) {
	n.Log.Info("draining")
	n.draining.Store(true)
	if n.edge != nil {
		n.edge.Close() // publishers reconnect to another edge; pulls move with their leases
	}
	if n.origin != nil {
		n.origin.Drain(ctx)
	}
	if n.gossip != nil {
		m := n.meta()
		m.Draining = true
		_ = n.gossip.SetMeta(m)
		_ = n.gossip.Leave(time.Second)
	}
	if n.cache != nil {
		n.cache.Drain(ctx)
	}
}

// Crash stops the node the way a killed process stops: the bus connection
// drops first (no lease is released, no record removed), gossip goes silent
// without a leave, then everything else is torn down. The cluster tests use it
// to rehearse failures in one process.
func (n *Node) Crash() {
	if n.nc != nil {
		n.nc.Close()
	}
	if n.regNC != nil {
		n.regNC.Close()
	}
	if n.gossip != nil {
		n.gossip.Shutdown()
	}
	if n.server != nil {
		n.server.Close()
	}
	n.Close()
}

// Close stops everything in reverse order and waits. Calling it twice is harmless.
func (n *Node) Close() {
	n.closeOnce.Do(func() {
		if n.api != nil {
			n.api.close()
		}
		if n.statsSub != nil {
			_ = n.statsSub.Unsubscribe()
		}
		if n.edge != nil {
			n.edge.Close()
		}
		if n.cache != nil {
			n.cache.Close()
		}
		if n.origin != nil {
			n.origin.Close()
		}
		if n.bg != nil {
			n.bg()
			n.bgWG.Wait()
		}
		if n.hooks != nil {
			n.hooks.Close()
		}
		if n.gossip != nil {
			n.gossip.Close()
		}
		for _, nc := range []*nats.Conn{n.nc, n.regNC} {
			if nc != nil {
				_ = nc.Drain()
				nc.Close()
			}
		}
		if n.server != nil {
			n.server.Close()
		}
		if n.auth != nil {
			n.auth.Close()
		}
	})
}

// UpdateAuth replaces the node's authentication rules (publishers, API)
// at once; on error the old rules stay. For a configuration reload.
func (n *Node) UpdateAuth(c config.Auth) error {
	if n.auth == nil {
		return errors.New("node not started")
	}
	return n.auth.Update(c)
}

// Addresses the node listens on (tests start nodes on port 0).
type Addrs struct {
	RTSP, RTMP, RTSPS, RTMPS, Cache, Origin, API, NATS, NATSCluster, Gossip string
}

// Addrs reports the bound addresses.
func (n *Node) Addrs() Addrs {
	var a Addrs
	if n.edge != nil {
		if x := n.edge.RTSPAddr(); x != nil {
			a.RTSP = x.String()
		}
		if x := n.edge.RTMPAddr(); x != nil {
			a.RTMP = x.String()
		}
		if x := n.edge.RTSPSAddr(); x != nil {
			a.RTSPS = x.String()
		}
		if x := n.edge.RTMPSAddr(); x != nil {
			a.RTMPS = x.String()
		}
	}
	if n.cache != nil {
		a.Cache = n.cache.HTTPAddr().String()
	}
	if n.origin != nil {
		a.Origin = n.origin.HTTPAddr().String()
	}
	if n.api != nil {
		a.API = n.api.addr().String()
	}
	if n.server != nil {
		a.NATS = n.server.ClientURL()
		a.NATSCluster = n.server.ClusterURL()
	}
	if n.gossip != nil {
		a.Gossip = n.gossip.Addr()
	}
	return a
}

func (n *Node) describeAddrs() []string {
	a := n.Addrs()
	var out []string
	add := func(k, v string) {
		if v != "" {
			out = append(out, k+"="+v)
		}
	}
	add("rtsp", a.RTSP)
	add("rtmp", a.RTMP)
	add("rtsps", a.RTSPS)
	add("rtmps", a.RTMPS)
	add("hls", a.Cache)
	add("origin", a.Origin)
	add("api", a.API)
	add("nats", a.NATS)
	add("gossip", a.Gossip)
	return out
}

// buildInfo is streamgrid_build_info: 1, labelled with the version and the Go release.
func buildInfo() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "streamgrid_build_info",
		Help:        "Always 1; its labels say which streamgrid version and Go release built this binary.",
		ConstLabels: prometheus.Labels{"version": version.String(), "goversion": version.GoVersion()},
	})
	g.Set(1)
	return g
}

// isLoopback reports whether a listener on host is reachable from this
// machine only: a loopback address or "localhost". "" and 0.0.0.0 are not.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// splitPort parses host:port; port 0 becomes -1, which the NATS server reads as "random".
func splitPort(a string) (string, int, error) {
	host, p, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	if port == 0 {
		port = -1
	}
	return host, port, nil
}

// originTranscode maps the transcode configuration onto the origin's.
func originTranscode(t config.Transcode) origin.TranscodeConfig {
	oc := origin.TranscodeConfig{
		FFmpeg: t.FFmpeg, Encoder: transcode.Encoder(t.Encoder), Fallback: transcode.Policy(t.Fallback),
		GPUSessions: t.GPUSessions, CPUSlots: t.CPUSlots,
	}
	for _, l := range t.Ladders {
		oc.Ladders = append(oc.Ladders, origin.LadderRule{Match: l.Match, Ladder: l.Ladder})
	}
	return oc
}

// transcodeCheck summarises the origin's encoder capabilities and transcode
// slots for /healthz (checks.transcode); "" when no ladder is configured.
func (n *Node) transcodeCheck() string {
	if n.origin == nil {
		return ""
	}
	st := n.origin.Capabilities()
	if !st.Enabled {
		return ""
	}
	c := st.Capabilities
	yes := func(v bool) string {
		if v {
			return "yes"
		}
		return "no"
	}
	out := fmt.Sprintf("ffmpeg=%s x264=%s x265=%s nvenc_h264=%s nvenc_hevc=%s cuda=%s gpus=%d gpu_sessions=%d/%d cpu_slots=%d/%d",
		c.FFmpeg, yes(c.X264), yes(c.X265), yes(c.NVENCH264), yes(c.NVENCHEVC), yes(c.CUDA), c.GPUs,
		st.GPUInUse, st.GPUSessions, st.CPUInUse, st.CPUSlots)
	for _, l := range st.Ladders {
		if l.Refused != "" {
			out += fmt.Sprintf(" ladder[%s]=refused(%s)", l.Match, l.Refused)
		} else {
			out += fmt.Sprintf(" ladder[%s]=%s", l.Match, l.Encoder)
		}
	}
	return out
}
