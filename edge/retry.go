package edge

import (
	"errors"
	"net"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/streamgrid/streamgrid/internal/sleep"
)

// The edge's two retry policies, both exponential backoff
// (cenkalti/backoff):
//
//   - a listener whose Accept fails (out of file descriptors and the like)
//     tries again after 5 ms, doubling up to 1 s, without jitter;
//   - a camera pull that fails reconnects after a uniform draw in
//     [0, min(BackoffMax, BackoffMin·2^n)] before attempt n ("full
//     jitter"), at least minPullBackoff.

// minPullBackoff is the shortest wait before a camera reconnection.
const minPullBackoff = 5 * time.Millisecond

// newAcceptBackoff returns the pacing of Accept retries.
func newAcceptBackoff() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{
		InitialInterval: 5 * time.Millisecond, Multiplier: 2, MaxInterval: time.Second,
	}
}

// newPullBackoff returns the pacing of a camera's reconnections. The
// library draws from [c·(1−f), c·(1+f)] around its current interval c;
// with a randomisation factor f of 1 and c at half the ceiling, that is
// [0, ceiling]: the interval starts at lo/2 and doubles up to hi/2.
func newPullBackoff(lo, hi time.Duration) *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval: max(lo/2, 1), RandomizationFactor: 1, Multiplier: 2, MaxInterval: max(hi/2, 1),
	}
	b.Reset()
	return b
}

// accept returns ln's next connection, riding out transient errors (which
// would otherwise stop a server for good): each is logged as a failed
// accept of proto and retried after newAcceptBackoff's pause. It fails
// when ln is closed or the edge closes.
func (e *Edge) accept(ln net.Listener, proto string) (net.Conn, error) {
	var retry *backoff.ExponentialBackOff
	for {
		c, err := ln.Accept()
		if err == nil || errors.Is(err, net.ErrClosed) {
			return c, err
		}
		if retry == nil {
			retry = newAcceptBackoff()
		}
		d := retry.NextBackOff()
		e.log.Warn(proto+" accept failed", "err", err, "retry_in", d)
		if !sleep.For(e.ctx, d) {
			return nil, err
		}
	}
}
