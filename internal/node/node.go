// Package node assembles one streamgrid process from its configuration: the
// embedded NATS server where this node runs one, the bus connection and
// registry, gossip membership, the edge, origin and cache roles, and the
// per-node API (REST, /metrics, /healthz, the console).
//
// Roles: "run" (all-in-one: embedded NATS + edge + origin + cache), "bus",
// "edge", "origin", "cache".
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/edge"
	"github.com/streamgrid/streamgrid/hlscache"
	"github.com/streamgrid/streamgrid/internal/auth"
	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/gossip"
	"github.com/streamgrid/streamgrid/internal/hooks"
	"github.com/streamgrid/streamgrid/internal/memlimit"
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
	metrics  *prometheus.Registry // the node's registry, served at /metrics
	m        *metrics             // the node's own collectors (metrics.go)
	server   *bus.Server
	nc       *nats.Conn // media
	media    bus.Media  // all-in-one: a bus.Hub, media between edge and origin in process; else nil (NATS)
	regNC    *nats.Conn // registry
	registry *bus.Registry
	// live is the node's liveness (origin and edge roles): one heartbeat
	// for every role of the process, so the all-in-one's origin and edge,
	// which share the node's name, are one node instance.
	live     *bus.Liveness
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
	bgCtx    context.Context    // the node's own watchers run until bg ends it
	bg       context.CancelFunc // ends the node's own watchers
	bgWG     sync.WaitGroup

	closeOnce sync.Once
}

func (n *Node) has(role string) bool { return n.Role == RoleRun || n.Role == role }

// Name is the node's cluster name.
func (n *Node) Name() string { return n.name }

// Start brings every part up, in dependency order (start.go has one step
// per part), and undoes the parts already started when a later one fails:
// a step keeps its part in the node only once that part started, so the
// one clean-up path, Close, stops exactly what runs.
func (n *Node) Start() (err error) {
	if err := n.prepare(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	for _, step := range n.startSteps() {
		if err := step(); err != nil {
			return err
		}
	}
	n.Log.Info("streamgrid node started", "role", n.Role, "version", version.String(), "addrs", n.describeAddrs())
	return nil
}

// prepare checks the role, names the node and sets up what every part
// uses: the logger, the metrics registry and the memory limit.
func (n *Node) prepare() error {
	switch n.Role {
	case RoleRun, RoleBus, RoleEdge, RoleOrigin, RoleCache:
	default:
		return fmt.Errorf("unknown role %q", n.Role)
	}
	if n.Log == nil {
		n.Log = slog.Default()
	}
	n.name = n.Config.Node.Name
	if n.name == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "streamgrid"
		}
		n.name = host + "-" + n.Role
	}
	n.Log = n.Log.With("node", n.name)
	n.started = time.Now()
	n.reload.current = n.Config
	// Role components label their own metrics with node and role (an
	// all-in-one node reports edge, origin and cache apart); the node's
	// own get the same labels.
	n.metrics = prometheus.NewRegistry()
	n.m = newMetrics(n.name, n.Role)
	if err := n.m.register(n.metrics); err != nil {
		return err
	}
	n.m.reloadOK.SetToCurrentTime()
	n.bgCtx, n.bg = context.WithCancel(context.Background())
	n.startMemoryLimit()
	return nil
}

// Drain prepares a graceful stop: the origin hands its streams to others, the
// cache finishes in-flight requests, the node leaves the membership. It
// returns what did not drain in time; Close stops the rest either way.
func (n *Node) Drain(ctx context.Context) error {
	n.Log.Info("draining")
	n.draining.Store(true)
	if n.edge != nil {
		n.edge.Close() // publishers reconnect to another edge; pulls move with their leases
	}
	var errs []error
	if n.origin != nil {
		if err := n.origin.Drain(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if n.gossip != nil {
		m := n.meta()
		m.Draining = true
		_ = n.gossip.SetMeta(m)
		_ = n.gossip.Leave(time.Second)
	}
	if n.cache != nil {
		if err := n.cache.Drain(ctx); err != nil {
			errs = append(errs, fmt.Errorf("cache: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Crash stops the node the way a killed process stops: the bus connection
// drops first (no lease is released, no record removed), gossip goes silent
// without a leave, then everything else is torn down. The cluster tests use it
// to rehearse failures in one process.
func (n *Node) Crash() {
	for _, nc := range []*nats.Conn{n.nc, n.regNC} {
		if nc != nil {
			nc.Close()
		}
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
		if n.live != nil {
			n.live.Close()
		}
		if n.bg != nil {
			n.bg()
		}
		n.bgWG.Wait()
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
		if n.m != nil {
			n.m.unregister(n.metrics)
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
