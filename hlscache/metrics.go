package hlscache

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/internal/promreg"
)

// outcome is how a viewer request that passed validation ended: the
// "result" label of streamgrid_cache_requests_total.
type outcome int

const (
	outcomeHit       outcome = iota // answered from the LRU
	outcomeMiss                     // this request made the upstream fetch
	outcomeCoalesced                // joined another request's upstream fetch
	outcomeStale                    // last good playlist served during a failover
	outcomeError                    // 502, 503 or 504 made by the cache
	outcomeNotFound                 // no route to the stream
	outcomeGone                     // the viewer left before the answer
	outcomeRefused                  // 400: a blocking reload outside the playlist's window
	numOutcomes
)

var outcomeLabels = [numOutcomes]string{"hit", "miss", "coalesced", "stale", "error", "not_found", "gone", "refused"}

func (o outcome) String() string { return outcomeLabels[o] }

// resultLabelBadRequest is the result of a request rejected by URL
// validation (400, 404, 405), counted under kind "other".
const resultLabelBadRequest = "bad_request"

// metrics are the cache's Prometheus collectors, labelled node and role.
// newMetrics makes them, register adds them to a registry (all or none),
// unregister takes them away again.
type metrics struct {
	requests         *prometheus.CounterVec
	servedBytes      *prometheus.CounterVec
	upstreamRequests *prometheus.CounterVec
	upstreamErrors   *prometheus.CounterVec
	lruBytes         prometheus.Gauge
	lruObjects       prometheus.Gauge
	lruEvictions     prometheus.Counter
	lruExpired       prometheus.Counter
	shedBytes        prometheus.Counter
	routes           prometheus.GaugeFunc
	held             prometheus.Gauge
	rerouted         prometheus.Counter
	fetches          prometheus.GaugeFunc
	deniedVec        *prometheus.CounterVec
	connsRefused     prometheus.Counter
	handedOver       prometheus.Counter
	upstreamWaiting  prometheus.Gauge
	upstreamSeconds  *prometheus.HistogramVec // kind, result
	blockingSeconds  prometheus.Histogram

	// requestsBy, badRequests and servedBy are the series of requests and
	// servedBytes that viewer requests add to, resolved once here so that a
	// request does no label lookups. (So every kind × result series is
	// exported from the start, at 0.)
	requestsBy  [numKinds][numOutcomes]prometheus.Counter
	badRequests prometheus.Counter
	servedBy    [numKinds]prometheus.Counter
	denied      map[string]prometheus.Counter // by reason, every reason resolved up front

	// extra are collectors of other parts (the per-stream series, the
	// demand table's), registered and unregistered with these; set before
	// register.
	extra []prometheus.Collector

	registered []prometheus.Collector
}

// metricOpts makes the cache's collectors, each with the node's constant labels.
type metricOpts struct{ labels prometheus.Labels }

func newMetricOpts(node string) metricOpts {
	return metricOpts{labels: prometheus.Labels{"node": node, "role": "cache"}}
}

func (o metricOpts) counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: o.labels})
}

func (o metricOpts) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: o.labels}, labels)
}

func (o metricOpts) gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: o.labels})
}

func (o metricOpts) gaugeFunc(name, help string, f func() float64) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: o.labels}, f)
}

func (o metricOpts) histogram(name, help string, buckets []float64) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{Name: name, Help: help, ConstLabels: o.labels, Buckets: buckets}
}

// newMetrics makes the collectors; routes and inFlight are read at scrape
// time.
func newMetrics(node string, routes, inFlight func() float64) *metrics {
	o := newMetricOpts(node)
	m := &metrics{
		requests: o.counterVec("streamgrid_cache_requests_total",
			"Viewer requests by kind (playlist, segment, part, init, other) and result.", "kind", "result"),
		servedBytes: o.counterVec("streamgrid_cache_served_bytes_total",
			"Response body bytes written to viewers, by kind.", "kind"),
		upstreamRequests: o.counterVec("streamgrid_cache_upstream_requests_total",
			"Requests made to origins, by kind.", "kind"),
		upstreamErrors: o.counterVec("streamgrid_cache_upstream_errors_total",
			"Failed origin requests, by kind and reason (timeout, connect, status, body).", "kind", "reason"),
		lruBytes:   o.gauge("streamgrid_cache_lru_bytes", "Bytes held by the object cache."),
		lruObjects: o.gauge("streamgrid_cache_lru_objects", "Objects held by the object cache."),
		lruEvictions: o.counter("streamgrid_cache_lru_evictions_total",
			"Objects evicted from the object cache to stay within its byte budget."),
		lruExpired: o.counter("streamgrid_cache_lru_expired_total",
			"Objects dropped from the object cache because they can no longer be requested (segments and parts past their availability, stale playlists, init sections of ended streams)."),
		shedBytes: o.counter("streamgrid_cache_shed_bytes_total",
			"Bytes of cached objects dropped because the node's memory neared its limit (node.memory_limit)."),
		routes: o.gaugeFunc("streamgrid_cache_routes", "Streams with a known owner.", routes),
		held:   o.gauge("streamgrid_cache_held_requests", "Viewer requests held while their stream fails over."),
		rerouted: o.counter("streamgrid_cache_rerouted_total",
			"Viewer requests that stopped waiting for an owner's answer because their stream moved to a new owner (or lost its owner) meanwhile, and were asked again of the new one."),
		upstreamSeconds: prometheus.NewHistogramVec(o.histogram("streamgrid_cache_upstream_fetch_seconds",
			"Duration of origin requests other than blocking playlist reloads, by kind and result (ok, error).",
			[]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}), []string{"kind", "result"}),
		blockingSeconds: prometheus.NewHistogram(o.histogram("streamgrid_cache_blocking_reload_seconds",
			"Duration of LL-HLS blocking playlist reloads (_HLS_msn) at the origin: mostly the wait for the next part.",
			[]float64{.01, .05, .1, .2, .3, .5, .75, 1, 1.5, 2, 3, 5, 8, 12})),
		fetches: o.gaugeFunc("streamgrid_cache_upstream_in_flight", "Upstream fetches running.", inFlight),
		deniedVec: o.counterVec("streamgrid_cache_denied_total",
			"Viewer requests refused by signed-URL or read-permission checks, by reason "+
				"(missing, malformed, version, signature, expired, network, unauthenticated, forbidden).", "reason"),
		connsRefused: o.counter("streamgrid_cache_conns_refused_total",
			"Viewer connections closed at accept because their IP held max_conns_per_ip already."),
		handedOver: o.counter("streamgrid_cache_handed_over_total",
			"Plain-HTTP viewer connections the fast path handed to the net/http server, where they stay: a request the fast path does not answer (Range, a conditional request, a body, an error or failover answer, a request head over 4 KiB, ...)."),
		upstreamWaiting: o.gauge("streamgrid_cache_upstream_waiting",
			"Upstream fetches waiting for a connection slot (max_upstream_conns per origin)."),
	}
	m.denied = map[string]prometheus.Counter{}
	for _, r := range deniedReasons {
		m.denied[r] = m.deniedVec.WithLabelValues(r)
	}
	for k := range numKinds {
		for res := range numOutcomes {
			m.requestsBy[k][res] = m.requests.WithLabelValues(k.String(), res.String())
		}
		m.servedBy[k] = m.servedBytes.WithLabelValues(k.String())
	}
	m.badRequests = m.requests.WithLabelValues(kindOther, resultLabelBadRequest)
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	out := []prometheus.Collector{m.requests, m.servedBytes, m.upstreamRequests, m.upstreamErrors,
		m.lruBytes, m.lruObjects, m.lruEvictions, m.lruExpired, m.shedBytes, m.routes, m.held, m.rerouted, m.fetches,
		m.deniedVec, m.connsRefused, m.handedOver, m.upstreamWaiting, m.upstreamSeconds, m.blockingSeconds}
	return append(out, m.extra...)
}

// register adds every collector to reg; on failure it removes what it added.
func (m *metrics) register(reg prometheus.Registerer) error {
	cs := m.collectors()
	if err := promreg.Register(reg, cs...); err != nil {
		return err
	}
	m.registered = cs
	return nil
}

// unregister removes what register added; a second call does nothing.
func (m *metrics) unregister(reg prometheus.Registerer) {
	promreg.Unregister(reg, m.registered...)
	m.registered = nil
}

var (
	descStreamViewers = prometheus.NewDesc("streamgrid_cache_stream_viewers",
		"Estimated viewers of a stream at this cache: distinct (address, User-Agent) pairs that asked for one of its playlists in the last 10 s. "+
			"The series goes when nobody asked for the stream for 10 s.",
		[]string{"node", "role", "stream"}, nil)
	descStreamRequests = prometheus.NewDesc("streamgrid_cache_stream_requests_total",
		"Viewer requests for a stream (every kind), since it was last first asked for here.",
		[]string{"node", "role", "stream"}, nil)
)

// streamCollector exports the per-stream series from the viewer table at
// scrape time, so they exist only while the stream has an audience
// (bounded cardinality) and a request costs no label lookup.
type streamCollector struct {
	node    string
	viewers *viewerTracker
	now     func() time.Time // default time.Now
}

func (s *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descStreamViewers
	ch <- descStreamRequests
}

func (s *streamCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	for name, st := range s.viewers.stats(now()) {
		ch <- prometheus.MustNewConstMetric(descStreamViewers, prometheus.GaugeValue, float64(st.Viewers), s.node, "cache", name)
		ch <- prometheus.MustNewConstMetric(descStreamRequests, prometheus.CounterValue, float64(st.Requests), s.node, "cache", name)
	}
}
