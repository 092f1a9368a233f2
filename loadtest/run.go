package loadtest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamgrid/streamgrid/internal/testmedia"
)

const (
	// latencySamples bounds the latency reservoir.
	latencySamples = 100000
	// windowSamples bounds the reservoir behind the progress line's latency.
	windowSamples = 4096
	// firstFrameTimeout is how long a viewer may wait for its first frame and
	// still be OK.
	firstFrameTimeout = 15 * time.Second
	// stallGap is the longest time without a frame that is not a stall.
	stallGap = 2 * time.Second
	// restartDelay is the pause before a failed camera or viewer starts over.
	restartDelay = time.Second
	// firstFrameRetry is how long a player may go without its first frame
	// before it is started over. gohlslib v2.4.5's client never returns when a
	// live traditional-HLS playlist lists fewer segments than its start
	// distance (3) on the first fetch: the stream downloader's "not enough
	// segments" error waits on a channel the primary downloader only reads
	// after the tracks are known (client_primary_downloader.go), so a viewer
	// that starts early on a young nginx-rtmp or MPEG-TS stream would wait
	// forever.
	firstFrameRetry = 4 * time.Second
	// readerRetry is how often a viewer asks again while its stream has
	// nothing to play yet.
	readerRetry = 500 * time.Millisecond
	// progressInterval is the period of the progress line.
	progressInterval = 2 * time.Second
	// usageInterval is the period of CPU and memory samples.
	usageInterval = time.Second
	// maxErrorSamples bounds Report.ErrorSamples; maxWarnings the errors
	// logged at Warn (the rest go to Debug).
	maxErrorSamples = 20
	maxWarnings     = 10
)

// runner is the state of one Run.
type runner struct {
	cfg     Config
	clip    *testmedia.Clip
	http    *http.Client
	start   time.Time
	warmEnd time.Time

	cameras []*cameraSlot
	viewers []*viewerSlot
	probes  []*partProbe

	// partAll holds every part availability sample, partByCache those of
	// each play URL that has probes (in Play order).
	partAll     *reservoir
	partByCache []*reservoir
	partErrors  atomic.Int64

	latency *reservoir
	window  *reservoir
	startup *reservoir

	framesReceived atomic.Uint64
	cameraMaxLag   atomic.Int64 // ns, the worst camera send delay
	cameraDropped  atomic.Uint64
	stalls         atomic.Int64
	cameraRestarts atomic.Int64
	viewerRestarts atomic.Int64

	errMu        sync.Mutex
	errors       int
	errorSamples []string
}

// Run drives cfg.Cameras synthetic cameras and cfg.Viewers synthetic viewers
// for cfg.Duration and reports what they saw. Everything it starts has ended
// when it returns. A configuration error wraps ErrUsage and comes with a nil
// report. When ctx ends first, Run stops at once and returns the partial
// report (Interrupted set) together with ctx's error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	clip, err := loadClip(cfg.ClipFile)
	if err != nil {
		return nil, err
	}

	transport := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   min(max(64, 4*cfg.Viewers), 16384),
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 15 * time.Second, // LL-HLS blocking reloads wait a few parts at most
		ForceAttemptHTTP2:     true,
	}
	defer transport.CloseIdleConnections()

	r := &runner{
		cfg:     cfg,
		clip:    clip,
		http:    &http.Client{Transport: transport},
		latency: newReservoir(latencySamples, 1),
		window:  newReservoir(windowSamples, 2),
		startup: newReservoir(latencySamples, 3),
		partAll: newReservoir(partSamples, 4),
	}
	r.plan()
	return r.run(ctx)
}

// plan lays the cameras, viewers and part probes out: camera starts spread
// evenly over the ramp; viewer n watches stream n mod cameras from play URL
// (n mod cameras + n/cameras) mod len(Play), so every stream is read through
// every cache when there are enough viewers, and starts ViewerDelay after its
// camera, also spread over the ramp. Part probe n follows the same (stream,
// cache) pair as viewer n, from ViewerDelay after its camera.
func (r *runner) plan() {
	cfg := r.cfg
	r.cameras = make([]*cameraSlot, cfg.Cameras)
	for i := range r.cameras {
		name := cameraName(i)
		r.cameras[i] = &cameraSlot{
			name:    name,
			url:     cfg.Publish + "/" + name,
			startAt: time.Duration(int64(cfg.Ramp) * int64(i) / int64(cfg.Cameras)),
		}
	}
	r.viewers = make([]*viewerSlot, cfg.Viewers)
	for n := range r.viewers {
		cam := n % cfg.Cameras
		play := cfg.Play[playIndex(n, cfg.Cameras, len(cfg.Play))]
		r.viewers[n] = &viewerSlot{
			id:  n + 1,
			url: play + "/" + cameraName(cam) + "/index.m3u8",
			startAt: max(r.cameras[cam].startAt+cfg.ViewerDelay,
				time.Duration(int64(cfg.Ramp)*int64(n)/int64(cfg.Viewers))),
		}
	}
	r.partByCache = make([]*reservoir, len(cfg.Play))
	r.probes = make([]*partProbe, cfg.PartProbes)
	for n := range r.probes {
		cam := n % cfg.Cameras
		play := playIndex(n, cfg.Cameras, len(cfg.Play))
		if r.partByCache[play] == nil {
			r.partByCache[play] = newReservoir(partSamples, uint64(10+play))
		}
		r.probes[n] = &partProbe{
			r:       r,
			stream:  cameraName(cam),
			play:    cfg.Play[play],
			startAt: r.cameras[cam].startAt + cfg.ViewerDelay,
			cacheRs: r.partByCache[play],
			origin:  map[partKey]time.Time{},
			cache:   map[partKey]time.Time{},
		}
	}
}

// playIndex is the play URL of viewer (or probe) n: the pairs (n mod
// cameras, playIndex) are all different for n < cameras x plays, whether or
// not cameras is a multiple of plays.
func playIndex(n, cameras, plays int) int {
	return (n%cameras + n/cameras) % plays
}

func (r *runner) run(parent context.Context) (*Report, error) {
	cfg := r.cfg
	r.start = time.Now()
	r.warmEnd = r.start.Add(cfg.Warmup)
	ctx, cancel := context.WithDeadline(parent, r.start.Add(cfg.Duration))
	defer cancel()

	// Servers are sampled from before the first camera (the memory baseline)
	// to the end; the CPU average starts once the ramp and the warm-up are over.
	var samplers []*usageSampler
	for _, pid := range cfg.PIDs {
		samplers = append(samplers, newPIDSampler(pid))
	}
	for _, u := range cfg.MetricsURLs {
		samplers = append(samplers, newMetricsSampler(r.http, u))
	}
	steadyFrom := r.start.Add(max(cfg.Ramp, cfg.Warmup))

	cfg.Log.Info("load test starting", "publish", cfg.Publish, "cameras", cfg.Cameras,
		"viewers", cfg.Viewers, "duration", cfg.Duration, "ramp", cfg.Ramp)

	var wg sync.WaitGroup
	for _, s := range samplers {
		wg.Go(func() { s.run(ctx, usageInterval, steadyFrom) })
	}
	for _, c := range r.cameras {
		wg.Go(func() { r.runCamera(ctx, c) })
	}
	for _, v := range r.viewers {
		wg.Go(func() { r.runViewer(ctx, v) })
	}
	for _, p := range r.probes {
		wg.Go(func() { p.run(ctx) })
	}
	if cfg.Progress != nil {
		wg.Go(func() { r.runProgress(ctx) })
	}

	<-ctx.Done()
	end := time.Now()
	wg.Wait()

	rep := r.report(end)
	for _, s := range samplers {
		rep.Servers = append(rep.Servers, s.usage(cfg.Cameras))
	}
	cfg.Log.Info("load test finished", "cameras_ok", rep.CamerasOK, "viewers_ok", rep.ViewersOK,
		"errors", rep.Errors, "latency_p50_ms", rep.LatencyMS.P50)
	if err := parent.Err(); err != nil {
		rep.Interrupted = true
		return rep, err
	}
	return rep, nil
}

// loadClip returns the clip the cameras publish: the embedded sample, or the
// MPEG-TS file at path when path is not empty.
func loadClip(path string) (*testmedia.Clip, error) {
	if path == "" {
		clip, err := testmedia.Load()
		if err != nil {
			return nil, fmt.Errorf("load sample clip: %w", err)
		}
		return clip, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: open clip: %w", ErrUsage, err)
	}
	defer f.Close()
	clip, err := testmedia.ParseClip(f)
	if err != nil {
		return nil, fmt.Errorf("%w: clip %s: %w", ErrUsage, path, err)
	}
	return clip, nil
}

// storeMax raises m to v when v is larger.
func storeMax(m *atomic.Int64, v int64) {
	for {
		cur := m.Load()
		if v <= cur || m.CompareAndSwap(cur, v) {
			return
		}
	}
}

// fail records an error; logIt logs it too (the first ones at Warn).
func (r *runner) fail(err error, logIt bool) {
	r.errMu.Lock()
	r.errors++
	n := r.errors
	if len(r.errorSamples) < maxErrorSamples {
		r.errorSamples = append(r.errorSamples, err.Error())
	}
	r.errMu.Unlock()
	if !logIt {
		return
	}
	level := slog.LevelDebug
	if n <= maxWarnings {
		level = slog.LevelWarn
	}
	r.cfg.Log.Log(context.Background(), level, "load test error", "err", err)
}

// partFail counts a part probe error and logs it (the first ones at Warn).
// Probe errors are not viewer errors: they leave Errors and OK alone.
func (r *runner) partFail(log *slog.Logger, err error) {
	level := slog.LevelDebug
	if r.partErrors.Add(1) <= maxWarnings {
		level = slog.LevelWarn
	}
	log.Log(context.Background(), level, "part probe error", "err", err)
}

func ms(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}
