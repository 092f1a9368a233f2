package origin

// The claimer's pacing (claimer.go is its event loop): when this origin
// tries a stream, how many claims it has under way, and the ranking among
// the live origins that lets one of them take a dead node's stream at once.

import (
	"context"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/streamgrid/streamgrid/bus"
)

// Claim pacing: an origin waits claimStep per stream it holds (or has queued
// to claim) before trying a stream, plus a tie-break spread derived from its
// name and the path, so the least loaded origin usually wins a stream and
// origins with equal load split a batch instead of racing for every stream.
// An origin that sees no other live origin (the all-in-one) has nobody to
// leave a stream to and claims at once: the pacing was most of a new
// stream's time to its claim there (20 ms per stream held).
const (
	claimStep      = 20 * time.Millisecond
	claimTieSpread = 50 * time.Millisecond
	// maxClaimsInFlight bounds the claims (their registry calls: the owner
	// record, the playlist state) an origin has under way at once; the
	// others wait their turn in the queue. A storm (every stream of a
	// cluster that restarts, or of several dead nodes) then reaches the bus
	// as a steady stream of operations that each complete within their
	// timeout, instead of all at once, where they time out together and are
	// retried together.
	maxClaimsInFlight = 32
	// clusterClaimsInFlight bounds the claims the whole cluster has under
	// way at once: each origin takes its share of it (claimSlots), at
	// least minClaimsInFlight and at most maxClaimsInFlight. With a
	// hundred origins a ramp of new streams (or the take-over of several
	// dead origins) then reaches the bus as a few hundred operations at a
	// time, not 32 per origin.
	clusterClaimsInFlight = 320
	minClaimsInFlight     = 4
)

// rankedPeer is a live origin and its name's hash (bus.HashName).
type rankedPeer struct {
	name string
	hash uint64
}

// peersFresh is how long the claimer reuses its list of live origins; a
// node found dead refreshes it at once.
const peersFresh = 50 * time.Millisecond

// first says whether this origin ranks first for path among the live
// origins (bus.OwnerOrder): the one that takes a dead node's stream over
// at once.
func (c *claimer) first(path string) bool { return c.rank(path) == 0 }

// rank is how many live origins come before this one for path
// (bus.OwnerOrder): 0 for the first.
func (c *claimer) rank(path string) int {
	c.refreshPeers()
	return bus.OwnerPlace(c.selfHash, c.peerHashes, path)
}

// firstExcept is first among the live origins other than the node named
// except: the origin that would take path over at once should except die
// (the warm standby, standby.go).
func (c *claimer) firstExcept(path, except string) bool {
	c.refreshPeers()
	c.scratch = c.scratch[:0]
	for _, p := range c.peers {
		if p.name != except {
			c.scratch = append(c.scratch, p.hash)
		}
	}
	return bus.OwnerPlace(c.selfHash, c.scratch, path) == 0
}

// refreshPeers reads the live origins other than this one again when the
// list is older than peersFresh.
func (c *claimer) refreshPeers() {
	if now := time.Now(); now.Sub(c.peersAt) > peersFresh {
		if c.selfHash == 0 {
			c.selfHash = bus.HashName(c.o.Node)
		}
		names := c.o.live.NodesWith(bus.RoleOrigin)
		c.peers, c.peerHashes = c.peers[:0], c.peerHashes[:0]
		for _, n := range names {
			if n != c.o.Node {
				h := bus.HashName(n)
				c.peers = append(c.peers, rankedPeer{name: n, hash: h})
				c.peerHashes = append(c.peerHashes, h)
			}
		}
		c.peersAt = now
	}
}

// claimSlots is how many claims this origin may have under way: its share
// of clusterClaimsInFlight among the live origins.
func (c *claimer) claimSlots() int {
	c.refreshPeers()
	return min(maxClaimsInFlight, max(minClaimsInFlight, clusterClaimsInFlight/(len(c.peers)+1)))
}

// alone reports whether no other origin is alive, as of the list first
// read (call first or rank before it).
func (c *claimer) alone() bool { return len(c.peers) == 0 }

func (c *claimer) schedule(path string) {
	if c.o.draining.Load() || !c.inWindow(path) {
		if c.tracing() {
			c.o.Log.Debug("claim not scheduled", "stream", path, "draining", c.o.draining.Load())
		}
		return
	}
	// The origin the path ranks first among the live ones tries first (a
	// dead node's stream: at once); the others in their rank's order, a
	// node TTL apart (the second a TTL later, the third two, ...), in case
	// the ones before are full, loaded or dead too. So a batch of streams
	// costs about one claim each, not one per origin, and a dead node's
	// streams spread; and when the bus is slow to show a claim (a claim
	// and its watch taking longer than a TTL), the next origin joins it,
	// not every origin at once: a pile-up of conflicting claims, each a
	// registry operation, was what held a slow bus up for good (a ramp of
	// 10 000 streams on 100 origins, docs/cluster.md). A claim put off is
	// brought forward when the origins before it die (it ranks higher
	// now).
	_, takeover := c.owner[path]
	r := c.rank(path)
	delay := time.Duration(c.o.load()+len(c.pending))*claimStep + tieBreak(c.o.Node, path)
	delay = min(delay, c.o.Registry.LeaseTTL)
	switch {
	case r == 0 && (takeover || c.alone()):
		delay = 0
	case r > 0:
		delay += time.Duration(r) * c.o.live.TTL
	}
	// A peer better suited to the stream (placement.go) gets a head start of
	// a lease TTL: longer than its own claim delay, so it normally wins;
	// when it cannot take the stream after all, this origin still does. A
	// claim brought forward (advance) keeps it.
	peer, plan := c.o.placementPeer(path)
	if peer != "" {
		delay += c.o.Registry.LeaseTTL
	}
	if at, ok := c.pending[path]; ok {
		t := time.Now().Add(delay)
		if t.Before(at) {
			c.setPending(path, t)
		}
		if c.tracing() {
			c.o.Log.Debug("claim scheduled again", "stream", path, "rank", r, "takeover", takeover,
				"delay", delay, "was", time.Until(at).Round(time.Millisecond), "peer", peer)
		}
		return
	}
	if c.tracing() {
		c.o.Log.Debug("claim scheduled", "stream", path, "rank", r, "takeover", takeover, "delay", delay, "peer", peer)
	}
	if peer != "" {
		c.o.Log.Debug("claim put off: a better-suited origin has room", "stream", path, "peer", peer)
		c.o.countDeferred(plan)
	}
	c.setPending(path, time.Now().Add(delay))
}

// setPending (re)schedules path's claim at t.
func (c *claimer) setPending(path string, t time.Time) {
	c.pending[path] = t
	if c.next.IsZero() || t.Before(c.next) {
		c.next = t
		c.rearm = true
	}
}

// arm points the timer at the earliest pending claim when that moved
// earlier (a claim that is no longer pending leaves the timer early, which
// claimDue then finds nothing due for): not a pass over every pending
// claim per event, which a burst of thousands of new streams made
// quadratic.
func (c *claimer) arm() {
	if !c.rearm {
		return
	}
	c.rearm = false
	if !c.timer.Stop() {
		select {
		case <-c.timer.C:
		default:
		}
	}
	if !c.next.IsZero() {
		c.timer.Reset(max(time.Until(c.next), 0))
	}
}

// claimDue starts the claims that are due, as many as claimSlots
// allows (the rest when claims under way are done), and points the timer
// at the next one.
func (c *claimer) claimDue() {
	now := time.Now()
	slots := c.claimSlots()
	var next time.Time
	for path, t := range c.pending {
		if t.After(now) || c.inFlight >= slots {
			if next.IsZero() || t.Before(next) {
				next = t
			}
			continue
		}
		delete(c.pending, path)
		c.claim(path)
	}
	for _, t := range c.pending { // claim may have put some back
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	blocked := c.inFlight >= slots && !next.IsZero() && !next.After(now)
	if blocked && !c.blocked {
		if c.tracing() {
			c.o.Log.Debug("claims wait for a slot", "in_flight", c.inFlight, "pending", len(c.pending))
		}
	}
	c.blocked = blocked
	if c.blocked {
		next = time.Time{} // due now: done wakes the loop when a slot frees
	}
	c.next, c.rearm = next, true
}

// claim starts a stream goroutine that tries to take the lease of path.
func (c *claimer) claim(path string) {
	info := c.live[path]
	if info == nil || !c.o.live.HoldsStream(info) || c.o.draining.Load() || !c.inWindow(path) {
		if c.tracing() {
			c.o.Log.Debug("claim dropped", "stream", path, "record", info != nil, "in_window", c.inWindow(path))
		}
		return
	}
	if !c.o.live.Alive() {
		if c.tracing() {
			c.o.Log.Debug("claim put off: this node is not alive", "stream", path)
		}
		c.pending[path] = time.Now().Add(c.o.live.TTL / 5) // not before this node is alive again
		return
	}
	if c.held(path) {
		if c.tracing() {
			c.o.Log.Debug("claim dropped: owned", "stream", path)
		}
		return
	}
	s := newStream(c.o, path, info)
	s.plan = c.o.planFor(path)
	if rec, ok := c.owner[path]; ok {
		s.takeover = &rec
	} else if r, ok := c.released[path]; ok && time.Since(r.at) < FailoverWindow {
		s.handover = r.node
	}
	if !c.o.addStream(s) {
		if c.tracing() {
			c.o.Log.Debug("claim refused: at capacity, or already ours", "stream", path)
		}
		return
	}
	if c.tracing() {
		c.o.Log.Debug("claim started", "stream", path, "takeover", s.takeover != nil, "in_flight", c.inFlight)
	}
	c.inFlight++
	s.claimDone = c.claimDone
	go s.run()
}

// claimDone is called by a stream whose claim is over, won or not (on its
// goroutine): its slot frees.
func (c *claimer) claimDone() {
	c.done <- struct{}{} // never blocks: one send per slot taken
}

// tieBreak spreads claim attempts of equally loaded origins deterministically.
func tieBreak(node, path string) time.Duration {
	h := fnv.New32a()
	h.Write([]byte(node))
	h.Write([]byte{0})
	h.Write([]byte(path))
	return time.Duration(h.Sum32()%uint32(claimTieSpread/time.Millisecond)) * time.Millisecond
}

// tracing says whether the claimer's debug trace is on: what it did with a
// stream and when (the control-plane simulation collects it for the
// orphans re-owned last). The callers build their arguments only then.
func (c *claimer) tracing() bool {
	return c.o.Log.Enabled(context.Background(), slog.LevelDebug)
}
