package hlscache

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/gossip"
	"github.com/streamgrid/streamgrid/internal/hlsproto"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

var quiet = slog.New(slog.DiscardHandler)

// fakeOrigin is a real HTTP server standing in for an origin: it serves the
// files it was given with the X-Streamgrid headers and counts every request.
type fakeOrigin struct {
	srv   *httptest.Server
	node  string
	epoch atomic.Uint64 // announced in X-Streamgrid-Epoch

	mu       sync.Mutex
	files    map[string][]byte // URL path → body
	hits     map[string]int    // URL path → requests
	queries  []string          // raw queries received, in order
	override func(w http.ResponseWriter, r *http.Request) bool
}

func newFakeOrigin(t testing.TB, node string) *fakeOrigin {
	o := &fakeOrigin{node: node, files: map[string][]byte{}, hits: map[string]int{}}
	o.srv = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *fakeOrigin) addr() string { return o.srv.Listener.Addr().String() }

func (o *fakeOrigin) set(path string, body []byte) {
	o.mu.Lock()
	o.files[path] = body
	o.mu.Unlock()
}

func (o *fakeOrigin) remove(path string) {
	o.mu.Lock()
	delete(o.files, path)
	o.mu.Unlock()
}

// handle installs a handler consulted first; it returns true when it answered.
func (o *fakeOrigin) handle(f func(w http.ResponseWriter, r *http.Request) bool) {
	o.mu.Lock()
	o.override = f
	o.mu.Unlock()
}

// holdAll makes every request wait until the returned channel is closed,
// then answer as usual.
func (o *fakeOrigin) holdAll() chan<- struct{} {
	release := make(chan struct{})
	o.handle(func(w http.ResponseWriter, r *http.Request) bool {
		<-release
		return false
	})
	return release
}

func (o *fakeOrigin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits[path]
}

func (o *fakeOrigin) receivedQueries() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.queries...)
}

func (o *fakeOrigin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.hits[r.URL.Path]++
	o.queries = append(o.queries, r.URL.RawQuery)
	body, ok := o.files[r.URL.Path]
	override := o.override
	o.mu.Unlock()
	w.Header().Set(hlsproto.HeaderOrigin, o.node)
	w.Header().Set(hlsproto.HeaderEpoch, strconv.FormatUint(o.epoch.Load(), 10))
	if override != nil && override(w, r) {
		return
	}
	if !ok {
		http.Error(w, "no such file", http.StatusNotFound)
		return
	}
	if strings.HasSuffix(r.URL.Path, ".m3u8") {
		w.Header().Set("Cache-Control", "no-cache")
	} else {
		w.Header().Set("Cache-Control", "public, max-age=3600")
	}
	_, _ = w.Write(body)
}

// env is a small cluster on loopback: an embedded NATS with the registry,
// an origin's gossip node and the cache's own, and a started Cache.
type env struct {
	t            testing.TB
	server       *bus.Server
	nc           *nats.Conn
	reg          *bus.Registry
	originGossip *gossip.Node
	cacheGossip  *gossip.Node
	origin       *fakeOrigin
	cache        *Cache
	client       *http.Client
	base         string
}

// newEnv starts the cluster; tune, when set, adjusts the cache before Start.
func newEnv(t testing.TB, tune func(c *Cache)) *env {
	t.Helper()
	e := &env{t: t}
	e.server = &bus.Server{Host: "127.0.0.1", Port: -1, Log: quiet}
	if err := e.server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.server.Close)
	nc, err := bus.Connect(bus.ConnOptions{URLs: []string{e.server.ClientURL()}, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e.nc = nc
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	e.reg = &bus.Registry{JS: js}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.reg.Start(ctx); err != nil {
		t.Fatal(err)
	}

	e.origin = newFakeOrigin(t, "origin1")
	e.originGossip = &gossip.Node{Name: "origin1", BindAddr: "127.0.0.1",
		Meta: gossip.Meta{Role: "origin", HTTP: e.origin.addr()}, Log: quiet}
	if err := e.originGossip.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.originGossip.Shutdown) // as the cache's below
	e.cacheGossip = &gossip.Node{Name: "cache1", BindAddr: "127.0.0.1",
		Seeds: []string{e.originGossip.Addr()}, Meta: gossip.Meta{Role: "cache"}, Log: quiet}
	if err := e.cacheGossip.Start(); err != nil {
		t.Fatal(err)
	}
	// Shutdown, not Close: announcing a departure waits up to 500 ms for the
	// broadcast, and no test looks at the nodes leaving after it ended.
	t.Cleanup(e.cacheGossip.Shutdown)
	testkit.WaitFor(t, 10*time.Second, "cache gossip sees the origin", func() bool {
		_, ok := e.cacheGossip.Member("origin1")
		return ok
	})

	e.cache = &Cache{
		Node:            "cache1",
		Registry:        e.reg,
		Gossip:          e.cacheGossip,
		HTTPAddress:     "127.0.0.1:0",
		UpstreamTimeout: 2 * time.Second,
		BlockingHold:    2 * time.Second,
		Log:             quiet,
	}
	if tune != nil {
		tune(e.cache)
	}
	if err := e.cache.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cache.Close)
	e.client = &http.Client{
		Timeout:   20 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 200},
	}
	t.Cleanup(e.client.CloseIdleConnections)
	e.base = "http://" + e.cache.HTTPAddr().String()
	return e
}

// own makes the fake origin the owner of path and waits until the cache routes it.
func (e *env) own(path string) *bus.Lease {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := e.reg.AcquireOwner(ctx, path, bus.Owner{Node: e.origin.node, HTTP: e.origin.addr()})
	if err != nil {
		e.t.Fatal(err)
	}
	e.origin.epoch.Store(l.Owner.Epoch)
	testkit.WaitFor(e.t, 10*time.Second, "cache routes "+path, func() bool {
		r, ok := e.cache.Routes()[path]
		return ok && r.Alive && r.Epoch == l.Owner.Epoch
	})
	return l
}

// release gives the lease up and waits until the cache has no owner for path.
func (e *env) release(l *bus.Lease) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.reg.ReleaseOwner(ctx, l); err != nil {
		e.t.Fatal(err)
	}
	testkit.WaitFor(e.t, 10*time.Second, "cache drops the owner of "+l.Key, func() bool {
		_, ok := e.cache.Routes()[l.Key]
		return !ok
	})
}

// wantOriginRequests checks that the origin was asked for path want times;
// why, when not empty, says what the figure shows.
func (e *env) wantOriginRequests(path string, want int, why string) {
	e.t.Helper()
	if got := e.origin.count(path); got != want {
		if why != "" {
			why = " (" + why + ")"
		}
		e.t.Errorf("origin saw %d requests for %s, want %d%s", got, path, want, why)
	}
}

// response is a completed viewer request.
type response struct {
	status int
	header http.Header
	body   string
}

func (e *env) do(method, path string, hdr ...string) response {
	e.t.Helper()
	r, err := e.request(context.Background(), method, path, hdr...)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *env) get(path string, hdr ...string) response {
	e.t.Helper()
	return e.do(http.MethodGet, path, hdr...)
}

// getAsync sends a GET from a goroutine of its own and delivers the response
// on results; a request that fails arrives with status -1 and the error as
// its body.
func (e *env) getAsync(path string, results chan<- response) {
	go func() {
		r, err := e.request(context.Background(), http.MethodGet, path)
		if err != nil {
			r.status, r.body = -1, err.Error()
		}
		results <- r
	}()
}

// request is do without failing the test, for use from other goroutines.
func (e *env) request(ctx context.Context, method, path string, hdr ...string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, method, e.base+path, nil)
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}, nil
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// metricValue reads a counter or gauge with exactly one series.
func metricValue(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var v float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			panic(err)
		}
		switch {
		case d.Counter != nil:
			v += d.Counter.GetValue()
		case d.Gauge != nil:
			v += d.Gauge.GetValue()
		}
	}
	return v
}
