package origin

import (
	"context"
	"errors"
	"hash/fnv"
	"time"

	"github.com/streamgrid/streamgrid/bus"
)

const (
	// rewatchInterval is the pause before re-opening a watch that ended.
	rewatchInterval = time.Second
	// minScanGap is the least time between two scans asked for by
	// streams ending (rescan): a burst of endings costs one scan.
	minScanGap = 200 * time.Millisecond
	// fullScanEvery is how many lease TTLs pass between two scans of every
	// record; the scans in between look at the open paths only (scan).
	fullScanEvery = 10
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
	// released is the paths whose owner record another origin removed,
	// within FailoverWindow (a claim of one is a hand-over: OnFailover).
	released map[string]release
	pending  map[string]time.Time // path → when to try claiming it
	next     time.Time            // the timer's: no pending claim is due before
	rearm    bool                 // next moved: arm resets the timer
	timer    *time.Timer

	// byOwner and byEdge index the owner and stream records by the node
	// instance they name, so that a change of liveness (a node dead, an
	// instance redrawn) looks at the records of the instances whose
	// liveness changed, not at every record: with N streams a full scan is
	// O(N) per change, and a cluster where nodes come and go often paid it
	// on every origin each time.
	byOwner, byEdge map[instanceKey]*instanceRecords
	// cached: every instance's holds was just read (streamHolds).
	cached bool
	// open is the paths that may need something of this origin: every
	// path an event touched since, or that the last look found without a
	// live owner, or held by this origin. A path another live origin holds
	// leaves it; a change of its owner's or its edge's liveness brings it
	// back (liveChanged), as does any event of its records.
	open map[string]struct{}

	// inFlight counts the claims under way (maxClaimsInFlight); each that
	// is done sends on done. blocked: claims are due that wait for a slot.
	inFlight int
	done     chan struct{}
	blocked  bool

	// lastScan is when the last full scan ran; scanLater fires a full scan
	// put off by minScanGap.
	lastScan  time.Time
	scanLater <-chan time.Time

	// peers is the live origins other than this one (bus.Liveness.Nodes)
	// as of peersAt, for the ranking, with their names' hashes: read once
	// per peersFresh, not once per path. selfHash is this origin's.
	peers    []rankedPeer
	peersAt  time.Time
	selfHash uint64
	// peerHashes is peers' hashes alone (bus.OwnerPlace); scratch a
	// buffer for firstExcept's.
	peerHashes, scratch []uint64
	// peersSig is the other live origins' names as standbysMoved last saw
	// them (their hashes' sum and count): it looks again at every standby
	// only when they changed.
	peersSig [2]uint64

	// window is the owner partitions this origin follows (nil: every
	// one), and windowSig the live origins it was computed for
	// (ownerwindow.go).
	window    []bool
	windowSig [2]uint64
	// narrowLater fires the narrow a change of the live origins asked for;
	// partOf is the owner partition of each live stream's path.
	narrowLater <-chan time.Time
	partOf      map[string]uint16
}

// instanceKey names a node instance; instanceRecords are the paths of the
// records that name it, and whether it held as last looked at.
type instanceKey struct{ node, instance string }

type instanceRecords struct {
	paths map[string]struct{}
	holds bool
}

// ownerRecord is an owner record as the watch last showed it.
type ownerRecord struct {
	owner bus.Owner
	rev   uint64
}

func (c *claimer) run() {
	defer c.o.wg.Done()
	c.init()
	defer c.timer.Stop()
	defer c.o.standby.closeAll()
	resync := time.NewTicker(c.o.Registry.LeaseTTL)
	defer resync.Stop()
	// The full scans of the origins fall on different resyncs (a phase
	// from the node's name): origins started together (a cluster, or the
	// hundred of a simulation in one process) scan every record at
	// different moments, not all at once.
	resyncs := fullScanPhase(c.o.Node)
	var rewatch <-chan time.Time
	c.narrow()

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
			c.next = time.Time{}
			c.claimDue()
		case <-c.done:
			c.inFlight--
			if c.blocked {
				c.claimDue()
			}
		case <-c.o.rescan:
			if wait := minScanGap - time.Since(c.lastScan); wait > 0 {
				if c.scanLater == nil {
					c.scanLater = time.After(wait)
				}
				continue
			}
			c.scan(false)
		case <-c.scanLater:
			c.scanLater = nil
			c.scan(false)
		case <-resync.C:
			c.narrow() // a node that joined since: this origin may rank lower
			resyncs++
			c.scan(resyncs%fullScanEvery == 0)
		case <-c.o.liveChanged:
			c.peersAt = time.Time{}
			c.liveChanged("change") // a node died (or restarted): its records hold no more
			c.advance()             // claims put off for origins that ranked above and died
			c.claimDue()            // its streams' take-overs start before any standby moves
			c.standbysMoved()
			if c.narrowLater == nil {
				// The partitions this origin follows, once a burst of
				// changes (a kill of several origins) has settled: the
				// take-overs need none of it (the takers follow already).
				c.narrowLater = time.After(narrowDelay)
			}
		case <-c.narrowLater:
			c.narrowLater = nil
			c.narrow()
		}
		c.arm()
	}
}

// init makes the claimer's maps, channel and timer.
func (c *claimer) init() {
	c.live = map[string]*bus.StreamInfo{}
	c.liveRev = map[string]uint64{}
	c.owner = map[string]ownerRecord{}
	c.released = map[string]release{}
	c.partOf = map[string]uint16{}
	c.pending = map[string]time.Time{}
	c.byOwner = map[instanceKey]*instanceRecords{}
	c.byEdge = map[instanceKey]*instanceRecords{}
	c.open = map[string]struct{}{}
	c.done = make(chan struct{}, maxClaimsInFlight)
	c.timer = time.NewTimer(time.Hour)
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
		if c.streams = openWatch(c, "stream", c.o.Registry.WatchStreams); c.streams == nil {
			return time.After(rewatchInterval)
		}
		c.live = map[string]*bus.StreamInfo{} // the watch replays the current streams
		c.partOf = map[string]uint16{}
		c.liveRev = map[string]uint64{}
		c.byEdge = map[instanceKey]*instanceRecords{}
	}
	if c.owners == nil {
		f, err := c.o.Registry.FollowOwners(c.o.ctx)
		if err != nil {
			c.o.Log.Warn("owner watch failed, retrying", "err", err)
			return time.After(rewatchInterval)
		}
		c.o.follow.Store(f)
		c.owners = f.Events()
		c.owner = map[string]ownerRecord{}
		c.byOwner = map[instanceKey]*instanceRecords{}
		c.window = nil // every partition, until narrowed
		c.narrow()
	}
	return nil
}

// openWatch opens a registry watch (what names it in the log); nil when it
// could not be opened.
func openWatch[T any](c *claimer, what string, open func(context.Context) (<-chan T, error)) <-chan T {
	ch, err := open(c.o.ctx)
	if err != nil {
		c.o.Log.Warn(what+" watch failed, retrying", "err", err)
		return nil
	}
	return ch
}

func (c *claimer) onStream(ev bus.StreamEvent) {
	s := c.o.lookup(ev.Path)
	if c.inWindow(ev.Path) || s != nil {
		c.open[ev.Path] = struct{}{}
	}
	if old := c.live[ev.Path]; old != nil {
		c.unindex(c.byEdge, instanceKey{old.Edge, old.Instance}, ev.Path)
	}
	if ev.Info == nil {
		c.o.clearRefused(ev.Path)
		delete(c.partOf, ev.Path)
		delete(c.live, ev.Path)
		delete(c.liveRev, ev.Path)
		delete(c.pending, ev.Path)
		if s != nil {
			s.setEnded(true)
		}
		c.standbyCheck(ev.Path)
		return
	}
	if c.live[ev.Path] == nil {
		c.partOf[ev.Path] = uint16(bus.OwnerPart(ev.Path))
	}
	c.live[ev.Path] = ev.Info
	c.liveRev[ev.Path] = ev.Rev
	c.index(c.byEdge, c.edgeKeyHolds, instanceKey{ev.Info.Edge, ev.Info.Instance}, ev.Path)
	c.standbyCheck(ev.Path)
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
	return info != nil && c.streamHolds(info)
}

// streamHolds is Liveness.HoldsStream, read from the index while a scan
// has just looked at every instance (cached): a full scan then asks the
// liveness once per node instance, not once per record.
func (c *claimer) streamHolds(info *bus.StreamInfo) bool {
	if c.cached {
		if r := c.byEdge[instanceKey{info.Edge, info.Instance}]; r != nil {
			return r.holds
		}
	}
	return c.o.live.HoldsStream(info)
}

// ownerHolds is Liveness.Holds, read from the index as streamHolds is.
func (c *claimer) ownerHolds(o bus.Owner) bool {
	if c.cached {
		if r := c.byOwner[instanceKey{o.Node, o.Instance}]; r != nil {
			return r.holds
		}
	}
	return c.o.live.Holds(o)
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
	return c.ownerHolds(rec.owner)
}

func (c *claimer) onOwner(ev bus.OwnerEvent) {
	s := c.o.lookup(ev.Path)
	if !c.inWindow(ev.Path) && s == nil {
		return // sent before its partition was left
	}
	c.open[ev.Path] = struct{}{}
	if s != nil {
		s.observeOwner(ev.Owner)
	}
	if old, ok := c.owner[ev.Path]; ok {
		c.unindex(c.byOwner, instanceKey{old.owner.Node, old.owner.Instance}, ev.Path)
	}
	if ev.Owner == nil {
		if old, ok := c.owner[ev.Path]; ok && old.owner.Node != c.o.Node {
			c.released[ev.Path] = release{node: old.owner.Node, at: time.Now()}
		}
		delete(c.owner, ev.Path)
		c.standbyCheck(ev.Path)
		if s == nil && c.edgeAlive(ev.Path) {
			c.schedule(ev.Path) // released: claim it
		}
		return
	}
	c.owner[ev.Path] = ownerRecord{owner: *ev.Owner, rev: ev.Rev}
	c.index(c.byOwner, c.ownerKeyHolds, instanceKey{ev.Owner.Node, ev.Owner.Instance}, ev.Path)
	c.o.clearRefused(ev.Path)
	c.standbyCheck(ev.Path)
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
// records of dead edges. It looks at the open paths only, or with full at
// every record: the safety net, every fullScanEvery lease TTLs. (A scan of
// every record every lease TTL, on each of a hundred origins in one
// simulation process, was a third of the simulator's CPU at 10 000
// streams.) A change of liveness looks at the records it concerns only
// (liveChanged).
func (c *claimer) scan(full bool) {
	c.lastScan = time.Now()
	for path, r := range c.released {
		if c.lastScan.Sub(r.at) >= FailoverWindow {
			delete(c.released, path)
		}
	}
	// Every instance's liveness as of now, and the records of those whose
	// liveness changed looked at, as on a change of liveness: a scan that
	// only noted the change (open paths only) would leave a dead node's
	// streams to the next full scan, should it run before the change's
	// own event (liveChanged then finds nothing changed).
	c.liveChanged("scan")
	c.cached = true
	var d drops
	if full {
		for path := range c.live {
			c.check(path, &d)
		}
		for path := range c.owner {
			if c.live[path] == nil {
				c.check(path, &d)
			}
		}
	} else {
		for path := range c.open {
			c.check(path, &d)
		}
	}
	for _, path := range c.o.standby.paths() {
		c.standbyCheck(path)
	}
	c.cached = false
	c.startDrop(d)
}

// liveChanged looks again at the records that name a node instance whose
// liveness changed since it last looked: a dead node's streams are
// scheduled for take-over (at once by the origin each ranks first), its
// stale records removed. why says what asked ("change": the liveness's
// own event; "scan": a scan, which may come first).
func (c *claimer) liveChanged(why string) {
	var paths []string
	for _, idx := range []struct {
		m     map[instanceKey]*instanceRecords
		holds func(instanceKey) bool
	}{{c.byOwner, c.ownerKeyHolds}, {c.byEdge, c.edgeKeyHolds}} {
		for k, r := range idx.m {
			if h := idx.holds(k); h != r.holds {
				r.holds = h
				for path := range r.paths {
					paths = append(paths, path)
				}
			}
		}
	}
	if c.tracing() && (len(paths) > 0 || why == "change") {
		c.refreshPeers()
		c.o.Log.Debug("liveness looked at", "on", why, "records", len(paths), "origins", len(c.peers)+1)
	}
	var d drops
	c.cached = true // every instance was just looked at
	for _, path := range paths {
		c.check(path, &d)
	}
	c.cached = false
	c.startDrop(d)
}

// advance schedules the pending claims again after a change of the live
// origins: a claim put off because origins ranking above this one were
// alive comes forward when they died (schedule only moves a claim
// earlier). Without it, a dead origin's stream that ranked a second dead
// origin above its taker waited a node TTL per such rank, although both
// deaths were known (the change only looks again at the second one's
// records).
func (c *claimer) advance() {
	for path := range c.pending {
		c.schedule(path)
	}
}

// check is scan for one path; it keeps the path open unless another live
// origin holds it, or nothing is left of it.
func (c *claimer) check(path string, d *drops) {
	if c.settle(path, d) {
		delete(c.open, path)
	} else {
		c.open[path] = struct{}{}
	}
}

func (c *claimer) settle(path string, d *drops) bool {
	if !c.inWindow(path) && c.o.lookup(path) == nil {
		return true // other origins rank first for it (ownerwindow.go)
	}
	if info := c.live[path]; info != nil {
		if !c.streamHolds(info) {
			// An edge that drew a new instance (a lapse, or its bus
			// node died under its connection) writes its records again
			// within a heartbeat: removing them meanwhile would end
			// streams whose publishers are still connected.
			if !c.first(path) {
				// Another origin removes it; the record's next event, or
				// its edge heard again, opens it here again.
				return true
			}
			if !c.o.live.NodeAlive(info.Edge) {
				if d.streams == nil {
					d.streams = map[string]uint64{}
				}
				d.streams[path] = c.liveRev[path]
			}
			return false
		}
		mine := c.o.lookup(path) != nil
		if !c.held(path) && !mine {
			c.schedule(path)
			return false
		}
		return !mine
	}
	rec, ok := c.owner[path]
	if !ok {
		return true
	}
	if !c.held(path) && c.o.lookup(path) == nil {
		if !c.first(path) {
			return true // another origin removes it
		}
		if d.owners == nil {
			d.owners = map[string]ownerRecord{}
		}
		d.owners[path] = rec
		return false
	}
	return c.o.lookup(path) == nil
}

// drops are dead nodes' records to remove.
type drops struct {
	owners  map[string]ownerRecord
	streams map[string]uint64
}

func (c *claimer) startDrop(d drops) {
	if d.owners != nil || d.streams != nil {
		c.o.wg.Add(1)
		go c.drop(d.owners, d.streams)
	}
}

func (c *claimer) ownerKeyHolds(k instanceKey) bool { return c.o.live.Live(k.node, k.instance) }

func (c *claimer) edgeKeyHolds(k instanceKey) bool {
	return k.instance == "" || c.o.live.Live(k.node, k.instance)
}

// index adds path to the records naming k.
func (c *claimer) index(m map[instanceKey]*instanceRecords, holds func(instanceKey) bool, k instanceKey, path string) {
	r := m[k]
	if r == nil {
		r = &instanceRecords{paths: map[string]struct{}{}, holds: holds(k)}
		m[k] = r
	}
	r.paths[path] = struct{}{}
}

func (c *claimer) unindex(m map[instanceKey]*instanceRecords, k instanceKey, path string) {
	if r := m[k]; r != nil {
		delete(r.paths, path)
		if len(r.paths) == 0 {
			delete(m, k)
		}
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

// fullScanPhase is where node's full scans fall among fullScanEvery
// resyncs.
func fullScanPhase(node string) int {
	h := fnv.New32a()
	h.Write([]byte(node))
	return int(h.Sum32() % fullScanEvery)
}
