package hlscache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamgrid/streamgrid/internal/hlsproto"
)

const (
	// maxObjectSize bounds an upstream body: objects are held in memory.
	maxObjectSize = 64 << 20
	// maxErrorBody bounds the text of a passed-through 4xx.
	maxErrorBody = 512
	userAgent    = "streamgrid-cache"
)

// upstreamError is a failed upstream fetch, with the status viewers get.
type upstreamError struct {
	status int    // 502, 503 or 504
	reason string // timeout, connect, transport, status, body, closing
	err    error
}

func (e *upstreamError) Error() string { return "upstream " + e.reason + ": " + e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

// ownerDown reports a failure that suggests the owner process is gone
// (refused or broken connections) rather than slow or misbehaving.
func (e *upstreamError) ownerDown() bool { return e.reason == "connect" || e.reason == "transport" }

// message is the short text viewers get.
func (e *upstreamError) message() string {
	if e.reason == "busy" {
		return "upstream busy"
	}
	switch {
	case e.status == http.StatusGatewayTimeout:
		return "upstream timeout"
	case e.reason == "status" && e.status == http.StatusServiceUnavailable:
		return "not available yet"
	case e.status == http.StatusServiceUnavailable:
		return "cache shutting down"
	}
	return "upstream error"
}

// fetch makes the upstream request for req at rt under its own deadline (it
// runs for every viewer waiting on key, not for one of them), stores a
// cacheable answer and returns it.
func (c *Cache) fetch(rt route, req *request, key string) (*object, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.upstreamDeadline(req))
	defer cancel()
	kind := req.kind.String()
	release, err := c.acquireSlot(ctx, rt.addr)
	if err != nil {
		c.m.upstreamErrors.WithLabelValues(kind, "busy").Inc()
		return nil, err
	}
	defer release()
	c.m.upstreamRequests.WithLabelValues(kind).Inc()
	began := time.Now()
	obj, verified, err := c.fetchUpstream(ctx, rt, req)
	took := time.Since(began).Seconds()
	switch {
	case req.hls.Blocking():
		c.m.blockingSeconds.Observe(took)
	case err != nil:
		c.m.upstreamSeconds.WithLabelValues(kind, "error").Observe(took)
	default:
		c.m.upstreamSeconds.WithLabelValues(kind, "ok").Observe(took)
	}
	if err != nil {
		var ue *upstreamError
		if errors.As(err, &ue) && ue.reason != "closing" {
			c.m.upstreamErrors.WithLabelValues(kind, ue.reason).Inc()
			c.logUpstreamError(rt, req, err)
		}
		return nil, err
	}
	if !verified {
		c.Log.Debug("upstream answer not from the routed owner: not cached",
			"stream", req.stream, "file", req.file, "node", rt.node, "epoch", rt.epoch)
		return obj, nil
	}
	if obj.storable {
		deadline, idle := c.lifetime(req, obj)
		c.lru.add(key, obj, obj.fetched, deadline, idle)
	}
	if req.kind == kindPlaylist && obj.status == http.StatusOK && !req.hls.Delta() {
		c.routes.storePlaylist(req.stream, req.file, obj)
	}
	return obj, nil
}

// fetchUpstream does the HTTP exchange. verified says the origin's headers
// name the owner and epoch that were asked.
func (c *Cache) fetchUpstream(ctx context.Context, rt route, req *request) (*object, bool, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+rt.addr+req.upstreamPath(), nil)
	if err != nil {
		return nil, false, &upstreamError{status: http.StatusBadGateway, reason: "connect", err: err}
	}
	hreq.Header.Set("User-Agent", userAgent)
	if c.OriginSecret != "" {
		hreq.Header.Set(hlsproto.HeaderAuth, c.OriginSecret)
	}
	resp, err := c.Client.Do(hreq)
	if err != nil {
		return nil, false, c.classify(ctx, err)
	}
	defer resp.Body.Close()
	verified := resp.Header.Get(hlsproto.HeaderOrigin) == rt.node &&
		resp.Header.Get(hlsproto.HeaderEpoch) == strconv.FormatUint(rt.epoch, 10)

	status := resp.StatusCode
	var body []byte
	switch {
	case status == http.StatusOK:
		if resp.ContentLength > maxObjectSize {
			return nil, false, &upstreamError{status: http.StatusBadGateway, reason: "body",
				err: fmt.Errorf("object of %d bytes is over the %d-byte limit", resp.ContentLength, maxObjectSize)}
		}
		body, err = readBody(resp.Body, resp.ContentLength, maxObjectSize)
		if errors.Is(err, errObjectTooLarge) {
			return nil, false, &upstreamError{status: http.StatusBadGateway, reason: "body", err: err}
		}
		if err != nil {
			return nil, false, c.classify(ctx, err)
		}
		if len(body) == 0 {
			// gohlslib answers an empty 200 for files it does not have; no
			// valid HLS object is empty.
			status, body = http.StatusNotFound, []byte("not found")
		}
	case status >= 400 && status < 500:
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if err != nil {
			return nil, false, c.classify(ctx, err)
		}
		body = []byte(sanitizeText(b, status))
	case status == http.StatusServiceUnavailable:
		// The origin's own "not yet" (a blocking reload it could not satisfy
		// in time, a stream still starting): a retriable answer the viewer
		// gets as it is, with the origin's Retry-After, not a gateway error.
		return nil, false, &upstreamError{status: http.StatusServiceUnavailable, reason: "status",
			err: fmt.Errorf("origin answered %s", resp.Status)}
	default:
		return nil, false, &upstreamError{status: http.StatusBadGateway, reason: "status",
			err: fmt.Errorf("origin answered %s", resp.Status)}
	}

	now := time.Now()
	ttl, immutable, cc := policy(req, status, resp.Header.Get("Cache-Control"), body)
	obj := &object{
		status:   status,
		body:     body,
		fetched:  now,
		storable: immutable || ttl > 0,
	}
	if t, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		obj.modTime = t
	}
	if req.kind == kindPlaylist && status == http.StatusOK && !req.hls.Delta() {
		obj.window = parseWindow(body)
	}
	if req.kind == kindPlaylist && status == http.StatusOK {
		obj.hint = preloadHintPart(body)
	}
	obj.header = newObjectHeader(mimeTypes[req.ext], cc, resp.Header.Get("ETag"), obj.modTime, len(body))
	if ttl > 0 {
		obj.expires = now.Add(ttl)
	}
	return obj, verified, nil
}

// lifetime says how long a stored object stays in the LRU beyond its own
// expiry (see lru.add): a segment or part until it can no longer be asked
// for (playlistWindow.availability from when it was fetched); an init
// section for as long as it is asked for within that time (it serves the
// stream for its whole life). Playlists and error answers carry their
// expiry in the object.
func (c *Cache) lifetime(req *request, obj *object) (deadline time.Time, idle time.Duration) {
	if obj.status != http.StatusOK {
		return time.Time{}, 0
	}
	switch req.kind {
	case kindSegment, kindPart:
		return obj.fetched.Add(c.routes.longestWindow(req.stream).availability()), 0
	case kindInit:
		avail := c.routes.longestWindow(req.stream).availability()
		return obj.fetched.Add(avail), avail
	}
	return time.Time{}, 0
}

// readBody reads a body of at most limit bytes into a buffer of its exact
// size, so that what the cache accounts (the capacity) is what it holds.
// With a known length (size >= 0) it allocates once; otherwise it reads
// into a growing buffer and copies the result to an exact one. A body over
// limit is an error; so is one shorter or longer than its Content-Length.
func readBody(r io.Reader, size int64, limit int) ([]byte, error) {
	if size > int64(limit) {
		return nil, errObjectTooLarge
	}
	if size >= 0 {
		// slices.Grow rounds the capacity up to the allocator's size
		// class, so cap() is what the heap really holds for it.
		body := slices.Grow([]byte(nil), int(size))[:size]
		if _, err := io.ReadFull(r, body); err != nil {
			if err == io.ErrUnexpectedEOF {
				err = fmt.Errorf("body shorter than its Content-Length %d: %w", size, err)
			}
			return nil, err
		}
		return body, nil
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, errObjectTooLarge
	}
	return append(slices.Grow([]byte(nil), len(b))[:0], b...), nil
}

// errObjectTooLarge is a body over maxObjectSize.
var errObjectTooLarge = fmt.Errorf("object over the %d-byte limit", maxObjectSize)

// upstreamSlots caps the concurrent fetches per origin address.
type upstreamSlots struct {
	max   int
	mu    sync.Mutex
	slots map[string]chan struct{} // addr → semaphore; addresses are few (one per origin)
}

func (s *upstreamSlots) get(addr string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.slots[addr]
	if ch == nil {
		ch = make(chan struct{}, s.max)
		s.slots[addr] = ch
	}
	return ch
}

// acquireSlot takes one of the MaxUpstreamConns slots of addr, waiting until
// ctx (the fetch's deadline) ends; a fetch that gets none fails with 503.
func (c *Cache) acquireSlot(ctx context.Context, addr string) (func(), error) {
	ch := c.slots.get(addr)
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	default:
	}
	c.m.upstreamWaiting.Inc()
	defer c.m.upstreamWaiting.Dec()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, &upstreamError{status: http.StatusServiceUnavailable, reason: "busy",
			err: fmt.Errorf("all %d upstream slots of %s in use", c.slots.max, addr)}
	}
}

// classify turns a transport error into the answer viewers get.
func (c *Cache) classify(ctx context.Context, err error) *upstreamError {
	if c.ctx.Err() != nil {
		return &upstreamError{status: http.StatusServiceUnavailable, reason: "closing", err: err}
	}
	var ne net.Error
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return &upstreamError{status: http.StatusGatewayTimeout, reason: "timeout", err: err}
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return &upstreamError{status: http.StatusBadGateway, reason: "connect", err: err}
	}
	return &upstreamError{status: http.StatusBadGateway, reason: "transport", err: err}
}

// sanitizeText keeps a passed-through error text printable and on one line.
func sanitizeText(b []byte, status int) string {
	s := strings.TrimSpace(string(b))
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if s == "" {
		s = strings.ToLower(http.StatusText(status))
	}
	return s
}

// logUpstreamError logs at most one upstream failure per second, with the
// number left out since: a dead origin must not flood the log.
func (c *Cache) logUpstreamError(rt route, req *request, err error) {
	if suppressed, ok := c.warn.allow(time.Now()); ok {
		c.Log.Warn("upstream fetch failed", "stream", req.stream, "file", req.file,
			"node", rt.node, "addr", rt.addr, "suppressed", suppressed, "err", err)
	}
}

// warnLimiter lets one warning a second through and counts the others.
// It is safe for concurrent use.
type warnLimiter struct {
	at         atomic.Int64 // unix ns of the last warning let through
	suppressed atomic.Int64 // warnings held back since
}

// allow reports whether a warning may be logged at now and, when it may,
// how many were held back since the last one.
func (l *warnLimiter) allow(now time.Time) (suppressed int64, ok bool) {
	ns := now.UnixNano()
	last := l.at.Load()
	if ns-last < int64(time.Second) || !l.at.CompareAndSwap(last, ns) {
		l.suppressed.Add(1)
		return 0, false
	}
	return l.suppressed.Swap(0), true
}
