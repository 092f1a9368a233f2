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
