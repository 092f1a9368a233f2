package node

import (
	"cmp"
	"encoding/base64"
	"fmt"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/edge"
	"github.com/streamgrid/streamgrid/hlscache"
	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/memlimit"
	"github.com/streamgrid/streamgrid/internal/transcode"
	"github.com/streamgrid/streamgrid/origin"
)

// The roles' start steps (see startSteps): each one fills in its role from
// the configuration and keeps it in the node once it started.

// startOrigin starts the origin, then the watch that sends failover hooks.
func (n *Node) startOrigin() error {
	c := n.Config
	o := &origin.Origin{
		Node: n.name, NC: n.nc, Media: n.media, Registry: n.registry, Gossip: n.gossip,
		HTTPAddress: c.Origin.HTTPAddress, AdvertiseHTTP: c.Origin.AdvertiseHTTP,
		Capacity: c.Origin.Capacity, MemoryBudget: memlimit.OriginBudget(n.memLimit),
		NodeTTL: c.Bus.NodeTTL, Live: n.live,
		SegmentDir:  c.Origin.SegmentFolder(),
		SegmentAuto: c.Origin.SegmentStore == config.SegmentStoreAuto,
		Standby:     c.Origin.Standby,
		HLS:         origin.HLSConfig(c.Origin.HLS),
		Transcode:   originTranscode(c.Origin.Transcode),
		Secret:      c.Auth.OriginSecret,
		OnFailover:  n.originFailover,
		Log:         n.Log, Metrics: n.metrics,
	}
	if err := o.Start(); err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	n.origin = o
	return nil
}

func (n *Node) startCache() (err error) {
	c := n.Config
	h := &hlscache.Cache{
		Node: n.name, Registry: n.registry, Gossip: n.gossip, Demander: bus.Demander{NC: n.nc},
		HTTPAddress: c.Cache.HTTPAddress, MaxBytes: memlimit.CacheBudget(c.Cache.MaxBytes, n.memLimit),
		UpstreamTimeout: c.Cache.UpstreamTimeout, AllowOrigin: c.Cache.AllowOrigin,
		MaxConnsPerIP: cmp.Or(c.Cache.MaxConnsPerIP, -1), MaxUpstreamConns: c.Cache.MaxUpstreamConns,
		TLSCert: c.Cache.TLSCert, TLSKey: c.Cache.TLSKey,
		OriginSecret: c.Auth.OriginSecret,
		Authorize:    n.cacheAuthorize,
		// While every read is allowed (no auth section, or a user "any"
		// reading every path from anywhere) the cache's fast path may
		// answer without the hook.
		AuthorizeAll: n.auth.ReadOpen,
		Log:          n.Log, Metrics: n.metrics,
	}
	if n.origin != nil {
		// Both roles in this process: the cache asks this origin in process.
		h.Local = hlscache.LocalOrigin{Addr: n.origin.AdvertiseHTTP, Handler: n.origin.Handler()}
	}
	if c.Auth.SigningKey != "" {
		if h.SigningKey, err = base64.StdEncoding.DecodeString(c.Auth.SigningKey); err != nil {
			return fmt.Errorf("auth.signing_key: %w", err)
		}
	}
	if err := h.Start(); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	n.cache = h
	return nil
}

func (n *Node) startEdge() error {
	c := n.Config
	e := &edge.Edge{
		Node: n.name, NC: n.nc, Media: n.media, Registry: n.registry, Live: n.live, NodeTTL: c.Bus.NodeTTL,
		RTSPAddress: c.Edge.RTSPAddress, UDPRTPAddress: c.Edge.RTPAddress, UDPRTCPAddress: c.Edge.RTCPAddress,
		RTMPAddress: c.Edge.RTMPAddress, Sources: edgeSources(c.Sources), ReadTimeout: c.Edge.ReadTimeout,
		TLSCert: c.Edge.TLSCert, TLSKey: c.Edge.TLSKey,
		RTSPSAddress: c.Edge.RTSPSAddress, RTMPSAddress: c.Edge.RTMPSAddress,
		MediaTimeout: c.Edge.MediaTimeout, MaxPublishers: c.Edge.MaxPublishers, ReadInterval: c.Edge.ReadInterval,
		GOPBudget: memlimit.GOPBudget(n.memLimit),
		Auth:      n.auth, RTSPAuthMethods: c.Edge.RTSPAuthMethods, OnEvent: n.edgeEvent,
		Log: n.Log, Metrics: n.metrics,
	}
	if err := e.Start(); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	n.edge = e
	return nil
}

// originTranscode maps the transcode configuration onto the origin's.
func originTranscode(t config.Transcode) origin.TranscodeConfig {
	oc := origin.TranscodeConfig{
		FFmpeg: t.FFmpeg, Encoder: transcode.Encoder(t.Encoder), Fallback: transcode.Policy(t.Fallback),
		GPUSessions: t.GPUSessions, CPUSlots: t.CPUSlots,
	}
	for _, l := range t.Ladders {
		oc.Ladders = append(oc.Ladders, origin.LadderRule{Match: l.Match, Fallback: transcode.Policy(l.Fallback), Ladder: l.Ladder})
	}
	return oc
}
