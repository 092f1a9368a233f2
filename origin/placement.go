package origin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/internal/gossip"
	"github.com/streamgrid/streamgrid/internal/transcode"
)

// Placement in a mixed cluster (GPU origins beside CPU origins).
//
// Every origin races for every unowned stream; the registry's lease decides
// who wins, and the claimer's delay decides who usually does (see
// claimer.schedule). Placement adds one rule to that delay: an origin that is
// not a first choice for a stream waits one lease TTL longer when its gossip
// shows a peer that is. First choices:
//
//	stream       first choice                                second choice (waits)
//	ladder       NVENC for the ladder's codecs, a GPU slot   CPU encoders, a CPU slot,
//	             free, room for a stream                     only with fallback cpu
//	passthrough  no GPU, room for a stream                   an origin with a GPU
//
// Whether an origin may take a stream at all is still decided by its own
// ladder plan and slots (admitLocked): placement only orders the claims, so
// stale gossip can delay a claim by a lease TTL but never strand a stream.
// Without gossip (a single origin, tests) nothing waits.

// placeNeed is what a stream asks of the origin that takes it.
type placeNeed struct {
	// ladder: a ladder with renditions matches the stream.
	ladder bool
	// nvenc: the GPU encoders the ladder's renditions need.
	nvenc gossip.Encoders
}

// site is one origin as placement sees it: this one, or a peer as its
// gossip record describes it.
type site struct {
	name     string
	tc       *gossip.Transcode // nil: runs no ladder
	load     int
	capacity int
	draining bool
}

// room: the origin takes streams and holds fewer than it may.
func (s site) room() bool { return !s.draining && s.load < s.capacity }

// hasGPU: the origin transcodes on a GPU.
func (s site) hasGPU() bool { return s.tc != nil && s.tc.GPU > 0 }

// firstChoice reports whether s is among the origins a stream with need n
// should go to first.
func (s site) firstChoice(n placeNeed) bool {
	if !s.room() {
		return false
	}
	if n.ladder {
		return s.tc != nil && s.tc.GPUFree > 0 && s.tc.Encoders.Has(n.nvenc)
	}
	return !s.hasGPU()
}

// deferTo returns a peer that is a first choice for n when self is not one
// ("" when self need not wait).
func deferTo(n placeNeed, self site, peers []site) string {
	if self.firstChoice(n) {
		return ""
	}
	for _, p := range peers {
		if p.name != self.name && p.firstChoice(n) {
			return p.name
		}
	}
	return ""
}

// needOf is what the stream with ladder plan pl (nil: passthrough) needs.
func needOf(pl *ladderPlan) placeNeed {
	if pl == nil {
		return placeNeed{}
	}
	n := placeNeed{ladder: true}
	h264, h265 := pl.rule.Ladder.Codecs()
	if h264 {
		n.nvenc |= gossip.NVENCH264
	}
	if h265 {
		n.nvenc |= gossip.NVENCHEVC
	}
	return n
}

// transcodeRecord is this origin's transcoding capacity as gossip carries
// it; nil when no ladder is configured.
func (o *Origin) transcodeRecord() *gossip.Transcode {
	if !o.tr.enabled {
		return nil
	}
	c := o.tr.caps
	var e gossip.Encoders
	gpu := o.tr.gpuSlots
	if o.Transcode.Encoder == transcode.EncoderX264 {
		gpu = 0 // told to encode on the CPU: its GPU does not count
	}
	if gpu > 0 && c.NVENCH264 {
		e |= gossip.NVENCH264
	}
	if gpu > 0 && c.NVENCHEVC {
		e |= gossip.NVENCHEVC
	}
	if c.X264 {
		e |= gossip.X264
	}
	if c.X265 {
		e |= gossip.X265
	}
	if c.CUDA {
		e |= gossip.NVDEC
	}
	o.mu.RLock()
	gpuUsed := o.slotsUsedLocked(transcode.EncoderNVENC)
	cpuUsed := o.slotsUsedLocked(transcode.EncoderX264)
	o.mu.RUnlock()
	return &gossip.Transcode{Encoders: e, GPU: gpu, GPUFree: max(gpu-gpuUsed, 0),
		CPU: o.tr.cpuSlots, CPUFree: max(o.tr.cpuSlots-cpuUsed, 0)}
}

// self is this origin as placement sees it.
func (o *Origin) self() site {
	return site{name: o.Node, tc: o.transcodeRecord(), load: o.load(), capacity: o.capacity(),
		draining: o.draining.Load()}
}

// peers are the other origins of the cluster, from their gossip records
// (an origin is a member that announces a capacity).
func (o *Origin) peers() []site {
	if o.Gossip == nil {
		return nil
	}
	var out []site
	for _, m := range o.Gossip.Members() {
		if m.Name == o.Node || m.Meta.Capacity <= 0 {
			continue
		}
		out = append(out, site{name: m.Name, tc: m.Meta.Transcode, load: m.Meta.Load,
			capacity: m.Meta.Capacity, draining: m.Meta.Draining})
	}
	return out
}

// countDeferred counts a claim put off for a better-suited peer (pl:
// the stream's ladder plan, nil for passthrough).
func (o *Origin) countDeferred(pl *ladderPlan) {
	kind := "passthrough"
	if pl != nil {
		kind = "ladder"
	}
	o.m.deferred.WithLabelValues(kind).Inc()
}

// placementPeer is the better-suited peer this origin leaves path to
// first ("" when none: it claims in its own turn), and path's ladder plan.
func (o *Origin) placementPeer(path string) (string, *ladderPlan) {
	peers := o.peers()
	if len(peers) == 0 {
		return "", nil
	}
	pl := o.planFor(path)
	return deferTo(needOf(pl), o.self(), peers), pl
}

// unclaimedGauge reports the live streams this origin leaves unclaimed
// because it cannot transcode them now (Streams lists them with Refused).
func (o *Origin) unclaimedGauge() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "streamgrid", Subsystem: "origin", Name: "streams_refused",
		Help:        "Live streams this origin leaves unclaimed because it cannot transcode them now (no GPU, no encoder, no free slot).",
		ConstLabels: prometheus.Labels{"node": o.Node, "role": "origin"},
	}, func() float64 {
		o.mu.RLock()
		defer o.mu.RUnlock()
		return float64(len(o.refused))
	})
}
