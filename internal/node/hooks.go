package node

import (
	"time"

	"github.com/streamgrid/streamgrid/edge"
	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/hooks"
)

// hooksConfig maps the hooks configuration onto the notifier's.
func hooksConfig(h config.Hooks) hooks.Config {
	return hooks.Config{URL: h.URL, Events: h.Events, Timeout: h.Timeout, Retries: h.Retries}
}

// startHooks starts the webhook notifier (always, so that a reload can turn
// hooks on) before the roles that feed it.
func (n *Node) startHooks() error {
	h := &hooks.Notifier{
		Node: n.name, Role: n.Role, Config: hooksConfig(n.Config.Hooks), QueueSize: n.Config.Hooks.QueueSize,
		Log: n.Log, Metrics: n.metrics,
	}
	if err := h.Start(); err != nil {
		return err
	}
	n.hooks = h
	return nil
}

// edgeEvent turns an edge event into a webhook event.
func (n *Node) edgeEvent(ev edge.Event) {
	n.hooks.Notify(hooks.Event{
		Event: ev.Kind, Time: ev.Time, Path: ev.Path, Protocol: ev.Protocol, Remote: ev.Remote,
		Generation: ev.Generation, Tracks: ev.Tracks, Reason: ev.Reason, Duration: ev.Duration.Seconds(),
	})
}

// originFailover reports a stream this node's origin took from another
// origin (origin.Origin.OnFailover): only the new owner reports, so each
// failover is sent once in the cluster.
func (n *Node) originFailover(path, previous string, epoch uint64) {
	n.hooks.Notify(hooks.Event{
		Event: "failover", Time: time.Now(), Path: path,
		Origin: n.name, PreviousOrigin: previous, Epoch: epoch,
	})
}
