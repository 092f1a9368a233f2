package bus

import (
	"cmp"
	"context"
	"errors"
	"hash/fnv"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Owner records are republished on one of OwnerParts subjects, the
// partition the bus computes from the record's key (FNV-1a, the
// `partition` subject transform), so that an origin can follow the owner
// records of the paths it may act on and no others.
//
// Why: a take-over rewrites every orphaned stream's owner record, and with
// a full watch on every origin each rewrite is delivered to every origin.
// At 10 000 streams on 100 origins a kill of ten orphans ~1 000 streams:
// ~90 000 deliveries in the seconds the take-over runs, most of the bus's
// work then (docs/cluster.md, "Owner records by partition"). Only the few
// origins a path ranks first among the live ones act on its record (the
// taker, the warm standby, the claimers of a new stream), so each origin
// follows the partitions it ranks among the first OwnerWindow for
// (PartRank), and a rewrite reaches OwnerWindow origins plus the full
// watches (caches, the API while it is asked).
const (
	// OwnerParts is how many partitions the owner records are spread
	// over: ~40 first on each of 100 origins. Ranking partitions instead
	// of paths spreads streams less evenly (10 000 over 90 survivors: 65
	// to 150, average 111); 16 384 would spread them better, but each
	// origin then subscribes to ~650 subjects, and a kill of ten moved
	// 6 500 subscriptions across the bus at once (the simulation lapsed:
	// docs/cluster.md).
	OwnerParts = 4096
	// OwnerWindow is how many of the live origins a partition ranks first
	// follow its owner records; the others never claim its streams.
	OwnerWindow = 4
)

// ownerRepublish is the owners bucket's republish setting: the partition,
// then the key.
func ownerRepublish() *jetstream.RePublish {
	return &jetstream.RePublish{
		Source:      "$KV." + BucketOwners + ".*",
		Destination: RepublishPrefix + BucketOwners + ".{{partition(" + strconv.Itoa(OwnerParts) + ",1)}}.{{wildcard(1)}}",
	}
}

// OwnerPart is the partition of path's owner record: what the bus computes
// for its republished subject (FNV-1a 32 of the key, modulo OwnerParts).
func OwnerPart(path string) int {
	// FNV-1a 32 of EncodePath(path), hashed as it is encoded (no string).
	const prime = 16777619
	h := uint32(2166136261)
	for i := 0; i < len(path); i++ {
		c := path[i]
		if tokenByte(c) {
			h = (h ^ uint32(c)) * prime
			continue
		}
		h = (h ^ '=') * prime
		h = (h ^ uint32(hexDigits[c>>4])) * prime
		h = (h ^ uint32(hexDigits[c&0xF])) * prime
	}
	return int(h % OwnerParts)
}

func keyPart(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % OwnerParts)
}

// partHashes are the partitions' names hashed for RankHashed.
var partHashes = func() []uint64 {
	h := make([]uint64, OwnerParts)
	for i := range h {
		h[i] = HashName("part/" + strconv.Itoa(i))
	}
	return h
}()

// PartHash is partition p's hash for RankHashed: origins are ranked per
// partition, not per path, so the origins that follow a partition's owner
// records are the ones its paths rank first.
func PartHash(p int) uint64 { return partHashes[p] }

// PathRankHash is the hash an origin ranks path with (its partition's).
func PathRankHash(path string) uint64 { return partHashes[OwnerPart(path)] }

// OwnerRank is origin node's rendezvous score for path's owner partition.
// The origins a partition ranks first follow its owner records
// (OwnerWindow of them); the order in which they take a path is
// OwnerOrder's.
func OwnerRank(node, path string) uint64 { return RankHashed(HashName(node), PathRankHash(path)) }

// OwnerShare is how many of a partition's first live origins share its
// streams: among them, each path ranks them by its own hash, not the
// partition's. The rest follow in the partition's order. So a dead
// origin's streams in a partition go to two survivors, not one, and new
// streams spread over two origins per partition: with the partition's
// order alone, a kill of 10 of 100 origins made some survivors takers of
// five times the average (docs/cluster.md). Both are among the
// OwnerWindow origins that follow the partition, also after one of them
// died: the third moves up, and it followed already.
const OwnerShare = 2

// OwnerOrder returns nodes (origin names) in the order they take path:
// the first OwnerShare by OwnerRank, ordered by Rank(node, path), then
// the rest by OwnerRank. The first takes a dead owner's stream at once,
// the next is its warm standby.
func OwnerOrder(nodes []string, path string) []string {
	out := slices.Clone(nodes)
	slices.SortFunc(out, func(a, b string) int { return cmp.Compare(OwnerRank(b, path), OwnerRank(a, path)) })
	share := out[:min(OwnerShare, len(out))]
	slices.SortFunc(share, func(a, b string) int { return cmp.Compare(Rank(b, path), Rank(a, path)) })
	return out
}

// OwnerPlace is how many origins come before the origin self in
// OwnerOrder for path, others being the other live origins; all of them
// hashed by HashName. It allocates nothing: an origin asks once per path
// it looks at.
func OwnerPlace(self uint64, others []uint64, path string) int {
	hp := PathRankHash(path)
	mine := RankHashed(self, hp)
	// above counts the others the partition ranks first; share holds the
	// best OwnerShare-1 of them (their partition score and hash).
	above := 0
	var share [OwnerShare - 1]struct{ score, hash uint64 }
	n := 0
	for _, o := range others {
		sc := RankHashed(o, hp)
		if sc > mine {
			above++
		}
		i := n
		for i > 0 && share[i-1].score < sc {
			i--
		}
		if i < len(share) {
			copy(share[i+1:], share[i:min(n, len(share)-1)])
			share[i] = struct{ score, hash uint64 }{sc, o}
			n = min(n+1, len(share))
		}
	}
	if above >= OwnerShare {
		return above
	}
	hs := HashName(path)
	mineP := RankHashed(self, hs)
	place := 0
	for _, m := range share[:n] {
		if RankHashed(m.hash, hs) > mineP {
			place++
		}
	}
	return place
}

// OwnerFollow follows the owner records of some partitions: their current
// records, then every change. Start it following every partition; Follow
// narrows or widens the set, Read fetches records a widened set needs.
// Events come on Events() until ctx ends or the watch fails (the channel
// is closed: open another).
//
// Every partition: a full watch (republish.go), with its loss detection.
// Some: one subscription per partition, each record passed on when its
// revision is newer than the last one seen of its key. A message lost on
// the way (a reconnect, a full queue) starts a read of the whole bucket;
// a stale record is also mended when the origin acts on it (a
// compare-and-set that fails is followed by Read of that record).
type OwnerFollow struct {
	r   *Registry
	nc  *nats.Conn
	ctx context.Context
	out chan OwnerEvent
	in  chan followRec
	// msgs receives the partitions' republished messages (ChanSubscribe:
	// no goroutine per subscription); a full channel drops, which the
	// loop sees in the subscriptions' Dropped counts.
	msgs chan *nats.Msg

	mu    sync.Mutex
	parts []bool // nil: every partition
	subs  map[int]*nats.Subscription
	full  context.CancelFunc // the full watch, while every partition is followed
	// fullPrimed is closed when the full watch has passed on every record
	// stored when it started.
	fullPrimed chan struct{}
	// revs is the last revision passed on per key (deletes included).
	revs        map[string]uint64
	dropped     int // Dropped of subscriptions since closed
	seenDropped int // the drops the loop has seen
	failed      bool
}

type followRec struct {
	kvRecord
	read bool // a Read's answer: val nil means no record
	// resync: from a read of the whole bucket (after a loss).
	resync bool
}

// ownerFollowTests lets a test lose a partition's message before the
// watch sees it. Set only by tests that do not run in parallel.
var ownerFollowTests struct {
	drop atomic.Pointer[func(*nats.Msg) bool]
}

// FollowOverlap is how long a partition's subscription is given to reach
// every bus node before what it misses is read instead.
const FollowOverlap = followOverlap

const followOverlap = time.Second

// followQueue bounds the partitions' messages not yet taken by the loop.
const followQueue = 1 << 16

// FollowOwners starts following every partition's owner records.
func (r *Registry) FollowOwners(ctx context.Context) (*OwnerFollow, error) {
	f := &OwnerFollow{
		r: r, nc: r.JS.Conn(), ctx: ctx,
		out:  make(chan OwnerEvent, 64),
		in:   make(chan followRec, 256),
		msgs: make(chan *nats.Msg, followQueue),
		subs: map[int]*nats.Subscription{},
		revs: map[string]uint64{},
	}
	f.mu.Lock()
	err := f.startFull()
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	go f.loop()
	return f, nil
}

// Events is the records of the followed partitions and their changes.
func (f *OwnerFollow) Events() <-chan OwnerEvent { return f.out }

// Follows says whether partition p is followed.
func (f *OwnerFollow) Follows(p int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.parts == nil || f.parts[p]
}

// startFull starts the full watch (mu held).
func (f *OwnerFollow) startFull() error {
	wctx, cancel := context.WithCancel(f.ctx)
	emit := func(rec kvRecord) bool {
		select {
		case f.in <- followRec{kvRecord: rec}:
			return true
		case <-wctx.Done():
			return false
		}
	}
	done := func() {
		if wctx.Err() == nil { // ended by itself: the bus went away
			f.fail()
		}
	}
	primed := make(chan struct{})
	prime := sync.OnceFunc(func() { close(primed) })
	var err error
	if f.r.republish[BucketOwners] {
		err = watchRepublished(wctx, f.r.JS, f.r.owners, emit, done, prime)
	} else {
		err = watchConsumer(wctx, f.r.owners, emit, done, prime)
	}
	if err != nil {
		cancel()
		return err
	}
	f.full, f.fullPrimed = cancel, primed
	return nil
}

// Follow sets the partitions followed (nil: every one). It returns the
// partitions that were not followed before: their current records are not
// known, and the reader asks for those it needs with Read. Partitions no
// longer followed send nothing more.
func (f *OwnerFollow) Follow(parts []bool) (added []int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if parts == nil {
		if f.parts == nil {
			return nil, nil
		}
		if err := f.startFull(); err != nil {
			return nil, err
		}
		for p := range f.subs {
			f.unsubscribe(p)
		}
		f.parts = nil
		f.forgetUnfollowed()
		return nil, nil // the full watch replays every record
	}
	if !f.r.ownerParts || len(parts) != OwnerParts {
		return nil, nil // a bucket from before partitions: stay on the full watch
	}
	for p, on := range parts {
		_, subscribed := f.subs[p]
		switch {
		case on && !subscribed:
			sub, err := f.nc.ChanSubscribe(RepublishPrefix+BucketOwners+"."+strconv.Itoa(p)+".*", f.msgs)
			if err != nil {
				return nil, err
			}
			f.subs[p] = sub
			if f.parts != nil && !f.parts[p] {
				added = append(added, p)
			}
		case !on && subscribed:
			f.unsubscribe(p)
		}
	}
	if f.full != nil {
		// Every record is known from the full watch: nothing to read. It
		// goes on for followOverlap, until the partitions' subscriptions
		// have reached every bus node (interest crosses the cluster's
		// routes after the subscribe, and the stream's leader republishes
		// to the subscribers it knows of): both pass records on meanwhile,
		// each once (newer).
		stop, primed := f.full, f.fullPrimed
		f.full, f.fullPrimed = nil, nil
		go func() {
			// Not before it has passed every record on (a watch opened
			// again after the bus went away replays the whole bucket).
			select {
			case <-primed:
			case <-f.ctx.Done():
			}
			select {
			case <-time.After(followOverlap):
			case <-f.ctx.Done():
			}
			stop()
		}()
	}
	f.parts = append(f.parts[:0:0], parts...)
	f.forgetUnfollowed()
	return added, nil
}

// forgetUnfollowed forgets the keys of partitions no longer followed (mu held), so
// that a partition followed again passes its records on again.
func (f *OwnerFollow) forgetUnfollowed() {
	for k := range f.revs {
		if f.parts != nil && !f.parts[keyPart(k)] {
			delete(f.revs, k)
		}
	}
}

func (f *OwnerFollow) unsubscribe(p int) {
	sub := f.subs[p]
	f.dropped += droppedOf(sub)
	_ = sub.Unsubscribe()
	delete(f.subs, p)
}

func droppedOf(sub *nats.Subscription) int {
	n, _ := sub.Dropped()
	return n
}

// Read fetches the owner records of paths (their partitions followed) and
// passes them on as events, an event without an Owner where there is
// none. A record the watch has passed on something newer of is dropped.
func (f *OwnerFollow) Read(paths []string) { f.ReadAfter(paths, 0) }

// ReadAfter is Read after a pause: for partitions just joined, whose
// subscriptions need followOverlap to reach every bus node (a record
// written meanwhile is in the read).
func (f *OwnerFollow) ReadAfter(paths []string, pause time.Duration) {
	if len(paths) == 0 {
		return
	}
	go func() {
		if pause > 0 {
			select {
			case <-time.After(pause):
			case <-f.ctx.Done():
				return
			}
		}
		for _, path := range paths {
			key := EncodePath(path)
			rec := followRec{kvRecord: kvRecord{key: key}, read: true}
			ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
			e, err := f.r.owners.Get(ctx, key)
			cancel()
			switch {
			case err == nil:
				rec.val, rec.seq = e.Value(), e.Revision()
			case isNotFound(err):
			default:
				if f.ctx.Err() == nil {
					f.fail() // the bus is away: a new watch reads everything
				}
				return
			}
			select {
			case f.in <- rec:
			case <-f.ctx.Done():
				return
			}
		}
	}()
}

func isNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}

// fail ends the watch: Events is closed, and the reader opens another.
func (f *OwnerFollow) fail() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed {
		return
	}
	f.failed = true
	select {
	case f.in <- followRec{}: // wakes the loop
	default:
	}
}

// loop passes the records of the followed partitions on, newest per key.
func (f *OwnerFollow) loop() {
	defer close(f.out)
	defer f.stopAll()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	reconnects := f.nc.Stats().Reconnects
	var resyncing bool
	for {
		var rec followRec
		select {
		case <-f.ctx.Done():
			return
		case m := <-f.msgs:
			if drop := ownerFollowTests.drop.Load(); drop != nil && (*drop)(m) {
				continue
			}
			r, ok := republishedRecord(m, BucketOwners)
			if !ok {
				continue
			}
			rec.kvRecord = r
		case rec = <-f.in:
			if rec.key == "" {
				if rec.resync {
					resyncing = false
				}
				if f.isFailed() {
					return
				}
				continue
			}
		case <-tick.C:
			if f.isFailed() {
				return
			}
			// A loss while following partitions: a reconnect (what was
			// published meanwhile is lost) or messages dropped.
			rc := f.nc.Stats().Reconnects
			if d := f.droppedNow(); (rc != reconnects || d) && !resyncing && !f.followsAll() {
				resyncing = true
				go f.resync()
			}
			reconnects = rc
			continue
		}
		if !f.newer(rec) {
			continue
		}
		path, err := DecodePath(rec.key)
		if err != nil {
			continue
		}
		ev, _ := ownerEvent(path, rec.val, rec.seq)
		if ev.Owner != nil {
			ev.Rev = rec.seq
		}
		select {
		case f.out <- ev:
		case <-f.ctx.Done():
			return
		}
	}
}

// newer says whether rec is to be passed on: its partition followed, and
// newer than what was passed on of its key (a read: not older). It notes
// what it passes on.
func (f *OwnerFollow) newer(rec followRec) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.parts != nil && !f.parts[keyPart(rec.key)] {
		return false
	}
	last, known := f.revs[rec.key]
	switch {
	case rec.read && rec.val == nil && known:
		return false // the watch knows better
	case rec.read && rec.seq < last, !rec.read && known && rec.seq <= last:
		return false
	}
	if rec.seq > 0 {
		f.revs[rec.key] = rec.seq
	}
	return true
}

func (f *OwnerFollow) isFailed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// Partitioned says whether the bucket republishes by partition: a bucket
// created before partitions is followed whole whatever Follow is told.
func (f *OwnerFollow) Partitioned() bool { return f.r.ownerParts }

// FollowsAll says whether every partition is followed.
func (f *OwnerFollow) FollowsAll() bool { return f.followsAll() }

func (f *OwnerFollow) followsAll() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.parts == nil
}

// droppedNow says whether a subscription dropped messages since last asked.
func (f *OwnerFollow) droppedNow() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.dropped
	for _, sub := range f.subs {
		n += droppedOf(sub)
	}
	changed := n > f.seenDropped
	f.seenDropped = n
	return changed
}

// resync reads every record of the bucket once (an ordered consumer's
// initial values) and passes them through the loop, which keeps those of
// followed partitions newer than what it has.
func (f *OwnerFollow) resync() {
	defer func() {
		select {
		case f.in <- followRec{resync: true}:
		case <-f.ctx.Done():
		}
	}()
	w, err := f.r.owners.WatchAll(f.ctx)
	if err != nil {
		f.fail()
		return
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-f.ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				f.fail()
				return
			}
			if e == nil {
				return // the initial values are done
			}
			rec := followRec{kvRecord: kvRecord{key: e.Key(), seq: e.Revision()}}
			if e.Operation() == jetstream.KeyValuePut {
				rec.val = e.Value()
			}
			select {
			case f.in <- rec:
			case <-f.ctx.Done():
				return
			}
		}
	}
}

// stopAll ends the subscriptions and the full watch.
func (f *OwnerFollow) stopAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p := range f.subs {
		f.unsubscribe(p)
	}
	if f.full != nil {
		f.full()
		f.full = nil
	}
}
