package hlscache

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
type metrics struct {
	requests         *prometheus.CounterVec
	servedBytes      *prometheus.CounterVec
	upstreamRequests *prometheus.CounterVec
	upstreamErrors   *prometheus.CounterVec
	lruBytes         prometheus.Gauge
	lruObjects       prometheus.Gauge
	lruEvictions     prometheus.Counter
	lruExpired       prometheus.Counter
	routes           prometheus.GaugeFunc
	held             prometheus.Gauge
	fetches          prometheus.GaugeFunc
	deniedVec        *prometheus.CounterVec
	connsRefused     prometheus.Counter
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

	// perStream exports the per-stream viewer and request series; set
	// before register.
	perStream prometheus.Collector

	registered []prometheus.Collector
}

func newMetrics(node string, routes, inFlight func() float64) *metrics {
	labels := prometheus.Labels{"node": node, "role": "cache"}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamgrid_cache_requests_total", ConstLabels: labels,
			Help: "Viewer requests by kind (playlist, segment, part, init, other) and result.",
		}, []string{"kind", "result"}),
		servedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamgrid_cache_served_bytes_total", ConstLabels: labels,
			Help: "Response body bytes written to viewers, by kind.",
		}, []string{"kind"}),
		upstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamgrid_cache_upstream_requests_total", ConstLabels: labels,
			Help: "Requests made to origins, by kind.",
		}, []string{"kind"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamgrid_cache_upstream_errors_total", ConstLabels: labels,
			Help: "Failed origin requests, by kind and reason (timeout, connect, status, body).",
		}, []string{"kind", "reason"}),
		lruBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "streamgrid_cache_lru_bytes", ConstLabels: labels,
			Help: "Bytes held by the object cache.",
		}),
		lruObjects: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "streamgrid_cache_lru_objects", ConstLabels: labels,
			Help: "Objects held by the object cache.",
		}),
		lruEvictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamgrid_cache_lru_evictions_total", ConstLabels: labels,
			Help: "Objects evicted from the object cache to stay within its byte budget.",
		}),
		lruExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamgrid_cache_lru_expired_total", ConstLabels: labels,
			Help: "Objects dropped from the object cache because they can no longer be requested (segments and parts past their availability, stale playlists, init sections of ended streams).",
		}),
		routes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "streamgrid_cache_routes", ConstLabels: labels,
			Help: "Streams with a known owner.",
		}, routes),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "streamgrid_cache_held_requests", ConstLabels: labels,
			Help: "Viewer requests held while their stream fails over.",
		}),
		upstreamSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "streamgrid_cache_upstream_fetch_seconds", ConstLabels: labels,
			Help:    "Duration of origin requests other than blocking playlist reloads, by kind and result (ok, error).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"kind", "result"}),
		blockingSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "streamgrid_cache_blocking_reload_seconds", ConstLabels: labels,
			Help:    "Duration of LL-HLS blocking playlist reloads (_HLS_msn) at the origin: mostly the wait for the next part.",
			Buckets: []float64{.01, .05, .1, .2, .3, .5, .75, 1, 1.5, 2, 3, 5, 8, 12},
		}),
		fetches: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "streamgrid_cache_upstream_in_flight", ConstLabels: labels,
			Help: "Upstream fetches running.",
		}, inFlight),
		deniedVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamgrid_cache_denied_total", ConstLabels: labels,
			Help: "Viewer requests refused by signed-URL or read-permission checks, by reason " +
				"(missing, malformed, version, signature, expired, network, unauthenticated, forbidden).",
		}, []string{"reason"}),
		connsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamgrid_cache_conns_refused_total", ConstLabels: labels,
			Help: "Viewer connections closed at accept because their IP held max_conns_per_ip already.",
		}),
		upstreamWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "streamgrid_cache_upstream_waiting", ConstLabels: labels,
			Help: "Upstream fetches waiting for a connection slot (max_upstream_conns per origin).",
		}),
	}
	m.denied = map[string]prometheus.Counter{}
	for _, r := range deniedReasons {
		m.denied[r] = m.deniedVec.WithLabelValues(r)
	}
	for k := range numKinds {
		for o := range numOutcomes {
			m.requestsBy[k][o] = m.requests.WithLabelValues(k.String(), o.String())
		}
		m.servedBy[k] = m.servedBytes.WithLabelValues(k.String())
	}
	m.badRequests = m.requests.WithLabelValues(kindOther, resultLabelBadRequest)
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	out := []prometheus.Collector{m.requests, m.servedBytes, m.upstreamRequests, m.upstreamErrors,
		m.lruBytes, m.lruObjects, m.lruEvictions, m.lruExpired, m.routes, m.held, m.fetches,
		m.deniedVec, m.connsRefused, m.upstreamWaiting, m.upstreamSeconds, m.blockingSeconds}
	if m.perStream != nil {
		out = append(out, m.perStream)
	}
	return out
}

// register adds every collector to reg; on failure it removes what it added.
func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			m.unregister(reg)
			return err
		}
		m.registered = append(m.registered, c)
	}
	return nil
}

func (m *metrics) unregister(reg prometheus.Registerer) {
	for _, c := range m.registered {
		reg.Unregister(c)
	}
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
