package hlscache

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/gossip"
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
)

// Cache is the viewers' HLS server: it routes each stream to the origin that
// owns it, fetches objects from there with one upstream request per object,
// keeps them in a byte-bounded LRU and answers with the right headers. Fill
// in the fields, then Start; Drain on a graceful stop; Close.
//
// Its parts each live in a file of their own: the route table
// (routetable.go), the LRU (lru.go), the shared fetches (flight.go), the
// upstream exchange (upstream.go), the handler (handler.go) and the way a
// request finds its answer through failovers (serve.go).
//
// Invariants: the configuration fields are read-only once Start has begun;
// everything Start makes is in place before its goroutines run; Close waits
// for every goroutine Start and the handlers started (loops, fetches,
// demand signals), and calling it twice is harmless.
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
	// AuthorizeAll, when set, reports whether Authorize allows every
	// request at the moment (no read rule in force): while it does, the
	// plain-HTTP fast path (fastserver.go) answers without asking Authorize,
	// which needs an *http.Request. Read on every request; it should be an
	// atomic load. Default: nil, Authorize is always asked (and a cache
	// with Authorize has no fast path).
	AuthorizeAll func() bool
	// OriginSecret, when set, is sent as hlsproto.HeaderAuth with every upstream
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
	// Local, when its Handler is set, is an origin in this process: routes
	// to its address are served by calling its handler (inprocess.go).
	Local LocalOrigin
	// Log. Default slog.Default().
	Log *slog.Logger
	// Metrics receives the collectors. Default: a private registry.
	Metrics prometheus.Registerer

	ctx      context.Context // cancelled by Close: ends fetches and loops
	cancel   context.CancelFunc
	ln       net.Listener
	serveLn  net.Listener   // ln behind the per-IP cap and TLS
	limit    *limitListener // nil without a per-IP cap
	srv      *http.Server
	fast     *fastServer // plain HTTP: accepts and answers hot requests (fastserver.go); nil under TLS
	fastCORS []byte      // the CORS header lines of the fast path's answers
	// noFastPath, set by tests before Start, leaves every request to net/http.
	noFastPath bool
	slots      upstreamSlots
	verifier   *verifier // checks tokens with SigningKey; nil without one
	routes     *routeTable
	lru        *lru
	flights    *flightGroup
	viewers    *viewerTracker
	demand     *demandTable // nil without a Demander
	m          *metrics
	ownClient  bool
	cors       []headerValue  // the CORS headers of every answer
	wg         sync.WaitGroup // serve, watch, refresh and expire loops
	handlers   handlerGate    // requests being served and the tasks they started
	warn       warnLimiter    // upstream failures logged, at most one a second
	closeOnce  sync.Once
}

// Start validates the configuration, starts watching stream owners and
// listens. Port clashes and registry errors are returned at once, with what
// Start had done undone.
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
	tlsConf, err := c.tlsConfig()
	if err != nil {
		return err
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.build()
	owners, err := c.acquire()
	if err != nil {
		c.cancel()
		return err
	}
	c.serveLn = c.ln
	if c.MaxConnsPerIP > 0 {
		c.limit = newLimitListener(c.ln, c.MaxConnsPerIP, tlsConf == nil, c.m.connsRefused.Inc)
		c.serveLn = c.limit
	}
	switch {
	case tlsConf != nil:
		c.serveLn = tls.NewListener(c.serveLn, tlsConf)
	case c.noFastPath || c.verifier != nil || c.Authorize != nil && c.AuthorizeAll == nil:
		// Signed URLs and the Authorize hook are net/http's alone: the
		// fast path checks no access.
		c.serveLn = viewerListener{c.serveLn} // headers and body in one write (viewerconn.go)
	default:
		// The fast path accepts; net/http gets the connections it hands
		// over, wrapped as viewerListener wraps them.
		c.fast = newFastServer(c, c.serveLn)
		c.serveLn = c.fast.handoff
	}
	c.srv = c.newServer(tlsConf)
	c.wg.Add(4)
	if c.fast != nil {
		c.wg.Add(1)
		go c.serveFast()
	}
	go c.serve()
	go c.watchLoop(owners)
	go c.refreshLoop()
	go c.expireLoop()
	c.Log.Info("hls cache listening", "addr", c.ln.Addr().String())
	return nil
}

// orDefault sets *v to def when it is zero or negative.
func orDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
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
	orDefault(&c.MaxBytes, DefaultMaxBytes)
	orDefault(&c.UpstreamTimeout, DefaultUpstreamTimeout)
	orDefault(&c.BlockingHold, defaultBlockingHold)
	orDefault(&c.FailoverWindow, defaultFailoverWindow)
	orDefault(&c.HeaderTimeout, defaultHeaderTimeout)
	if c.MaxConnsPerIP == 0 { // negative: no cap
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	orDefault(&c.MaxUpstreamConns, DefaultMaxUpstreamConns)
	orDefault(&c.DemandWait, c.UpstreamTimeout+c.BlockingHold)
	if c.AllowOrigin == "" {
		c.AllowOrigin = DefaultAllowOrigin
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
	if c.Client == nil {
		c.Client = newUpstreamClient()
		c.ownClient = true
	}
	if c.Local.Handler != nil {
		client := *c.Client
		next := client.Transport
		if next == nil {
			next = http.DefaultTransport
		}
		client.Transport = &inProcess{local: c.Local, next: next}
		c.Client = &client
	}
}

// tlsConfig loads TLSCert and TLSKey; nil without them.
func (c *Cache) tlsConfig() (*tls.Config, error) {
	if c.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("hlscache: TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"}}, nil
}

// build makes the cache's parts, none of which can fail, and wires their
// metrics.
func (c *Cache) build() {
	c.slots = upstreamSlots{max: c.MaxUpstreamConns, slots: map[string]chan struct{}{}}
	if len(c.SigningKey) > 0 {
		c.verifier = newVerifier(c.SigningKey)
	}
	c.cors = corsHeader(c.AllowOrigin)
	c.fastCORS = fastCORSHeader(c.cors)
	c.routes = newRouteTable(c.Gossip, c.FailoverWindow, c.Log)
	c.lru = newLRU(c.MaxBytes)
	c.flights = newFlightGroup()
	c.viewers = newViewerTracker(nil)
	c.m = newMetrics(c.Node,
		func() float64 { return float64(c.routes.owners()) },
		func() float64 { return float64(c.flights.inFlight()) })
	c.m.extra = append(c.m.extra, &streamCollector{node: c.Node, viewers: c.viewers})
	c.lru.onEvict = func(n int) { c.m.lruEvictions.Add(float64(n)) }
	c.lru.onExpire = func(n int) { c.m.lruExpired.Add(float64(n)) }
	c.lru.onSize = func(b int64, n int) {
		c.m.lruBytes.Set(float64(b))
		c.m.lruObjects.Set(float64(n))
	}
	if c.Demander != nil {
		c.demand = newDemandTable(c.Demander, c.ctx, c.Node, c.handlers.spawn)
		c.m.extra = append(c.m.extra, c.demand.collectors()...)
	}
}

// acquire does Start's fallible steps: it registers the metrics, listens
// and starts watching stream owners. When a step fails it undoes the ones
// before.
func (c *Cache) acquire() (<-chan bus.OwnerEvent, error) {
	if err := c.m.register(c.Metrics); err != nil {
		return nil, fmt.Errorf("hlscache: metrics: %w", err)
	}
	ln, err := net.Listen("tcp", c.HTTPAddress)
	if err != nil {
		c.m.unregister(c.Metrics)
		return nil, fmt.Errorf("hlscache: listen %s: %w", c.HTTPAddress, err)
	}
	owners, err := c.Registry.WatchOwners(c.ctx)
	if err != nil {
		ln.Close()
		c.m.unregister(c.Metrics)
		return nil, fmt.Errorf("hlscache: watch owners: %w", err)
	}
	c.ln = ln
	return owners, nil
}

// newServer returns the viewers' HTTP server (HTTP/2 as well with TLS).
func (c *Cache) newServer(tlsConf *tls.Config) *http.Server {
	srv := &http.Server{
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
		ConnContext:  withViewerConn,
	}
	if tlsConf != nil {
		srv.TLSConfig = tlsConf
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetHTTP2(true)
		srv.Protocols = &p
	}
	return srv
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
		if err := c.shutdown(ctx); err != nil {
			c.Log.Warn("hls cache: in-flight requests cut short", "err", err)
			_ = c.srv.Close()
		}
		cancel()
		c.cancel()
		c.handlers.close()
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
	err := c.shutdown(ctx)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// shutdown stops accepting and waits, until ctx ends, for the requests in
// flight: the fast path's first (a connection it hands over meanwhile goes
// to net/http, or is closed once that stopped), then net/http's.
func (c *Cache) shutdown(ctx context.Context) error {
	var fastErr error
	if c.fast != nil {
		fastErr = c.fast.shutdown(ctx)
	}
	if err := c.srv.Shutdown(ctx); err != nil {
		return err
	}
	return fastErr
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
