package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/hlscache"
	"github.com/streamgrid/streamgrid/internal/gossip"
	"github.com/streamgrid/streamgrid/origin"
)

// clusterView is the API's picture of every stream of the cluster: the
// registry's stream records and owners (watched, so reading it costs
// nothing), joined on demand with each node's first-hand statistics
// gathered over the bus.
type clusterView struct {
	n *Node

	mu      sync.Mutex
	streams map[string]*bus.StreamInfo
	owners  map[string]bus.Owner

	gmu      sync.Mutex // one gathering at a time; others use its result
	gathered []localStats
	gatherAt time.Time

	cancel context.CancelFunc
	ctx    context.Context // the watches'; nil on a bus node
	wg     sync.WaitGroup

	// The owner watch, open while requests need it (needOwners):
	// ownersReady is closed once its picture is whole; nil while closed.
	omu         sync.Mutex
	ownersReady chan struct{}
	ownersUsed  time.Time
}

// gatherTimeout bounds the wait for the other nodes' statistics; a node
// that does not answer in time is left out of that answer.
const gatherTimeout = 800 * time.Millisecond

// gatherTTL is how long gathered statistics are reused: a wall of consoles
// polling every 2 s costs the cluster one round each TTL.
const gatherTTL = time.Second

func (v *clusterView) start() error {
	v.streams = make(map[string]*bus.StreamInfo)
	v.owners = make(map[string]bus.Owner)
	if v.n.registry == nil {
		return nil // a bus node: no registry connection
	}
	ctx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	v.ctx = ctx
	streams, err := v.n.registry.WatchStreams(ctx)
	if err != nil {
		cancel()
		return err
	}
	v.wg.Add(1)
	go v.watch(ctx, streams)
	return nil
}

// The owner records are watched while the API is asked for them, not for
// the node's whole life: every owner record's change goes to every watch,
// and an origin node follows only the records it may act on
// (bus/ownerfollow.go), so an API that nobody asks would be the one full
// watch on each origin node, paid at every take-over. The first request
// opens the watch and waits up to ownersWait for its picture to be whole;
// ownersIdle after the last request it is closed.
var ownersIdle = 5 * time.Minute // a variable for tests

const ownersWait = 3 * time.Second

// needOwners opens the owner watch when it is not open, and waits for its
// first picture (up to ownersWait or ctx).
func (v *clusterView) needOwners(ctx context.Context) {
	if v.ctx == nil {
		return // a bus node: no registry connection
	}
	v.omu.Lock()
	v.ownersUsed = time.Now()
	if v.ownersReady == nil {
		v.ownersReady = make(chan struct{})
		v.wg.Add(1)
		go v.watchOwners(v.ownersReady)
	}
	ready := v.ownersReady
	v.omu.Unlock()
	t := time.NewTimer(ownersWait)
	defer t.Stop()
	select {
	case <-ready:
	case <-ctx.Done():
	case <-t.C:
	}
}

// watchOwners keeps v.owners until ownersIdle passes without needOwners;
// ready is closed when the first watch has sent every record.
func (v *clusterView) watchOwners(ready chan struct{}) {
	defer v.wg.Done()
	ctx, cancel := context.WithCancel(v.ctx)
	defer cancel()
	idle := time.NewTicker(min(ownersIdle/5, time.Minute))
	defer idle.Stop()
	backoff := 250 * time.Millisecond
	readyOnce := sync.OnceFunc(func() { close(ready) })
	defer readyOnce()
	for {
		owners, err := v.n.registry.WatchOwnersMarked(ctx)
		for err == nil && owners != nil {
			select {
			case <-ctx.Done():
				return
			case <-idle.C:
				if v.ownersIdleNow() {
					return
				}
			case ev, ok := <-owners:
				if !ok {
					owners = nil
					break
				}
				if ev.Path == "" {
					readyOnce()
					backoff = 250 * time.Millisecond
					continue
				}
				v.mu.Lock()
				if ev.Owner == nil {
					delete(v.owners, ev.Path)
				} else {
					v.owners[ev.Path] = *ev.Owner
				}
				v.mu.Unlock()
			}
		}
		if err != nil {
			v.n.Log.Debug("api: owner watch failed, retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
		// The new watch sends every current record again; deletions
		// made while it was down would otherwise linger.
		v.mu.Lock()
		clear(v.owners)
		v.mu.Unlock()
	}
}

// ownersIdleNow ends the owner watch when nothing needed it for
// ownersIdle: its records are forgotten, and the next request opens it
// again.
func (v *clusterView) ownersIdleNow() bool {
	v.omu.Lock()
	defer v.omu.Unlock()
	if time.Since(v.ownersUsed) < ownersIdle {
		return false
	}
	v.ownersReady = nil
	v.mu.Lock()
	clear(v.owners)
	v.mu.Unlock()
	return true
}

func (v *clusterView) close() {
	if v.cancel != nil {
		v.cancel()
	}
	v.wg.Wait()
}

// watch applies the stream records' events; when the watch ends before
// close (the bus connection failed over), it is opened again.
func (v *clusterView) watch(ctx context.Context, streams <-chan bus.StreamEvent) {
	defer v.wg.Done()
	backoff := 250 * time.Millisecond
	for {
		for ev := range streams {
			v.mu.Lock()
			if ev.Info == nil {
				delete(v.streams, ev.Path)
			} else {
				v.streams[ev.Path] = ev.Info
			}
			v.mu.Unlock()
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			var err error
			if streams, err = v.n.registry.WatchStreams(ctx); err == nil {
				break
			}
			backoff = min(2*backoff, 5*time.Second)
			v.n.Log.Debug("api: stream watch failed, retrying", "err", err)
		}
		// The new watch sends every current entry again; deletions made
		// while it was down would otherwise linger.
		v.mu.Lock()
		clear(v.streams)
		v.mu.Unlock()
		backoff = 250 * time.Millisecond
	}
}

// has reports whether the registry lists path as live.
func (v *clusterView) has(path string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	info, ok := v.streams[path]
	return ok && v.holds(info)
}

// holds says whether a stream record's edge instance is alive, as far as
// this node can tell: a node without origin or edge role follows no
// heartbeats and shows every record (the origins remove a dead edge's
// within a node TTL).
func (v *clusterView) holds(info *bus.StreamInfo) bool {
	return v.n.live == nil || v.n.live.HoldsStream(info)
}

// gather returns every node's first-hand statistics: this node's own, and
// those the others answer within gatherTimeout.
func (v *clusterView) gather(ctx context.Context) []localStats {
	v.gmu.Lock()
	defer v.gmu.Unlock()
	if time.Since(v.gatherAt) < gatherTTL && v.gathered != nil {
		return v.gathered
	}
	n := v.n
	out := []localStats{n.localStats()}
	expect := 0
	if n.gossip != nil {
		for _, m := range n.gossip.Members() {
			if m.Name != n.name && m.Meta.Role != RoleBus {
				expect++
			}
		}
	}
	if n.nc != nil && expect > 0 {
		out = append(out, v.scatter(ctx, expect)...)
	}
	v.gathered, v.gatherAt = out, time.Now()
	return out
}

// scatter asks the other nodes for their statistics and collects up to
// expect answers until gatherTimeout.
func (v *clusterView) scatter(ctx context.Context, expect int) []localStats {
	nc := v.n.nc
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, expect+8)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(statsSubject, inbox, nil); err != nil {
		return nil
	}
	t := time.NewTimer(gatherTimeout)
	defer t.Stop()
	var out []localStats
	for len(out) < expect {
		select {
		case m := <-ch:
			var st localStats
			if json.Unmarshal(m.Data, &st) == nil && st.Node != v.n.name {
				out = append(out, st)
			}
		case <-t.C:
			return out
		case <-ctx.Done():
			return out
		}
	}
	return out
}

// streamRecord is one stream of the cluster as /v1/streams and the console show it.
type streamRecord struct {
	Path       string        `json:"path"`
	Protocol   string        `json:"protocol"` // rtsp, rtmp, pull
	Edge       string        `json:"edge"`     // the ingesting edge's node
	Generation uint64        `json:"generation"`
	Started    time.Time     `json:"started"`
	Uptime     float64       `json:"uptime_seconds"`
	Codecs     []string      `json:"codecs"`
	Tracks     []trackRecord `json:"tracks"`
	Width      int           `json:"width,omitempty"`
	Height     int           `json:"height,omitempty"`
	// FPS is the measured video frame rate at the edge, else the one the SPS signals.
	FPS float64 `json:"fps,omitempty"`
	// BitrateIn (bits/s) and BytesIn: what the edge receives.
	BitrateIn float64 `json:"bitrate_in"`
	BytesIn   uint64  `json:"bytes_in"`
	// Origin is the owning origin's node ("" while unowned), with its lease.
	Origin      string     `json:"origin,omitempty"`
	OriginEpoch uint64     `json:"origin_epoch,omitempty"`
	OriginSince *time.Time `json:"origin_since,omitempty"`
	// Refused, while no origin owns the stream, lists the origins that
	// cannot take it now and why (no GPU encoder and fallback refuse, every
	// transcode slot taken...): a stream no origin can take is visible here.
	Refused []refusal `json:"refused,omitempty"`
	// Variant and Ready: how the owner packages it and whether a playlist is served.
	Variant string `json:"variant,omitempty"`
	Ready   bool   `json:"ready"`
	// Viewers (estimated) and Requests (total), summed over the caches that answered.
	Viewers  int    `json:"viewers"`
	Requests uint64 `json:"requests"`
	// Drops: access units dropped at the edge (normalizer) and at the origin (queue).
	Drops uint64 `json:"drops"`
	// Snapshot is the API path of a JPEG of the latest keyframe.
	Snapshot string `json:"snapshot"`
	// Play lists the stream's player page at each cache of the cluster.
	Play []string `json:"play,omitempty"`
}

// refusal is one origin's reason for leaving a stream unclaimed.
type refusal struct {
	Node   string `json:"node"`
	Reason string `json:"reason"`
}

type trackRecord struct {
	Codec     string `json:"codec"`
	ClockRate int    `json:"clock_rate"`
	Channels  int    `json:"channels,omitempty"`
	Width     int    `json:"width,omitempty"`
	Height    int    `json:"height,omitempty"`
}

// records builds the cluster's stream records, sorted by path; only is
// non-empty to build one.
func (v *clusterView) records(ctx context.Context, host, only string) []streamRecord {
	v.needOwners(ctx)
	infos, owners := v.streamsAndOwners(only)
	if len(infos) == 0 {
		return []streamRecord{}
	}
	figs := indexFigures(v.gather(ctx))
	caches := v.cacheURLs(host)
	now := time.Now()
	out := make([]streamRecord, 0, len(infos))
	for _, info := range infos {
		r := newStreamRecord(info, now)
		if o, ok := owners[info.Path]; ok {
			since := o.Since
			r.Origin, r.OriginEpoch, r.OriginSince = o.Node, o.Epoch, &since
		}
		figs.add(&r, info)
		prefix := v.playPrefix(info.Path)
		for _, c := range caches {
			r.Play = append(r.Play, c+prefix+"/"+info.Path+"/")
		}
		out = append(out, r)
	}
	return out
}

// streamsAndOwners copies the streams (sorted by path; only the one at
// only when that is non-empty) and the origins' ownership out of v.
func (v *clusterView) streamsAndOwners(only string) ([]*bus.StreamInfo, map[string]bus.Owner) {
	v.mu.Lock()
	var infos []*bus.StreamInfo
	for p, info := range v.streams {
		if (only == "" || p == only) && v.holds(info) {
			infos = append(infos, info)
		}
	}
	owners := make(map[string]bus.Owner, len(v.owners))
	for p, o := range v.owners {
		owners[p] = o
	}
	v.mu.Unlock()
	slices.SortFunc(infos, func(a, b *bus.StreamInfo) int { return strings.Compare(a.Path, b.Path) })
	return infos, owners
}

// newStreamRecord returns the record of info as the bus describes it: its
// tracks, and the first video track's size and rate as the stream's.
func newStreamRecord(info *bus.StreamInfo, now time.Time) streamRecord {
	r := streamRecord{
		Path: info.Path, Protocol: info.Protocol, Edge: info.Edge, Generation: info.Generation,
		Started: info.Started, Uptime: max(0, now.Sub(info.Started).Seconds()),
		Codecs: []string{}, Tracks: []trackRecord{},
		Snapshot: "/v1/streams/" + info.Path + "/snapshot.jpg",
	}
	for _, t := range info.Tracks {
		tr := trackRecord{Codec: t.Codec.String(), ClockRate: t.ClockRate, Channels: t.Channels}
		if t.Codec.IsVideo() {
			var fps float64
			tr.Width, tr.Height, fps = videoInfo(t)
			if r.Width == 0 {
				r.Width, r.Height, r.FPS = tr.Width, tr.Height, fps
			}
		}
		r.Codecs = append(r.Codecs, tr.Codec)
		r.Tracks = append(r.Tracks, tr)
	}
	return r
}

// originStream is one origin node's figures for a stream.
type originStream struct {
	node string
	origin.StreamStatus
}

// streamFigures are the nodes' figures, the edges' and origins' indexed by
// stream path.
type streamFigures struct {
	stats   []localStats
	edges   map[string][]edgeStream
	origins map[string][]originStream
}

// indexFigures indexes stats by stream path.
func indexFigures(stats []localStats) streamFigures {
	f := streamFigures{stats: stats, edges: map[string][]edgeStream{}, origins: map[string][]originStream{}}
	for _, st := range stats {
		for _, e := range st.Edge {
			f.edges[e.Path] = append(f.edges[e.Path], e)
		}
		for _, o := range st.Origin {
			f.origins[o.Path] = append(f.origins[o.Path], originStream{st.Node, o})
		}
	}
	return f
}

// add fills in r, the record of info (its owner already set), with the
// figures of the edge that carries this generation, of its origin (or the
// refusals of the others when it has none) and of the caches' viewers.
func (f streamFigures) add(r *streamRecord, info *bus.StreamInfo) {
	for _, e := range f.edges[info.Path] {
		if e.Generation == info.Generation {
			r.BitrateIn, r.BytesIn, r.Drops = e.BitrateIn, e.Bytes, r.Drops+e.Dropped
			if e.FPS > 0 {
				r.FPS = e.FPS
			}
		}
	}
	for _, o := range f.origins[info.Path] {
		switch {
		case o.node == r.Origin:
			r.Variant, r.Ready, r.Drops = o.Variant, o.Ready, r.Drops+o.Dropped
		case r.Origin == "" && o.Refused != "":
			r.Refused = append(r.Refused, refusal{Node: o.node, Reason: o.Refused})
		}
	}
	slices.SortFunc(r.Refused, func(a, b refusal) int { return strings.Compare(a.Node, b.Node) })
	for _, st := range f.stats {
		if vs, ok := st.Viewers[info.Path]; ok {
			r.Viewers += vs.Viewers
			r.Requests += vs.Requests
		}
	}
}

// playPrefix is what goes before a stream's path in the player links the
// API hands out: with auth.signing_key set, /s/<token> valid for an hour
// (whoever reads the API holds the api permission, so may watch); else "".
func (v *clusterView) playPrefix(path string) string {
	key, err := base64.StdEncoding.DecodeString(v.n.Config.Auth.SigningKey)
	if err != nil || len(key) == 0 {
		return ""
	}
	return "/s/" + hlscache.Sign(key, path, time.Now().Add(playLinkTTL), nil)
}

// playLinkTTL is how long a player link of the API stays valid.
const playLinkTTL = time.Hour

// cacheURLs are the base URLs of the cluster's caches, as a browser that
// reached this API at host would reach them: a cache listening on every
// interface is named by that host.
func (v *clusterView) cacheURLs(host string) []string {
	n := v.n
	var out []string
	add := func(addr string) {
		h, port, err := net.SplitHostPort(addr)
		if err != nil {
			return
		}
		if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
			h = host
		}
		u := url.URL{Scheme: "http", Host: net.JoinHostPort(h, port)}
		if s := u.String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if n.cache != nil {
		add(n.cache.HTTPAddr().String())
	}
	if n.gossip != nil {
		members := n.gossip.Members()
		slices.SortFunc(members, func(a, b gossip.Member) int { return strings.Compare(a.Name, b.Name) })
		for _, m := range members {
			if m.Name != n.name && m.Meta.Cache != "" {
				add(m.Meta.Cache)
			}
		}
	}
	return out
}
