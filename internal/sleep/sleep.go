// Package sleep waits for a duration or a time unless a context ends first:
// the pause of a retry loop or a scheduled start that must not hold up a
// shutdown. time.Sleep cannot be cancelled; a bare time.After keeps its timer
// until it fires.
package sleep

import (
	"context"
	"time"
)

// For waits d and reports true, or returns false as soon as ctx ends. A d
// that is not positive does not wait: it reports whether ctx is still live.
func For(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Until waits until t, like For(ctx, time.Until(t)).
func Until(ctx context.Context, t time.Time) bool {
	return For(ctx, time.Until(t))
}
