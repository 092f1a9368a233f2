package hlscache

import (
	"container/list"
	"sync"
	"time"
)

// entryOverhead approximates the memory an entry costs beyond its body and
// key (list element, map slot, object header), so that many tiny objects
// (404s, playlists) are accounted for too.
const entryOverhead = 256

// lru is a byte-bounded least-recently-used store of objects. It is safe for
// concurrent use.
type lru struct {
	// maxBytes is the budget; objects larger than maxBytes/8 are not kept.
	maxBytes int64
	// onEvict, if set, is called (without the lock) with the number of
	// entries evicted to make room.
	onEvict func(n int)
	// onSize, if set, is called (under the lock) with the new byte total and entry count.
	onSize func(bytes int64, entries int)

	mu    sync.Mutex
	order *list.List // front = most recently used
	items map[string]*list.Element
	bytes int64
}

type lruEntry struct {
	key  string
	obj  *object
	size int64
}

func newLRU(maxBytes int64) *lru {
	return &lru{maxBytes: maxBytes, order: list.New(), items: map[string]*list.Element{}}
}

func entrySize(key string, obj *object) int64 {
	return int64(len(key)+len(obj.body)) + entryOverhead
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
	if !e.obj.fresh(now) {
		c.removeLocked(el)
		c.reportLocked()
		return nil
	}
	c.order.MoveToFront(el)
	return e.obj
}

// add stores obj under key, replacing what was there, and evicts the least
// recently used entries until the budget holds. It reports whether obj was kept.
func (c *lru) add(key string, obj *object) bool {
	size := entrySize(key, obj)
	evicted := 0
	c.mu.Lock()
	if size > c.maxBytes/8 {
		c.mu.Unlock()
		return false
	}
	if el, ok := c.items[key]; ok {
		c.removeLocked(el)
	}
	c.items[key] = c.order.PushFront(&lruEntry{key: key, obj: obj, size: size})
	c.bytes += size
	for c.bytes > c.maxBytes {
		c.removeLocked(c.order.Back())
		evicted++
	}
	c.reportLocked()
	c.mu.Unlock()
	if evicted > 0 && c.onEvict != nil {
		c.onEvict(evicted)
	}
	return true
}

// setMax changes the budget, evicting until it holds.
func (c *lru) setMax(maxBytes int64) {
	evicted := 0
	c.mu.Lock()
	c.maxBytes = maxBytes
	for c.bytes > c.maxBytes && c.order.Len() > 0 {
		c.removeLocked(c.order.Back())
		evicted++
	}
	c.reportLocked()
	c.mu.Unlock()
	if evicted > 0 && c.onEvict != nil {
		c.onEvict(evicted)
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
}

func (c *lru) reportLocked() {
	if c.onSize != nil {
		c.onSize(c.bytes, len(c.items))
	}
}
