package hlscache

import "github.com/prometheus/client_golang/prometheus"

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
	routes           prometheus.GaugeFunc
	held             prometheus.Gauge
	fetches          prometheus.GaugeFunc
	deniedVec        *prometheus.CounterVec
	connsRefused     prometheus.Counter
	upstreamWaiting  prometheus.Gauge

	// requestsBy, badRequests and servedBy are the series of requests and
	// servedBytes that viewer requests add to, resolved once here so that a
	// request does no label lookups. (So every kind × result series is
	// exported from the start, at 0.)
	requestsBy  [numKinds][numOutcomes]prometheus.Counter
	badRequests prometheus.Counter
	servedBy    [numKinds]prometheus.Counter
	denied      map[string]prometheus.Counter // by reason, every reason resolved up front

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
		routes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "streamgrid_cache_routes", ConstLabels: labels,
			Help: "Streams with a known owner.",
		}, routes),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "streamgrid_cache_held_requests", ConstLabels: labels,
			Help: "Viewer requests held while their stream fails over.",
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
	return []prometheus.Collector{m.requests, m.servedBytes, m.upstreamRequests, m.upstreamErrors,
		m.lruBytes, m.lruObjects, m.lruEvictions, m.routes, m.held, m.fetches,
		m.deniedVec, m.connsRefused, m.upstreamWaiting}
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
