package node

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/streamgrid/streamgrid/internal/promreg"
	"github.com/streamgrid/streamgrid/internal/version"
)

// metrics are the node's own collectors: the process (Go runtime, process,
// build info), configuration reloads, the memory limit and the API's
// snapshots. The role components register theirs; the embedded NATS
// server's figures are registered where it starts. Every collector here
// gets the node's labels (node, role) from the registerer it is given to.
type metrics struct {
	labels prometheus.Labels

	reloads        *prometheus.CounterVec // result: applied, refused, unchanged
	reloadOK       prometheus.Gauge
	restartPending prometheus.Gauge
	memoryLimit    prometheus.Gauge
	memoryTrims    prometheus.Counter
	snapshots      *prometheus.CounterVec // result: ok, bad_request, not_found, unavailable

	all []prometheus.Collector
}

func newMetrics(node, role string) *metrics {
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	byResult := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"result"})
	}
	m := &metrics{
		labels: prometheus.Labels{"node": node, "role": role},
		reloads: byResult("streamgrid_config_reloads_total",
			"Configuration reloads (SIGHUP, file change) by result: applied, refused (invalid file, or a part failed), unchanged."),
		reloadOK: gauge("streamgrid_config_last_reload_success_timestamp_seconds",
			"When the configuration was last loaded successfully (start or reload), Unix seconds."),
		restartPending: gauge("streamgrid_config_restart_pending_keys",
			"Keys changed in the file that only a restart applies (kept at their running values)."),
		memoryLimit: gauge("streamgrid_node_memory_limit_bytes",
			"The node's memory limit (node.memory_limit, or 80 % of the cgroup limit); 0: none."),
		memoryTrims: prometheus.NewCounter(prometheus.CounterOpts{Name: "streamgrid_node_memory_trims_total",
			Help: "Times a quiet node (under 4 MiB allocated in 5 s) collected its garbage and returned the freed memory to the OS: at most every 30 s, backing off to every 8 min while trims free little."}),
		snapshots: byResult("streamgrid_api_snapshots_total",
			"Snapshot requests by result: ok, bad_request, not_found, unavailable (no keyframe yet, no ffmpeg, no bus)."),
	}
	for _, r := range []string{"ok", "bad_request", "not_found", "unavailable"} {
		m.snapshots.WithLabelValues(r)
	}
	m.all = []prometheus.Collector{
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo(),
		m.reloads, m.reloadOK, m.restartPending, m.memoryLimit, m.memoryTrims, m.snapshots,
	}
	return m
}

// register adds every collector to reg, labelled; on failure none stays.
func (m *metrics) register(reg prometheus.Registerer) error {
	r := prometheus.WrapRegistererWith(m.labels, reg)
	if err := promreg.Register(r, m.all...); err != nil {
		return fmt.Errorf("node metrics: %w", err)
	}
	return nil
}

// unregister removes what register added.
func (m *metrics) unregister(reg prometheus.Registerer) {
	promreg.Unregister(prometheus.WrapRegistererWith(m.labels, reg), m.all...)
}

// buildInfo is streamgrid_build_info: 1, labelled with the version and the Go release.
func buildInfo() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "streamgrid_build_info",
		Help:        "Always 1; its labels say which streamgrid version and Go release built this binary.",
		ConstLabels: prometheus.Labels{"version": version.String(), "goversion": version.GoVersion()},
	})
	g.Set(1)
	return g
}
