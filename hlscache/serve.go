package hlscache

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/streamgrid/streamgrid/internal/sleep"
)

// How a valid viewer request finds its answer (serveRequest).
//
// With a routable owner it is served from the LRU or the (shared) upstream
// fetch. While a stream fails over the cache serves what it still holds
// (the last good playlist, the old owner's cached objects) and holds the
// rest until a new owner is routable or the request's deadline passes. An
// owner that refuses connections is taken as dying: playlists then get the
// last good copy, or wait for gossip to move the route. A request for a
// stream without a route that an edge pulls on demand waits for the camera
// to start (demand.go).

const (
	// maxUpstreamAttempts bounds the upstream tries of one viewer request.
	maxUpstreamAttempts = 3
	// startingRetry is how soon a playlist request asks a starting owner again.
	startingRetry = 150 * time.Millisecond
)

// pending is a viewer request on its way to an answer: serveRequest tries
// it against the route table, once more after every routing change it waits
// for, until one try answers it.
type pending struct {
	w        *viewerWriter
	r        *http.Request
	req      *request
	ctx      context.Context // the viewer's: ends when the viewer leaves
	deadline time.Time       // when held requests stop waiting
	attempts int             // upstream tries made
	demanded bool            // waiting for an on-demand camera to start

	// Set by each try from the route table.
	now     time.Time
	rt      route           // the routable owner (routeOK)
	prev    route           // the previous owner, during and after a failover
	changed <-chan struct{} // closed at the next routing change
}

// verdict is how a step of a try ended.
type verdict int

const (
	answered verdict = iota // the viewer has its answer; the outcome is final
	again                   // routing may have changed: try once more
	next                    // the step did not answer: the try goes on
)

// serveRequest answers a valid request and says how it ended.
func (c *Cache) serveRequest(w *viewerWriter, r *http.Request, req *request) outcome {
	p := &pending{w: w, r: r, req: req, ctx: r.Context(), deadline: time.Now().Add(c.upstreamDeadline(req))}
	for {
		var state routeState
		p.now = time.Now()
		p.rt, p.prev, state, p.changed = c.routes.resolve(req.stream, p.now)
		if state != routeUnknown && c.demand != nil {
			c.demand.seen(req.stream)
		}
		var res outcome
		var v verdict
		switch state {
		case routeUnknown:
			res, v = c.serveUnknown(p)
		case routeFailover:
			res, v = c.serveFailover(p)
		default:
			res, v = c.serveRouted(p)
		}
		if v == answered {
			return res
		}
	}
}

// upstreamDeadline is how long one upstream fetch for req may take.
func (c *Cache) upstreamDeadline(req *request) time.Duration {
	if req.kind == kindPart || req.hls.Blocking() {
		return c.UpstreamTimeout + c.BlockingHold
	}
	return c.UpstreamTimeout
}

// serveUnknown answers a stream without a route: 404, unless an edge pulls
// it on demand, then the request waits for the camera to start.
func (c *Cache) serveUnknown(p *pending) (outcome, verdict) {
	if !p.demanded && c.demand != nil && c.demand.unknown(p.ctx, p.req.stream) {
		p.demanded = true
		p.deadline = p.now.Add(c.DemandWait)
	}
	if !p.demanded {
		writeText(p.w, http.StatusNotFound, "stream not found")
		return outcomeNotFound, answered
	}
	if c.waitDemanded(p.ctx, p.changed, p.deadline) {
		return 0, again
	}
	if p.ctx.Err() != nil {
		return outcomeGone, answered
	}
	p.w.Header().Set("Retry-After", "1")
	writeText(p.w, http.StatusServiceUnavailable, "on-demand camera not ready yet")
	return outcomeError, answered
}

// serveFailover answers a stream without a routable owner within the
// failover window: from what the cache holds, else after the next routing
// change, else (at the deadline) with the last good playlist or a 503.
func (c *Cache) serveFailover(p *pending) (outcome, verdict) {
	if res, ok := c.serveHeld(p.w, p.r, p.req, p.prev, p.now); ok {
		return res, answered
	}
	if c.waitRoute(p.ctx, p.changed, p.deadline) {
		return 0, again
	}
	if p.ctx.Err() != nil {
		return outcomeGone, answered
	}
	if stale := c.routes.stalePlaylist(p.req.stream, p.req.file, time.Now()); p.req.kind == kindPlaylist && stale != nil {
		return answerStale(p, stale)
	}
	p.w.Header().Set("Retry-After", "1")
	writeText(p.w, http.StatusServiceUnavailable, "stream failing over")
	return outcomeError, answered
}

// serveRouted answers from the routable owner p.rt: its object, or, when it
// is still starting the stream or seems down, what serveStarting and
// serveOwnerDown make of it, or the upstream's error.
func (c *Cache) serveRouted(p *pending) (outcome, verdict) {
	p.attempts++
	obj, res, err := c.lookupRouted(p)
	if errors.Is(err, errRouteMoved) {
		c.m.rerouted.Inc()
		return 0, again
	}
	if re := (*requestError)(nil); errors.As(err, &re) {
		writeText(p.w, re.status, re.msg)
		return outcomeRefused, answered
	}
	if starting(err, obj, p.req, p.prev) || p.demanded && starting(err, obj, p.req, p.rt) {
		if out, v := c.serveStarting(p); v != next {
			return out, v
		}
	}
	if p.demanded {
		c.demand.waits.WithLabelValues("ready").Inc()
		p.demanded = false
	}
	if err == nil {
		return c.serveObject(p, obj, res), answered
	}
	if p.ctx.Err() != nil {
		return outcomeGone, answered
	}
	var ue *upstreamError
	if errors.As(err, &ue) && ue.ownerDown() && p.req.kind == kindPlaylist {
		if out, v := c.serveOwnerDown(p); v != next {
			return out, v
		}
	}
	status, msg := http.StatusBadGateway, "upstream error"
	switch {
	case ue != nil:
		status, msg = ue.status, ue.message()
	case errors.Is(err, errClosing):
		status, msg = http.StatusServiceUnavailable, "cache shutting down"
	}
	if status == http.StatusServiceUnavailable {
		p.w.Header().Set("Retry-After", "1")
	}
	p.w.Header().Set("X-Cache", res.String())
	writeText(p.w, status, msg)
	return outcomeError, answered
}

// errRouteChanged: a routing change came while the request waited for its
// upstream answer (flightGroup.do); errRouteMoved: that change moved the
// request's stream to another owner, or off every owner.
var (
	errRouteChanged = errors.New("routing changed")
	errRouteMoved   = errors.New("the stream's route moved")
)

// lookupRouted is lookupStaying for p: p.prev and p.changed follow the
// routing changes it waited through. The first request of a connection the
// fast path handed over takes the fast path's result instead.
func (c *Cache) lookupRouted(p *pending) (*object, fetchResult, error) {
	if l := takeLookedUp(p.r, p.rt, p.req); l != nil {
		return l.obj, l.res, l.err // the fast path's wait for this request
	}
	return c.lookupStaying(p.ctx, p.rt, p.req, &p.changed, &p.prev)
}

// lookupStaying is lookup from rt, given up when the stream's route moves
// before the answer came: the owner watch named a new owner (it took the
// stream over from one that stalled: a paused process, a host gone without
// closing its connections) or gossip counted the owner dead. The request
// is then asked again at once of the new owner (errRouteMoved), instead of
// waiting out the upstream deadline (UpstreamTimeout, plus BlockingHold for
// a blocking reload) for an answer that comes late or never. A change of
// another stream's route only renews *changed (and *prev, the previous
// owner, when prev is not nil). The fetch itself carries on for its other
// waiters, bounded by its own deadline.
func (c *Cache) lookupStaying(ctx context.Context, rt route, req *request, changed *<-chan struct{}, prev *route) (*object, fetchResult, error) {
	for {
		obj, res, err := c.lookup(ctx, *changed, rt, req)
		if !errors.Is(err, errRouteChanged) {
			return obj, res, err
		}
		now, before, st, ch := c.routes.resolve(req.stream, time.Now())
		if st != routeOK || now != rt {
			// req as lookup left it (a blocking reload boundBlocking
			// turned plain stays plain, as after serveOwnerDown): the fetch
			// still running reads it.
			return nil, res, errRouteMoved
		}
		*changed = ch
		if prev != nil {
			*prev = before
		}
	}
}

// starting reports an answer of an owner that took the stream over a moment
// ago and is not serving it yet: a 404 or 503 for a playlist while the
// previous owner is still within the failover window.
func starting(err error, obj *object, req *request, prev route) bool {
	if req.kind != kindPlaylist || prev.node == "" {
		return false
	}
	if err == nil {
		return obj.status == http.StatusNotFound
	}
	var ue *upstreamError
	return errors.As(err, &ue) && ue.reason == "status"
}

// serveStarting answers a playlist request whose new owner holds the lease
// but is still starting the stream: with the last good playlist, or it asks
// again shortly. A copy overtaken by its hinted part (which the previous
// owner's objects still serve) is the answer only at the deadline, rather
// than a 404.
func (c *Cache) serveStarting(p *pending) (outcome, verdict) {
	stale, ok := c.lastGood(p.prev, p.req, p.now)
	if ok {
		return answerStale(p, stale)
	}
	if sleepUntil(p.ctx, p.deadline, startingRetry) {
		return 0, again
	}
	if stale != nil {
		return answerStale(p, stale)
	}
	return 0, next
}

// serveOwnerDown answers a playlist request whose owner refused or broke
// the connection: with the last good copy, or after gossip moved the route.
// An overtaken copy (see overtaken) waits for gossip first.
func (c *Cache) serveOwnerDown(p *pending) (outcome, verdict) {
	stale, ok := c.lastGood(p.rt, p.req, p.now)
	if ok {
		return answerStale(p, stale)
	}
	if p.attempts < maxUpstreamAttempts && c.waitRoute(p.ctx, p.changed, p.deadline) {
		return 0, again
	}
	if stale != nil && p.ctx.Err() == nil {
		return answerStale(p, stale)
	}
	return 0, next
}

// serveObject answers with an object fetched or found. A 404 of the new
// owner for an object the previous owner's copy of which is still in the
// LRU gets that copy: a player still holding the previous owner's playlist
// asks for its objects, which the new owner never had.
func (c *Cache) serveObject(p *pending, obj *object, res fetchResult) outcome {
	if obj.status == http.StatusNotFound && p.req.kind != kindPlaylist && p.prev.node != "" {
		if old := c.lru.get(cacheKey(p.prev, p.req), p.now); old != nil && old.status == http.StatusOK {
			obj, res = old, resultHit
		}
	}
	writeObject(p.w, p.r, obj, res)
	return fetchOutcome(res)
}

// lastGood returns the last good copy of req's playlist kept for failovers
// (never for a blocking reload, which waits for a live answer instead), and
// whether it may be served now: a copy overtaken by its hinted part under
// owner would send a client back to that part.
func (c *Cache) lastGood(owner route, req *request, now time.Time) (*object, bool) {
	if req.hls.Blocking() {
		return nil, false
	}
	stale := c.routes.stalePlaylist(req.stream, req.file, now)
	return stale, stale != nil && !c.overtaken(owner, req, stale, now)
}

// answerStale answers with the last good copy of a playlist.
func answerStale(p *pending, stale *object) (outcome, verdict) {
	writeStale(p.w, p.r, stale)
	return outcomeStale, answered
}

// serveHeld answers, during a failover, what needs no new owner: the last
// good copy of a playlist (non-blocking requests; a blocking one waits for
// the new owner), or an object of the previous owner still in the LRU.
func (c *Cache) serveHeld(w *viewerWriter, r *http.Request, req *request, prev route, now time.Time) (outcome, bool) {
	if req.kind == kindPlaylist {
		stale, ok := c.lastGood(prev, req, now)
		if !ok {
			// A copy whose hinted part was served already would send a
			// client back to that part: wait for the new owner instead.
			return 0, false
		}
		writeStale(w, r, stale)
		return outcomeStale, true
	}
	obj := c.lru.get(cacheKey(prev, req), now)
	if obj == nil || obj.status != http.StatusOK {
		return 0, false
	}
	writeObject(w, r, obj, resultHit)
	return outcomeHit, true
}

// waitRoute waits for a routing change; false when the deadline, the
// viewer or the cache ended first.
func (c *Cache) waitRoute(ctx context.Context, changed <-chan struct{}, deadline time.Time) bool {
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	c.m.held.Inc()
	defer c.m.held.Dec()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-changed:
		return true
	case <-t.C:
	case <-ctx.Done():
	case <-c.ctx.Done():
	}
	return false
}

// sleepUntil waits d, or less when the deadline comes first; false when the
// deadline passed or the viewer left.
func sleepUntil(ctx context.Context, deadline time.Time, d time.Duration) bool {
	d = min(d, time.Until(deadline))
	return d > 0 && sleep.For(ctx, d)
}

func fetchOutcome(r fetchResult) outcome {
	switch r {
	case resultHit:
		return outcomeHit
	case resultMiss:
		return outcomeMiss
	}
	return outcomeCoalesced
}
