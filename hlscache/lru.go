package hlscache

import (
	"container/heap"
	"container/list"
	"sync"
	"time"
)

// entryOverhead is the memory an entry holds beyond its key and its body's
// capacity: the object and its header values, the list element, the LRU
// entry, its map slot and expiry-queue slot. Measured by
// TestLRUBytesMatchHeap (about 600 bytes with Go 1.26 on amd64), rounded up.
const entryOverhead = 640

// lru is a byte-bounded least-recently-used store of objects. Every entry
// may carry a deadline, kept in a min-heap: expire drops the entries whose
// deadline has passed without looking at the others, so objects that can no
// longer be requested leave without waiting for budget pressure. It is safe
// for concurrent use.
//
// Why its own: the budget is in bytes of heap actually held (body capacity
// plus entryOverhead, checked against the heap by TestLRUBytesMatchHeap),
// entries carry per-object deadlines that a hit may extend (init sections),
// and a reload may shrink the budget while it runs; the count-bounded or
// TTL-only caches of common libraries do none of these together, and this
// is some 200 lines of container/list and container/heap.
//
// Invariants, under mu: items and order hold the same entries; bytes is the
// sum of their sizes and, after every add and setMax, at most maxBytes; an
// entry is in expiry (index >= 0) exactly when its deadline is set; no
// entry is larger than maxBytes/8 when it is added.
type lru struct {
	// maxBytes is the budget; objects larger than maxBytes/8 are not kept.
	maxBytes int64
	// onEvict, if set, is called (without the lock) with the number of
	// entries evicted to make room.
	onEvict func(n int)
	// onExpire, if set, is called (without the lock) with the number of
	// entries dropped because their deadline passed.
	onExpire func(n int)
	// onSize, if set, is called (under the lock) with the new byte total and entry count.
	onSize func(bytes int64, entries int)

	mu     sync.Mutex
	order  *list.List // front = most recently used
	items  map[string]*list.Element
	bytes  int64
	expiry expiryQueue // entries with a deadline, soonest first
}

type lruEntry struct {
	key  string
	obj  *object
	size int64
	// deadline is when the entry leaves the LRU; zero: only by eviction.
	deadline time.Time
	// idle, when positive, moves deadline to the time of use + idle on
	// every hit (objects requested for as long as the stream lives, such
	// as init sections).
	idle time.Duration
	// index is the entry's place in the expiry queue, -1 when not in it.
	index int
}

func newLRU(maxBytes int64) *lru {
	return &lru{maxBytes: maxBytes, order: list.New(), items: map[string]*list.Element{}}
}

// entrySize is what an entry holds in memory: the body's capacity (what
// was allocated, not what is used), the key and a fixed overhead.
func entrySize(key string, obj *object) int64 {
	return int64(len(key)+cap(obj.body)) + entryOverhead
}

// get returns the fresh object under key and marks it used; an expired one is dropped.
func (c *lru) get(key string, now time.Time) *object {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil
	}
	e := el.Value.(*lruEntry)
	if !e.obj.fresh(now) || !e.deadline.IsZero() && !now.Before(e.deadline) {
		c.removeLocked(el)
		c.reportLocked()
		return nil
	}
	if e.idle > 0 {
		e.deadline = now.Add(e.idle)
		heap.Fix(&c.expiry, e.index)
	}
	c.order.MoveToFront(el)
	return e.obj
}

// add stores obj under key, replacing what was there, and evicts the least
// recently used entries until the budget holds. It reports whether obj was
// kept. The entry leaves at the object's expiry or at deadline, whichever
// comes first (zero: none); with idle > 0 the deadline moves to each hit +
// idle. Entries already past their deadline at now are dropped first.
func (c *lru) add(key string, obj *object, now, deadline time.Time, idle time.Duration) bool {
	size := entrySize(key, obj)
	if !obj.expires.IsZero() && (deadline.IsZero() || obj.expires.Before(deadline)) {
		deadline = obj.expires
	}
	c.mu.Lock()
	if size > c.maxBytes/8 {
		c.mu.Unlock()
		return false
	}
	expired := c.expireLocked(now)
	if el, ok := c.items[key]; ok {
		c.removeLocked(el)
	}
	e := &lruEntry{key: key, obj: obj, size: size, deadline: deadline, idle: idle, index: -1}
	c.items[key] = c.order.PushFront(e)
	c.bytes += size
	if !deadline.IsZero() {
		heap.Push(&c.expiry, e)
	}
	evicted := c.evictLocked()
	c.reportLocked()
	c.mu.Unlock()
	c.report(evicted, expired)
	return true
}

// expire drops every entry whose deadline is at or before now. It costs
// O(log n) per entry dropped and nothing for the others.
func (c *lru) expire(now time.Time) int {
	c.mu.Lock()
	n := c.expireLocked(now)
	if n > 0 {
		c.reportLocked()
	}
	c.mu.Unlock()
	c.report(0, n)
	return n
}

func (c *lru) expireLocked(now time.Time) int {
	n := 0
	for len(c.expiry) > 0 && !now.Before(c.expiry[0].deadline) {
		c.removeLocked(c.items[c.expiry[0].key])
		n++
	}
	return n
}

// setMax changes the budget, evicting until it holds.
func (c *lru) setMax(maxBytes int64) {
	c.mu.Lock()
	c.maxBytes = maxBytes
	evicted := c.evictLocked()
	c.reportLocked()
	c.mu.Unlock()
	c.report(evicted, 0)
}

// shed drops least recently used entries until at least n bytes are freed
// or the LRU is empty, and returns the bytes freed: memory pressure on the
// node (see memlimit.Watcher). The budget stays as it is.
func (c *lru) shed(n int64) int64 {
	c.mu.Lock()
	start, dropped := c.bytes, 0
	for start-c.bytes < n && c.order.Len() > 0 {
		c.removeLocked(c.order.Back())
		dropped++
	}
	freed := start - c.bytes
	if dropped > 0 {
		c.reportLocked()
	}
	c.mu.Unlock()
	c.report(dropped, 0)
	return freed
}

// evictLocked drops the least recently used entries until the budget holds,
// and returns how many it dropped.
func (c *lru) evictLocked() int {
	n := 0
	for c.bytes > c.maxBytes && c.order.Len() > 0 {
		c.removeLocked(c.order.Back())
		n++
	}
	return n
}

// report tells onEvict and onExpire, without the lock, of entries dropped.
func (c *lru) report(evicted, expired int) {
	if evicted > 0 && c.onEvict != nil {
		c.onEvict(evicted)
	}
	if expired > 0 && c.onExpire != nil {
		c.onExpire(expired)
	}
}

// size returns the bytes accounted and the number of entries.
func (c *lru) size() (int64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes, len(c.items)
}

func (c *lru) removeLocked(el *list.Element) {
	e := el.Value.(*lruEntry)
	c.order.Remove(el)
	delete(c.items, e.key)
	c.bytes -= e.size
	if e.index >= 0 {
		heap.Remove(&c.expiry, e.index)
	}
	if len(c.items) == 0 && cap(c.expiry) > 64 {
		// Empty: give back the map's buckets and the queue's array, which
		// never shrink (a quiet node holds nothing of its busy hours).
		c.items, c.expiry = map[string]*list.Element{}, nil
	}
}

func (c *lru) reportLocked() {
	if c.onSize != nil {
		c.onSize(c.bytes, len(c.items))
	}
}

// expiryQueue is a min-heap of entries by deadline (container/heap).
type expiryQueue []*lruEntry

func (q expiryQueue) Len() int           { return len(q) }
func (q expiryQueue) Less(i, j int) bool { return q[i].deadline.Before(q[j].deadline) }
func (q expiryQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index = i
	q[j].index = j
}

func (q *expiryQueue) Push(x any) {
	e := x.(*lruEntry)
	e.index = len(*q)
	*q = append(*q, e)
}

func (q *expiryQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*q = old[:len(old)-1]
	return e
}
