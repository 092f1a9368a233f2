package node

import (
	"context"
	"time"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/edge"
	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/hooks"
	"github.com/streamgrid/streamgrid/internal/sleep"
)

// failoverWindow: an owner change counts as a failover when the previous
// owner held the stream this recently (a stream that ended and came back
// later on another origin is not one).
const failoverWindow = 30 * time.Second

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

// watchFailovers reports, from the owner records, the streams this node's
// origin took over from another origin: only the new owner reports, so each
// failover is sent once in the cluster. A record rewritten from another
// origin to this one is a take-over; one created within failoverWindow of
// the former owner's release is a hand-over.
func (n *Node) watchFailovers(ctx context.Context, events <-chan bus.OwnerEvent) {
	last := map[string]seenOwner{}
	for {
		for ev := range events {
			n.failoverEvent(ev, last)
		}
		// The watch ended (the bus went away): a new one replays every
		// record, and last tells take-overs made meanwhile from records
		// seen before.
		var err error
		for events = nil; events == nil; {
			if !sleep.For(ctx, time.Second) {
				return
			}
			if events, err = n.registry.WatchOwners(ctx); err != nil {
				n.Log.Debug("failover hooks: owner watch failed, retrying", "err", err)
			}
		}
	}
}

// failoverEvent is watchFailovers for one owner event; last is what it saw
// of every path.
func (n *Node) failoverEvent(ev bus.OwnerEvent, last map[string]seenOwner) {
	now := time.Now()
	if ev.Owner == nil {
		if s, ok := last[ev.Path]; ok {
			s.at, s.gone = now, true // held until now
			last[ev.Path] = s
		}
		return
	}
	prev, had := last[ev.Path]
	last[ev.Path] = seenOwner{owner: *ev.Owner, at: now}
	if ev.Owner.Node != n.name || !had || prev.owner.Node == n.name ||
		prev.owner.Epoch == ev.Owner.Epoch || (prev.gone && now.Sub(prev.at) > failoverWindow) {
		return
	}
	n.hooks.Notify(hooks.Event{
		Event: "failover", Time: now, Path: ev.Path,
		Origin: ev.Owner.Node, PreviousOrigin: prev.owner.Node, Epoch: ev.Owner.Epoch,
	})
}

// seenOwner is what watchFailovers last saw of a path's owner record.
type seenOwner struct {
	owner bus.Owner
	at    time.Time
	gone  bool // the record was removed at at (released, or gone)
}
