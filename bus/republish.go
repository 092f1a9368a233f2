package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamgrid/streamgrid/internal/sleep"
)

// The registry's watched buckets (streams, owners, camera leases)
// republish every stored record on a plain NATS subject, and a watch
// follows that subject once it has caught up, instead of keeping a
// JetStream consumer open for its whole life.
//
// Why: every watch of a bucket receives every change of it. Through an
// ordered consumer each of those deliveries is a consumer's work on the
// bucket's leader (~60 µs of bus CPU each on the test machine, with 100
// watchers of one R3 bucket); through the republished subject it is a
// plain fan-out (~40 µs, the socket write that is left). A hundred origins
// and their caches each watch two or three buckets, so a new stream's two
// records are 2 × O deliveries: that fan-out, not the replicated writes, is
// what a control plane of 10 000 cameras spends its bus on (docs/cluster.md,
// "Control plane at scale").
//
// Plain NATS is at-most-once, so a watch that has switched to the subject
// checks what it gets: every stored message of the bucket is republished
// (by the stream's leader, after the write is stored) with its stream
// sequence, and those sequences have no holes, so a watch that sees
// sequence s after s-2 lost s-1 (a slow-consumer drop, a reconnect, a
// leader change between the store and the republish). It then reads the
// missing sequences from the stream's leader. A loss with nothing after it is found
// by comparing the bucket's last sequence every republishCheck, and at
// once after a reconnect. A bucket created by a build before this one has
// no republish setting: its watches keep their consumer (Registry.Start
// never changes a bucket).
const (
	// RepublishPrefix starts the subjects the watched buckets republish
	// on: RepublishPrefix + bucket + "." + key.
	RepublishPrefix = "sg.kv."
	// republishCheck is how often a switched watch compares the bucket's
	// last sequence with its own, for a loss that nothing followed.
	republishCheck = 10 * time.Second
	// maxGapFill is the most missing sequences a watch reads one by one;
	// a larger gap ends the watch, and its reader opens a new one (which
	// replays every record, as after the bus went away).
	maxGapFill = 1000
	// maxRepublishQueue bounds what a watch holds that its reader has not
	// taken; past it the watch ends as after a large gap.
	maxRepublishQueue = 100_000
)

// republishTests lets a test drop republished messages before the watch
// sees them (a loss on the wire), shorten the tail check and see a watch
// switch to the republished subject. Set only by tests that do not run in
// parallel.
var republishTests struct {
	drop     func(*nats.Msg) bool
	check    time.Duration
	switched func(bucket string)
	failGets atomic.Int32 // this many gets by sequence fail (the leader away)
}

// republishConfig is the republish setting of bucket's stream.
func republishConfig(bucket string) *jetstream.RePublish {
	if bucket == BucketOwners {
		return ownerRepublish() // by partition (ownerfollow.go)
	}
	return plainRepublish(bucket)
}

// plainRepublish republishes every key of bucket on RepublishPrefix +
// bucket + "." + key (the owners bucket too, as created before partitions).
func plainRepublish(bucket string) *jetstream.RePublish {
	return &jetstream.RePublish{Source: "$KV." + bucket + ".>", Destination: RepublishPrefix + bucket + ".>"}
}

// republishes says whether an existing bucket's stream republishes as
// this build expects, or as the build before owner partitions did (its
// full watches work the same; partitions are not followed).
func republishes(cfg jetstream.StreamConfig, bucket string) bool {
	return sameRepublish(cfg, republishConfig(bucket)) || sameRepublish(cfg, plainRepublish(bucket))
}

func sameRepublish(cfg jetstream.StreamConfig, want *jetstream.RePublish) bool {
	return cfg.RePublish != nil && cfg.RePublish.Source == want.Source &&
		cfg.RePublish.Destination == want.Destination && !cfg.RePublish.HeadersOnly
}

// kvRecord is one stored message of a bucket: its key, its value (nil for
// a delete or purge) and its sequence, the record's revision.
type kvRecord struct {
	key string
	val []byte
	seq uint64
}

// rpQueue holds the republished messages the watch has not taken yet.
type rpQueue struct {
	mu       sync.Mutex
	msgs     []*nats.Msg
	overflow bool
	notify   chan struct{}
}

func (q *rpQueue) push(m *nats.Msg) {
	if republishTests.drop != nil && republishTests.drop(m) {
		return
	}
	q.mu.Lock()
	if len(q.msgs) >= maxRepublishQueue {
		q.overflow = true
	} else {
		q.msgs = append(q.msgs, m)
	}
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// take returns what is queued, and whether the queue overflowed.
func (q *rpQueue) take() ([]*nats.Msg, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	msgs := q.msgs
	q.msgs = nil
	return msgs, q.overflow
}

func msgSeq(m *nats.Msg) (uint64, bool) {
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	return seq, err == nil && seq > 0
}

// republishedRecord reads a republished message of bucket.
func republishedRecord(m *nats.Msg, bucket string) (kvRecord, bool) {
	seq, ok := msgSeq(m)
	if !ok {
		return kvRecord{}, false
	}
	return storedRecord(m.Header.Get(jetstream.SubjectHeader), m.Header, m.Data, seq, bucket)
}

// storedRecord makes a record of a stored message of bucket (its subject,
// headers, data and sequence); false when the subject is not a key of it.
func storedRecord(subject string, h nats.Header, data []byte, seq uint64, bucket string) (kvRecord, bool) {
	key, ok := strings.CutPrefix(subject, "$KV."+bucket+".")
	if !ok {
		return kvRecord{}, false
	}
	r := kvRecord{key: key, val: data, seq: seq}
	if op := h.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		r.val = nil
	}
	return r, true
}

// rpWatch is one watch of a bucket that republishes.
type rpWatch struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	bucket string
	q      *rpQueue
	emit   func(kvRecord) bool // false: the reader is gone
	last   uint64              // the last sequence passed on
	// primed, when set, is called once every record stored when the watch
	// started has been passed on.
	primed func()
}

// prime calls primed once.
func (w *rpWatch) prime() {
	if f := w.primed; f != nil {
		w.primed = nil
		f()
	}
}

// watchRepublished follows kv: the current records and the changes up to
// the switch through an ordered consumer, then the republished subject.
// emit is called from its goroutine; done is called when it stops.
func watchRepublished(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, emit func(kvRecord) bool, done, primed func()) error {
	w := &rpWatch{js: js, kv: kv, bucket: kv.Bucket(), q: &rpQueue{notify: make(chan struct{}, 1)}, emit: emit, primed: primed}
	nc := js.Conn()
	// Subscribed before the consumer starts: whatever is stored after the
	// consumer's snapshot is also queued here.
	sub, err := nc.Subscribe(RepublishPrefix+w.bucket+".>", w.q.push)
	if err != nil {
		return err
	}
	_ = sub.SetPendingLimits(-1, -1) // the queue bounds it (maxRepublishQueue)
	cw, err := kv.WatchAll(ctx)
	if err != nil {
		_ = sub.Unsubscribe()
		return err
	}
	go func() {
		defer done()
		defer func() { _ = sub.Unsubscribe() }()
		if !w.catchUp(ctx, cw) {
			return
		}
		w.follow(ctx, nc)
	}()
	return nil
}

// catchUp passes on what the consumer delivers until the queue shows
// republished messages following on from it without a hole: the proof
// that this connection receives the bucket's republished messages (the
// interest reached the leader, the user may subscribe). Until then, and
// for as long as nothing is written, the consumer goes on serving.
func (w *rpWatch) catchUp(ctx context.Context, cw jetstream.KeyWatcher) bool {
	defer func() { _ = cw.Stop() }()
	var held []*nats.Msg
	var seen uint64 // the highest republished sequence queued
	for {
		msgs, overflow := w.q.take()
		if overflow {
			return false
		}
		for _, m := range msgs {
			if seq, ok := msgSeq(m); ok {
				seen = max(seen, seq)
				if seq > w.last {
					held = append(held, m)
				}
			}
		}
		// Drop what the consumer passed on already.
		i := 0
		for i < len(held) {
			if seq, _ := msgSeq(held[i]); seq <= w.last {
				i++
				continue
			}
			break
		}
		held = held[i:]
		// Switch when the republished messages go on from where the
		// consumer is, or have reached it.
		next := len(held) > 0
		if next {
			seq, _ := msgSeq(held[0])
			next = seq == w.last+1
		}
		if next || (len(held) == 0 && seen > 0 && seen == w.last) {
			if republishTests.switched != nil {
				republishTests.switched(w.bucket)
			}
			if !w.deliver(ctx, held) {
				return false
			}
			w.prime() // the republished messages go on from the consumer's
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-w.q.notify:
		case e, ok := <-cw.Updates():
			if !ok {
				return false
			}
			if e == nil {
				w.prime() // end of the initial values
				continue
			}
			r := kvRecord{key: e.Key(), seq: e.Revision()}
			if e.Operation() == jetstream.KeyValuePut {
				r.val = e.Value()
			}
			if r.seq <= w.last {
				continue
			}
			w.last = r.seq
			if !w.emit(r) {
				return false
			}
		}
	}
}

// follow reads the republished messages until ctx ends, the reader goes,
// or a loss is too large to mend.
func (w *rpWatch) follow(ctx context.Context, nc *nats.Conn) {
	every := republishCheck
	if republishTests.check > 0 {
		every = republishTests.check
	}
	recheck := min(every, time.Second)
	tick := time.NewTicker(recheck)
	defer tick.Stop()
	lastCheck := time.Now()
	reconnects := nc.Stats().Reconnects
	// behind is the bucket's last sequence as the last check read it, when
	// that was ahead of what this watch had: a recheck later tells a record
	// on its way from a lost one.
	var behind uint64
	var behindAt time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.q.notify:
			msgs, overflow := w.q.take()
			if overflow || !w.deliver(ctx, msgs) {
				return
			}
		case now := <-tick.C:
			if behind > 0 && now.Sub(behindAt) >= recheck {
				if behind > w.last && !w.fill(ctx, behind+1) {
					return // still behind what the bucket held: lost, and not mended
				}
				behind = 0
			}
			// A reconnect (what was sent meanwhile is lost) asks for a
			// check at once; otherwise one every republishCheck.
			rc := nc.Stats().Reconnects
			if rc == reconnects && now.Sub(lastCheck) < every {
				continue
			}
			reconnects, lastCheck = rc, now
			if last, err := w.bucketLast(ctx); err == nil && last > w.last {
				behind, behindAt = last, now
			}
		}
	}
}

// deliver passes on the republished messages msgs, mending holes before them.
func (w *rpWatch) deliver(ctx context.Context, msgs []*nats.Msg) bool {
	for _, m := range msgs {
		r, ok := republishedRecord(m, w.bucket)
		if !ok || r.seq <= w.last {
			continue
		}
		if r.seq > w.last+1 && !w.fill(ctx, r.seq) {
			return false
		}
		w.last = r.seq
		if !w.emit(r) {
			return false
		}
	}
	return true
}

// fill reads the sequences from w.last+1 up to (not including) upTo and
// passes on those still stored (a missing one was replaced by a later
// write of its key, which comes in its turn).
func (w *rpWatch) fill(ctx context.Context, upTo uint64) bool {
	if upTo-w.last-1 > maxGapFill {
		return false
	}
	for seq := w.last + 1; seq < upTo; seq++ {
		r, found, err := w.getSeq(ctx, seq)
		// The loss may come from the bucket's leader going away: its
		// successor answers once elected (seconds). Only a bus that stays
		// away ends the watch.
		for wait := 250 * time.Millisecond; err != nil && wait <= 8*time.Second; wait *= 2 {
			if !sleep.For(ctx, wait) {
				return false
			}
			r, found, err = w.getSeq(ctx, seq)
		}
		if err != nil {
			return false
		}
		w.last = seq
		if found && !w.emit(r) {
			return false
		}
	}
	return true
}

// getSeq reads the bucket's message at seq through the stream's leader
// (STREAM.MSG.GET, not a direct get: a follower that has not applied the
// sequence yet would answer "not found", and the record would be skipped).
func (w *rpWatch) getSeq(ctx context.Context, seq uint64) (kvRecord, bool, error) {
	if republishTests.failGets.Load() > 0 && republishTests.failGets.Add(-1) >= 0 {
		return kvRecord{}, false, errors.New("bus: test: no leader")
	}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := json.Marshal(struct {
		Seq uint64 `json:"seq"`
	}{seq})
	m, err := w.js.Conn().RequestWithContext(gctx, "$JS.API.STREAM.MSG.GET.KV_"+w.bucket, req)
	if err != nil {
		return kvRecord{}, false, err
	}
	var resp struct {
		Message *struct {
			Subject string `json:"subject"`
			Header  []byte `json:"hdrs"`
			Data    []byte `json:"data"`
		} `json:"message"`
		Error *struct {
			Code    int    `json:"code"`
			ErrCode int    `json:"err_code"`
			Desc    string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return kvRecord{}, false, err
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound):
		return kvRecord{}, false, nil
	case resp.Error != nil:
		return kvRecord{}, false, fmt.Errorf("bus: get %s #%d: %s", w.bucket, seq, resp.Error.Desc)
	case resp.Message == nil:
		return kvRecord{}, false, fmt.Errorf("bus: get %s #%d: empty answer", w.bucket, seq)
	}
	var h nats.Header
	if len(resp.Message.Header) > 0 {
		if h, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return kvRecord{}, false, err
		}
	}
	r, ok := storedRecord(resp.Message.Subject, h, resp.Message.Data, seq, w.bucket)
	return r, ok, nil
}

// bucketLast is the bucket's last stored sequence.
func (w *rpWatch) bucketLast(ctx context.Context) (uint64, error) {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := w.kv.Status(sctx)
	if err != nil {
		return 0, err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return 0, errors.New("bus: no stream status")
	}
	return bs.StreamInfo().State.LastSeq, nil
}
