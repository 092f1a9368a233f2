package edge

import "github.com/streamgrid/streamgrid/internal/media"

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
	primary  int // primary video track; -1 when the stream has none

	pkts  []*media.Packet
	bytes int
	valid bool
}

func newGOPCache(primary, maxBytes int) *gopCache {
	if maxBytes <= 0 {
		maxBytes = defaultGOPBytes
	}
	return &gopCache{primary: primary, maxBytes: maxBytes}
}

// add records a published packet. The cache keeps a reference: packets are
// never modified after publishing.
func (g *gopCache) add(p *media.Packet) {
	if g.primary < 0 {
		g.pkts = append(g.pkts, p)
		g.bytes += len(p.Payload)
		for len(g.pkts) > audioOnlyGOPPackets || (g.bytes > g.maxBytes && len(g.pkts) > 1) {
			g.bytes -= len(g.pkts[0].Payload)
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
	if g.bytes+len(p.Payload) > g.maxBytes {
		g.reset()
		return
	}
	g.pkts = append(g.pkts, p)
	g.bytes += len(p.Payload)
}

func (g *gopCache) reset() {
	clear(g.pkts)
	g.pkts = g.pkts[:0]
	g.bytes = 0
	g.valid = false
}

// snapshot returns the cached packets in order.
func (g *gopCache) snapshot() []*media.Packet {
	return append([]*media.Packet(nil), g.pkts...)
}
