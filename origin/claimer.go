package origin

import (
	"errors"
	"hash/fnv"
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
	claimStep       = 20 * time.Millisecond
	claimTieSpread  = 50 * time.Millisecond
	rewatchInterval = time.Second
)

// claimer is the origin's single event loop over the registry watches and
// the nodes' liveness: it tracks which streams are live and who owns them,
// and schedules claims. An owner record whose node instance is dead counts
// as no owner: its stream is taken over (batch: every survivor takes the
// dead node's streams that rank it first at once, see schedule). A stream
// record whose edge instance is dead counts as no stream: it is not
// claimed, and the live origin its path ranks first removes it (scan).
// Its maps are owned by its goroutine.
type claimer struct {
	o       *Origin
	streams <-chan bus.StreamEvent
	owners  <-chan bus.OwnerEvent

	live    map[string]*bus.StreamInfo
	liveRev map[string]uint64 // the stream records' revisions
	owner   map[string]ownerRecord
	pending map[string]time.Time // path → when to try claiming it
	timer   *time.Timer

	// peers is the live origins (bus.Liveness.Nodes) as of peersAt, for
	// the ranking: read once per peersFresh, not once per path.
	peers   []string
	peersAt time.Time
}

// peersFresh is how long the claimer reuses its list of live origins; a
// node found dead refreshes it at once.
const peersFresh = 50 * time.Millisecond

// ownerRecord is an owner record as the watch last showed it.
type ownerRecord struct {
	owner bus.Owner
	rev   uint64
}

func (c *claimer) run() {
	defer c.o.wg.Done()
	c.live = map[string]*bus.StreamInfo{}
	c.liveRev = map[string]uint64{}
	c.owner = map[string]ownerRecord{}
	c.pending = map[string]time.Time{}
	c.timer = time.NewTimer(time.Hour)
	defer c.timer.Stop()
	resync := time.NewTicker(c.o.Registry.LeaseTTL)
	defer resync.Stop()
	var rewatch <-chan time.Time

	for {
		select {
		case <-c.o.ctx.Done():
			return
		case ev, ok := <-c.streams:
			if !watching(&c.streams, ok, &rewatch) {
				continue
			}
			c.onStream(ev)
		case ev, ok := <-c.owners:
			if !watching(&c.owners, ok, &rewatch) {
				continue
			}
			c.onOwner(ev)
		case <-rewatch:
			rewatch = c.rewatch()
		case <-c.timer.C:
			c.claimDue()
		case <-c.o.rescan:
			c.scan()
		case <-resync.C:
			c.scan()
		case <-c.o.liveChanged:
			c.peersAt = time.Time{}
			c.scan() // a node died (or restarted): its records hold no more
		}
		c.arm()
	}
}

// watching is told whether a receive from the watch *ch got an event (ok).
// When the watch ended instead, it drops the channel and schedules the
// rewatch in rewatchInterval.
func watching[T any](ch *<-chan T, ok bool, rewatch *<-chan time.Time) bool {
	if !ok {
		*ch = nil
		*rewatch = time.After(rewatchInterval)
	}
	return ok
}

// rewatch re-opens a watch that ended (the bus went away for a while).
// It returns a retry timer when a watch could still not be opened.
func (c *claimer) rewatch() <-chan time.Time {
	if c.streams == nil {
		ch, err := c.o.Registry.WatchStreams(c.o.ctx)
		if err != nil {
			c.o.Log.Warn("stream watch failed, retrying", "err", err)
			return time.After(rewatchInterval)
		}
		c.streams = ch
		c.live = map[string]*bus.StreamInfo{} // the watch replays the current streams
		c.liveRev = map[string]uint64{}
	}
	if c.owners == nil {
		ch, err := c.o.Registry.WatchOwners(c.o.ctx)
		if err != nil {
			c.o.Log.Warn("owner watch failed, retrying", "err", err)
			return time.After(rewatchInterval)
		}
		c.owners = ch
		c.owner = map[string]ownerRecord{}
	}
	return nil
}

func (c *claimer) onStream(ev bus.StreamEvent) {
	s := c.o.lookup(ev.Path)
	if ev.Info == nil {
		c.o.clearRefused(ev.Path)
		delete(c.live, ev.Path)
		delete(c.liveRev, ev.Path)
		delete(c.pending, ev.Path)
		if s != nil {
			s.setEnded(true)
		}
		return
	}
	c.live[ev.Path] = ev.Info
	c.liveRev[ev.Path] = ev.Rev
	if s != nil {
		s.setInfo(ev.Info)
		s.setEnded(false)
		return
	}
	if !c.held(ev.Path) && c.edgeAlive(ev.Path) {
		c.schedule(ev.Path)
	}
}

// edgeAlive says whether path's stream record is held by a live edge
// instance (false when there is no record).
func (c *claimer) edgeAlive(path string) bool {
	info := c.live[path]
	return info != nil && c.o.live.HoldsStream(info)
}

// held says whether path's owner record is held by a live node instance
// (a record of this origin counts only while it has the stream).
func (c *claimer) held(path string) bool {
	rec, ok := c.owner[path]
	if !ok {
		return false
	}
	if rec.owner.Node == c.o.Node && rec.owner.Instance == c.o.live.Instance() {
		return c.o.lookup(path) != nil || !c.o.live.Alive()
	}
	return c.o.live.Holds(rec.owner)
}

func (c *claimer) onOwner(ev bus.OwnerEvent) {
	s := c.o.lookup(ev.Path)
	if s != nil {
		s.observeOwner(ev.Owner)
	}
	if ev.Owner == nil {
		delete(c.owner, ev.Path)
		if s == nil && c.edgeAlive(ev.Path) {
			c.schedule(ev.Path) // released: claim it
		}
		return
	}
	c.owner[ev.Path] = ownerRecord{owner: *ev.Owner, rev: ev.Rev}
	c.o.clearRefused(ev.Path)
	if !c.held(ev.Path) {
		if c.edgeAlive(ev.Path) && s == nil {
			c.schedule(ev.Path) // written by a node that died since
		}
		return
	}
	if ev.Owner.Node != c.o.Node {
		delete(c.pending, ev.Path)
	}
}

// scan schedules every live stream without a live owner, and removes the
// records of dead nodes: owner records of streams that ended, and stream
// records of dead edges.
func (c *claimer) scan() {
	var deadStreams map[string]uint64
	for path, info := range c.live {
		if !c.o.live.HoldsStream(info) {
			// An edge that drew a new instance (a lapse, or its bus
			// node died under its connection) writes its records again
			// within a heartbeat: removing them meanwhile would end
			// streams whose publishers are still connected.
			if c.first(path) && !c.o.live.NodeAlive(info.Edge) {
				if deadStreams == nil {
					deadStreams = map[string]uint64{}
				}
				deadStreams[path] = c.liveRev[path]
			}
			continue
		}
		if !c.held(path) && c.o.lookup(path) == nil {
			c.schedule(path)
		}
	}
	var stale map[string]ownerRecord
	for path, rec := range c.owner {
		if !c.edgeAlive(path) && !c.held(path) && c.o.lookup(path) == nil && c.first(path) {
			if stale == nil {
				stale = map[string]ownerRecord{}
			}
			stale[path] = rec
		}
	}
	if stale != nil || deadStreams != nil {
		c.o.wg.Add(1)
		go c.drop(stale, deadStreams)
	}
}

// drop removes dead nodes' records (one survivor does, the one the path
// ranks first), off the event loop: owner records of ended streams, and
// stream records of dead edges (compare-and-set on the revision the watch
// showed, so a record a live edge wrote since stays).
func (c *claimer) drop(stale map[string]ownerRecord, deadStreams map[string]uint64) {
	defer c.o.wg.Done()
	for path, rev := range deadStreams {
		if c.o.ctx.Err() != nil {
			return
		}
		ctx, cancel := kvContext()
		err := c.o.Registry.ReleaseStream(ctx, path, rev)
		cancel()
		if err != nil && !errors.Is(err, bus.ErrLeaseLost) {
			c.o.Log.Debug("removing a dead edge's stream record failed", "stream", path, "err", err)
		}
	}
	for path, rec := range stale {
		if c.o.ctx.Err() != nil {
			return
		}
		ctx, cancel := kvContext()
		err := c.o.Registry.DropOwner(ctx, path, rec.rev)
		cancel()
		if err != nil && !errors.Is(err, bus.ErrLeaseLost) {
			c.o.Log.Debug("removing a dead origin's owner record failed", "stream", path, "err", err)
		}
	}
}

// first says whether this origin ranks first for path among the live
// origins (rendezvous hashing): the one that takes a dead node's stream
// over at once.
func (c *claimer) first(path string) bool {
	if now := time.Now(); now.Sub(c.peersAt) > peersFresh {
		c.peers, c.peersAt = c.o.live.NodesWith(bus.RoleOrigin), now
	}
	mine := bus.Rank(c.o.Node, path)
	for _, n := range c.peers {
		if n != c.o.Node && bus.Rank(n, path) > mine {
			return false
		}
	}
	return true
}

// alone reports whether no other origin is alive, as of the list first
// read (call first before it).
func (c *claimer) alone() bool {
	for _, n := range c.peers {
		if n != c.o.Node {
			return false
		}
	}
	return true
}

func (c *claimer) schedule(path string) {
	if c.o.draining.Load() {
		return
	}
	// The origin the path ranks first among the live ones tries first (a
	// dead node's stream: at once); the others a node TTL later, in case it
	// is full, loaded or dead too. So a batch of streams costs about one
	// claim each, not one per origin, and a dead node's streams spread.
	// A claim put off while the first-ranked origin seemed alive is brought
	// forward once this one ranks first.
	_, takeover := c.owner[path]
	if _, ok := c.pending[path]; ok {
		if takeover && c.first(path) {
			c.pending[path] = time.Now()
		}
		return
	}
	first := c.first(path)
	delay := time.Duration(c.o.load()+len(c.pending))*claimStep + tieBreak(c.o.Node, path)
	delay = min(delay, c.o.Registry.LeaseTTL)
	switch {
	case first && (takeover || c.alone()):
		delay = 0
	case !first:
		delay += c.o.live.TTL
	}
	// A peer better suited to the stream (placement.go) gets a head start of
	// a lease TTL: longer than its own claim delay, so it normally wins;
	// when it cannot take the stream after all, this origin still does.
	if peer, wait := c.o.placementWait(path); wait {
		c.o.Log.Debug("claim put off: a better-suited origin has room", "stream", path, "peer", peer)
		delay += c.o.Registry.LeaseTTL
	}
	c.pending[path] = time.Now().Add(delay)
}

// arm points the timer at the earliest pending claim.
func (c *claimer) arm() {
	var next time.Time
	for _, t := range c.pending {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if !c.timer.Stop() {
		select {
		case <-c.timer.C:
		default:
		}
	}
	if !next.IsZero() {
		c.timer.Reset(max(time.Until(next), 0))
	}
}

func (c *claimer) claimDue() {
	now := time.Now()
	for path, t := range c.pending {
		if t.After(now) {
			continue
		}
		delete(c.pending, path)
		c.claim(path)
	}
}

// claim starts a stream goroutine that tries to take the lease of path.
func (c *claimer) claim(path string) {
	info := c.live[path]
	if info == nil || !c.o.live.HoldsStream(info) || c.o.draining.Load() {
		return
	}
	if !c.o.live.Alive() {
		c.pending[path] = time.Now().Add(c.o.live.TTL / 5) // not before this node is alive again
		return
	}
	if c.held(path) {
		return
	}
	s := newStream(c.o, path, info)
	s.plan = c.o.planFor(path)
	if rec, ok := c.owner[path]; ok {
		s.takeover = &rec
	}
	if !c.o.addStream(s) {
		return // at capacity, or already ours
	}
	go s.run()
}

// tieBreak spreads claim attempts of equally loaded origins deterministically.
func tieBreak(node, path string) time.Duration {
	h := fnv.New32a()
	h.Write([]byte(node))
	h.Write([]byte{0})
	h.Write([]byte(path))
	return time.Duration(h.Sum32()%uint32(claimTieSpread/time.Millisecond)) * time.Millisecond
}
