package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

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
	// epoch is at most its revision, and a new record's is its creation
	// revision, above every revision before it. A new record is written
	// with epoch 0 (createdEpoch reads it as its revision).
	Epoch uint64 `json:"epoch"`
	// Since is when the lease was acquired or taken over.
	Since time.Time `json:"since"`
	// Standby lists the edges that list a camera and wait to pull it
	// (camera leases only): when the holder dies, the live ones rank for
	// the take-over (StandBySource).
	Standby []string `json:"standby,omitempty"`
}

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
	// The fencing epoch is the create's revision. It is not written into
	// the record: every reader takes an epoch-0 record's revision for it
	// (createdEpoch), and every later write (a take-over, a standby edge
	// joining) writes the epoch it read. Writing it too was a second
	// replicated write per claim, delivered again to every watcher.
	o.Epoch = rev
	return &Lease{Key: key, Owner: o, Rev: rev}, nil
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
	return deleteAt(ctx, kv, l.Key, l.Rev)
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
	return deleteAt(ctx, r.owners, path, rev)
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
	if json.Unmarshal(e.Value(), &cur) != nil {
		return ErrLeaseLost
	}
	if createdEpoch(&cur, e.Revision()); cur.Node != l.Owner.Node || cur.Epoch != l.Owner.Epoch {
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
	return watchOwnerRecords(ctx, r, r.owners)
}

// WatchOwnersMarked is WatchOwners with a mark: an event with an empty
// Path follows the records stored when the watch started, so that a
// reader that opens the watch on demand knows when its picture is whole.
func (r *Registry) WatchOwnersMarked(ctx context.Context) (<-chan OwnerEvent, error) {
	return watchRevMarked(ctx, r, r.owners, ownerConv, true)
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
		if json.Unmarshal(e.Value(), &cur) != nil {
			return ErrLeaseLost
		}
		if createdEpoch(&cur, e.Revision()); cur.Node != l.Owner.Node || cur.Instance != l.Owner.Instance || cur.Epoch != l.Owner.Epoch {
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
	ev, ok := ownerEvent(name, e.Value(), e.Revision())
	if !ok || ev.Owner == nil {
		return nil, 0, ErrNotFound
	}
	return ev.Owner, e.Revision(), nil
}

// WatchSources sends the current camera leases, then every change, with
// their revisions.
func (r *Registry) WatchSources(ctx context.Context) (<-chan OwnerEvent, error) {
	return watchOwnerRecords(ctx, r, r.sources)
}

// watchOwnerRecords watches a bucket of Owner records (owners, camera
// leases): each event carries the record's revision.
func watchOwnerRecords(ctx context.Context, r *Registry, kv jetstream.KeyValue) (<-chan OwnerEvent, error) {
	return watchRev(ctx, r, kv, ownerConv)
}

// ownerConv makes an owner event of a record, with its revision.
func ownerConv(path string, v []byte, rev uint64) (OwnerEvent, bool) {
	ev, ok := ownerEvent(path, v, rev)
	if ev.Owner != nil {
		ev.Rev = rev
	}
	return ev, ok
}

func ownerEvent(path string, v []byte, rev uint64) (OwnerEvent, bool) {
	if v == nil {
		return OwnerEvent{Path: path}, true
	}
	var o Owner
	if json.Unmarshal(v, &o) != nil {
		return OwnerEvent{Path: path}, true
	}
	createdEpoch(&o, rev)
	return OwnerEvent{Path: path, Owner: &o}, true
}

// createdEpoch gives a record written by acquire's create (epoch 0) its
// epoch: the create's revision. acquire writes nothing more, so such a
// record keeps its create revision until it is rewritten, and every
// rewrite (take-over, standby) writes an epoch. (Builds before 847b24b
// wrote the epoch with an update after the create and took an epoch-0
// record for one not yet announced: they must not run beside this one.)
func createdEpoch(o *Owner, rev uint64) {
	if o.Epoch == 0 {
		o.Epoch = rev
	}
}

func getOwner(ctx context.Context, kv jetstream.KeyValue, key string) (*Owner, error) {
	e, err := get(ctx, kv, key)
	if err != nil {
		return nil, err
	}
	ev, ok := ownerEvent(key, e.Value(), e.Revision())
	if !ok || ev.Owner == nil {
		return nil, ErrNotFound
	}
	return ev.Owner, nil
}
