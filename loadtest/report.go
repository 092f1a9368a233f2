package loadtest

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of a run. Its JSON form is what `--json` writes and
// what docs/ and CI compare between runs.
type Report struct {
	// Publish, Transport and Play echo the targets.
	Publish   string   `json:"publish"`
	Transport string   `json:"transport"`
	Play      []string `json:"play"`

	// CamerasOK counts cameras that published for the whole run without a
	// failure (a reconnect-free run); Cameras is how many were asked for.
	CamerasOK int `json:"cameras_ok"`
	Cameras   int `json:"cameras"`
	// ViewersOK counts viewers that got their first frame within 15 s of their
	// start and never failed afterwards; Viewers is how many were asked for.
	ViewersOK int `json:"viewers_ok"`
	Viewers   int `json:"viewers"`

	// Errors counts every failure: camera connects and disconnects, viewer
	// failures, viewers without a first frame in time. ErrorSamples holds the
	// first few messages.
	Errors       int      `json:"errors"`
	ErrorSamples []string `json:"error_samples"`
	// CameraRestarts and ViewerRestarts count reconnections after a failure
	// (each is also an error).
	CameraRestarts int `json:"camera_restarts"`
	ViewerRestarts int `json:"viewer_restarts"`

	// LatencyMS is the glass-to-glass latency: from the SEI send time stamped
	// by the camera to the frame's arrival at the viewer, after the warm-up.
	LatencyMS Percentiles `json:"latency_ms"`
	// StartupMS is the time from a viewer's start to its first frame.
	StartupMS Percentiles `json:"startup_ms"`
	// PartAvailabilityMS is how long after the owning origin a cache served
	// each new LL-HLS part, from the part probes (Config.Origins), after the
	// warm-up. A sample is slightly negative when the probe read the cache's
	// answer a moment before the origin's. PartSamples is its sample count, PartProbes how many (stream,
	// cache) pairs were probed, PartProbeErrors the probe requests that
	// failed (not counted in Errors). PartByCache splits the samples by
	// cache. All are zero or empty without probes.
	PartAvailabilityMS Percentiles  `json:"part_availability_ms"`
	PartSamples        uint64       `json:"part_samples"`
	PartProbes         int          `json:"part_probes"`
	PartProbeErrors    int          `json:"part_probe_errors"`
	PartByCache        []CacheParts `json:"part_availability_by_cache,omitempty"`
	// Stalls counts the times a playing viewer went more than 2 s without a
	// frame.
	Stalls int `json:"stalls"`

	// FramesSent counts video frames published by all cameras; FramesReceived
	// video frames received by all viewers.
	FramesSent     uint64 `json:"frames_sent"`
	FramesReceived uint64 `json:"frames_received"`
	// CameraMaxLagMS is the worst delay of a camera's send behind its
	// schedule (the load generator itself starved of CPU, or a server that
	// stopped reading); CameraDroppedPackets counts RTSP packets the cameras
	// gave up on because their write queue stayed full. Both cover the
	// camera connections that ended by the end of the run (all of them).
	CameraMaxLagMS       float64 `json:"camera_max_lag_ms"`
	CameraDroppedPackets uint64  `json:"camera_dropped_packets"`
	// DurationS is how long the run lasted, in seconds.
	DurationS float64 `json:"duration_s"`
	// Interrupted is set when the run was cut short by its context.
	Interrupted bool `json:"interrupted"`

	// Servers holds one entry per PID or metrics URL.
	Servers []ServerUsage `json:"servers"`
}

// Percentiles summarise a distribution, in milliseconds. Count is the number
// of values seen (the percentiles come from a uniform sample of at most
// 100 000 of them; Max is exact).
type Percentiles struct {
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
	Count uint64  `json:"count"`
}

// CacheParts is the part availability measured through one cache.
type CacheParts struct {
	// Play is the cache's base play URL.
	Play               string      `json:"play"`
	PartAvailabilityMS Percentiles `json:"part_availability_ms"`
}

// ServerUsage is what one server process cost during the run.
type ServerUsage struct {
	// Target is "pid 1234" or the metrics URL.
	Target string `json:"target"`
	// CPUPercent is the average CPU use over the steady part of the run (after
	// the ramp and the warm-up), 100 = one core.
	CPUPercent float64 `json:"cpu_percent"`
	// RSSMB is the largest resident memory seen, in MiB; RSSBaseMB the first
	// sample, taken before the cameras start.
	RSSMB     float64 `json:"rss_mb"`
	RSSBaseMB float64 `json:"rss_base_mb"`
	// CPUPerCamera is CPUPercent / cameras; RSSPerCameraMB is
	// (RSSMB - RSSBaseMB) / cameras, the memory the cameras added.
	CPUPerCamera   float64 `json:"cpu_per_camera"`
	RSSPerCameraMB float64 `json:"rss_per_camera_mb"`
	// Samples counts successful samples; SampleErrors failed ones (process
	// gone, endpoint down).
	Samples      int `json:"samples"`
	SampleErrors int `json:"sample_errors"`
}

// OK reports whether the run passed: every camera OK and at least 95 % of the
// viewers OK, and the run not interrupted.
func (r *Report) OK() bool {
	if r.Interrupted || r.CamerasOK < r.Cameras {
		return false
	}
	return r.ViewersOK*100 >= r.Viewers*95
}

// WriteTable writes the report for humans.
func (r *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", name, fmt.Sprintf(format, args...))
	}
	row("publish", "%s (%s)", r.Publish, r.Transport)
	if len(r.Play) > 0 {
		row("play", "%s", strings.Join(r.Play, ", "))
	}
	status := "PASS"
	if !r.OK() {
		status = "FAIL"
	}
	if r.Interrupted {
		status += " (interrupted)"
	}
	row("result", "%s after %.1f s", status, r.DurationS)
	row("cameras ok", "%d / %d (%d restarts)", r.CamerasOK, r.Cameras, r.CameraRestarts)
	row("viewers ok", "%d / %d (%d restarts)", r.ViewersOK, r.Viewers, r.ViewerRestarts)
	row("errors", "%d", r.Errors)
	row("stalls (>2 s)", "%d", r.Stalls)
	row("frames", "%d sent, %d received", r.FramesSent, r.FramesReceived)
	row("camera lag", "max %.0f ms, %d packets dropped", r.CameraMaxLagMS, r.CameraDroppedPackets)
	pctN := func(p Percentiles, decimals int) string {
		if p.Count == 0 {
			return "no samples"
		}
		return fmt.Sprintf("p50 %.*f  p95 %.*f  p99 %.*f  max %.*f  (%d samples)",
			decimals, p.P50, decimals, p.P95, decimals, p.P99, decimals, p.Max, p.Count)
	}
	pct := func(p Percentiles) string { return pctN(p, 0) }
	// part availability is often below a millisecond, and may be slightly
	// negative (the cache's answer read first)
	pctPart := func(p Percentiles) string { return pctN(p, 1) }
	row("latency ms", "%s", pct(r.LatencyMS))
	row("startup ms", "%s", pct(r.StartupMS))
	if r.PartProbes > 0 {
		row("part availability ms", "%s, %d probes, %d probe errors", pctPart(r.PartAvailabilityMS), r.PartProbes, r.PartProbeErrors)
		if len(r.PartByCache) > 1 {
			for _, c := range r.PartByCache {
				row("  at "+c.Play, "%s", pctPart(c.PartAvailabilityMS))
			}
		}
	}
	for _, s := range r.Servers {
		row("server", "%s: cpu %.1f%% (%.2f%%/camera), rss max %.1f MiB (base %.1f, %.2f MiB/camera), %d samples, %d errors",
			s.Target, s.CPUPercent, s.CPUPerCamera, s.RSSMB, s.RSSBaseMB, s.RSSPerCameraMB, s.Samples, s.SampleErrors)
	}
	tw.Flush()
	for _, e := range r.ErrorSamples {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
}

// report builds the report once every goroutine has ended.
func (r *runner) report(end time.Time) *Report {
	cfg := r.cfg
	rep := &Report{
		Publish:   cfg.Publish,
		Transport: cfg.Transport,
		Play:      cfg.Play,
		Cameras:   cfg.Cameras,
		Viewers:   cfg.Viewers,
		DurationS: round3(end.Sub(r.start).Seconds()),
		Servers:   []ServerUsage{},
	}
	for _, c := range r.cameras {
		rep.FramesSent += c.sent.Load()
		if c.started.Load() && !c.failed.Load() {
			rep.CamerasOK++
		}
		if !c.started.Load() {
			r.fail(fmt.Errorf("camera %s: run ended before its start", c.name), false)
		}
	}
	for _, v := range r.viewers {
		last := v.lastFrame.Load()
		switch {
		case v.startedAt.Load() == 0:
			r.fail(fmt.Errorf("viewer %d: run ended before its start", v.id), false)
		case last == 0 && !v.late.Load():
			r.fail(fmt.Errorf("viewer %d (%s): no frame before the run ended", v.id, v.url), false)
		}
		if last != 0 && end.Sub(time.Unix(0, last)) > stallGap {
			r.stalls.Add(1) // stalled at the end
		}
		if v.firstInTime.Load() && !v.failed.Load() {
			rep.ViewersOK++
		}
	}
	rep.FramesReceived = r.framesReceived.Load()
	rep.CameraMaxLagMS = round3(ms(time.Duration(r.cameraMaxLag.Load())))
	rep.CameraDroppedPackets = r.cameraDropped.Load()
	rep.Stalls = int(r.stalls.Load())
	rep.CameraRestarts = int(r.cameraRestarts.Load())
	rep.ViewerRestarts = int(r.viewerRestarts.Load())
	rep.LatencyMS = r.latency.percentiles()
	rep.StartupMS = r.startup.percentiles()
	rep.PartProbes = len(r.probes)
	if len(r.probes) > 0 {
		rep.PartAvailabilityMS = r.partAll.percentiles()
		rep.PartSamples = rep.PartAvailabilityMS.Count
		rep.PartProbeErrors = int(r.partErrors.Load())
		for i, rs := range r.partByCache {
			if rs != nil {
				rep.PartByCache = append(rep.PartByCache, CacheParts{Play: cfg.Play[i], PartAvailabilityMS: rs.percentiles()})
			}
		}
	}

	r.errMu.Lock()
	rep.Errors = r.errors
	rep.ErrorSamples = append([]string{}, r.errorSamples...)
	r.errMu.Unlock()
	return rep
}
