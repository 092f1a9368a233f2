package edge

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/sleep"
)

// run takes the camera's lease and pulls the camera while it holds it.
// Camera leases are held by the holder's liveness, never renewed: while
// another live edge holds the camera this one stands by (listed in the
// lease's standby list), woken by the lease watch and by liveness changes,
// or every ~LeaseTTL/2. When the holder is dead, the live standby edge the
// camera ranks first (rendezvous hashing) takes it over at once by
// compare-and-set on the lease; the others a node TTL later, in case that
// one is gone too.
func (p *puller) run() {
	defer close(p.done)
	live := p.e.live
	failing := false
	var deadSeen sourceRecord // the dead holder's lease this edge waits on
	var deadAt time.Time      // when it was first seen dead
	for {
		if !p.wanted() {
			// On demand and nobody watches: wait for a viewer.
			select {
			case <-p.ctx.Done():
				return
			case <-p.demand:
			}
			continue
		}
		wait := jitter(max(p.e.Registry.LeaseTTL/2, 50*time.Millisecond))
		lease, err := p.attempt(&deadSeen, &deadAt)
		switch {
		case p.ctx.Err() != nil:
			if err == nil && lease != nil {
				p.release(lease)
			}
			return
		case err == nil && lease != nil:
			failing = false
			deadSeen, deadAt = sourceRecord{}, time.Time{}
			p.hold(lease)
			wait = 0 // the lease ended or was lost: look again at once (hold waits while fenced)
		case errors.Is(err, errTryAgain):
			wait = 0
		case errors.Is(err, errDeferred):
			wait = max(time.Until(deadAt.Add(live.TTL)), 0)
		case err == nil || errors.Is(err, bus.ErrOwned):
			failing = false // another edge pulls the camera
		default:
			p.e.m.registryErrors.Inc()
			if !failing {
				p.log.Warn("camera lease unavailable", "err", err)
				failing = true
			}
		}
		if wait > 0 && !p.standBy(wait) {
			return
		}
		if !p.src.OnDemand {
			continue
		}
		select { // a demand that came while this edge held the lease or waited is not news
		case <-p.demand:
		default:
		}
	}
}

// Outcomes of attempt besides a lease and a registry error.
var (
	errTryAgain = errors.New("the camera lease changed: try again at once")
	errDeferred = errors.New("the holder is dead and another standby edge ranks first")
)

// jitter returns a duration in [d/2, 3d/2).
func jitter(d time.Duration) time.Duration { return d/2 + rand.N(d) }

// attempt tries once to take the camera: a new lease when none exists, a
// take-over when its holder is dead and this edge ranks first among the
// live standby edges (or waited a node TTL since it was first seen dead:
// deadSeen, deadAt). While a live edge holds it, attempt puts this edge on
// the lease's standby list. A nil lease and nil error: stand by.
func (p *puller) attempt(deadSeen *sourceRecord, deadAt *time.Time) (*bus.Lease, error) {
	live, reg := p.e.live, p.e.Registry
	if !live.Alive() {
		return nil, nil // fenced: not before this edge is alive again
	}
	me := bus.Owner{Node: p.e.Node, Instance: live.Instance()}
	ctx, cancel := context.WithTimeout(p.ctx, registryTimeout)
	defer cancel()
	lease, err := reg.AcquireSource(ctx, p.src.Name, me)
	if !errors.Is(err, bus.ErrOwned) {
		return lease, err
	}
	cur, rev, err := reg.Source(ctx, p.src.Name)
	switch {
	case errors.Is(err, bus.ErrNotFound):
		return nil, errTryAgain // released meanwhile (or still being created)
	case err != nil:
		return nil, err
	}
	if cur.Node == me.Node && cur.Instance == me.Instance {
		// This edge's own lease (an acquire whose reply was lost): hold it.
		return &bus.Lease{Key: p.src.Name, Owner: *cur, Rev: rev}, nil
	}
	if live.Holds(*cur) {
		if !slices.Contains(cur.Standby, p.e.Node) {
			if _, err := reg.StandBySource(ctx, p.src.Name, *cur, rev, p.e.Node); err != nil && !errors.Is(err, bus.ErrLeaseLost) {
				return nil, err
			}
		}
		return nil, bus.ErrOwned
	}
	// The holder is dead.
	rec := sourceRecord{owner: *cur, rev: rev}
	if !deadSeen.same(rec) {
		*deadSeen, *deadAt = rec, time.Now()
	}
	standby := liveStandby(cur.Standby, live.NodesWith(bus.RoleEdge), p.e.Node)
	if !p.first(standby) && time.Since(*deadAt) < live.TTL {
		return nil, errDeferred
	}
	me.Standby = standby
	lease, err = reg.TakeOverSource(ctx, p.src.Name, *cur, rev, me)
	if errors.Is(err, bus.ErrOwned) {
		return nil, errTryAgain // taken by another standby edge, or released
	}
	if err == nil {
		p.log.Info("camera taken over from a dead edge", "from", cur.Node, "epoch", lease.Owner.Epoch)
	}
	return lease, err
}

// liveStandby returns the live edges of standby, without self, each once.
func liveStandby(standby, liveEdges []string, self string) []string {
	var out []string
	for _, n := range standby {
		if n != self && slices.Contains(liveEdges, n) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// first says whether this edge ranks first for the camera among itself
// and the others listed (rendezvous hashing, as origins rank streams).
func (p *puller) first(others []string) bool {
	mine := bus.Rank(p.e.Node, p.src.Name)
	for _, n := range others {
		if bus.Rank(n, p.src.Name) > mine {
			return false
		}
	}
	return true
}

// standBy waits d, or less when the camera's lease changes meanwhile or a
// node's liveness does; false when the puller closes.
func (p *puller) standBy(d time.Duration) bool {
	select { // a change seen while this edge held the lease or tried is not news
	case <-p.vacated:
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.ctx.Done():
		return false
	case <-t.C:
	case <-p.vacated:
	}
	return true
}

// vacate wakes the puller: the camera's lease changed, or a node's
// liveness did.
func (p *puller) vacate() {
	select {
	case p.vacated <- struct{}{}:
	default:
	}
}

// sourceRecord is a camera lease as the watch last showed it.
type sourceRecord struct {
	owner bus.Owner
	rev   uint64
}

// same says whether r and o are the same lease (holder instance and
// epoch; a standby edge added to its list does not make another).
func (r sourceRecord) same(o sourceRecord) bool {
	return r.owner.Node == o.owner.Node && r.owner.Instance == o.owner.Instance && r.owner.Epoch == o.owner.Epoch
}

// sourceRecord returns the camera lease of name as the watch last showed it.
func (e *Edge) sourceRecord(name string) (sourceRecord, bool) {
	e.srcMu.Lock()
	defer e.srcMu.Unlock()
	r, ok := e.sources[name]
	return r, ok
}

// watchSources follows the camera leases: it keeps the last record of
// each (a holder learns it lost its lease) and wakes the puller of a camera
// whose lease changed: released by an edge that stops or drains, taken
// over, or given a standby edge. Until the watch is up, and if it fails,
// pullers look every ~LeaseTTL/2.
func (e *Edge) watchSources() {
	defer e.bgWG.Done()
	for attempt := 0; e.ctx.Err() == nil; attempt++ {
		if attempt > 0 && !sleep.For(e.ctx, time.Second) {
			return
		}
		events, err := e.Registry.WatchSources(e.ctx)
		if err != nil {
			e.log.Debug("watching the camera leases failed; retrying", "err", err)
			continue
		}
		e.srcMu.Lock()
		clear(e.sources) // the watch replays the current leases
		e.srcMu.Unlock()
		for ev := range events {
			e.srcMu.Lock()
			if ev.Owner == nil {
				delete(e.sources, ev.Path)
			} else {
				e.sources[ev.Path] = sourceRecord{owner: *ev.Owner, rev: ev.Rev}
			}
			e.srcMu.Unlock()
			e.pmu.Lock()
			for _, p := range e.pullers {
				if p.src.Name == ev.Path {
					p.vacate()
				}
			}
			e.pmu.Unlock()
		}
	}
}

func (p *puller) release(l *bus.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	if err := p.e.Registry.ReleaseSource(ctx, l); err != nil && !errors.Is(err, bus.ErrLeaseLost) {
		p.log.Debug("camera lease not released; it counts as free once this edge's liveness ends", "err", err)
	}
}

// hold pulls the camera while the lease is this edge's. It returns when
// the puller closes or the camera is no longer wanted (the lease released),
// when the lease watch shows another holder, or when this edge's own
// liveness lapsed (fenced: its lease is dead for everyone, so another
// edge may pull the camera already), after the pull stopped.
func (p *puller) hold(l *bus.Lease) {
	live := p.e.live
	p.setHeld(true)
	p.e.m.sourcesHeld.Inc()
	p.log.Info("camera lease acquired; pulling", "on_demand", p.src.OnDemand, "epoch", l.Owner.Epoch)
	if p.src.OnDemand {
		p.e.m.demandPulls.WithLabelValues(p.src.Name).Inc()
	}

	pullCtx, stopPull := context.WithCancel(p.ctx)
	pullDone := make(chan struct{})
	go func() {
		defer close(pullDone)
		p.pullLoop(pullCtx)
	}()
	defer func() {
		stopPull()
		<-pullDone
		p.setHeld(false)
		p.e.m.sourcesHeld.Dec()
	}()

	mine := sourceRecord{owner: l.Owner}
	ticker := time.NewTicker(max(live.TTL/8, 10*time.Millisecond))
	defer ticker.Stop()
	for {
		select {
		case <-p.ctx.Done():
			stopPull()
			<-pullDone
			p.release(l)
			p.log.Info("camera lease released")
			return
		case <-ticker.C:
		case <-p.vacated:
		}
		if live.Instance() != l.Owner.Instance || !live.Alive() {
			p.log.Warn("this edge's liveness lapsed: camera pull stopped (another edge may hold it now)")
			return
		}
		if rec, ok := p.e.sourceRecord(p.src.Name); ok && !rec.same(mine) && rec.owner.Epoch >= l.Owner.Epoch {
			p.log.Warn("camera lease lost; stopping the pull", "holder", rec.owner.Node)
			return
		}
		if !p.wanted() {
			stopPull()
			<-pullDone
			p.release(l)
			p.log.Info("no viewer asked for the camera; pull stopped and lease released", "close_after", p.src.CloseAfter)
			return
		}
	}
}

func (p *puller) setHeld(v bool) {
	p.mu.Lock()
	p.held = v
	p.mu.Unlock()
}
