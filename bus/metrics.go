package bus

import (
	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
)

// serverCollector exports the embedded NATS server's own monitoring (the
// figures of its /varz) as Prometheus series, read at scrape time.
type serverCollector struct {
	s     *Server
	descs map[string]*prometheus.Desc
}

// natsSeries are the exported figures: name → (help, counter or gauge).
var natsSeries = []struct {
	name, help string
	counter    bool
	value      func(v *server.Varz) float64
}{
	{"streamgrid_bus_connections", "Client connections to this bus node now.", false,
		func(v *server.Varz) float64 { return float64(v.Connections) }},
	{"streamgrid_bus_connections_total", "Client connections this bus node accepted since start.", true,
		func(v *server.Varz) float64 { return float64(v.TotalConnections) }},
	{"streamgrid_bus_routes", "Route connections to other bus nodes now.", false,
		func(v *server.Varz) float64 { return float64(v.Routes) }},
	{"streamgrid_bus_subscriptions", "Subscriptions held on this bus node.", false,
		func(v *server.Varz) float64 { return float64(v.Subscriptions) }},
	{"streamgrid_bus_received_messages_total", "Messages this bus node received (clients and routes).", true,
		func(v *server.Varz) float64 { return float64(v.InMsgs) }},
	{"streamgrid_bus_received_bytes_total", "Payload bytes this bus node received (clients and routes).", true,
		func(v *server.Varz) float64 { return float64(v.InBytes) }},
	{"streamgrid_bus_sent_messages_total", "Messages this bus node sent (clients and routes).", true,
		func(v *server.Varz) float64 { return float64(v.OutMsgs) }},
	{"streamgrid_bus_sent_bytes_total", "Payload bytes this bus node sent (clients and routes).", true,
		func(v *server.Varz) float64 { return float64(v.OutBytes) }},
	{"streamgrid_bus_slow_consumers_total", "Clients disconnected for not keeping up (slow consumers).", true,
		func(v *server.Varz) float64 { return float64(v.SlowConsumers) }},
	{"streamgrid_bus_jetstream_memory_bytes", "JetStream memory storage used on this bus node.", false,
		jetStream(func(st *server.JetStreamStats) float64 { return float64(st.Memory) })},
	{"streamgrid_bus_jetstream_storage_bytes", "JetStream file storage used on this bus node (the registry).", false,
		jetStream(func(st *server.JetStreamStats) float64 { return float64(st.Store) })},
	{"streamgrid_bus_jetstream_api_requests_total", "JetStream API requests (registry reads and writes) this bus node served.", true,
		jetStream(func(st *server.JetStreamStats) float64 { return float64(st.API.Total) })},
	{"streamgrid_bus_jetstream_api_errors_total", "JetStream API requests answered with an error.", true,
		jetStream(func(st *server.JetStreamStats) float64 { return float64(st.API.Errors) })},
}

// jetStream reads a JetStream figure; 0 where JetStream is off.
func jetStream(f func(*server.JetStreamStats) float64) func(*server.Varz) float64 {
	return func(v *server.Varz) float64 {
		if v.JetStream.Stats == nil {
			return 0
		}
		return f(v.JetStream.Stats)
	}
}

// Collector returns a Prometheus collector of the server's monitoring
// figures, labelled with labels (node and role). Nothing is read until a
// scrape; a server that is not running exports nothing.
func (s *Server) Collector(labels prometheus.Labels) prometheus.Collector {
	c := &serverCollector{s: s, descs: map[string]*prometheus.Desc{}}
	for _, x := range natsSeries {
		c.descs[x.name] = prometheus.NewDesc(x.name, x.help, nil, labels)
	}
	return c
}

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	ns := c.s.NATS()
	if ns == nil || !ns.Running() {
		return
	}
	v, err := ns.Varz(nil)
	if err != nil {
		return
	}
	for _, x := range natsSeries {
		typ := prometheus.GaugeValue
		if x.counter {
			typ = prometheus.CounterValue
		}
		ch <- prometheus.MustNewConstMetric(c.descs[x.name], typ, x.value(v))
	}
}
