package hlscache

import "github.com/prometheus/client_golang/prometheus"

// Request results, the "result" label of streamgrid_cache_requests_total.
const (
	resultLabelHit        = "hit"         // answered from the LRU
	resultLabelMiss       = "miss"        // this request made the upstream fetch
	resultLabelCoalesced  = "coalesced"   // joined another request's upstream fetch
	resultLabelStale      = "stale"       // last good playlist served during a failover
	resultLabelError      = "error"       // 502, 503 or 504 made by the cache
	resultLabelNotFound   = "not_found"   // no route to the stream
	resultLabelBadRequest = "bad_request" // rejected by URL validation (400, 404, 405)
	resultLabelGone       = "gone"        // the viewer left before the answer
)

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
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.servedBytes, m.upstreamRequests, m.upstreamErrors,
		m.lruBytes, m.lruObjects, m.lruEvictions, m.routes, m.held, m.fetches}
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
