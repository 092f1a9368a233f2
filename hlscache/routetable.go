package hlscache

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/gossip"
)

const (
	// resyncGrace: after the owner watch was re-established, an owner that
	// no event re-announced within this time is taken as gone. Leases are
	// renewed every few seconds, and every renewal is an event.
	resyncGrace = 10 * time.Second
	// maxStalePlaylists bounds the last-good playlists kept per stream.
	maxStalePlaylists = 32
)

// members is what the route table needs of the gossip membership.
type members interface {
	Member(name string) (gossip.Member, bool)
}

// route is an owner the cache fetches a stream from.
type route struct {
	node  string
	epoch uint64
	addr  string // host:port of the owner's HLS server; empty for a past owner
}

type routeState int

const (
	routeUnknown  routeState = iota // no owner, and none recently: the stream does not exist here
	routeOK                         // an owner alive in gossip
	routeFailover                   // no routable owner now, but there was one within the failover window
)

// routeEntry is what the table knows of one stream.
type routeEntry struct {
	owner   *bus.Owner // current lease holder; nil when the lease ended
	updated time.Time  // last owner event, renewals included
	lostAt  time.Time  // when the lease ended
	good    *bus.Owner // the owner last seen routable
	goodAt  time.Time  // when good was last seen routable
	// former is the routable owner before good, and formerUntil when it
	// was replaced: players may still ask for its objects for a while.
	former      *bus.Owner
	formerUntil time.Time
	addr        string // upstream address at the last check; "" when not routable
	// playlists holds the last good full playlist per file name, served
	// while a failover is in progress.
	playlists map[string]*object
}

// routeTable maps streams to their owners (from registry leases) and says
// whether each owner is routable (alive in gossip, with an HTTP address).
// One mutex guards it; lookups take the read lock only. Waiters learn of any
// routing change through a channel that is closed and replaced on each change.
type routeTable struct {
	members members
	window  time.Duration
	log     *slog.Logger

	mu       sync.RWMutex
	streams  map[string]*routeEntry
	changed  chan struct{}
	resyncAt time.Time
}

func newRouteTable(m members, window time.Duration, log *slog.Logger) *routeTable {
	return &routeTable{
		members: m,
		window:  window,
		log:     log,
		streams: map[string]*routeEntry{},
		changed: make(chan struct{}),
	}
}

// upstreamAddr is where to reach o's HLS server: its gossip metadata's HTTP
// address (the lease's as a fallback), with an empty or unspecified host
// replaced by the host it gossips from. "" when o is not alive in gossip.
func (t *routeTable) upstreamAddr(o *bus.Owner) string {
	m, ok := t.members.Member(o.Node)
	if !ok {
		return ""
	}
	addr := m.Meta.HTTP
	if addr == "" {
		addr = o.HTTP
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return ""
	}
	if ip, err := netip.ParseAddr(host); host == "" || err == nil && ip.IsUnspecified() {
		gh, _, err := net.SplitHostPort(m.Addr)
		if err != nil || gh == "" {
			return ""
		}
		host = gh
	}
	return net.JoinHostPort(host, port)
}

// setOwner applies an owner event: o is the new lease holder, nil when the lease ended.
func (t *routeTable) setOwner(path string, o *bus.Owner, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.streams[path]
	if e == nil {
		if o == nil {
			return
		}
		e = &routeEntry{}
		t.streams[path] = e
	}
	e.updated = now
	switch {
	case o == nil && e.owner == nil:
		return
	case o == nil:
		t.log.Debug("stream owner gone", "stream", path, "node", e.owner.Node, "epoch", e.owner.Epoch)
		e.owner, e.lostAt = nil, now
	case e.owner != nil && e.owner.Node == o.Node && e.owner.Epoch == o.Epoch && e.owner.HTTP == o.HTTP:
		return // a renewal
	default:
		t.log.Debug("stream owner", "stream", path, "node", o.Node, "epoch", o.Epoch)
		cp := *o
		e.owner = &cp
	}
	t.recheckLocked(e, now)
	t.signalLocked()
}

// recheckLocked recomputes an entry's upstream address and reports whether it changed.
func (t *routeTable) recheckLocked(e *routeEntry, now time.Time) bool {
	addr := ""
	if e.owner != nil {
		addr = t.upstreamAddr(e.owner)
	}
	if addr != "" {
		if g := e.good; g != nil && (g.Node != e.owner.Node || g.Epoch != e.owner.Epoch) {
			e.former, e.formerUntil = g, now
		}
		e.good, e.goodAt = e.owner, now
	}
	if addr == e.addr {
		return false
	}
	e.addr = addr
	return true
}

func (t *routeTable) signalLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// markResync notes that the owner watch was re-established at now.
func (t *routeTable) markResync(now time.Time) {
	t.mu.Lock()
	t.resyncAt = now
	t.mu.Unlock()
}

// refresh re-checks every owner against gossip, drops streams whose failover
// window has passed, and wakes waiters when any route changed.
func (t *routeTable) refresh(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	resync := !t.resyncAt.IsZero() && now.Sub(t.resyncAt) >= resyncGrace
	changed := false
	for path, e := range t.streams {
		if resync && e.owner != nil && e.updated.Before(t.resyncAt) {
			t.log.Debug("stream owner not re-announced after resync", "stream", path, "node", e.owner.Node)
			e.owner, e.lostAt = nil, now
			changed = true
		}
		if t.recheckLocked(e, now) {
			changed = true
		}
		if e.owner == nil && now.Sub(e.goodAt) >= t.window && now.Sub(e.lostAt) >= t.window {
			delete(t.streams, path)
		}
	}
	if resync {
		t.resyncAt = time.Time{}
	}
	if changed {
		t.signalLocked()
	}
}

// owners returns the number of streams with an owner.
func (t *routeTable) owners() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := 0
	for _, e := range t.streams {
		if e.owner != nil {
			n++
		}
	}
	return n
}

// resolve routes a stream. In routeOK, rt is the owner to fetch from, and
// prev, when set, the owner it replaced within the failover window. In
// routeFailover, prev is the owner last seen routable. prev's objects may
// still be in the LRU. changed is closed at the next routing change.
func (t *routeTable) resolve(stream string, now time.Time) (rt route, prev route, st routeState, changed <-chan struct{}) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	changed = t.changed
	e := t.streams[stream]
	if e == nil {
		return route{}, route{}, routeUnknown, changed
	}
	if e.owner != nil {
		if addr := t.upstreamAddr(e.owner); addr != "" {
			rt = route{node: e.owner.Node, epoch: e.owner.Epoch, addr: addr}
			switch {
			case e.good != nil && (e.good.Node != e.owner.Node || e.good.Epoch != e.owner.Epoch) && now.Sub(e.goodAt) < t.window:
				// Routable since the last check: good is still the one it replaces.
				prev = route{node: e.good.Node, epoch: e.good.Epoch}
			case e.former != nil && now.Sub(e.formerUntil) < t.window:
				prev = route{node: e.former.Node, epoch: e.former.Epoch}
			}
			return rt, prev, routeOK, changed
		}
	}
	if e.good != nil && now.Sub(e.goodAt) < t.window {
		return route{}, route{node: e.good.Node, epoch: e.good.Epoch}, routeFailover, changed
	}
	return route{}, route{}, routeUnknown, changed
}

// storePlaylist remembers obj as the last good copy of a stream's playlist file.
func (t *routeTable) storePlaylist(stream, file string, obj *object) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.streams[stream]
	if e == nil {
		return
	}
	if cur := e.playlists[file]; cur != nil && cur.fetched.After(obj.fetched) {
		return
	}
	if e.playlists == nil {
		e.playlists = map[string]*object{}
	}
	if _, ok := e.playlists[file]; !ok && len(e.playlists) >= maxStalePlaylists {
		// Make room by dropping the least recently fetched.
		oldest := ""
		for f, o := range e.playlists {
			if oldest == "" || o.fetched.Before(e.playlists[oldest].fetched) {
				oldest = f
			}
		}
		delete(e.playlists, oldest)
	}
	e.playlists[file] = obj
}

// stalePlaylist returns the last good copy of a stream's playlist file, or nil.
func (t *routeTable) stalePlaylist(stream, file string, now time.Time) *object {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e := t.streams[stream]
	if e == nil {
		return nil
	}
	obj := e.playlists[file]
	if obj == nil || now.Sub(obj.fetched) >= t.window {
		return nil
	}
	return obj
}

// playlistWindow returns the window of the newest full copy of a playlist, of any
// age; nil when none was fetched.
func (t *routeTable) playlistWindow(stream, file string) *playlistWindow {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if e := t.streams[stream]; e != nil {
		if obj := e.playlists[file]; obj != nil {
			return obj.window
		}
	}
	return nil
}

// longestWindow returns the window of the stream's stored media playlist
// with the longest duration; nil when none is known.
func (t *routeTable) longestWindow(stream string) *playlistWindow {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var best *playlistWindow
	if e := t.streams[stream]; e != nil {
		for _, obj := range e.playlists {
			if w := obj.window; w != nil && (best == nil || w.duration > best.duration) {
				best = w
			}
		}
	}
	return best
}

// Route is where the cache sends a stream's requests.
type Route struct {
	// Node is the owning origin's node name.
	Node string `json:"node"`
	// HTTP is the owner's HLS address as the cache reaches it (from gossip
	// while alive, else the one in the lease).
	HTTP string `json:"http"`
	// Epoch is the owner's lease epoch.
	Epoch uint64 `json:"epoch"`
	// Alive reports whether gossip shows the owner alive, i.e. the stream is routable.
	Alive bool `json:"alive"`
}

// routes returns every stream that has an owner.
func (t *routeTable) routes() map[string]Route {
	t.mu.RLock()
	owned := make(map[string]bus.Owner, len(t.streams))
	for path, e := range t.streams {
		if e.owner != nil {
			owned[path] = *e.owner
		}
	}
	t.mu.RUnlock()
	out := make(map[string]Route, len(owned))
	for path, o := range owned {
		r := Route{Node: o.Node, HTTP: o.HTTP, Epoch: o.Epoch}
		if addr := t.upstreamAddr(&o); addr != "" {
			r.HTTP, r.Alive = addr, true
		}
		out[path] = r
	}
	return out
}
