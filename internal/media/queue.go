package media

import (
	"sync"
	"sync/atomic"
)

// Queue is the bounded buffer between one writer path and one reader: the
// writer never blocks on a slow reader. It holds items of any type; each
// push says, with a Tag, which track the item belongs to, whether it is
// video and whether it is a keyframe (its FlagKeyframe, decided once where
// the unit entered the cluster: the queue never looks into payloads).
//
// Invariants:
//   - At most Limit items wait (Force may add control items past it);
//     a push to a full queue drops the item and counts it.
//   - After any drop for a full queue, every video track waits for its
//     next keyframe: its other units are dropped and counted, so a reader
//     never gets a unit whose references were lost. Audio and control items
//     never wait.
//   - Items come out in the order they went in.
//   - Ready receives (at least) once after every Push, Force or Notify; a
//     receive may find the queue already emptied by an earlier Take.
//
// All methods are safe for concurrent use.
type Queue[T any] struct {
	limit int
	ready chan struct{}

	mu    sync.Mutex
	items []T
	// waitKey has bit n set while video track n waits for a keyframe.
	waitKey [4]uint64

	dropped atomic.Uint64
}

// Tag is what a Queue knows of an item.
type Tag struct {
	Track uint8
	Video bool
	Flags Flags
}

// Tag describes the packet for a Queue.
func (p *Packet) Tag() Tag { return Tag{Track: p.Track, Video: p.Codec.IsVideo(), Flags: p.Flags} }

// Drop says why Push refused an item; DropNone when it was queued. The
// names are metric labels.
type Drop uint8

// Drop reasons.
const (
	DropNone         Drop = iota
	DropFull              // the queue was full
	DropWaitKeyframe      // a video track waits for its next keyframe after a drop
)

// String returns the reason's metric label.
func (d Drop) String() string {
	switch d {
	case DropFull:
		return "queue_full"
	case DropWaitKeyframe:
		return "wait_keyframe"
	}
	return "none"
}

// NewQueue returns an empty queue holding at most limit items (at least 1).
func NewQueue[T any](limit int) *Queue[T] {
	return &Queue[T]{limit: max(limit, 1), ready: make(chan struct{}, 1)}
}

// Push queues v unless the queue is full or v is a video unit of a track
// waiting for a keyframe, and wakes the reader; it never blocks.
func (q *Queue[T]) Push(v T, tag Tag) Drop {
	d := q.PushQuiet(v, tag)
	if d == DropNone {
		q.Notify()
	}
	return d
}

// PushQuiet is Push without waking the reader: for a writer that may take
// the reader's part and empty the queue itself. When it does not, it calls
// Notify.
func (q *Queue[T]) PushQuiet(v T, tag Tag) Drop {
	bit, word := uint64(1)<<(tag.Track%64), tag.Track/64
	q.mu.Lock()
	switch {
	case tag.Video && q.waitKey[word]&bit != 0 && tag.Flags&FlagKeyframe == 0:
		q.mu.Unlock()
		q.dropped.Add(1)
		return DropWaitKeyframe
	case len(q.items) >= q.limit:
		q.waitKey = [4]uint64{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
		q.mu.Unlock()
		q.dropped.Add(1)
		return DropFull
	}
	q.items = append(q.items, v)
	if tag.Video {
		q.waitKey[word] &^= bit
	}
	q.mu.Unlock()
	return DropNone
}

// Force queues a control item (a marker the reader must see) even when the
// queue is full; it counts against the limit of later pushes.
func (q *Queue[T]) Force(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	q.Notify()
}

// Notify wakes the reader (Ready).
func (q *Queue[T]) Notify() {
	select {
	case q.ready <- struct{}{}:
	default: // the reader has been told already
	}
}

// Ready receives after a push or Notify; the reader then calls Take or Pop.
func (q *Queue[T]) Ready() <-chan struct{} { return q.ready }

// Take removes and returns every queued item, oldest first. buf (its
// contents ignored) becomes the queue's new backing array, so a reader
// that hands back the previous batch allocates nothing in steady state;
// the caller should clear the batch's elements once done with them.
func (q *Queue[T]) Take(buf []T) []T {
	q.mu.Lock()
	batch := q.items
	q.items = buf[:0]
	q.mu.Unlock()
	return batch
}

// Pop removes and returns the oldest item; false when the queue is empty.
func (q *Queue[T]) Pop() (T, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var zero T
	if len(q.items) == 0 {
		return zero, false
	}
	v := q.items[0]
	q.items[0] = zero
	q.items = q.items[1:]
	if len(q.items) == 0 {
		q.items = q.items[:0:0] // let the backing array go
	}
	return v, true
}

// Len is the number of waiting items.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// Dropped counts the items Push refused.
func (q *Queue[T]) Dropped() uint64 { return q.dropped.Load() }
