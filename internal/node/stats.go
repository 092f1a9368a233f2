package node

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/nats-io/nats.go"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/edge"
	"github.com/streamgrid/streamgrid/hlscache"
	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/origin"
)

// statsSubject is where a node asks every other node of the cluster for its
// local stream statistics (scatter-gather: each answers on the reply
// inbox). It costs nothing while no console or /v1/streams is asked.
const statsSubject = bus.StatsSubject

// localStats is what one node knows first-hand about the streams it
// handles: the per-role detail of /v1/streams?local=1.
type localStats struct {
	Node string `json:"node"`
	Role string `json:"role"`
	// Edge: the streams published to this node's edge.
	Edge []edgeStream `json:"edge,omitempty"`
	// Origin: the streams this node's origin owns.
	Origin []origin.StreamStatus `json:"origin,omitempty"`
	// Cache: this cache's routes (stream → owning origin).
	Cache map[string]hlscache.Route `json:"cache,omitempty"`
	// Viewers: this cache's audience per stream.
	Viewers map[string]hlscache.ViewerStats `json:"viewers,omitempty"`
	// Sources: this edge's camera pulls.
	Sources []edge.SourceStatus `json:"sources,omitempty"`
}

// edgeStream is an edge's stream with the rates measured by this node.
type edgeStream struct {
	edge.StreamStatus
	// BitrateIn is the received bit rate (bits per second), measured over
	// the last second or more.
	BitrateIn float64 `json:"bitrate_in"`
	// FPS is the received video frame rate.
	FPS float64 `json:"fps"`
}

// rateMeter turns the edge's byte and frame counters into rates: each
// stream keeps a sample at least a second old, and a rate is taken against it.
type rateMeter struct {
	mu      sync.Mutex
	samples map[rateKey]*rateSample
}

type rateKey struct {
	path string
	gen  uint64
}

type rateSample struct {
	at            time.Time
	bytes, frames uint64
	bitrate, fps  float64
	used          time.Time
}

// rates returns s's bit and frame rates as of now.
func (m *rateMeter) rates(s edge.StreamStatus, now time.Time) (bitrate, fps float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.samples == nil {
		m.samples = make(map[rateKey]*rateSample)
	}
	k := rateKey{s.Path, s.Generation}
	e := m.samples[k]
	if e == nil {
		// No sample yet: the average since the publication began.
		e = &rateSample{at: now, bytes: s.Bytes, frames: s.VideoFrames}
		if up := now.Sub(s.Started).Seconds(); up > 0.5 {
			e.bitrate = float64(s.Bytes) * 8 / up
			e.fps = float64(s.VideoFrames) / up
		}
		m.samples[k] = e
	} else if d := now.Sub(e.at).Seconds(); d >= 1 {
		e.bitrate = float64(s.Bytes-e.bytes) * 8 / d
		e.fps = float64(s.VideoFrames-e.frames) / d
		e.at, e.bytes, e.frames = now, s.Bytes, s.VideoFrames
	}
	e.used = now
	for key, x := range m.samples {
		if now.Sub(x.used) > time.Minute {
			delete(m.samples, key)
		}
	}
	return e.bitrate, e.fps
}

// localStats collects this node's first-hand view.
func (n *Node) localStats() localStats {
	st := localStats{Node: n.name, Role: n.Role}
	if n.edge != nil {
		now := time.Now()
		for _, s := range n.edge.Streams() {
			br, fps := n.rates.rates(s, now)
			st.Edge = append(st.Edge, edgeStream{StreamStatus: s, BitrateIn: br, FPS: fps})
		}
		st.Sources = n.edge.Pulls()
	}
	if n.origin != nil {
		st.Origin = n.origin.Streams()
	}
	if n.cache != nil {
		st.Cache = n.cache.Routes()
		st.Viewers = n.cache.Viewers()
	}
	return st
}

// serveStats answers the other nodes' statistics requests.
func (n *Node) serveStats() error {
	sub, err := n.nc.Subscribe(statsSubject, func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		b, err := json.Marshal(n.localStats())
		if err != nil || int64(len(b)) > n.nc.MaxPayload() {
			b, _ = json.Marshal(localStats{Node: n.name, Role: n.Role})
		}
		_ = n.nc.Publish(m.Reply, b)
	})
	if err != nil {
		return err
	}
	n.statsSub = sub
	return nil
}

// videoInfo reads the picture size and the signalled frame rate from a
// video track's SPS; zeros when unknown.
func videoInfo(t bus.TrackInfo) (w, h int, fps float64) {
	if len(t.SPS) == 0 {
		return 0, 0, 0
	}
	defer func() {
		if recover() != nil { // a hostile SPS must not take the API down
			w, h, fps = 0, 0, 0
		}
	}()
	switch t.Codec {
	case media.CodecH264:
		var sps h264.SPS
		if sps.Unmarshal(t.SPS) == nil {
			return sps.Width(), sps.Height(), sps.FPS()
		}
	case media.CodecH265:
		var sps h265.SPS
		if sps.Unmarshal(t.SPS) == nil {
			return sps.Width(), sps.Height(), sps.FPS()
		}
	}
	return 0, 0, 0
}
