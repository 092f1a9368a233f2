package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamgrid/streamgrid/internal/media"
)

// Bucket names of the registry.
const (
	BucketStreams = "sg_streams" // live streams: key = EncodePath(path), value = StreamInfo; no TTL, valid while its edge instance is alive
	BucketOwners  = "sg_owners"  // stream → owning origin: value = Owner; no TTL, valid while its node instance is alive (liveness.go)
	BucketState   = "sg_state"   // stream → PlaylistState, written only by the current owner (fenced); TTL = StateTTL
	BucketSources = "sg_sources" // camera pull → edge lease: value = Owner; no TTL, valid while its edge instance is alive
)

// DefaultLeaseTTL is bus.lease_ttl's default: the pacing of claims and of
// standby edges' periodic attempts (no record expires by it any more).
const DefaultLeaseTTL = 3 * time.Second

var (
	ErrStreamBusy = errors.New("a publisher is already live on this path")
	ErrOwned      = errors.New("already owned")
	ErrLeaseLost  = errors.New("lease lost")
	ErrFenced     = errors.New("fenced: a newer owner holds the stream")
	ErrNotFound   = errors.New("not found")
	// ErrBucketMismatch: a registry bucket exists with other settings than
	// this node's (another lease TTL, say). The bucket's settings hold for
	// the whole cluster, so a node that disagrees refuses to start.
	ErrBucketMismatch = errors.New("registry bucket settings differ from this node's")
)

// TrackInfo describes one track of a stream: enough to package it without
// waiting for in-band parameters.
type TrackInfo struct {
	ID        uint8       `json:"id"`
	Codec     media.Codec `json:"codec"`
	ClockRate int         `json:"clock_rate"`
	// Video parameter sets, without start codes.
	VPS []byte `json:"vps,omitempty"`
	SPS []byte `json:"sps,omitempty"`
	PPS []byte `json:"pps,omitempty"`
	// AudioConfig is the marshalled MPEG-4 AudioSpecificConfig (AAC).
	AudioConfig []byte `json:"audio_config,omitempty"`
	// Channels is the channel count (Opus, AAC).
	Channels int `json:"channels,omitempty"`
}

// StreamInfo is a live stream's registry record.
type StreamInfo struct {
	Path       string `json:"path"`
	Generation uint64 `json:"generation"`
	Edge       string `json:"edge"` // node name of the ingesting edge
	// Instance is the ingesting edge's liveness instance
	// (Liveness.Instance): the record holds while that instance's
	// heartbeats do (Liveness.HoldsStream), and is never renewed.
	Instance string      `json:"instance,omitempty"`
	Protocol string      `json:"protocol"` // rtsp, rtmp, pull
	Tracks   []TrackInfo `json:"tracks"`
	Started  time.Time   `json:"started"`
}

// Owner is the holder of a lease (an origin owning a stream, an edge pulling a camera).
type Owner struct {
	Node string `json:"node"`
	// Instance is the owning node's liveness instance (Liveness.Instance):
	// the record holds while that instance's heartbeats do, and is never
	// renewed (the origin of a stream, the edge of a camera pull).
	Instance string `json:"instance,omitempty"`
	// HTTP is the owner's HTTP address for HLS (origins).
	HTTP string `json:"http,omitempty"`
	// Epoch is the fencing token: the revision at which the record was
	// created, plus one for every take-over since (TakeOverOwner). It only
	// grows for a path, also across a release and a new claim: a record's
	// epoch is always below its revision, and a new record's is its
	// creation revision, above every revision before it.
	Epoch uint64 `json:"epoch"`
	// Since is when the lease was acquired or taken over.
	Since time.Time `json:"since"`
	// Standby lists the edges that list a camera and wait to pull it
	// (camera leases only): when the holder dies, the live ones rank for
	// the take-over (StandBySource).
	Standby []string `json:"standby,omitempty"`
}

// PlaylistState is what a new owner needs to continue a stream's playlist.
type PlaylistState struct {
	// NextMSN is the first media sequence number the next packager must use.
	NextMSN uint64 `json:"next_msn"`
	// Discontinuity is the discontinuity count so far (EXT-X-DISCONTINUITY-SEQUENCE of the next segment).
	Discontinuity uint64 `json:"discontinuity"`
	// Epoch of the owner that wrote it.
	Epoch uint64 `json:"epoch"`
	// Node that wrote it.
	Node string `json:"node"`
	// NextTime is the media timestamp, in nanoseconds, at or after which the
	// next packager starts its output (like NextMSN, a little ahead of what
	// was produced), so timestamps never go backwards across the
	// discontinuity of a failover. 0: none.
	NextTime int64 `json:"next_time,omitempty"`
}

// Registry is the cluster's shared state in JetStream KV. Fill in the fields, then Start.
type Registry struct {
	JS jetstream.JetStream
	// Replicas of every bucket. Default 1; 3 on a three-node bus.
	Replicas int
	// LeaseTTL paces claims and standby edges' periodic attempts; no
	// record expires by it. Default 3 s.
	LeaseTTL time.Duration
	// StateTTL is how long a stream's playlist state outlives its last
	// write: long enough that a stream which comes back (a camera
	// reconnecting, an origin taking over) continues its numbering, short
	// enough that paths used once do not fill the store. Default 6 h.
	StateTTL time.Duration

	streams, owners, state, sources jetstream.KeyValue
}

// Start opens the buckets, creating those that are missing. A bucket that
// exists keeps its settings: when they differ from this node's (replicas,
// TTLs), Start fails with ErrBucketMismatch, naming the setting, rather than
// change them for every node of the cluster. Start never updates a bucket,
// so a role's NATS user needs no right to.
func (r *Registry) Start(ctx context.Context) error {
	if r.Replicas <= 0 {
		r.Replicas = 1
	}
	if r.LeaseTTL <= 0 {
		r.LeaseTTL = DefaultLeaseTTL
	}
	if r.StateTTL <= 0 {
		r.StateTTL = 6 * time.Hour
	}
	var err error
	open := func(cfg jetstream.KeyValueConfig, ttlKey string) jetstream.KeyValue {
		if err != nil {
			return nil
		}
		cfg.Replicas = r.Replicas
		cfg.Storage = jetstream.FileStorage
		var kv jetstream.KeyValue
		for attempt := 0; ; attempt++ {
			// A request sent while a forming cluster elects its meta leader can
			// go unanswered, and one answered "no suitable peers" is worth
			// repeating: each attempt gets its own short deadline.
			actx, cancel := context.WithTimeout(ctx, 3*time.Second)
			kv, err = r.openBucket(actx, cfg, ttlKey)
			cancel()
			if err == nil || errors.Is(err, ErrBucketMismatch) || attempt >= 50 || ctx.Err() != nil {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
		if err != nil && !errors.Is(err, ErrBucketMismatch) {
			err = fmt.Errorf("bus: bucket %s: %w", cfg.Bucket, err)
		}
		return kv
	}
	// Stream records and camera leases do not expire either: they are
	// valid while their edge's liveness holds (written on change only).
	r.streams = open(jetstream.KeyValueConfig{Bucket: BucketStreams, History: 1}, "bus.stream_ttl (stream records have no TTL since edge liveness)")
	// Owner records do not expire: they are valid while their node's
	// liveness holds, and are rewritten only when ownership changes.
	r.owners = open(jetstream.KeyValueConfig{Bucket: BucketOwners, History: 1}, "bus.node_ttl (owner records have no TTL since node liveness)")
	r.state = open(jetstream.KeyValueConfig{Bucket: BucketState, History: 1, TTL: r.StateTTL}, "bus.state_ttl")
	r.sources = open(jetstream.KeyValueConfig{Bucket: BucketSources, History: 1}, "bus.lease_ttl (camera leases have no TTL since edge liveness)")
	return err
}

// openBucket opens cfg's bucket, creating it when missing, and checks that
// an existing one has cfg's settings. ttlKey names the configuration key
// behind cfg.TTL, for the error.
func (r *Registry) openBucket(ctx context.Context, cfg jetstream.KeyValueConfig, ttlKey string) (jetstream.KeyValue, error) {
	kv, err := r.JS.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = r.JS.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			// Created meanwhile by another node, or by another version with
			// other defaults: compare what matters below.
			kv, err = r.JS.KeyValue(ctx, cfg.Bucket)
		}
	}
	if err != nil {
		return nil, err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return kv, nil
	}
	have := bs.StreamInfo().Config
	if cfg.Bucket == BucketState && have.MaxAge == 0 && cfg.TTL > 0 && have.Replicas == cfg.Replicas {
		// A store from before state TTLs: give the bucket its TTL once. A
		// role user may not update buckets; it then gets the mismatch below.
		if kv2, err := r.JS.UpdateKeyValue(ctx, cfg); err == nil {
			return kv2, nil
		}
	}
	mismatch := func(what string, theirs, ours any, key string) error {
		return fmt.Errorf("%w: bucket %s has %s %v, this node wants %v (%s): every node of the cluster needs the same %s; "+
			"to change it, stop the cluster and remove the bucket (nats kv rm %s) or the bus's store",
			ErrBucketMismatch, cfg.Bucket, what, theirs, ours, key, key, cfg.Bucket)
	}
	switch {
	case have.Replicas != cfg.Replicas:
		return nil, mismatch("replicas", have.Replicas, cfg.Replicas, "bus.replicas")
	case have.MaxAge != cfg.TTL:
		return nil, mismatch("TTL", ttlString(have.MaxAge), ttlString(cfg.TTL), ttlKey)
	case have.SubjectDeleteMarkerTTL != cfg.LimitMarkerTTL:
		return nil, mismatch("expiry marker TTL", ttlString(have.SubjectDeleteMarkerTTL), ttlString(cfg.LimitMarkerTTL), ttlKey)
	case have.MaxMsgsPerSubject != int64(cfg.History):
		return nil, fmt.Errorf("%w: bucket %s keeps %d revisions per key, this version %d: remove the bucket (nats kv rm %s)",
			ErrBucketMismatch, cfg.Bucket, have.MaxMsgsPerSubject, cfg.History, cfg.Bucket)
	}
	return kv, nil
}

func ttlString(d time.Duration) string {
	if d == 0 {
		return "none"
	}
	return d.String()
}

// ---- streams ----

// ClaimStream registers a new live stream. It fails with ErrStreamBusy when
// the path is live already. A record whose edge instance is dead (dead
// says so; nil: none is) is removed first, by compare-and-set on its
// revision, so a publisher that reconnects to another edge registers at
// once. The returned revision updates and releases it.
func (r *Registry) ClaimStream(ctx context.Context, info *StreamInfo, dead func(*StreamInfo) bool) (uint64, error) {
	b, err := json.Marshal(info)
	if err != nil {
		return 0, err
	}
	key := EncodePath(info.Path)
	for range 3 {
		rev, err := r.streams.Create(ctx, key, b)
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, fmt.Errorf("bus: claim stream %s: %w", info.Path, err)
		}
		if dead == nil {
			return 0, ErrStreamBusy
		}
		cur, crev, err := r.StreamRev(ctx, info.Path)
		switch {
		case errors.Is(err, ErrNotFound):
			continue // removed meanwhile
		case err != nil:
			return 0, fmt.Errorf("bus: claim stream %s: %w", info.Path, err)
		case !dead(cur):
			return 0, ErrStreamBusy
		}
		if err := r.ReleaseStream(ctx, info.Path, crev); err != nil && !errors.Is(err, ErrLeaseLost) {
			return 0, fmt.Errorf("bus: claim stream %s: removing a dead edge's record: %w", info.Path, err)
		}
	}
	return 0, ErrStreamBusy
}

// ReplaceStream writes info over whatever record the path has. It is for a
// camera pull: the source lease the caller holds already proves it is the one
// edge to publish that path, so a record left by a crashed edge must not make
// it wait.
func (r *Registry) ReplaceStream(ctx context.Context, info *StreamInfo) (uint64, error) {
	b, err := json.Marshal(info)
	if err != nil {
		return 0, err
	}
	rev, err := r.streams.Put(ctx, EncodePath(info.Path), b)
	if err != nil {
		return 0, fmt.Errorf("bus: replace stream %s: %w", info.Path, err)
	}
	return rev, nil
}

// UpdateStream rewrites a stream record (new parameter sets, a new edge
// instance) by compare-and-set on rev; it returns the new revision, or
// ErrLeaseLost when the record changed or went meanwhile. Records are
// written on change only, never renewed.
func (r *Registry) UpdateStream(ctx context.Context, info *StreamInfo, rev uint64) (uint64, error) {
	b, err := json.Marshal(info)
	if err != nil {
		return 0, err
	}
	nrev, err := r.streams.Update(ctx, EncodePath(info.Path), b, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, ErrLeaseLost
	}
	return nrev, err
}

// ReleaseStream removes a stream record if rev is still current: the
// edge's own at the end of a publication, or a dead edge's.
func (r *Registry) ReleaseStream(ctx context.Context, path string, rev uint64) error {
	err := r.streams.Delete(ctx, EncodePath(path), jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return ErrLeaseLost
	}
	return err
}

// Stream returns a stream's record. It may name a dead edge instance:
// readers judge it with Liveness.HoldsStream.
func (r *Registry) Stream(ctx context.Context, path string) (*StreamInfo, error) {
	info, _, err := r.StreamRev(ctx, path)
	return info, err
}

// StreamRev is Stream with the record's revision.
func (r *Registry) StreamRev(ctx context.Context, path string) (*StreamInfo, uint64, error) {
	return getJSON[StreamInfo](ctx, r.streams, path, "stream")
}

// StreamEvent is a change of the stream set. Info is nil when the stream ended.
type StreamEvent struct {
	Path string
	Info *StreamInfo
	// Rev is the record's revision (0 when it ended): removing a dead
	// edge's record needs it.
	Rev uint64
}

// WatchStreams sends the current streams, then every change, until ctx ends.
// The channel is closed when the watch stops.
func (r *Registry) WatchStreams(ctx context.Context) (<-chan StreamEvent, error) {
	return watchRev(ctx, r.streams, func(path string, v []byte, rev uint64) (StreamEvent, bool) {
		if v == nil {
			return StreamEvent{Path: path}, true
		}
		var info StreamInfo
		if json.Unmarshal(v, &info) != nil {
			return StreamEvent{Path: path}, true
		}
		return StreamEvent{Path: path, Info: &info, Rev: rev}, true
	})
}

// ---- leases (owners of streams, edges of sources) ----

// Lease is a held lease on a key.
type Lease struct {
	Key   string // the stream or source path
	Owner Owner
	Rev   uint64 // current revision; renew with it
}

func (r *Registry) acquire(ctx context.Context, kv jetstream.KeyValue, key string, o Owner) (*Lease, error) {
	o.Since = time.Now().UTC()
	o.Epoch = 0
	b, _ := json.Marshal(o)
	rev, err := kv.Create(ctx, EncodePath(key), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil, ErrOwned
	}
	if err != nil {
		return nil, fmt.Errorf("bus: acquire %s: %w", key, err)
	}
	// Record the fencing epoch inside the value with the first renewal.
	o.Epoch = rev
	l := &Lease{Key: key, Owner: o, Rev: rev}
	if err := r.renew(ctx, kv, l); err != nil {
		return nil, err
	}
	return l, nil
}

func (r *Registry) renew(ctx context.Context, kv jetstream.KeyValue, l *Lease) error {
	b, _ := json.Marshal(l.Owner)
	rev, err := kv.Update(ctx, EncodePath(l.Key), b, l.Rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
		return ErrLeaseLost
	}
	if err != nil {
		return fmt.Errorf("bus: renew %s: %w", l.Key, err)
	}
	l.Rev = rev
	return nil
}

func (r *Registry) release(ctx context.Context, kv jetstream.KeyValue, l *Lease) error {
	err := kv.Delete(ctx, EncodePath(l.Key), jetstream.LastRevision(l.Rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return ErrLeaseLost
	}
	return err
}

// AcquireOwner takes the ownership lease of a stream; ErrOwned when another node holds it.
func (r *Registry) AcquireOwner(ctx context.Context, path string, o Owner) (*Lease, error) {
	return r.acquire(ctx, r.owners, path, o)
}

// RenewOwner rewrites l's record unchanged (compare-and-set on l.Rev);
// ErrLeaseLost when it was taken or removed. Origins do not renew their
// records (they hold while the node's liveness does); this checks a lease.
func (r *Registry) RenewOwner(ctx context.Context, l *Lease) error {
	return r.renew(ctx, r.owners, l)
}

// TakeOverOwner takes path from the owner record prev (read at revision
// prevRev), whose node is dead: one compare-and-set that writes o with
// prev's epoch + 1. ErrOwned when the record changed since (another origin
// took it first, or it was released).
func (r *Registry) TakeOverOwner(ctx context.Context, path string, prev Owner, prevRev uint64, o Owner) (*Lease, error) {
	return r.takeOver(ctx, r.owners, path, prev, prevRev, o)
}

func (r *Registry) takeOver(ctx context.Context, kv jetstream.KeyValue, path string, prev Owner, prevRev uint64, o Owner) (*Lease, error) {
	o.Since = time.Now().UTC()
	o.Epoch = prev.Epoch + 1
	b, _ := json.Marshal(o)
	rev, err := kv.Update(ctx, EncodePath(path), b, prevRev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrOwned
	}
	if err != nil {
		return nil, fmt.Errorf("bus: take over %s: %w", path, err)
	}
	return &Lease{Key: path, Owner: o, Rev: rev}, nil
}

// DropOwner removes the owner record of path if it is still at revision
// rev: the record of a dead node for a stream that is no longer live.
// ErrLeaseLost when it changed meanwhile.
func (r *Registry) DropOwner(ctx context.Context, path string, rev uint64) error {
	err := r.owners.Delete(ctx, EncodePath(path), jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return ErrLeaseLost
	}
	return err
}

// ReleaseOwner gives the lease up at once, so another origin may take it.
func (r *Registry) ReleaseOwner(ctx context.Context, l *Lease) error {
	return r.release(ctx, r.owners, l)
}

// RecoverOwner handles a renewal the registry applied but whose reply was
// lost (a timeout): l's revision is then stale although the record still
// names l's node with l's epoch. Epochs are creation revisions, so an equal
// epoch means nobody acquired the lease in between. When the lease is still
// l's it refreshes l.Rev and returns nil; ErrLeaseLost when it is not.
func (r *Registry) RecoverOwner(ctx context.Context, l *Lease) error {
	e, err := get(ctx, r.owners, l.Key)
	if errors.Is(err, ErrNotFound) {
		return ErrLeaseLost
	}
	if err != nil {
		return fmt.Errorf("bus: recover %s: %w", l.Key, err)
	}
	var cur Owner
	if json.Unmarshal(e.Value(), &cur) != nil || cur.Node != l.Owner.Node || cur.Epoch != l.Owner.Epoch {
		return ErrLeaseLost
	}
	l.Rev = e.Revision()
	return nil
}

// OwnerOf returns the current owner of a stream.
func (r *Registry) OwnerOf(ctx context.Context, path string) (*Owner, error) {
	return getOwner(ctx, r.owners, path)
}

// OwnerEvent is a change of a stream's owner. Owner is nil when the lease ended.
type OwnerEvent struct {
	Path  string
	Owner *Owner
	// Rev is the record's revision (0 when it ended): a take-over's
	// compare-and-set needs it.
	Rev uint64
}

// WatchOwners sends the current owners, then every change, until ctx ends.
func (r *Registry) WatchOwners(ctx context.Context) (<-chan OwnerEvent, error) {
	return watchRev(ctx, r.owners, func(path string, v []byte, rev uint64) (OwnerEvent, bool) {
		ev, ok := ownerEvent(path, v)
		if ev.Owner != nil {
			ev.Rev = rev
		}
		return ev, ok
	})
}

// AcquireSource takes the pull lease of a camera source; o names the edge
// and its liveness instance. ErrOwned when a record exists (held, or left
// by a dead edge: TakeOverSource).
func (r *Registry) AcquireSource(ctx context.Context, name string, o Owner) (*Lease, error) {
	return r.acquire(ctx, r.sources, name, o)
}

// TakeOverSource takes a camera from the lease prev (at revision
// prevRev), whose edge is dead: one compare-and-set that writes o with
// prev's epoch + 1. ErrOwned when the record changed since.
func (r *Registry) TakeOverSource(ctx context.Context, name string, prev Owner, prevRev uint64, o Owner) (*Lease, error) {
	return r.takeOver(ctx, r.sources, name, prev, prevRev, o)
}

// StandBySource adds node to the standby list of the camera lease cur (at
// revision rev), unchanged otherwise: an edge that lists the camera and
// waits for it. ErrLeaseLost when the record changed meanwhile.
func (r *Registry) StandBySource(ctx context.Context, name string, cur Owner, rev uint64, node string) (uint64, error) {
	cur.Standby = append(slices.Clone(cur.Standby), node)
	b, _ := json.Marshal(cur)
	nrev, err := r.sources.Update(ctx, EncodePath(name), b, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, ErrLeaseLost
	}
	if err != nil {
		return 0, fmt.Errorf("bus: stand by for %s: %w", name, err)
	}
	return nrev, nil
}

// ReleaseSource gives a camera lease up, if the record is still l's (the
// same edge instance and epoch; standby edges may have rewritten it since).
func (r *Registry) ReleaseSource(ctx context.Context, l *Lease) error {
	for range 3 {
		e, err := get(ctx, r.sources, l.Key)
		if errors.Is(err, ErrNotFound) {
			return ErrLeaseLost
		}
		if err != nil {
			return err
		}
		var cur Owner
		if json.Unmarshal(e.Value(), &cur) != nil || cur.Node != l.Owner.Node || cur.Instance != l.Owner.Instance || cur.Epoch != l.Owner.Epoch {
			return ErrLeaseLost
		}
		err = r.sources.Delete(ctx, EncodePath(l.Key), jetstream.LastRevision(e.Revision()))
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return err
		}
	}
	return fmt.Errorf("bus: release %s: too much contention", l.Key)
}

// Source returns a camera's lease record and its revision; ErrNotFound
// when none.
func (r *Registry) Source(ctx context.Context, name string) (*Owner, uint64, error) {
	e, err := get(ctx, r.sources, name)
	if err != nil {
		return nil, 0, err
	}
	ev, ok := ownerEvent(name, e.Value())
	if !ok || ev.Owner == nil {
		return nil, 0, ErrNotFound
	}
	return ev.Owner, e.Revision(), nil
}

// WatchSources sends the current camera leases, then every change, with
// their revisions.
func (r *Registry) WatchSources(ctx context.Context) (<-chan OwnerEvent, error) {
	return watchRev(ctx, r.sources, func(path string, v []byte, rev uint64) (OwnerEvent, bool) {
		ev, ok := ownerEvent(path, v)
		if ev.Owner != nil {
			ev.Rev = rev
		}
		return ev, ok
	})
}

func ownerEvent(path string, v []byte) (OwnerEvent, bool) {
	if v == nil {
		return OwnerEvent{Path: path}, true
	}
	var o Owner
	if json.Unmarshal(v, &o) != nil {
		return OwnerEvent{Path: path}, true
	}
	if o.Epoch == 0 {
		// The instant between Create and the first renewal: not yet announced.
		return OwnerEvent{}, false
	}
	return OwnerEvent{Path: path, Owner: &o}, true
}

func getOwner(ctx context.Context, kv jetstream.KeyValue, key string) (*Owner, error) {
	e, err := get(ctx, kv, key)
	if err != nil {
		return nil, err
	}
	ev, ok := ownerEvent(key, e.Value())
	if !ok || ev.Owner == nil {
		return nil, ErrNotFound
	}
	return ev.Owner, nil
}

// ---- playlist state (fenced) ----

// State returns a stream's playlist state; ErrNotFound when none was written.
func (r *Registry) State(ctx context.Context, path string) (*PlaylistState, uint64, error) {
	return getJSON[PlaylistState](ctx, r.state, path, "state")
}

// PutState writes st for path unless a newer epoch has written there: the
// fencing check that stops a paused old owner from overwriting its successor.
// The write is a compare-and-set on the record's revision, so a concurrent
// writer makes it retry the check.
func (r *Registry) PutState(ctx context.Context, path string, st PlaylistState) error {
	key := EncodePath(path)
	b, _ := json.Marshal(st)
	for range 5 {
		cur, rev, err := r.State(ctx, path)
		switch {
		case errors.Is(err, ErrNotFound):
			_, err = r.state.Create(ctx, key, b)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			return err
		case err != nil:
			return err
		}
		if cur.Epoch > st.Epoch {
			return ErrFenced
		}
		_, err = r.state.Update(ctx, key, b, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		return err
	}
	return fmt.Errorf("bus: put state %s: too much contention", path)
}

// get reads key's entry; ErrNotFound when it has none (or it was deleted).
func get(ctx context.Context, kv jetstream.KeyValue, key string) (jetstream.KeyValueEntry, error) {
	e, err := kv.Get(ctx, EncodePath(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, ErrNotFound
	}
	return e, err
}

// getJSON reads key's record, a T in JSON, and its revision; what names
// the record in errors.
func getJSON[T any](ctx context.Context, kv jetstream.KeyValue, key, what string) (*T, uint64, error) {
	e, err := get(ctx, kv, key)
	if err != nil {
		return nil, 0, err
	}
	var v T
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return nil, 0, fmt.Errorf("bus: %s record %s: %w", what, key, err)
	}
	return &v, e.Revision(), nil
}

// watch turns a KV watcher into a typed channel. Deletes and expiries arrive
// as a nil value.
func watch[T any](ctx context.Context, kv jetstream.KeyValue, conv func(string, []byte) (T, bool)) (<-chan T, error) {
	return watchRev(ctx, kv, func(key string, v []byte, _ uint64) (T, bool) { return conv(key, v) })
}

// watchRev is watch with each entry's revision.
func watchRev[T any](ctx context.Context, kv jetstream.KeyValue, conv func(string, []byte, uint64) (T, bool)) (<-chan T, error) {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("bus: watch %s: %w", kv.Bucket(), err)
	}
	out := make(chan T, 64)
	go func() {
		defer close(out)
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue // end of the initial values
				}
				path, err := DecodePath(e.Key())
				if err != nil {
					continue
				}
				var v []byte
				if e.Operation() == jetstream.KeyValuePut {
					v = e.Value()
				}
				ev, ok := conv(path, v, e.Revision())
				if !ok {
					continue
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
