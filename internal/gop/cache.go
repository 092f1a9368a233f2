// Package gop keeps the packets of a stream's last GOPs, so that an origin
// starting to package the stream has a complete segment at once instead of
// waiting for the camera's next keyframe. The edge keeps one per stream
// (and answers bus.FetchGOP with it); an origin that is a stream's warm
// standby keeps one from the stream's media subject (origin/standby.go).
// No I/O.
package gop

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/internal/media"
)

// Bounds of the GOP cache.
const (
	// DefaultBytes is a cache's bound when NewCache is given none.
	DefaultBytes = 16 << 20
	// audioOnlyGOPPackets bounds the cache of a stream without video, where
	// there is no GOP: the last packets are kept instead (about 1-2 s).
	audioOnlyGOPPackets = 96
)

// Cache keeps the packets of a stream's last GOP: everything from the last
// keyframe of the primary video track on, all tracks, in publish order, and
// the complete GOP before it while it fits. An origin taking a stream over
// packages both: the older GOP completes the muxer's first segment at once
// (its playlist waits for one), instead of at the camera's next keyframe.
// When the GOPs outgrow maxBytes the older one goes first; when the last
// one alone does, the cache is emptied and stays empty until the next
// keyframe, so a requester never gets a GOP without its start. A Cache is
// not safe for concurrent use: its owner locks around it.
type Cache struct {
	maxBytes int
	primary  int     // primary video track; -1 when the stream has none
	budget   *Budget // the edge's bound on all its caches together; nil: none

	prev      []*media.Packet // the complete GOP before pkts; empty when dropped
	prevBytes int
	pkts      []*media.Packet
	bytes     int
	valid     bool
}

// NewCache returns an empty cache for a stream whose primary video track is
// primary (-1: none, audio only), bounded by maxBytes (0: DefaultBytes) and
// budget (nil: no shared bound).
func NewCache(primary, maxBytes int, budget *Budget) *Cache {
	if maxBytes <= 0 {
		maxBytes = DefaultBytes
	}
	return &Cache{primary: primary, maxBytes: maxBytes, budget: budget}
}

// Budget bounds the bytes all GOP caches of a node's role hold together
// (an edge's Edge.GOPBudget, a share of the node's memory limit). A cache whose next
// packet would take the total over the bound is emptied and waits for its
// next keyframe, as one that outgrows its own bound does: the only cost is
// that an origin asking for that stream's GOP in the meantime starts at the
// next keyframe instead. Safe for concurrent use; a nil budget bounds nothing.
type Budget struct {
	Limit int64              // 0: no bound
	Shed  prometheus.Counter // caches emptied to stay within Limit; nil: not counted
	used  atomic.Int64
}

// take reserves n bytes; false (and nothing reserved) when that would pass the bound.
func (b *Budget) take(n int) bool {
	if b == nil {
		return true
	}
	if v := b.used.Add(int64(n)); b.Limit > 0 && v > b.Limit {
		b.used.Add(-int64(n))
		if b.Shed != nil {
			b.Shed.Inc()
		}
		return false
	}
	return true
}

// give returns n bytes reserved by take.
func (b *Budget) give(n int) {
	if b != nil && n != 0 {
		b.used.Add(-int64(n))
	}
}

// Bytes is what the caches hold now.
func (b *Budget) Bytes() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// Add records a published packet. The cache keeps a reference: packets are
// never modified after publishing.
func (g *Cache) Add(p *media.Packet) {
	if g.primary < 0 {
		if !g.budget.take(len(p.Payload)) {
			g.Reset()
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
		if g.valid {
			g.dropPrev()
			g.prev, g.prevBytes = g.pkts, g.bytes
			g.pkts, g.bytes = nil, 0
		} else {
			g.Reset()
		}
		g.valid = true
	}
	if !g.valid {
		return
	}
	if g.prevBytes+g.bytes+len(p.Payload) > g.maxBytes {
		g.dropPrev()
	}
	if g.bytes+len(p.Payload) > g.maxBytes || !g.take(len(p.Payload)) {
		g.Reset()
		return
	}
	g.pkts = append(g.pkts, p)
	g.bytes += len(p.Payload)
}

// take reserves n bytes of the budget, giving the older GOP up first when
// that is what it takes.
func (g *Cache) take(n int) bool {
	if g.budget.take(n) {
		return true
	}
	if g.prevBytes == 0 {
		return false
	}
	g.dropPrev()
	return g.budget.take(n)
}

// dropPrev gives the older GOP up.
func (g *Cache) dropPrev() {
	g.budget.give(g.prevBytes)
	clear(g.prev)
	g.prev, g.prevBytes = nil, 0
}

// Reset empties the cache (and returns its bytes to the budget); it stays
// empty until the next keyframe.
func (g *Cache) Reset() {
	g.dropPrev()
	g.budget.give(g.bytes)
	clear(g.pkts)
	g.pkts = g.pkts[:0]
	g.bytes = 0
	g.valid = false
}

// Snapshot returns the cached packets in order, the older GOP first.
func (g *Cache) Snapshot() []*media.Packet {
	out := make([]*media.Packet, 0, len(g.prev)+len(g.pkts))
	return append(append(out, g.prev...), g.pkts...)
}
