package hlscache

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Finding an object: its key, the LRU, and the one upstream fetch that
// concurrent requests for a key share (flight.go).

// lookup returns req's object from rt. A blocking reload is first checked
// against its playlist's window (boundBlocking), which may answer it or
// turn it into a plain playlist request. A wait for an upstream answer ends
// with errRouteChanged when changed is closed (the next routing change;
// nil: never).
func (c *Cache) lookup(ctx context.Context, changed <-chan struct{}, rt route, req *request) (*object, fetchResult, error) {
	if req.hls.Blocking() {
		obj, res, err := c.boundBlocking(ctx, changed, rt, req)
		if err != nil || obj != nil {
			return obj, res, err
		}
	}
	return c.get(ctx, changed, rt, req)
}

// cacheKey names an object of one owner: objects of different owners or
// epochs never share a key.
func cacheKey(rt route, req *request) string {
	var num [20]byte
	epoch := strconv.AppendUint(num[:0], rt.epoch, 10)
	q := req.hls.Encode()
	var b strings.Builder // one allocation, where concatenation made two or three
	b.Grow(len(rt.node) + 1 + len(epoch) + 1 + req.upstreamPathLen(q))
	b.WriteString(rt.node)
	b.WriteByte(0)
	b.Write(epoch)
	b.WriteByte(0)
	req.writeUpstreamPath(&b, q)
	return b.String()
}

// get returns req's object from rt: from the LRU, or from the one upstream
// fetch all concurrent requests for it share.
func (c *Cache) get(ctx context.Context, changed <-chan struct{}, rt route, req *request) (*object, fetchResult, error) {
	key := cacheKey(rt, req)
	stored := func() *object { return c.stored(rt, req, key, time.Now()) }
	if obj := stored(); obj != nil {
		return obj, resultHit, nil
	}
	return c.flights.do(ctx, changed, key, stored,
		func() (*object, error) { return c.fetch(rt, req, key) })
}

// stored returns req's object from rt as the LRU holds it under key, or
// nil: not there, or a playlist copy overtaken by its hinted part.
func (c *Cache) stored(rt route, req *request, key string, now time.Time) *object {
	obj := c.lru.get(key, now)
	if obj != nil && !req.hls.Blocking() && c.overtaken(rt, req, obj, now) {
		return nil
	}
	return obj
}

// overtaken reports a playlist copy older than a part this cache already
// holds: the part its EXT-X-PRELOAD-HINT announces is complete in the LRU
// (under rt, the owner the copy came from). Such a copy must not be served
// as the playlist: a client that downloads the hinted part and then reloads
// the playlist, as LL-HLS clients do (gohlslib's among them, without
// _HLS_msn), would be told to fetch the same part again, get it at once from
// the LRU, and replay it until the copy expires. A plain playlist is kept
// up to half a part target, so the copy fetched just before a part completed
// is still fresh when its viewer asks again right after that part.
func (c *Cache) overtaken(rt route, req *request, obj *object, now time.Time) bool {
	if obj.hint == "" || obj.status != http.StatusOK {
		return false
	}
	part := request{stream: req.stream, file: obj.hint, kind: kindPart}
	p := c.lru.get(cacheKey(rt, &part), now)
	return p != nil && p.status == http.StatusOK
}
