package origin

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/internal/promreg"
)

// metrics are the origin's Prometheus collectors, labelled with the node
// name and the role so that several nodes can share one process.
type metrics struct {
	streams         prometheus.Gauge
	claims          prometheus.Counter
	claimConflicts  prometheus.Counter // another origin won the compare-and-set
	claimErrors     prometheus.Counter // the registry failed (timeouts, a bus in trouble)
	releases        prometheus.Counter
	losses          prometheus.Counter
	packets         prometheus.Counter
	packetsDropped  prometheus.Counter
	writeErrors     prometheus.Counter
	encodeErrors    prometheus.Counter
	recreations     prometheus.Counter
	discontinuities prometheus.Counter
	stateErrors     prometheus.Counter
	requests        *prometheus.CounterVec
	blockTimeouts   prometheus.Counter
	overBudget      prometheus.Counter // claims not made: the windows held MemoryBudget
	deferred        *prometheus.CounterVec
	// standbys is the streams this origin is the warm standby of;
	// standbyTakeovers the take-overs that packaged a standby's GOPs.
	standbys         prometheus.Gauge
	standbyTakeovers prometheus.Counter

	collectors []prometheus.Collector
}

func newMetrics(node string) *metrics {
	labels := prometheus.Labels{"node": node, "role": "origin"}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "streamgrid", Subsystem: "origin", Name: name, Help: help, ConstLabels: labels,
		})
	}
	m := &metrics{
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "streamgrid", Subsystem: "origin", Name: "streams",
			Help: "Streams owned (lease held) by this origin.", ConstLabels: labels,
		}),
		claims: counter("claims_total", "Ownership leases acquired."),
		claimConflicts: counter("claim_conflicts_total",
			"Claims and take-overs another origin won (the owner record's create or compare-and-set failed)."),
		claimErrors:     counter("claim_errors_total", "Claims and take-overs the registry failed (a timeout, a bus in trouble)."),
		releases:        counter("releases_total", "Ownership leases given up (idle, drain, shutdown)."),
		losses:          counter("lease_losses_total", "Ownership leases lost (expired, taken over or fenced)."),
		packets:         counter("packets_total", "Packets received from the bus for owned streams."),
		packetsDropped:  counter("packets_dropped_total", "Packets dropped: packaging queue full, stale generation or unknown track."),
		writeErrors:     counter("muxer_write_errors_total", "Access units the HLS muxer refused."),
		encodeErrors:    counter("muxer_encode_errors_total", "Non-fatal encode errors reported by the HLS muxer."),
		recreations:     counter("muxer_recreations_total", "HLS muxers re-created (new generation, discontinuity, repeated errors, idle)."),
		discontinuities: counter("discontinuities_total", "EXT-X-DISCONTINUITY boundaries started."),
		stateErrors:     counter("state_write_errors_total", "Playlist-state writes to the registry that failed."),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "streamgrid", Subsystem: "origin", Name: "http_requests_total",
			Help: "HTTP requests by kind (multivariant, media, blocking, segment, streams, bad).", ConstLabels: labels,
		}, []string{"kind"}),
		blockTimeouts: counter("blocking_timeouts_total", "Blocking playlist or part requests that timed out."),
		overBudget: counter("claims_over_budget_total",
			"Claims this origin did not make because its segment windows held its share of node.memory_limit (retried every lease TTL)."),
		standbys: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "streamgrid", Subsystem: "origin", Name: "standbys",
			Help:        "Streams this origin is the warm standby of (subscribed, keeping their last two GOPs).",
			ConstLabels: labels,
		}),
		standbyTakeovers: counter("standby_takeovers_total",
			"Take-overs that started packaging from this origin's standby buffer, without asking the edge for the GOP."),
		deferred: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "streamgrid", Subsystem: "origin", Name: "claims_deferred_total",
			Help:        "Claims this origin put off by a lease TTL because a better-suited origin had room, by kind (ladder, passthrough).",
			ConstLabels: labels,
		}, []string{"kind"}),
	}
	m.collectors = []prometheus.Collector{
		m.streams, m.claims, m.claimConflicts, m.claimErrors, m.releases, m.losses, m.packets, m.packetsDropped, m.writeErrors,
		m.encodeErrors, m.recreations, m.discontinuities, m.stateErrors, m.requests, m.blockTimeouts,
		m.deferred, m.overBudget, m.standbys, m.standbyTakeovers,
	}
	return m
}

// register adds every collector to reg; on failure it undoes what it
// registered.
func (m *metrics) register(reg prometheus.Registerer) error {
	if err := promreg.Register(reg, m.collectors...); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return fmt.Errorf("origin: metrics already registered for this node: %w", err)
		}
		return fmt.Errorf("origin: register metrics: %w", err)
	}
	return nil
}

// unregister removes every collector from reg.
func (m *metrics) unregister(reg prometheus.Registerer) {
	promreg.Unregister(reg, m.collectors...)
}
