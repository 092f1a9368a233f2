package auth

import (
	"net/netip"
	"sync"
	"time"
)

// Slowing down guessing: each failed login from an address waits longer
// before its answer, up to failureDelayMax; the count is forgotten after
// failureWindow without failures, or at the first success.
const (
	failureDelayBase = 200 * time.Millisecond
	failureDelayMax  = 3 * time.Second
	failureWindow    = 5 * time.Minute
	// maxFailureIPs bounds the table: when it is full, expired entries go,
	// then others at random.
	maxFailureIPs = 4096
)

// failures counts recent failed logins per client address.
type failures struct {
	mu sync.Mutex
	m  map[netip.Addr]*failureEntry
}

type failureEntry struct {
	count int
	last  time.Time
}

// fail records a failure of ip at now and returns how long to delay the answer.
func (f *failures) fail(ip netip.Addr, now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = make(map[netip.Addr]*failureEntry)
	}
	e := f.m[ip]
	if e != nil && now.Sub(e.last) > failureWindow {
		e.count = 0
	}
	if e == nil {
		if len(f.m) >= maxFailureIPs {
			f.evict(now)
		}
		e = &failureEntry{}
		f.m[ip] = e
	}
	e.count++
	e.last = now
	return failureDelay(e.count)
}

// failureDelay is the delay after the n-th failure in a row: 0 for the
// first (a typo), then doubling from failureDelayBase up to failureDelayMax.
func failureDelay(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := failureDelayBase
	for i := 2; i < n && d < failureDelayMax; i++ {
		d *= 2
	}
	return min(d, failureDelayMax)
}

// evict drops expired entries; when that frees too little, it drops
// entries at random (map order) down to three quarters of the bound, so
// that the scan is paid once per thousand insertions, not on each.
func (f *failures) evict(now time.Time) {
	for ip, e := range f.m {
		if now.Sub(e.last) > failureWindow {
			delete(f.m, ip)
		}
	}
	for ip := range f.m {
		if len(f.m) < maxFailureIPs*3/4 {
			break
		}
		delete(f.m, ip)
	}
}

// succeed forgets the failures of ip.
func (f *failures) succeed(ip netip.Addr) {
	f.mu.Lock()
	if f.m != nil {
		delete(f.m, ip)
	}
	f.mu.Unlock()
}

func (f *failures) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}
