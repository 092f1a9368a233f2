package hlscache

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/gossip"
)

// Headers an origin puts on every answer, naming who produced it. The cache
// stores an answer only when they match the owner it asked.
const (
	HeaderOrigin = "X-Streamgrid-Origin" // the origin's node name
	HeaderEpoch  = "X-Streamgrid-Epoch"  // the origin's lease epoch for the stream, decimal
	// HeaderAuth carries the cluster's origin secret on every upstream
	// request (see Cache.OriginSecret); origins refuse requests without it.
	HeaderAuth = "X-Streamgrid-Auth"
)

const (
	defaultBlockingHold   = 6 * time.Second
	defaultFailoverWindow = 10 * time.Second
	defaultHeaderTimeout  = 10 * time.Second
	// maxHeaderBytes bounds a viewer's request line and headers (cookies of
	// a shared domain included).
	maxHeaderBytes = 32 << 10
	// idleTimeout closes a keep-alive connection without a new request.
	idleTimeout = 2 * time.Minute
	// shutdownTimeout bounds Close's wait for in-flight requests.
	shutdownTimeout = 5 * time.Second
	// refreshInterval is how often routes are re-checked against gossip.
	refreshInterval = 200 * time.Millisecond
	// maxUpstreamAttempts bounds the upstream tries of one viewer request.
	maxUpstreamAttempts = 3
)

// Cache is the viewers' HLS server: it routes each stream to the origin that
// owns it, fetches objects from there with one upstream request per object,
// keeps them in a byte-bounded LRU and answers with the right headers. Fill
// in the fields, then Start.
type Cache struct {
	// Node is this node's name, for logs and metric labels.
	Node string
	// Registry gives stream → owner (WatchOwners). Required.
	Registry *bus.Registry
	// Gossip is this node's membership, started by the caller. An owner is
	// routable only while gossip shows it alive; its Meta.HTTP is the upstream
	// address. Required.
	Gossip *gossip.Node
	// HTTPAddress is where viewers connect. Default ":8888"; port 0 picks one.
	HTTPAddress string
	// MaxBytes is the LRU budget. Default 256 MiB. Objects over MaxBytes/8 are not kept.
	MaxBytes int64
	// UpstreamTimeout bounds an ordinary upstream fetch. Default 5 s.
	UpstreamTimeout time.Duration
	// BlockingHold is how long an origin may hold an LL-HLS blocking playlist
	// request (_HLS_msn) or a preload-hinted part: those get an upstream
	// deadline of UpstreamTimeout+BlockingHold. Default 6 s.
	BlockingHold time.Duration
	// FailoverWindow is how long after a stream's owner was last routable the
	// cache treats the stream as failing over (stale playlists, held
	// requests) instead of unknown (404). Default 10 s.
	FailoverWindow time.Duration
	// AllowOrigin is Access-Control-Allow-Origin. Default "*"; any other
	// value also sends Access-Control-Allow-Credentials: true.
	AllowOrigin string
	// SigningKey, when set, makes every viewer request carry a signed-URL
	// token (/s/<token>/<stream>/<file>, see Sign); requests without a valid
	// one get 403. Authorize is then not asked. Default: none, open.
	SigningKey []byte
	// Authorize, when set and SigningKey is not, is asked for every viewer
	// request with its stream path: nil serves, an error wrapping
	// ErrUnauthenticated answers 401 with a Basic challenge, any other 403.
	// It is called concurrently and should answer from memory.
	Authorize func(r *http.Request, stream string) error
	// OriginSecret, when set, is sent as HeaderAuth with every upstream
	// request, proving to origins that the request comes from a cache.
	OriginSecret string
	// HeaderTimeout is how long a connection may take to send a request's
	// headers before it is closed. Default 10 s.
	HeaderTimeout time.Duration
	// MaxConnsPerIP caps the open connections of one client IP; more are
	// answered 429 and closed at accept. Default 256; negative: no cap.
	MaxConnsPerIP int
	// MaxUpstreamConns caps the concurrent upstream fetches to one origin;
	// more wait (within their deadline) for a slot, then get 503. Default 1024.
	MaxUpstreamConns int
	// TLSCert and TLSKey, both set, are PEM files: viewers then connect over
	// HTTPS, with HTTP/2.
	TLSCert, TLSKey string
	// Now is the clock for token expiry. Default time.Now.
	Now func() time.Time
	// Demander, when set, signals viewers' demand for on-demand cameras: a
	// request for a stream without a route waits (up to DemandWait) when an
	// edge pulls that path on demand, and requests for such a stream keep
	// its camera pulled. See demand.go.
	Demander Demander
	// DemandWait bounds the wait of a request for an on-demand camera that is
	// starting. Default UpstreamTimeout+BlockingHold.
	DemandWait time.Duration
	// Client makes the upstream requests. Default: a keep-alive transport
	// tuned for many requests to few hosts, no redirects.
	Client *http.Client
	// Log. Default slog.Default().
	Log *slog.Logger
	// Metrics receives the collectors. Default: a private registry.
	Metrics prometheus.Registerer

	ctx       context.Context // cancelled by Close: ends fetches and loops
	cancel    context.CancelFunc
	ln        net.Listener
	serveLn   net.Listener   // ln behind the per-IP cap and TLS
	limit     *limitListener // nil without a per-IP cap
	srv       *http.Server
	slots     upstreamSlots
	verifier  *verifier // checks tokens with SigningKey; nil without one
	routes    *routeTable
	lru       *lru
	flights   *flightGroup
	viewers   *viewerTracker
	m         *metrics
	ownClient bool
	wg        sync.WaitGroup // serve, watch and refresh loops

	hmu      sync.RWMutex // guards closed against handlers.Add
	closed   bool
	handlers sync.WaitGroup

	cors []headerValue // the CORS headers of every answer, built by setDefaults

	demand *demandTable // nil without a Demander

	closeOnce  sync.Once
	warnAt     atomic.Int64 // unix ns of the last upstream warning
	suppressed atomic.Int64 // upstream warnings not logged since
}

// Start validates the configuration, starts watching stream owners and
// listens. Port clashes and registry errors are returned at once.
func (c *Cache) Start() error {
	if c.Registry == nil {
		return errors.New("hlscache: Registry is required")
	}
	if c.Gossip == nil {
		return errors.New("hlscache: Gossip is required")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("hlscache: TLSCert and TLSKey go together")
	}
	c.setDefaults()
	var tlsConf *tls.Config
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return fmt.Errorf("hlscache: TLS certificate: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
			NextProtos: []string{"h2", "http/1.1"}}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.routes = newRouteTable(c.Gossip, c.FailoverWindow, c.Log)
	c.lru = newLRU(c.MaxBytes)
	c.flights = newFlightGroup()
	c.viewers = newViewerTracker(nil)
	c.m = newMetrics(c.Node,
		func() float64 { return float64(c.routes.owners()) },
		func() float64 { return float64(c.flights.inFlight()) })
	c.m.perStream = &streamCollector{node: c.Node, viewers: c.viewers}
	c.lru.onEvict = func(n int) { c.m.lruEvictions.Add(float64(n)) }
	c.lru.onExpire = func(n int) { c.m.lruExpired.Add(float64(n)) }
	c.lru.onSize = func(b int64, n int) {
		c.m.lruBytes.Set(float64(b))
		c.m.lruObjects.Set(float64(n))
	}
	if err := c.m.register(c.Metrics); err != nil {
		c.cancel()
		return fmt.Errorf("hlscache: metrics: %w", err)
	}
	if err := c.startDemand(); err != nil {
		c.m.unregister(c.Metrics)
		c.cancel()
		return err
	}
	ln, err := net.Listen("tcp", c.HTTPAddress)
	if err != nil {
		c.m.unregister(c.Metrics)
		c.cancel()
		return fmt.Errorf("hlscache: listen %s: %w", c.HTTPAddress, err)
	}
	owners, err := c.Registry.WatchOwners(c.ctx)
	if err != nil {
		ln.Close()
		c.m.unregister(c.Metrics)
		c.cancel()
		return fmt.Errorf("hlscache: watch owners: %w", err)
	}
	c.ln = ln
	serveLn := ln
	if c.MaxConnsPerIP > 0 {
		c.limit = newLimitListener(ln, c.MaxConnsPerIP, tlsConf == nil, c.m.connsRefused.Inc)
		serveLn = c.limit
	}
	if tlsConf != nil {
		serveLn = tls.NewListener(serveLn, tlsConf)
	}
	c.srv = &http.Server{
		Handler: c.Handler(),
		// A connection that has not sent its headers (or finished its TLS
		// handshake) in time is closed: slow-header clients hold nothing
		// for long. There is no ReadTimeout: requests carry no body (one
		// that announces a body is refused), and a ReadTimeout would also
		// cut held LL-HLS requests short.
		ReadHeaderTimeout: c.HeaderTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		IdleTimeout:       idleTimeout,
		// Bounds the whole exchange: a held request may wait through a
		// failover and a blocking fetch before it writes; body writes then
		// move the deadline forward chunk by chunk (see viewerWriter).
		WriteTimeout: 2*(c.UpstreamTimeout+c.BlockingHold) + 30*time.Second,
		ErrorLog:     slog.NewLogLogger(c.Log.Handler(), slog.LevelDebug),
	}
	if tlsConf != nil {
		c.srv.TLSConfig = tlsConf
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetHTTP2(true)
		c.srv.Protocols = &p
	}
	c.serveLn = serveLn
	c.wg.Add(4)
	go c.serve()
	go c.watchLoop(owners)
	go c.refreshLoop()
	go c.expireLoop()
	c.Log.Info("hls cache listening", "addr", ln.Addr().String())
	return nil
}

// expireInterval is how often the LRU drops the objects past their deadline
// (lru.expire); an object lives at most this much past it, and only when no
// add dropped it first.
const expireInterval = time.Second

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

func (c *Cache) setDefaults() {
	if c.Log == nil {
		c.Log = slog.Default()
	}
	c.Log = c.Log.With("component", "hlscache")
	if c.HTTPAddress == "" {
		c.HTTPAddress = DefaultHTTPAddress
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.UpstreamTimeout <= 0 {
		c.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if c.BlockingHold <= 0 {
		c.BlockingHold = defaultBlockingHold
	}
	if c.FailoverWindow <= 0 {
		c.FailoverWindow = defaultFailoverWindow
	}
	if c.HeaderTimeout <= 0 {
		c.HeaderTimeout = defaultHeaderTimeout
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if c.MaxUpstreamConns <= 0 {
		c.MaxUpstreamConns = DefaultMaxUpstreamConns
	}
	c.slots = upstreamSlots{max: c.MaxUpstreamConns, slots: map[string]chan struct{}{}}
	if len(c.SigningKey) > 0 {
		c.verifier = newVerifier(c.SigningKey)
	}
	if c.DemandWait <= 0 {
		c.DemandWait = c.UpstreamTimeout + c.BlockingHold
	}
	if c.AllowOrigin == "" {
		c.AllowOrigin = DefaultAllowOrigin
	}
	c.cors = corsHeader(c.AllowOrigin)
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
	if c.Client == nil {
		c.Client = newUpstreamClient()
		c.ownClient = true
	}
}

// newUpstreamClient returns the default upstream client: keep-alive
// connections to few origins, many of them held at once by blocking requests.
func newUpstreamClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
			DisableCompression:    true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Close stops accepting viewers, lets in-flight requests finish (up to a
// deadline), stops the fetches and loops and waits for them. Calling it twice
// is harmless.
func (c *Cache) Close() {
	c.closeOnce.Do(func() {
		if c.srv == nil {
			return // never started
		}
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		if err := c.srv.Shutdown(ctx); err != nil {
			c.Log.Warn("hls cache: in-flight requests cut short", "err", err)
			_ = c.srv.Close()
		}
		cancel()
		c.cancel()
		c.hmu.Lock()
		c.closed = true
		c.hmu.Unlock()
		c.handlers.Wait()
		c.flights.close()
		c.wg.Wait()
		c.m.unregister(c.Metrics)
		if c.ownClient {
			c.Client.CloseIdleConnections()
		}
		c.Log.Info("hls cache closed")
	})
}

// Drain stops accepting connections and waits, until ctx ends, for in-flight
// requests to finish; for a graceful SIGTERM. Routes keep being watched until
// Close. It returns ctx's error when requests were still running.
func (c *Cache) Drain(ctx context.Context) error {
	if c.srv == nil {
		return nil
	}
	c.Log.Info("hls cache draining")
	err := c.srv.Shutdown(ctx)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Viewers returns, per stream asked for recently, its audience at this cache.
func (c *Cache) Viewers() map[string]ViewerStats {
	if c.viewers == nil {
		return map[string]ViewerStats{}
	}
	return c.viewers.stats(time.Now())
}

// HTTPAddr is the address viewers connect to (nil before Start).
func (c *Cache) HTTPAddr() net.Addr {
	if c.ln == nil {
		return nil
	}
	return c.ln.Addr()
}

// Handler is the viewers' handler, for mounting on another server as well.
func (c *Cache) Handler() http.Handler { return http.HandlerFunc(c.serveHTTP) }

// Routes returns stream path → owner for every stream with an owner.
func (c *Cache) Routes() map[string]Route {
	if c.routes == nil {
		return map[string]Route{}
	}
	return c.routes.routes()
}

func (c *Cache) serve() {
	defer c.wg.Done()
	if err := c.srv.Serve(c.serveLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
		c.Log.Error("hls cache server stopped", "err", err)
	}
}

// watchLoop applies owner events, re-establishing the watch when it ends
// before Close (the bus connection failed over, the watcher died).
func (c *Cache) watchLoop(events <-chan bus.OwnerEvent) {
	defer c.wg.Done()
	backoff := 250 * time.Millisecond
	for {
		for ev := range events {
			c.routes.setOwner(ev.Path, ev.Owner, time.Now())
		}
		if c.ctx.Err() != nil {
			return
		}
		var err error
		for {
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(backoff):
			}
			events, err = c.Registry.WatchOwners(c.ctx)
			if err == nil {
				break
			}
			backoff = min(2*backoff, 5*time.Second)
			c.Log.Warn("owner watch failed, retrying", "retry_in", backoff, "err", err)
		}
		c.Log.Info("owner watch re-established")
		c.routes.markResync(time.Now())
		backoff = 250 * time.Millisecond
	}
}

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

// ---- viewer requests ----

func (c *Cache) serveHTTP(w http.ResponseWriter, r *http.Request) {
	c.hmu.RLock()
	if c.closed || c.routes == nil {
		c.hmu.RUnlock()
		writeText(w, http.StatusServiceUnavailable, "cache not running")
		return
	}
	c.handlers.Add(1)
	c.hmu.RUnlock()
	defer c.handlers.Done()

	c.setCORS(w.Header())
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		w.Header().Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		writeText(w, http.StatusMethodNotAllowed, "method not allowed")
		c.m.badRequests.Inc()
		return
	}
	if r.ContentLength != 0 {
		// GET and HEAD carry no body here; nothing reads one.
		writeText(w, http.StatusRequestEntityTooLarge, "request body not accepted")
		c.m.badRequests.Inc()
		return
	}
	urlPath, tok := r.URL.Path, ""
	if c.verifier != nil {
		// The token is a path prefix: strip it, so that the lookup (and the
		// cached object) is the same for every viewer.
		tok, urlPath, _ = splitSignedPath(urlPath)
	}
	req, err := parseRequest(urlPath, r.URL.RawQuery)
	if err != nil {
		var re *requestError
		if !errors.As(err, &re) {
			re = &requestError{status: http.StatusBadRequest, msg: "bad request"}
		}
		writeText(w, re.status, re.msg)
		c.m.badRequests.Inc()
		return
	}
	if status, reason, msg := c.access(r, req, tok); status != 0 {
		c.deny(w, status, reason, msg)
		return
	}
	c.viewers.seen(req.stream, r.RemoteAddr, r.UserAgent(), req.kind == kindPlaylist, time.Now())
	if req.kind == kindPage {
		servePlayerPage(w, r, req.stream)
		c.m.requestsBy[kindPage][outcomeHit].Inc()
		return
	}
	negotiate(w, r, req)
	vw := newViewerWriter(w)
	res := c.serveRequest(vw, r, req)
	vw.finish()
	c.m.requestsBy[req.kind][res].Inc()
	c.m.servedBy[req.kind].Add(float64(vw.n))
}

// headerValue is one header, its key canonical and its value shared (see objectHeader).
type headerValue struct {
	key   string
	value []string
}

// corsHeader returns the CORS headers for allowOrigin.
func corsHeader(allowOrigin string) []headerValue {
	h := []headerValue{{"Access-Control-Allow-Origin", []string{allowOrigin}}}
	if allowOrigin != "*" {
		h = append(h, headerValue{"Access-Control-Allow-Credentials", []string{"true"}})
	}
	return append(h,
		headerValue{"Access-Control-Allow-Methods", []string{"GET, HEAD, OPTIONS"}},
		headerValue{"Access-Control-Allow-Headers", []string{"Range, Origin, Content-Type, Accept"}},
		headerValue{"Access-Control-Expose-Headers", []string{"Content-Length, Content-Range"}})
}

func (c *Cache) setCORS(h http.Header) {
	for _, v := range c.cors {
		h[v.key] = v.value
	}
}

// upstreamDeadline is how long one upstream fetch for req may take.
func (c *Cache) upstreamDeadline(req *request) time.Duration {
	if req.kind == kindPart || req.hls.blocking() {
		return c.UpstreamTimeout + c.BlockingHold
	}
	return c.UpstreamTimeout
}

// serveRequest answers a valid request and says how it ended.
//
// With a routable owner it serves from the LRU or the (shared) upstream
// fetch. While a stream fails over it serves what it still holds (the last
// good playlist, the old owner's cached objects) and holds the rest until a
// new owner is routable or the request's deadline passes. An owner that
// refuses connections is taken as dying: playlists then get the last good
// copy, or wait for gossip to move the route.
func (c *Cache) serveRequest(w *viewerWriter, r *http.Request, req *request) outcome {
	ctx := r.Context()
	deadline := time.Now().Add(c.upstreamDeadline(req))
	attempts := 0
	demanded := false // an on-demand camera this request waits for
	for {
		now := time.Now()
		rt, prev, state, changed := c.routes.resolve(req.stream, now)
		if state != routeUnknown && c.demand != nil {
			c.demand.seen(req.stream)
		}
		switch state {
		case routeUnknown:
			if !demanded && c.demand != nil && c.demand.unknown(ctx, req.stream) {
				demanded = true
				deadline = now.Add(c.DemandWait)
			}
			if demanded && c.waitDemanded(ctx, changed, deadline) {
				continue
			}
			if demanded {
				if ctx.Err() != nil {
					return outcomeGone
				}
				w.Header().Set("Retry-After", "1")
				writeText(w, http.StatusServiceUnavailable, "on-demand camera not ready yet")
				return outcomeError
			}
			writeText(w, http.StatusNotFound, "stream not found")
			return outcomeNotFound
		case routeFailover:
			if res, ok := c.serveHeld(w, r, req, prev, now); ok {
				return res
			}
			if c.waitRoute(ctx, changed, deadline) {
				continue
			}
			if ctx.Err() != nil {
				return outcomeGone
			}
			if stale := c.routes.stalePlaylist(req.stream, req.file, time.Now()); req.kind == kindPlaylist && stale != nil {
				writeStale(w, r, stale)
				return outcomeStale
			}
			w.Header().Set("Retry-After", "1")
			writeText(w, http.StatusServiceUnavailable, "stream failing over")
			return outcomeError
		}

		attempts++
		var obj *object
		var res fetchResult
		var err error
		if req.hls.blocking() {
			obj, res, err = c.boundBlocking(ctx, rt, req)
		}
		if err == nil && obj == nil {
			obj, res, err = c.get(ctx, rt, req)
		}
		if re := (*requestError)(nil); errors.As(err, &re) {
			writeText(w, re.status, re.msg)
			return outcomeRefused
		}
		if starting(err, obj, req, prev) || demanded && starting(err, obj, req, rt) {
			// The new owner holds the lease but is still starting the
			// stream: serve the last good playlist, or ask again shortly.
			// A copy overtaken by its hinted part (which the previous
			// owner's objects still serve) is the answer only at the
			// deadline, rather than a 404.
			stale := c.routes.stalePlaylist(req.stream, req.file, now)
			if stale != nil && req.hls.blocking() {
				stale = nil
			}
			if stale != nil && !c.overtaken(prev, req, stale, now) {
				writeStale(w, r, stale)
				return outcomeStale
			}
			if sleepUntil(ctx, deadline, startingRetry) {
				continue
			}
			if stale != nil {
				writeStale(w, r, stale)
				return outcomeStale
			}
		}
		if demanded {
			c.demand.waits.WithLabelValues("ready").Inc()
			demanded = false
		}
		if err == nil {
			if obj.status == http.StatusNotFound && req.kind != kindPlaylist && prev.node != "" {
				// A player still holding the previous owner's playlist asks
				// for its objects, which the new owner never had.
				if old := c.lru.get(cacheKey(prev, req), now); old != nil && old.status == http.StatusOK {
					obj, res = old, resultHit
				}
			}
			writeObject(w, r, obj, res)
			return fetchOutcome(res)
		}
		if ctx.Err() != nil {
			return outcomeGone
		}
		var ue *upstreamError
		if errors.As(err, &ue) && ue.ownerDown() && req.kind == kindPlaylist {
			stale := c.routes.stalePlaylist(req.stream, req.file, now)
			if stale != nil && req.hls.blocking() {
				stale = nil
			}
			// An overtaken copy (see overtaken) waits for gossip to move
			// the route first.
			if stale != nil && !c.overtaken(rt, req, stale, now) {
				writeStale(w, r, stale)
				return outcomeStale
			}
			if attempts < maxUpstreamAttempts && c.waitRoute(ctx, changed, deadline) {
				continue
			}
			if stale != nil && ctx.Err() == nil {
				writeStale(w, r, stale)
				return outcomeStale
			}
		}
		status, msg := http.StatusBadGateway, "upstream error"
		switch {
		case ue != nil:
			status, msg = ue.status, ue.message()
		case errors.Is(err, errClosing):
			status, msg = http.StatusServiceUnavailable, "cache shutting down"
		}
		w.Header().Set("X-Cache", res.String())
		writeText(w, status, msg)
		return outcomeError
	}
}

// startingRetry is how soon a playlist request asks a starting owner again.
const startingRetry = 150 * time.Millisecond

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

// sleepUntil waits d, or less when the deadline comes first; false when the
// deadline passed or the viewer left.
func sleepUntil(ctx context.Context, deadline time.Time, d time.Duration) bool {
	d = min(d, time.Until(deadline))
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// serveHeld answers, during a failover, what needs no new owner: the last
// good copy of a playlist (non-blocking requests; a blocking one waits for
// the new owner), or an object of the previous owner still in the LRU.
func (c *Cache) serveHeld(w *viewerWriter, r *http.Request, req *request, prev route, now time.Time) (outcome, bool) {
	if req.kind == kindPlaylist {
		if req.hls.blocking() {
			return 0, false
		}
		stale := c.routes.stalePlaylist(req.stream, req.file, now)
		if stale == nil || c.overtaken(prev, req, stale, now) {
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

// cacheKey names an object of one owner: objects of different owners or
// epochs never share a key.
func cacheKey(rt route, req *request) string {
	var num [20]byte
	epoch := strconv.AppendUint(num[:0], rt.epoch, 10)
	q := req.hls.encode()
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
func (c *Cache) get(ctx context.Context, rt route, req *request) (*object, fetchResult, error) {
	key := cacheKey(rt, req)
	stored := func() *object {
		now := time.Now()
		obj := c.lru.get(key, now)
		if obj != nil && !req.hls.blocking() && c.overtaken(rt, req, obj, now) {
			return nil
		}
		return obj
	}
	if obj := stored(); obj != nil {
		return obj, resultHit, nil
	}
	return c.flights.do(ctx, key, stored,
		func() (*object, error) { return c.fetch(rt, req, key) })
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

func fetchOutcome(r fetchResult) outcome {
	switch r {
	case resultHit:
		return outcomeHit
	case resultMiss:
		return outcomeMiss
	}
	return outcomeCoalesced
}

// ---- writing answers ----

// Header values of stale playlists, shared (see objectHeader).
var (
	staleXCache       = []string{"STALE"}
	staleCacheControl = []string{"no-cache"}
)

// writeObject answers with a stored object: its 200 with the headers built
// with it, or its passed-through 4xx.
func writeObject(w *viewerWriter, r *http.Request, obj *object, res fetchResult) {
	h := w.Header()
	h["X-Cache"] = res.header()
	if obj.status != http.StatusOK {
		writeText(w, obj.status, string(obj.body))
		return
	}
	h["Content-Type"] = obj.header.contentType
	h["Cache-Control"] = obj.header.cacheControl
	if obj.header.etag != nil {
		h["Etag"] = obj.header.etag // the canonical form of "ETag"
	}
	w.serveBody(r, obj.body, obj.modTime, &obj.header)
}

// writeStale serves the last good copy of a playlist during a failover,
// with neither its ETag nor its Last-Modified.
func writeStale(w *viewerWriter, r *http.Request, obj *object) {
	h := w.Header()
	h["X-Cache"] = staleXCache
	h["Content-Type"] = obj.header.contentType
	h["Cache-Control"] = staleCacheControl
	w.serveBody(r, obj.body, time.Time{}, &obj.header)
}

func writeText(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n"))
}
