package origin

import (
	"hash/fnv"
	"time"

	"github.com/streamgrid/streamgrid/bus"
)

// Claim pacing: an origin waits claimStep per stream it holds (or has queued
// to claim) before trying a stream, plus a tie-break spread derived from its
// name and the path, so the least loaded origin usually wins a stream and
// origins with equal load split a batch instead of racing for every stream.
const (
	claimStep       = 20 * time.Millisecond
	claimTieSpread  = 50 * time.Millisecond
	rewatchInterval = time.Second
)

// claimer is the origin's single event loop over the registry watches: it
// tracks which streams are live and who owns them, and schedules claims.
// Its maps are owned by its goroutine.
type claimer struct {
	o       *Origin
	streams <-chan bus.StreamEvent
	owners  <-chan bus.OwnerEvent

	live    map[string]*bus.StreamInfo
	owner   map[string]bus.Owner
	pending map[string]time.Time // path → when to try claiming it
	timer   *time.Timer
}

func (c *claimer) run() {
	defer c.o.wg.Done()
	c.live = map[string]*bus.StreamInfo{}
	c.owner = map[string]bus.Owner{}
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
			if !ok {
				c.streams = nil
				rewatch = time.After(rewatchInterval)
				continue
			}
			c.onStream(ev)
		case ev, ok := <-c.owners:
			if !ok {
				c.owners = nil
				rewatch = time.After(rewatchInterval)
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
		}
		c.arm()
	}
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
	}
	if c.owners == nil {
		ch, err := c.o.Registry.WatchOwners(c.o.ctx)
		if err != nil {
			c.o.Log.Warn("owner watch failed, retrying", "err", err)
			return time.After(rewatchInterval)
		}
		c.owners = ch
		c.owner = map[string]bus.Owner{}
	}
	return nil
}

func (c *claimer) onStream(ev bus.StreamEvent) {
	s := c.o.lookup(ev.Path)
	if ev.Info == nil {
		c.o.clearRefused(ev.Path)
		delete(c.live, ev.Path)
		delete(c.pending, ev.Path)
		if s != nil {
			s.setEnded(true)
		}
		return
	}
	c.live[ev.Path] = ev.Info
	if s != nil {
		s.setInfo(ev.Info)
		s.setEnded(false)
		return
	}
	if _, owned := c.owner[ev.Path]; !owned {
		c.schedule(ev.Path)
	}
}

func (c *claimer) onOwner(ev bus.OwnerEvent) {
	s := c.o.lookup(ev.Path)
	if ev.Owner == nil {
		delete(c.owner, ev.Path)
		if s == nil && c.live[ev.Path] != nil {
			c.schedule(ev.Path) // failover: the owner is gone
		}
		return
	}
	c.owner[ev.Path] = *ev.Owner
	c.o.clearRefused(ev.Path)
	if ev.Owner.Node != c.o.Node {
		delete(c.pending, ev.Path)
	}
	if s != nil {
		s.observeOwner(*ev.Owner)
	}
}

// scan schedules every live stream that nobody owns.
func (c *claimer) scan() {
	for path := range c.live {
		if _, owned := c.owner[path]; owned {
			continue
		}
		if c.o.lookup(path) == nil {
			c.schedule(path)
		}
	}
}

func (c *claimer) schedule(path string) {
	if c.o.draining.Load() {
		return
	}
	if _, ok := c.pending[path]; ok {
		return
	}
	delay := time.Duration(c.o.load()+len(c.pending))*claimStep + tieBreak(c.o.Node, path)
	delay = min(delay, c.o.Registry.LeaseTTL)
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
	if info == nil || c.o.draining.Load() {
		return
	}
	if _, owned := c.owner[path]; owned {
		return
	}
	s := newStream(c.o, path, info)
	s.plan = c.o.planFor(path)
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
