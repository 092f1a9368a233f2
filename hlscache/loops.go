package hlscache

import (
	"errors"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/sleep"
)

// The cache's long-lived goroutines, started by Start and waited for by
// Close (Cache.wg): the HTTP server, the owner watch, the route refresh and
// the LRU's expiry. Each ends when the cache's context is cancelled.

const (
	// refreshInterval is how often routes are re-checked against gossip.
	refreshInterval = 200 * time.Millisecond
	// expireInterval is how often the LRU drops the objects past their
	// deadline (lru.expire); an object lives at most this much past it, and
	// only when no add dropped it first.
	expireInterval = time.Second
	// watchRetryFirst is the pause before a new owner watch when one ended;
	// the pauses between failed tries then double, up to watchRetryMax.
	watchRetryFirst = 250 * time.Millisecond
	watchRetryMax   = 5 * time.Second
)

func (c *Cache) serve() {
	defer c.wg.Done()
	if err := c.srv.Serve(c.serveLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
		c.Log.Error("hls cache server stopped", "err", err)
	}
}

// serveFast runs the fast path's accept loop (plain HTTP).
func (c *Cache) serveFast() {
	defer c.wg.Done()
	if err := c.fast.serve(); err != nil {
		c.Log.Error("hls cache fast path stopped", "err", err)
		// net/http keeps the connections it has; no new ones come.
	}
}

// watchLoop applies owner events, re-establishing the watch when it ends
// before Close (the bus connection failed over, the watcher died).
func (c *Cache) watchLoop(events <-chan bus.OwnerEvent) {
	defer c.wg.Done()
	for {
		for ev := range events {
			c.routes.setOwner(ev.Path, ev.Owner, time.Now())
		}
		var ok bool
		if events, ok = c.rewatch(); !ok {
			return
		}
		c.Log.Info("owner watch re-established")
		c.routes.markResync(time.Now())
	}
}

// rewatch starts a new owner watch after one ended. It waits
// watchRetryFirst (the bus is likely reconnecting), then tries until a try
// works, waiting between tries as watchBackOff says. False when the cache
// closes first.
func (c *Cache) rewatch() (<-chan bus.OwnerEvent, bool) {
	if !sleep.For(c.ctx, watchRetryFirst) {
		return nil, false
	}
	events, err := backoff.Retry(c.ctx,
		func() (<-chan bus.OwnerEvent, error) { return c.Registry.WatchOwners(c.ctx) },
		backoff.WithBackOff(watchBackOff()),
		backoff.WithMaxElapsedTime(0), // until Close
		backoff.WithNotify(func(err error, next time.Duration) {
			c.Log.Warn("owner watch failed, retrying", "retry_in", next, "err", err)
		}))
	return events, err == nil
}

// watchBackOff is the pause after each failed watch: twice the one before,
// starting at twice watchRetryFirst (the pause before the first try), capped
// at watchRetryMax: 0.5 s, 1 s, 2 s, 4 s, 5 s, 5 s… No jitter: the pauses
// are exact.
func watchBackOff() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{
		InitialInterval: 2 * watchRetryFirst,
		Multiplier:      2,
		MaxInterval:     watchRetryMax,
	}
}

// refreshLoop re-checks routes against gossip, and forgets the audience of
// streams nobody asks for.
func (c *Cache) refreshLoop() {
	defer c.wg.Done()
	t := time.NewTicker(refreshInterval)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-c.ctx.Done():
			return
		case now := <-t.C:
			c.routes.refresh(now)
			if i%10 == 0 {
				c.viewers.prune(now)
			}
		}
	}
}

// expireLoop drops expired objects while no request comes, so that a quiet
// node gives its memory back.
func (c *Cache) expireLoop() {
	defer c.wg.Done()
	t := time.NewTicker(expireInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case now := <-t.C:
			c.lru.expire(now)
		}
	}
}
