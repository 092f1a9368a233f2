package edge

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/internal/media"
)

// Bounds of the GOP cache.
const (
	defaultGOPBytes = 16 << 20
	// audioOnlyGOPPackets bounds the cache of a stream without video, where
	// there is no GOP: the last packets are kept instead (about 1-2 s).
	audioOnlyGOPPackets = 96
)

// gopCache keeps the packets of a stream's last GOP: everything from the last
// keyframe of the primary video track on, all tracks, in publish order. When
// the GOP outgrows maxBytes the cache is emptied and stays empty until the
// next keyframe, so a requester never gets a GOP without its start.
type gopCache struct {
	maxBytes int
	primary  int        // primary video track; -1 when the stream has none
	budget   *gopBudget // the edge's bound on all its caches together; nil: none

	pkts  []*media.Packet
	bytes int
	valid bool
}

func newGOPCache(primary, maxBytes int, budget *gopBudget) *gopCache {
	if maxBytes <= 0 {
		maxBytes = defaultGOPBytes
	}
	return &gopCache{primary: primary, maxBytes: maxBytes, budget: budget}
}

// gopBudget bounds the bytes all GOP caches of an edge hold together
// (Edge.GOPBudget, a share of the node's memory limit). A cache whose next
// packet would take the total over the bound is emptied and waits for its
// next keyframe, as one that outgrows its own bound does: the only cost is
// that an origin asking for that stream's GOP in the meantime starts at the
// next keyframe instead. Safe for concurrent use; a nil budget bounds nothing.
type gopBudget struct {
	limit int64 // 0: no bound
	used  atomic.Int64
	shed  prometheus.Counter // caches emptied to stay within limit
}

// take reserves n bytes; false (and nothing reserved) when that would pass the bound.
func (b *gopBudget) take(n int) bool {
	if b == nil {
		return true
	}
	if v := b.used.Add(int64(n)); b.limit > 0 && v > b.limit {
		b.used.Add(-int64(n))
		b.shed.Inc()
		return false
	}
	return true
}

// give returns n bytes reserved by take.
func (b *gopBudget) give(n int) {
	if b != nil && n != 0 {
		b.used.Add(-int64(n))
	}
}

// bytes is what the caches hold now.
func (b *gopBudget) bytes() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// add records a published packet. The cache keeps a reference: packets are
// never modified after publishing.
func (g *gopCache) add(p *media.Packet) {
	if g.primary < 0 {
		if !g.budget.take(len(p.Payload)) {
			g.reset()
			return
		}
		g.pkts = append(g.pkts, p)
		g.bytes += len(p.Payload)
		for len(g.pkts) > audioOnlyGOPPackets || (g.bytes > g.maxBytes && len(g.pkts) > 1) {
			g.bytes -= len(g.pkts[0].Payload)
			g.budget.give(len(g.pkts[0].Payload))
			g.pkts[0] = nil
			g.pkts = g.pkts[1:]
		}
		return
	}
	if int(p.Track) == g.primary && p.Keyframe() {
		g.reset()
		g.valid = true
	}
	if !g.valid {
		return
	}
	if g.bytes+len(p.Payload) > g.maxBytes || !g.budget.take(len(p.Payload)) {
		g.reset()
		return
	}
	g.pkts = append(g.pkts, p)
	g.bytes += len(p.Payload)
}

// reset empties the cache (and returns its bytes to the budget); it stays
// empty until the next keyframe.
func (g *gopCache) reset() {
	g.budget.give(g.bytes)
	clear(g.pkts)
	g.pkts = g.pkts[:0]
	g.bytes = 0
	g.valid = false
}

// snapshot returns the cached packets in order.
func (g *gopCache) snapshot() []*media.Packet {
	return append([]*media.Packet(nil), g.pkts...)
}
