package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/auth"
	"github.com/streamgrid/streamgrid/internal/gossip"
)

// The start steps, one per part. Each one keeps its part in the node only
// once the part started (a part whose Start failed has undone its own
// work), so that Close, the one clean-up path, stops exactly what runs.

// startSteps lists the steps of this node's role, in dependency order.
func (n *Node) startSteps() []func() error {
	steps := []func() error{n.startAuth, n.startBus}
	if n.Role != RoleBus {
		steps = append(steps, n.startRegistry, n.startGossip, n.startHooks)
	}
	if n.Role == RoleRun {
		steps = append(steps, n.startHub)
	}
	if n.has(RoleOrigin) || n.has(RoleEdge) {
		steps = append(steps, n.startLiveness)
	}
	if n.has(RoleOrigin) {
		steps = append(steps, n.startOrigin)
	}
	if n.has(RoleCache) {
		steps = append(steps, n.startCache)
	}
	if n.has(RoleEdge) {
		steps = append(steps, n.startEdge)
	}
	return append(steps, n.startStats, n.startAPI, n.announce, n.startMemoryWatch)
}

func (n *Node) startAuth() error {
	a := &auth.Authenticator{Config: n.Config.Auth, Node: n.name, Role: n.Role, Log: n.Log, Metrics: n.metrics}
	if err := a.Start(); err != nil {
		return err
	}
	n.auth = a
	return nil
}

// startBus starts the embedded server for `bus`, and for `run` when no URLs
// are given, then (every role but bus) connects to the bus.
func (n *Node) startBus() (err error) {
	urls := n.Config.Bus.URLs
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
	if n.Role == RoleBus {
		return nil
	}
	opts := n.connOptions(urls)
	if n.nc, err = bus.Connect(opts); err != nil {
		return err
	}
	// The registry (leases, stream records) gets a connection of its own:
	// on one shared with the media, a lease renewal waits behind megabytes
	// of packets and a busy node loses its streams.
	opts.Name = n.name + "-registry"
	n.regNC, err = bus.Connect(opts)
	return err
}

func (n *Node) startRegistry() error {
	c := n.Config.Bus
	js, err := jetstream.New(n.regNC)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	r := &bus.Registry{JS: js, Replicas: c.Replicas, LeaseTTL: c.LeaseTTL, StateTTL: c.StateTTL}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		return err
	}
	n.registry = r
	return nil
}

// startLiveness starts the node's heartbeats, shared by its origin and
// edge roles (the heartbeat names the roles).
func (n *Node) startLiveness() error {
	var roles []string
	if n.has(RoleOrigin) {
		roles = append(roles, bus.RoleOrigin)
	}
	if n.has(RoleEdge) {
		roles = append(roles, bus.RoleEdge)
	}
	l := &bus.Liveness{NC: n.nc, Node: n.name, Roles: roles, TTL: n.Config.Bus.NodeTTL, Log: n.Log}
	if err := l.Start(); err != nil {
		return fmt.Errorf("liveness: %w", err)
	}
	n.live = l
	return nil
}

// startHub (all-in-one) hands media between the edge and the origin in process.
func (n *Node) startHub() error {
	hub := &bus.Hub{NC: n.nc}
	if n.server != nil {
		hub.Interest = n.server.Interest
		hub.Subscriptions = n.server.Subscriptions
	}
	n.media = hub
	return nil
}

// startStats answers the other nodes' statistics requests (not on a bus node).
func (n *Node) startStats() error {
	if n.nc == nil {
		return nil
	}
	if err := n.serveStats(); err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	return nil
}

func (n *Node) startAPI() error {
	if n.Config.API.Address == "" {
		return nil
	}
	a := &apiServer{node: n, Address: n.Config.API.Address}
	if err := a.start(); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	n.api = a
	return nil
}

// announce gossips the roles' addresses: gossip started before the roles,
// so its metadata could not name them yet.
func (n *Node) announce() error {
	if n.gossip == nil {
		return nil
	}
	return n.gossip.SetMeta(n.meta())
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
