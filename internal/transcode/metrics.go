package transcode

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/internal/promreg"
)

// Metrics are the Prometheus collectors of every Transcoder of one node. They
// are labelled per stream (Transcoder.Stream) and, for output counters, per
// rendition; a Transcoder deletes its series when it closes. Create one
// Metrics per node with NewMetrics and share it.
type Metrics struct {
	running      prometheus.Gauge
	restarts     *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	frames       *prometheus.CounterVec
	decodeErrors *prometheus.CounterVec
	logDropped   *prometheus.CounterVec
	fps          *prometheus.GaugeVec
	speed        *prometheus.GaugeVec
	behind       *prometheus.GaugeVec
	lag          *prometheus.GaugeVec

	collectors []prometheus.Collector
	reg        prometheus.Registerer
}

// Drop reasons (label "reason" of streamgrid_transcode_input_dropped_total).
const (
	dropQueueFull   = "queue_full"    // the queue to ffmpeg was full
	dropWaitKey     = "wait_keyframe" // after a drop, until the next keyframe
	dropBeforeStart = "before_start"  // before the first keyframe of an ffmpeg run
)

// NewMetrics creates and registers the collectors on reg with constLabels
// (typically node and role). A nil reg gives working but unregistered
// collectors.
func NewMetrics(reg prometheus.Registerer, constLabels prometheus.Labels) (*Metrics, error) {
	const ns, sub = "streamgrid", "transcode"
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: name, Help: help, ConstLabels: constLabels,
		}, []string{"stream"})
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: name, Help: help, ConstLabels: constLabels,
		}, append([]string{"stream"}, labels...))
	}
	m := &Metrics{
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "processes",
			Help: "ffmpeg transcoder processes running.", ConstLabels: constLabels,
		}),
		restarts:     counter("restarts_total", "ffmpeg processes restarted after a failure, stall or input discontinuity."),
		dropped:      counter("input_dropped_total", "Input packets dropped before ffmpeg (queue full, waiting for a keyframe, before the first keyframe of a run).", "reason"),
		frames:       counter("output_frames_total", "Video frames received from ffmpeg.", "rendition"),
		decodeErrors: counter("output_decode_errors_total", "Non-fatal MPEG-TS decode errors in ffmpeg's output."),
		logDropped:   counter("log_lines_dropped_total", "ffmpeg log lines suppressed by the rate limit."),
		fps:          gauge("fps", "Frames per second ffmpeg encodes (first rendition), over the last progress period."),
		speed:        gauge("speed", "Media seconds ffmpeg produces per wall-clock second, over the last progress period."),
		behind:       gauge("behind_realtime", "1 while ffmpeg has run slower than real time (speed < 0.9) for over 10 s with input waiting."),
		lag:          gauge("lag_seconds", "Media time between the last input written to ffmpeg and the last output of its slowest rendition."),
		reg:          reg,
	}
	m.collectors = []prometheus.Collector{m.running, m.restarts, m.dropped, m.frames, m.decodeErrors,
		m.logDropped, m.fps, m.speed, m.behind, m.lag}
	if reg == nil {
		return m, nil
	}
	if err := promreg.Register(reg, m.collectors...); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return nil, fmt.Errorf("transcode: metrics already registered: %w", err)
		}
		return nil, fmt.Errorf("transcode: register metrics: %w", err)
	}
	return m, nil
}

// Unregister removes the collectors from the registry they were registered on.
func (m *Metrics) Unregister() {
	if m == nil || m.reg == nil {
		return
	}
	promreg.Unregister(m.reg, m.collectors...)
}

// forget deletes every series of one stream.
func (m *Metrics) forget(stream string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"stream": stream}
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{m.restarts, m.dropped, m.frames, m.decodeErrors, m.logDropped, m.fps, m.speed, m.behind, m.lag} {
		v.DeletePartialMatch(l)
	}
}
