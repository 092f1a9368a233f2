// Package loadtest is streamgrid's load generator (`streamgrid loadtest`):
// synthetic cameras publish the embedded sample clip over RTSP or RTMP, with
// an SEI send-time stamp in every video frame, and synthetic viewers play the
// streams back over HLS / Low-Latency HLS from one or more caches. It measures
// what users feel (glass-to-glass latency, startup time, stalls) and, when
// given the servers' PIDs or /metrics URLs, what the servers pay for it (CPU
// and memory per camera). Given the origins' URLs, it also measures how long
// after the owning origin a cache serves each new LL-HLS part (partProbe).
//
// With --control-plane it simulates the registry and ownership instead, at
// the scale of a fleet: streams without media, real origins, a real
// three-node bus, origins killed midway (RunControlPlane, controlplane.go).
//
// Run and RunControlPlane are the library entry points; Main is the
// command line.
package loadtest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Bounds on a run: the generator is meant to load a deployment hard, not
// without limit.
const (
	MaxDuration = time.Hour
	MaxCameras  = 10000
	MaxViewers  = 100000
	// defaultWarmup is how long latency samples are ignored at the start.
	defaultWarmup = 5 * time.Second
	// defaultViewerDelay is how long a viewer waits after its camera started:
	// a player finds nothing to play before the first segments exist.
	defaultViewerDelay = 3 * time.Second
	// minViewing is the least time the last viewer gets to play.
	minViewing = 2 * time.Second
	// maxRamp is the default ramp's ceiling (the default is min(10 s, Duration/4)).
	maxRamp = 10 * time.Second
	// MaxPartProbes bounds Config.PartProbes; defaultPartProbes is its
	// default with Origins set.
	MaxPartProbes     = 64
	defaultPartProbes = 4
)

// ErrUsage marks a configuration error (Main exits 2 on it).
var ErrUsage = errors.New("usage")

// Config describes one load test run.
type Config struct {
	// Publish is the base publish URL, rtsp://host:8554/load or
	// rtmp://host:1935/load: camera n publishes to <Publish>/cam%04d (cam0001,
	// cam0002, ...).
	Publish string
	// Transport for RTSP cameras: "tcp" (the default) or "udp".
	Transport string
	// Play holds the base play URLs of the caches, e.g.
	// http://host:8888/load: viewers play <base>/cam0001/index.m3u8, spread
	// round-robin over the streams and over these URLs. Required when Viewers > 0.
	Play []string
	// Origins holds the base HLS URLs of the origins as the caches reach
	// them, e.g. http://host:8889/load (origin.http_address). With Origins
	// set, PartProbes streams are probed for part availability: how long
	// after the owning origin has a new LL-HLS part the cache serves it (see
	// partProbe). Origins that answer 404 or 503 for a stream do not own it
	// and are skipped. Needs Play.
	Origins []string
	// OriginSecret is the cluster's auth.origin_secret: sent, as the caches
	// send it, with every request to Origins (origins with a secret answer
	// 403 without it). Empty: none sent.
	OriginSecret string
	// PartProbes is how many (stream, cache) pairs are probed, laid out like
	// the viewers (probe n: stream n mod Cameras through Play[(n mod Cameras
	// + n/Cameras) mod len(Play)]), each starting ViewerDelay after its camera.
	// It defaults to 4 with Origins set, is capped at Cameras x len(Play),
	// and must be at most MaxPartProbes.
	PartProbes int
	// Cameras and Viewers are how many of each run (Cameras >= 1, Viewers >= 0).
	Cameras, Viewers int
	// Duration is the whole run, from the first camera's start; required, at
	// most MaxDuration.
	Duration time.Duration
	// Ramp staggers the camera starts (and the viewer starts) over this span.
	// It defaults to min(10 s, Duration/4); it must be shorter than Duration.
	Ramp time.Duration
	// Warmup is how long from the start latency samples are ignored, and when
	// the CPU average of the servers begins (together with the ramp). It
	// defaults to min(5 s, Duration/2); it must be shorter than Duration.
	Warmup time.Duration
	// ViewerDelay is how long after its camera a viewer starts. It defaults to
	// 3 s.
	ViewerDelay time.Duration
	// NoAudio publishes video only.
	NoAudio bool
	// ClipFile is an MPEG-TS file (H264 without B-frames, starting with an IDR,
	// SPS/PPS in band, optionally AAC) that every camera publishes instead of
	// the built-in 640x360 sample, e.g. a 720p25 2 Mbit/s clip made with
	// loadtest/bench/clip720.sh. Empty publishes the sample.
	ClipFile string
	// PIDs are local server processes whose CPU and resident memory are sampled
	// from /proc.
	PIDs []int
	// MetricsURLs are Prometheus /metrics endpoints of servers, read for
	// process_cpu_seconds_total and process_resident_memory_bytes.
	MetricsURLs []string
	// AllowRemote lists the host names or addresses, exactly as written in the
	// URLs, that may be targeted besides loopback.
	AllowRemote []string
	// Progress receives a live progress line every 2 s (rewritten in place
	// with \r when it is a terminal). Nil prints nothing.
	Progress io.Writer
	// Log receives the first errors at Warn and the rest at Debug. It defaults
	// to discarding.
	Log *slog.Logger
}

// withDefaults validates c and returns a copy with the defaults filled in.
// Every error wraps ErrUsage.
func (c Config) withDefaults() (Config, error) {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	c, err := c.withSchedule()
	if err != nil {
		return c, err
	}
	return c.withTargets()
}

// usageErr is a configuration error: it wraps ErrUsage.
func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// withSchedule checks the counts and times of c and fills in their defaults.
func (c Config) withSchedule() (Config, error) {
	if c.Cameras < 1 || c.Cameras > MaxCameras {
		return c, usageErr("cameras must be between 1 and %d, got %d", MaxCameras, c.Cameras)
	}
	if c.Viewers < 0 || c.Viewers > MaxViewers {
		return c, usageErr("viewers must be between 0 and %d, got %d", MaxViewers, c.Viewers)
	}
	if c.Duration <= 0 || c.Duration > MaxDuration {
		return c, usageErr("duration must be positive and at most %v, got %v", MaxDuration, c.Duration)
	}
	if c.Ramp < 0 || c.Warmup < 0 || c.ViewerDelay < 0 {
		return c, usageErr("ramp, warmup and viewer delay must not be negative")
	}
	if c.Ramp == 0 {
		c.Ramp = min(maxRamp, c.Duration/4)
	}
	if c.Ramp >= c.Duration {
		return c, usageErr("ramp %v must be shorter than the duration %v", c.Ramp, c.Duration)
	}
	if c.Warmup == 0 {
		c.Warmup = min(defaultWarmup, c.Duration/2)
	}
	if c.Warmup >= c.Duration {
		return c, usageErr("warmup %v must be shorter than the duration %v", c.Warmup, c.Duration)
	}
	if c.ViewerDelay == 0 {
		c.ViewerDelay = defaultViewerDelay
	}
	// The last viewer starts up to Ramp + ViewerDelay into the run; give it a
	// few seconds to play, or the run can only fail.
	if minimum := c.Ramp + c.ViewerDelay + minViewing; c.Viewers > 0 && c.Duration < minimum {
		return c, usageErr("duration %v is too short for viewers: the last one starts after %v; use at least %v",
			c.Duration, c.Ramp+c.ViewerDelay, minimum)
	}
	return c, nil
}

// withTargets checks the URLs, the transport, the part probes and the PIDs
// of c and fills in their defaults.
func (c Config) withTargets() (Config, error) {
	c.Transport = strings.ToLower(c.Transport)
	if c.Transport == "" {
		c.Transport = "tcp"
	}
	if c.Transport != "tcp" && c.Transport != "udp" {
		return c, usageErr("transport must be tcp or udp, got %q", c.Transport)
	}

	pub, err := c.checkURL("publish", c.Publish, "rtsp", "rtmp")
	if err != nil {
		return c, err
	}
	c.Publish = strings.TrimRight(pub.String(), "/")

	if c.Viewers > 0 && len(c.Play) == 0 {
		return c, usageErr("viewers need at least one play URL")
	}
	if c.Play, err = c.checkBaseURLs("play", c.Play, "http", "https"); err != nil {
		return c, err
	}

	if c.PartProbes < 0 || c.PartProbes > MaxPartProbes {
		return c, usageErr("part probes must be between 0 and %d, got %d", MaxPartProbes, c.PartProbes)
	}
	if c.PartProbes > 0 && len(c.Origins) == 0 {
		return c, usageErr("part probes need at least one origin URL")
	}
	if len(c.Origins) > 0 {
		if len(c.Play) == 0 {
			return c, usageErr("part probes need a play URL (the cache side)")
		}
		if c.Origins, err = c.checkBaseURLs("origin", c.Origins, "http", "https"); err != nil {
			return c, err
		}
		if c.PartProbes == 0 {
			c.PartProbes = defaultPartProbes
		}
		c.PartProbes = min(c.PartProbes, c.Cameras*len(c.Play))
	}

	if _, err := c.checkBaseURLs("metrics", c.MetricsURLs, "http", "https"); err != nil {
		return c, err
	}
	for _, pid := range c.PIDs {
		if pid <= 0 {
			return c, usageErr("invalid pid %d", pid)
		}
	}
	return c, nil
}

// checkBaseURLs checks each URL of list with checkURL and returns them
// without a trailing slash.
func (c Config) checkBaseURLs(what string, list []string, schemes ...string) ([]string, error) {
	out := make([]string, 0, len(list))
	for _, raw := range list {
		u, err := c.checkURL(what, raw, schemes...)
		if err != nil {
			return nil, err
		}
		out = append(out, strings.TrimRight(u.String(), "/"))
	}
	return out, nil
}

// checkURL parses a target URL, checks its scheme and refuses hosts that are
// neither loopback nor named in AllowRemote.
//
// Why the refusal: the generator opens thousands of connections and pushes
// hundreds of Mbit/s; pointed at the wrong host by a typo or a copied command
// line it becomes a denial-of-service tool against someone else's server. It
// is meant for a local node or the project's own containers, so anything else
// has to be named explicitly (--allow-remote edge1,cache1).
func (c Config) checkURL(what, raw string, schemes ...string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s URL %q: %w", ErrUsage, what, raw, err)
	}
	if !slices.Contains(schemes, u.Scheme) {
		return nil, fmt.Errorf("%w: %s URL %q: scheme must be one of %s", ErrUsage, what, raw,
			strings.Join(schemes, ", "))
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("%w: %s URL %q has no host", ErrUsage, what, raw)
	}
	if !isLoopback(host) && !slices.ContainsFunc(c.AllowRemote, func(h string) bool {
		return strings.EqualFold(strings.Trim(h, "[]"), host)
	}) {
		return nil, fmt.Errorf("%w: %s host %q is not loopback; name it with --allow-remote %s to target it",
			ErrUsage, what, host, host)
	}
	return u, nil
}

// isLoopback reports whether host is localhost or a loopback address
// (127.0.0.0/8, ::1).
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// cameraName is the stream name of camera i (0-based).
func cameraName(i int) string {
	return fmt.Sprintf("cam%04d", i+1)
}
