package origin

import (
	"strings"
	"sync"
	"sync/atomic"

	pathpkg "path"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/gop"
	"github.com/streamgrid/streamgrid/internal/media"
)

// standbys are the streams this origin is the warm standby of: for each, a
// subscription to the stream's media subject and the stream's last two
// GOPs, kept as the edge keeps them (internal/gop). The standby of a stream
// is the origin that takes it over should its owner die: the live origin
// that the path ranks first among the live origins other than the owner
// (claimer.standbyCheck), computed by every origin from the owner records
// and the liveness it follows anyway, so no registry write is added.
//
// On take-over the new owner's stream adopts the standby: the buffered
// GOPs are packaged at once, without asking the edge for them, and the
// subscription itself becomes the stream's, so no packet falls between
// the buffer and the live packets and no new subscription is made.
//
// Invariants:
//   - the map is guarded by mu; a standby's cache by its own mu.
//   - a standby in the map has its subscription; one taken out of the map
//     (adopt, drop) is never put back.
//   - sink, once set (adopt), receives every later packet, and the cache
//     takes none: the snapshot and the switch happen under the standby's mu.
type standbys struct {
	media   bus.Media
	budget  *gop.Budget
	onCount func(int) // told the number held after every change

	mu sync.Mutex
	m  map[string]*standby
}

// standby is one stream's warm standby.
type standby struct {
	sub  bus.MediaSubscription
	sink atomic.Pointer[func(*media.Packet)]

	mu    sync.Mutex
	cache *gop.Cache
	gen   uint64
}

// handle takes one packet from the subscription (never concurrently).
func (sb *standby) handle(p *media.Packet) {
	if f := sb.sink.Load(); f != nil {
		(*f)(p)
		return
	}
	sb.mu.Lock()
	if f := sb.sink.Load(); f != nil {
		sb.mu.Unlock()
		(*f)(p)
		return
	}
	if p.Generation != sb.gen {
		sb.cache.Reset() // a new publisher: its first keyframe starts the cache again
		sb.gen = p.Generation
	}
	sb.cache.Add(p)
	sb.mu.Unlock()
}

// primaryTrack is the stream's first video track (the one whose keyframes
// start a GOP, as the edge's normaliser picks it), -1 for audio only.
func primaryTrack(info *bus.StreamInfo) int {
	for _, t := range info.Tracks {
		if t.Codec.IsVideo() {
			return int(t.ID)
		}
	}
	return -1
}

// held says whether this origin is path's standby.
func (ss *standbys) held(path string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.m[path] != nil
}

// paths lists the streams this origin is the standby of.
func (ss *standbys) paths() []string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := make([]string, 0, len(ss.m))
	for p := range ss.m {
		out = append(out, p)
	}
	return out
}

// hold makes this origin path's standby (nothing when it is already).
func (ss *standbys) hold(path string, info *bus.StreamInfo) error {
	if ss.held(path) {
		return nil
	}
	sb := &standby{cache: gop.NewCache(primaryTrack(info), 0, ss.budget), gen: info.Generation}
	sub, err := ss.media.SubscribeMedia(path, sb.handle)
	if err != nil {
		return err
	}
	sb.sub = sub
	ss.mu.Lock()
	if ss.m == nil {
		ss.m = map[string]*standby{}
	}
	ss.m[path] = sb
	n := len(ss.m)
	ss.mu.Unlock()
	ss.onCount(n)
	return nil
}

// take removes path's standby from the map and returns it (nil: none).
func (ss *standbys) take(path string) *standby {
	ss.mu.Lock()
	sb := ss.m[path]
	delete(ss.m, path)
	n := len(ss.m)
	ss.mu.Unlock()
	if sb != nil {
		ss.onCount(n)
	}
	return sb
}

// drop stops being path's standby.
func (ss *standbys) drop(path string) {
	sb := ss.take(path)
	if sb == nil {
		return
	}
	sb.sub.Close()
	sb.mu.Lock()
	sb.cache.Reset() // its bytes go back to the budget
	sb.mu.Unlock()
}

// closeAll drops every standby (the origin is closing).
func (ss *standbys) closeAll() {
	for _, p := range ss.paths() {
		ss.drop(p)
	}
}

// adopt hands path's standby to the stream that took path over: it returns
// the standby's subscription, from now on delivering to sink, and the
// packets the standby kept, the older GOP first; ok false when this origin
// was not path's standby. The caller closes the subscription.
func (ss *standbys) adopt(path string, sink func(*media.Packet)) (sub bus.MediaSubscription, pkts []*media.Packet, ok bool) {
	sb := ss.take(path)
	if sb == nil {
		return nil, nil, false
	}
	sb.mu.Lock()
	pkts = sb.cache.Snapshot()
	sb.cache.Reset()
	sb.sink.Store(&sink)
	sb.mu.Unlock()
	return sb.sub, pkts, true
}

// standbyMatch says whether a pattern of origin.standby matches path: a
// path.Match pattern matches the path itself or its leading elements, so
// "*" is every path and "cams" or "cams/*" every path under cams/.
func standbyMatch(patterns []string, path string) bool {
	for _, pat := range patterns {
		for p := path; ; {
			if ok, _ := pathpkg.Match(pat, p); ok {
				return true
			}
			i := strings.LastIndexByte(p, '/')
			if i < 0 {
				break
			}
			p = p[:i]
		}
	}
	return false
}

// standbyCheck makes this origin path's standby, or stops it being that, as
// the records and the live origins say now.
func (c *claimer) standbyCheck(path string) {
	if len(c.o.Standby) == 0 || c.o.lookup(path) != nil {
		return // off; or this origin has (or is claiming) the stream, whose claim adopts the standby
	}
	info, want := c.wantStandby(path)
	if !want {
		c.o.standby.drop(path)
		return
	}
	if err := c.o.standby.hold(path, info); err != nil {
		c.o.Log.Debug("warm standby: subscribing failed", "stream", path, "err", err)
	}
}

// wantStandby says whether this origin should be path's standby: the stream
// is live and matches Standby, another origin's record owns it, and this
// origin ranks first for the path among the live origins other than that
// owner: it is the one that takes the stream over at once should the owner
// die (claimer.schedule). A dead owner's stream keeps its standby until the
// take-over, which adopts it. Before the liveness settled (Grace after it
// started) the live origins are not all known yet, and this origin would
// rank first for streams it is not the standby of: it holds none then
// (the liveness's change at the end of Grace calls standbysMoved).
func (c *claimer) wantStandby(path string) (*bus.StreamInfo, bool) {
	info := c.live[path]
	rec, owned := c.owner[path]
	if info == nil || !owned || rec.owner.Node == c.o.Node || c.o.draining.Load() || !c.o.live.Settled() ||
		!standbyMatch(c.o.Standby, path) || !c.streamHolds(info) {
		return nil, false
	}
	return info, c.firstExcept(path, rec.owner.Node)
}

// standbysMoved looks again at every live stream's standby when the live
// origins changed (one joined, left or died): the ranking of any path may
// have. It costs a pass over the live streams per such change, not per
// event.
func (c *claimer) standbysMoved() {
	if len(c.o.Standby) == 0 || !c.o.live.Settled() {
		return
	}
	c.refreshPeers()
	var sig [2]uint64
	for _, p := range c.peers {
		sig[0] += p.hash
		sig[1]++
	}
	if sig == c.peersSig {
		return
	}
	c.peersSig = sig
	for path := range c.live {
		c.standbyCheck(path)
	}
}
