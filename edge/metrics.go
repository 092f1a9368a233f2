package edge

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/internal/promreg"
)

// Protocol names used in metrics, logs, StreamStatus and the registry.
const (
	ProtocolRTSP = "rtsp"
	ProtocolRTMP = "rtmp"
	ProtocolPull = "pull"
)

// Reasons of the rejected-connections metric.
const (
	rejectHandshake        = "handshake"         // malformed or stalled protocol handshake
	rejectPath             = "bad_path"          // stream path fails bus.ValidatePath
	rejectBusy             = "busy"              // a publisher is already live on the path
	rejectNoTracks         = "no_tracks"         // no supported track
	rejectPlay             = "play"              // a reader: playback is served over HLS
	rejectRegistry         = "registry"          // the registry could not be reached
	rejectPanic            = "panic"             // a connection handler panicked
	rejectClosing          = "closing"           // the edge is shutting down
	rejectRedirect         = "redirect"          // a pulled camera redirected to another host
	rejectNoMedia          = "no_media"          // a publisher sent no media for MediaTimeout
	rejectLimit            = "limit"             // MaxPublishers reached
	rejectSetupSize        = "setup_too_large"   // RTMP: too many bytes before the tracks were known
	rejectSDP              = "bad_sdp"           // an SDP with too many media sections
	rejectHandshakeTimeout = "handshake_timeout" // no RECORD / publish within ReadTimeout
)

// metrics are the edge's Prometheus collectors, labelled with the node and role.
type metrics struct {
	publishers      *prometheus.GaugeVec   // protocol
	packetsIn       *prometheus.CounterVec // protocol: access units received
	bytesIn         *prometheus.CounterVec // protocol: access-unit bytes received
	published       prometheus.Counter     // packets published on the bus
	publishErrors   prometheus.Counter
	dropped         *prometheus.CounterVec // reason
	droppedBy       [len(dropReasonNames)]prometheus.Counter
	oversized       prometheus.Counter
	decodeErrors    *prometheus.CounterVec // protocol
	packetsLost     *prometheus.CounterVec // protocol
	rejected        *prometheus.CounterVec // protocol, reason
	discontinuities prometheus.Counter
	paramChanges    prometheus.Counter
	registryErrors  prometheus.Counter
	pullReconnects  *prometheus.CounterVec // source
	demands         *prometheus.CounterVec // source: viewers' demand messages for on-demand cameras
	demandPulls     *prometheus.CounterVec // source: on-demand pulls started here
	sourcesHeld     prometheus.Gauge
	gopShed         prometheus.Counter // GOP caches emptied to keep the edge's GOP budget
	gopBytes        func() int64       // bytes all GOP caches hold; set by Start before registering

	all []prometheus.Collector
}

func newMetrics(node string) *metrics {
	labels := prometheus.Labels{"node": node, "role": "edge"}
	m := &metrics{}
	counterOpts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "streamgrid", Subsystem: "edge", Name: name, Help: help, ConstLabels: labels}
	}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(counterOpts(name, help))
		m.all = append(m.all, c)
		return c
	}
	counterVec := func(name, help string, l ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(counterOpts(name, help), l)
		m.all = append(m.all, c)
		return c
	}
	gaugeOpts := func(name, help string) prometheus.GaugeOpts {
		return prometheus.GaugeOpts{Namespace: "streamgrid", Subsystem: "edge", Name: name, Help: help, ConstLabels: labels}
	}
	m.publishers = prometheus.NewGaugeVec(gaugeOpts("publishers", "Live publishers (streams) by ingest protocol."), []string{"protocol"})
	m.sourcesHeld = prometheus.NewGauge(gaugeOpts("sources_held", "Camera sources whose pull lease this edge holds."))
	m.all = append(m.all, m.publishers, m.sourcesHeld)
	m.packetsIn = counterVec("received_packets_total", "Access units received from publishers.", "protocol")
	m.bytesIn = counterVec("received_bytes_total", "Access-unit bytes received from publishers.", "protocol")
	m.published = counter("packets_published_total", "Packets published on the bus.")
	m.publishErrors = counter("publish_errors_total", "Packets the bus connection refused.")
	m.dropped = counterVec("packets_dropped_total", "Access units dropped by the normalizer.", "reason")
	for r := range m.droppedBy {
		m.droppedBy[r] = m.dropped.WithLabelValues(dropReason(r).String())
	}
	m.oversized = counter("oversized_total", "Access units dropped for exceeding 8 MiB or 50 NAL units.")
	m.decodeErrors = counterVec("decode_errors_total", "Undecodable packets or messages from publishers.", "protocol")
	m.packetsLost = counterVec("packets_lost_total", "RTP packets lost on the way from publishers.", "protocol")
	m.rejected = counterVec("rejected_total", "Connections or publications refused.", "protocol", "reason")
	m.discontinuities = counter("timestamp_discontinuities_total", "Source timestamp jumps re-anchored on the wall clock.")
	m.paramChanges = counter("param_changes_total", "In-band video parameter-set changes.")
	m.registryErrors = counter("registry_errors_total", "Failed stream-registry operations.")
	m.pullReconnects = counterVec("pull_reconnects_total", "Camera pull attempts after a failure.", "source")
	m.demands = counterVec("demand_received_total", "Viewers' demand messages received for on-demand cameras (at most about one per second per cache).", "source")
	m.gopShed = counter("gop_cache_shed_total",
		"GOP caches emptied (until their next keyframe) to keep all of the edge's GOP caches within its share of node.memory_limit.")
	gopBytes := prometheus.NewGaugeFunc(gaugeOpts("gop_cache_bytes",
		"Bytes held by the GOP caches of all of the edge's streams (the last GOP of each, for origins taking a stream over)."),
		func() float64 {
			if m.gopBytes == nil {
				return 0
			}
			return float64(m.gopBytes())
		})
	m.all = append(m.all, gopBytes)
	m.demandPulls = counterVec("demand_pulls_total", "On-demand camera pulls this edge started (lease acquired on demand).", "source")
	return m
}

// register registers every collector, undoing the work on failure.
func (m *metrics) register(r prometheus.Registerer) error {
	if err := promreg.Register(r, m.all...); err != nil {
		return fmt.Errorf("edge: register metrics: %w", err)
	}
	return nil
}

func (m *metrics) unregister(r prometheus.Registerer) {
	promreg.Unregister(r, m.all...)
}

var (
	descStreamBytes = prometheus.NewDesc("streamgrid_edge_stream_received_bytes_total",
		"Access-unit bytes received from a stream's publisher in its current publication. The series goes when the publication ends.",
		[]string{"node", "role", "stream", "protocol"}, nil)
	descStreamDropped = prometheus.NewDesc("streamgrid_edge_stream_dropped_packets_total",
		"Access units of a stream's current publication dropped by the normalizer. The series goes when the publication ends.",
		[]string{"node", "role", "stream", "protocol"}, nil)
)

// streamCollector exports the per-stream series from the live streams at
// scrape time: they exist while the stream is published (bounded
// cardinality) and cost the media path nothing.
type streamCollector struct{ e *Edge }

func (s streamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descStreamBytes
	ch <- descStreamDropped
}

func (s streamCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range s.e.Streams() {
		ch <- prometheus.MustNewConstMetric(descStreamBytes, prometheus.CounterValue, float64(st.Bytes), s.e.Node, "edge", st.Path, st.Protocol)
		ch <- prometheus.MustNewConstMetric(descStreamDropped, prometheus.CounterValue, float64(st.Dropped), s.e.Node, "edge", st.Path, st.Protocol)
	}
}
