package origin

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gohlslib/v2"
)

const (
	// watchedFor is how long after a request for a stream its Low-Latency
	// playlists are re-read after every part; afterwards, with nobody
	// fetching them, once per unwatchedRefresh until a request comes.
	watchedFor       = 30 * time.Second
	unwatchedRefresh = time.Second
	// freshWait bounds how long the first request after a quiet spell waits
	// for playlists refreshed at once instead of up to unwatchedRefresh ago.
	freshWait = 100 * time.Millisecond
)

// requestDemand is when caches last asked for a stream. Low-Latency
// playlists are re-read after every part only while somebody fetches them.
//
// Invariants:
//   - lastRequest is when a cache last asked (Unix ns; concurrent requests
//     may store their times in either order, which only blurs a quiet spell
//     by a request's duration).
//   - demand is closed and replaced, under demandMu, by the first request
//     after a quiet spell of watchedFor: it wakes the instance watchers.
type requestDemand struct {
	lastRequest atomic.Int64
	demandMu    sync.Mutex
	demand      chan struct{}
}

// touch records a request for the stream. On a Low-Latency stream nobody
// asked for in watchedFor, it wakes the instance watchers, so playlists
// follow every part again, and waits up to freshWait for the refreshed ones.
func (s *stream) touch() {
	now := time.Now().UnixNano()
	if now-s.lastRequest.Swap(now) < int64(s.o.watchedFor) {
		return // the watchers follow every part already
	}
	if s.variant.Load() != int32(gohlslib.MuxerVariantLowLatency) {
		return // other variants are polled at their own pace
	}
	s.mu.Lock()
	changed := s.changed
	s.mu.Unlock()
	s.demandMu.Lock()
	close(s.demand)
	s.demand = make(chan struct{})
	s.demandMu.Unlock()
	t := time.NewTimer(freshWait)
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
	}
}

// demandSignal returns the channel the next touch after a quiet spell closes.
func (s *stream) demandSignal() <-chan struct{} {
	s.demandMu.Lock()
	defer s.demandMu.Unlock()
	return s.demand
}

// watched reports whether a cache asked for the stream lately.
func (s *stream) watched() bool {
	return time.Now().UnixNano()-s.lastRequest.Load() < int64(s.o.watchedFor)
}
