package hlscache

import "errors"

// SetMaxBytes changes the LRU budget while the cache runs (a configuration
// reload); a smaller budget evicts the least recently used objects at once.
func (c *Cache) SetMaxBytes(n int64) error {
	if n < 1<<20 {
		return errors.New("hlscache: MaxBytes must be at least 1 MiB")
	}
	if c.lru == nil {
		return errors.New("hlscache: not started")
	}
	c.lru.setMax(n)
	return nil
}

// Shed drops the least recently used objects until n bytes are freed (or
// none is left) and returns the bytes freed: the node sheds cache before
// anything else when its memory nears its limit (memlimit.Watcher). The
// objects count as evictions; a viewer asking for one again is served
// from the origin.
func (c *Cache) Shed(n int64) int64 {
	if c.lru == nil || n <= 0 {
		return 0
	}
	freed := c.lru.shed(n)
	c.m.shedBytes.Add(float64(freed))
	return freed
}
