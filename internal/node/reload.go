package node

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/streamgrid/streamgrid/edge"
	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/memlimit"
	"github.com/streamgrid/streamgrid/origin"
)

// reloader is the node's part of a configuration reload: the running
// configuration (its metrics are the node's, in metrics.go).
type reloader struct {
	mu      sync.Mutex // one reload at a time
	current *config.Config
}

// ReloadFile loads and validates the configuration file at path (and the
// environment), then applies it (Reload). A file that does not load or
// validate is refused with the reason logged, and the running configuration
// stays. SIGHUP and a change of the file both end here.
func (n *Node) ReloadFile(path string) error {
	next, err := config.Load(path, os.Environ())
	if err != nil {
		n.m.reloads.WithLabelValues("refused").Inc()
		n.Log.Error("configuration reload refused; the running configuration stays", "file", path, "err", err)
		return err
	}
	return n.Reload(next)
}

// Reload applies a loaded, validated configuration to the running node.
// Keys that need a restart are logged and keep their running values (see
// config.Reconcile); the others are handed to the components: edge sources
// (added, removed, changed — untouched cameras keep streaming), origin
// capacity, HLS settings and ladders (for streams claimed from now on),
// cache memory, hooks, log level, and auth rules. A part that fails is
// logged and reported; the parts that applied stay applied. next becomes
// the configuration in force (CurrentConfig): Reload writes the running
// values of the keys it could not apply into it.
func (n *Node) Reload(next *config.Config) error {
	r := &n.reload
	r.mu.Lock()
	defer r.mu.Unlock()
	ch, err := config.Reconcile(r.current, next)
	if err != nil {
		n.m.reloads.WithLabelValues("refused").Inc()
		n.Log.Error("configuration reload refused; the running configuration stays", "err", err)
		return err
	}
	for _, k := range ch.Restart {
		n.Log.Warn("configuration key changed but needs a restart; keeping the running value", "key", k)
	}
	n.m.restartPending.Set(float64(len(ch.Restart)))
	if len(ch.Applied) == 0 {
		n.m.reloads.WithLabelValues("unchanged").Inc()
		n.m.reloadOK.SetToCurrentTime()
		n.Log.Info("configuration reloaded: nothing to apply", "needs_restart", ch.Restart)
		return nil
	}

	// A part that fails keeps its running value in the configuration in
	// force, so that CurrentConfig tells the truth and the next reload tries
	// it again.
	old := r.current
	var errs []error
	apply := func(key string, err error, keep func()) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			keep()
		}
	}
	if ch.Has("node.log_level") && n.LogLevel != nil {
		apply("node.log_level", n.LogLevel.UnmarshalText([]byte(next.Node.LogLevel)),
			func() { next.Node.LogLevel = old.Node.LogLevel })
	}
	if ch.Has("sources") && n.edge != nil {
		d := config.DiffSources(old.Sources, next.Sources)
		n.Log.Info("camera sources changed", "added", d.Added, "removed", d.Removed, "changed", d.Changed)
		apply("sources", n.edge.SetSources(edgeSources(next.Sources)), func() { next.Sources = old.Sources })
	}
	if n.origin != nil {
		if ch.Has("origin.capacity") {
			apply("origin.capacity", n.origin.SetCapacity(next.Origin.Capacity),
				func() { next.Origin.Capacity = old.Origin.Capacity })
		}
		if ch.Has("origin.hls") {
			apply("origin.hls", n.origin.SetHLS(origin.HLSConfig(next.Origin.HLS)),
				func() { next.Origin.HLS = old.Origin.HLS })
		}
		if ch.Has("origin.transcode.ladders") {
			apply("origin.transcode.ladders", n.origin.SetLadders(originTranscode(next.Origin.Transcode).Ladders),
				func() { next.Origin.Transcode.Ladders = old.Origin.Transcode.Ladders })
		}
	}
	if ch.Has("cache.max_bytes") && n.cache != nil {
		apply("cache.max_bytes", n.cache.SetMaxBytes(memlimit.CacheBudget(next.Cache.MaxBytes, n.memLimit)),
			func() { next.Cache.MaxBytes = old.Cache.MaxBytes })
	}
	if ch.Has("hooks") && n.hooks != nil {
		apply("hooks", n.hooks.Update(hooksConfig(next.Hooks)), func() { next.Hooks = old.Hooks })
	}
	if ch.Has("auth") {
		apply("auth", n.reloadAuth(next.Auth), func() { next.Auth = old.Auth })
	}
	r.current = next
	if err := errors.Join(errs...); err != nil {
		n.m.reloads.WithLabelValues("refused").Inc()
		n.Log.Error("configuration reload partly failed", "applied", ch.Applied, "err", err)
		return err
	}
	n.m.reloads.WithLabelValues("applied").Inc()
	n.m.reloadOK.SetToCurrentTime()
	n.Log.Info("configuration reloaded", "applied", ch.Applied, "needs_restart", ch.Restart)
	return nil
}

// reloadAuth applies new auth rules (users, permissions, the external
// authorizer); the signing key and the origin secret need a restart.
func (n *Node) reloadAuth(a config.Auth) error {
	if n.auth == nil {
		return nil // a bus node checks nothing
	}
	return n.auth.Update(a)
}

// CurrentConfig is the configuration in force: the start-up one, or the last
// reloaded one (with the keys that need a restart at their running values).
func (n *Node) CurrentConfig() *config.Config {
	n.reload.mu.Lock()
	defer n.reload.mu.Unlock()
	return n.reload.current
}

// edgeSources maps the configured sources onto the edge's.
func edgeSources(in []config.Source) []edge.Source {
	var out []edge.Source
	for _, s := range in {
		out = append(out, edge.Source{
			Name: s.Name, URL: s.URL, Transport: s.Transport,
			BackoffMin: s.BackoffMin, BackoffMax: s.BackoffMax,
			OnDemand: s.OnDemand, CloseAfter: s.CloseAfter,
		})
	}
	return out
}
