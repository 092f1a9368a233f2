package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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

// Registry is the cluster's shared state in JetStream KV. Fill in the fields, then Start.
// Its records each have a file: live streams (stream_info.go), owners of
// streams and camera leases (lease.go), and the fenced playlist state
// (playlist_state.go); this file opens the buckets and holds the KV helpers
// they share.
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
	// republish: the buckets whose stream republishes its records
	// (republish.go); written by Start only.
	republish map[string]bool
	// ownerParts: the owners bucket republishes by partition
	// (ownerfollow.go); written by Start only.
	ownerParts bool
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
	r.republish = map[string]bool{}
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
	// The watched buckets republish their records (republish.go).
	r.streams = open(jetstream.KeyValueConfig{Bucket: BucketStreams, History: 1, RePublish: republishConfig(BucketStreams)}, "bus.stream_ttl (stream records have no TTL since edge liveness)")
	// Owner records do not expire: they are valid while their node's
	// liveness holds, and are rewritten only when ownership changes.
	r.owners = open(jetstream.KeyValueConfig{Bucket: BucketOwners, History: 1, RePublish: republishConfig(BucketOwners)}, "bus.node_ttl (owner records have no TTL since node liveness)")
	r.state = open(jetstream.KeyValueConfig{Bucket: BucketState, History: 1, TTL: r.StateTTL}, "bus.state_ttl")
	r.sources = open(jetstream.KeyValueConfig{Bucket: BucketSources, History: 1, RePublish: republishConfig(BucketSources)}, "bus.lease_ttl (camera leases have no TTL since edge liveness)")
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
	// A bucket from before republishing keeps its watches on consumers.
	r.republish[cfg.Bucket] = cfg.RePublish != nil && republishes(have, cfg.Bucket)
	if cfg.Bucket == BucketOwners {
		r.ownerParts = sameRepublish(have, ownerRepublish())
	}
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

// get reads key's entry; ErrNotFound when it has none (or it was deleted).
func get(ctx context.Context, kv jetstream.KeyValue, key string) (jetstream.KeyValueEntry, error) {
	e, err := kv.Get(ctx, EncodePath(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, ErrNotFound
	}
	return e, err
}

// deleteAt deletes key's record if it is still at revision rev;
// ErrLeaseLost when it changed meanwhile.
func deleteAt(ctx context.Context, kv jetstream.KeyValue, key string, rev uint64) error {
	err := kv.Delete(ctx, EncodePath(key), jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return ErrLeaseLost
	}
	return err
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

// watchRev turns a bucket's changes into a typed channel: conv gets each
// record's path, value and revision (deletes and expiries arrive as a nil
// value) and says whether to send what it made of it. The channel is
// closed when the watch stops. A bucket that republishes is followed on
// its republished subject once caught up (republish.go); another through
// an ordered consumer.
func watchRev[T any](ctx context.Context, r *Registry, kv jetstream.KeyValue, conv func(string, []byte, uint64) (T, bool)) (<-chan T, error) {
	return watchRevMarked(ctx, r, kv, conv, false)
}

// watchRevMarked is watchRev; with mark, a zero T follows the records
// stored when the watch started (once every one of them was sent).
func watchRevMarked[T any](ctx context.Context, r *Registry, kv jetstream.KeyValue, conv func(string, []byte, uint64) (T, bool), mark bool) (<-chan T, error) {
	out := make(chan T, 64)
	var primed func()
	if mark {
		primed = func() {
			var zero T
			select {
			case out <- zero:
			case <-ctx.Done():
			}
		}
	}
	emit := func(rec kvRecord) bool {
		path, err := DecodePath(rec.key)
		if err != nil {
			return true
		}
		ev, ok := conv(path, rec.val, rec.seq)
		if !ok {
			return true
		}
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if r.republish[kv.Bucket()] {
		if err := watchRepublished(ctx, r.JS, kv, emit, func() { close(out) }, primed); err != nil {
			return nil, fmt.Errorf("bus: watch %s: %w", kv.Bucket(), err)
		}
		return out, nil
	}
	if err := watchConsumer(ctx, kv, emit, func() { close(out) }, primed); err != nil {
		return nil, fmt.Errorf("bus: watch %s: %w", kv.Bucket(), err)
	}
	return out, nil
}

// watchConsumer follows kv through an ordered consumer: its current records,
// then every change, passed to emit on its goroutine until emit returns
// false, ctx ends or the consumer fails; done is called when it stops.
func watchConsumer(ctx context.Context, kv jetstream.KeyValue, emit func(kvRecord) bool, done, primed func()) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	go func() {
		defer done()
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					if primed != nil {
						primed() // end of the initial values
						primed = nil
					}
					continue
				}
				rec := kvRecord{key: e.Key(), seq: e.Revision()}
				if e.Operation() == jetstream.KeyValuePut {
					rec.val = e.Value()
				}
				if !emit(rec) {
					return
				}
			}
		}
	}()
	return nil
}
