package hlscache

import (
	"context"
	"errors"
	"sync"
)

// errClosing is the result of a fetch asked for while the cache shuts down.
var errClosing = errors.New("cache is shutting down")

// fetchResult says how a request was answered.
type fetchResult int

const (
	resultHit       fetchResult = iota // from the LRU
	resultMiss                         // this request started the upstream fetch
	resultCoalesced                    // joined a fetch another request started
)

func (r fetchResult) String() string {
	switch r {
	case resultHit:
		return "HIT"
	case resultMiss:
		return "MISS"
	}
	return "COALESCED"
}

// X-Cache values by fetchResult, shared (see objectHeader).
var xCacheValues = [...][]string{resultHit: {"HIT"}, resultMiss: {"MISS"}, resultCoalesced: {"COALESCED"}}

// header is r.String() as an X-Cache header value (shared).
func (r fetchResult) header() []string { return xCacheValues[r] }

// flight is one upstream fetch that any number of requests wait on.
type flight struct {
	done    chan struct{} // closed once obj and err are set
	obj     *object
	err     error
	waiters int // requests waiting on it; guarded by the group's lock
}

// flightGroup makes concurrent requests for one key share one upstream fetch.
//
// The fetch runs in a goroutine of its own, not in any viewer's request: a
// viewer that goes away stops waiting, while the fetch carries on (bounded by
// its own deadline) for the others and for the cache.
//
// Why not golang.org/x/sync/singleflight (whose DoChan also detaches the
// fetch): do consults the LRU under the group's lock, so a request arriving
// as a fetch ends finds its stored result instead of starting a second
// fetch; close refuses new fetches and waits for the running ones, which
// Close needs; and the group counts its fetches and their waiters for the
// metrics and tests. singleflight offers none of these.
//
// Invariants, under mu: a key has at most one flight in flights; a flight
// leaves flights before its done is closed, and after fetch has stored its
// result; once closed is set no flight is added, so wg.Wait in close ends.
type flightGroup struct {
	mu      sync.Mutex
	flights map[string]*flight
	closed  bool
	wg      sync.WaitGroup
}

func newFlightGroup() *flightGroup {
	return &flightGroup{flights: map[string]*flight{}}
}

// do returns the object for key. lookup is consulted first, under the group's
// lock: a fetch stores its result (through lookup's store) before it leaves
// the group, so a request arriving just after a fetch ended finds the stored
// copy instead of starting a second fetch. Otherwise do joins the running
// fetch for key or starts fetch in a new goroutine, and waits for it, for
// ctx or for changed (errRouteChanged; a nil changed never is), whichever
// ends first.
func (g *flightGroup) do(ctx context.Context, changed <-chan struct{}, key string, lookup func() *object, fetch func() (*object, error)) (*object, fetchResult, error) {
	g.mu.Lock()
	if obj := lookup(); obj != nil {
		g.mu.Unlock()
		return obj, resultHit, nil
	}
	if g.closed {
		g.mu.Unlock()
		return nil, resultMiss, errClosing
	}
	f, ok := g.flights[key]
	res := resultCoalesced
	if !ok {
		res = resultMiss
		f = &flight{done: make(chan struct{})}
		g.flights[key] = f
		g.wg.Add(1)
		go g.run(key, f, fetch)
	}
	f.waiters++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		f.waiters--
		g.mu.Unlock()
	}()

	select {
	case <-f.done:
		return f.obj, res, f.err
	case <-ctx.Done():
		return nil, res, ctx.Err()
	case <-changed:
		return nil, res, errRouteChanged
	}
}

// waiting returns the number of requests waiting on the fetch for key.
func (g *flightGroup) waiting(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f := g.flights[key]; f != nil {
		return f.waiters
	}
	return 0
}

func (g *flightGroup) run(key string, f *flight, fetch func() (*object, error)) {
	defer g.wg.Done()
	f.obj, f.err = fetch()
	g.mu.Lock()
	delete(g.flights, key)
	g.mu.Unlock()
	close(f.done)
}

// inFlight returns the number of fetches running.
func (g *flightGroup) inFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.flights)
}

// close refuses new fetches and waits for the running ones, which the caller
// has made end (by cancelling the context they run under).
func (g *flightGroup) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}
