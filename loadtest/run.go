package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// cameraSlot is one synthetic camera, restarted after failures.
type cameraSlot struct {
	name    string
	url     string
	startAt time.Duration // from the start of the run

	sent    atomic.Uint64 // frames of finished runs
	current atomic.Pointer[testmedia.Camera]
	failed  atomic.Bool
	started atomic.Bool
}

// viewerSlot is one synthetic viewer, restarted after failures.
type viewerSlot struct {
	id      int
	url     string
	startAt time.Duration

	startedAt   atomic.Int64 // unix ns of the first Run, 0 before
	lastFrame   atomic.Int64 // unix ns, 0 before the first frame
	firstInTime atomic.Bool
	failed      atomic.Bool
	late        atomic.Bool // first-frame timeout reported
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

// runCamera publishes until the end of the run, starting over restartDelay
// after each failure.
func (r *runner) runCamera(ctx context.Context, c *cameraSlot) {
	if !sleepUntil(ctx, r.start.Add(c.startAt)) {
		return
	}
	c.started.Store(true)
	log := r.cfg.Log.With("camera", c.name)
	for {
		cam := &testmedia.Camera{
			URL:       c.url,
			Transport: r.cfg.Transport,
			Clip:      r.clip,
			NoAudio:   r.cfg.NoAudio,
			StampSEI:  true,
			Log:       log,
		}
		err := cam.Start(ctx)
		logIt := true
		if err == nil {
			c.current.Store(cam)
			err = cam.Wait()
			cam.Close()
			st := cam.Stats()
			c.sent.Add(st.VideoFrames)
			r.cameraDropped.Add(st.DroppedPackets)
			storeMax(&r.cameraMaxLag, int64(st.MaxLag))
			c.current.Store(nil)
			logIt = false // the camera logged its own failure
			if err == nil && ctx.Err() == nil {
				err = errors.New("camera stopped publishing") // Loops is 0: not expected
			}
		}
		if ctx.Err() != nil {
			return
		}
		c.failed.Store(true)
		r.fail(fmt.Errorf("camera %s: %w", c.name, err), logIt)
		if !sleepFor(ctx, restartDelay) {
			return
		}
		r.cameraRestarts.Add(1)
	}
}

// framesSent returns the frames the camera published so far.
func (c *cameraSlot) framesSent() uint64 {
	n := c.sent.Load()
	if cam := c.current.Load(); cam != nil {
		n += cam.FramesSent()
	}
	return n
}

// runViewer plays its stream until the end of the run, starting over
// restartDelay after each failure. Until the first frame, the reader itself
// keeps retrying (the stream may not be there yet); that is not a failure
// unless it lasts longer than firstFrameTimeout.
func (r *runner) runViewer(ctx context.Context, v *viewerSlot) {
	if !sleepUntil(ctx, r.start.Add(v.startAt)) {
		return
	}
	started := time.Now()
	v.startedAt.Store(started.UnixNano())
	log := r.cfg.Log.With("viewer", v.id)

	firstFrame := time.NewTimer(firstFrameTimeout)
	defer firstFrame.Stop()
	firstFrameC := firstFrame.C

	onVideo := func(_ time.Duration, nalus [][]byte, recv time.Time) {
		r.viewerFrame(v, started, nalus, recv)
	}
	for {
		rd := &testmedia.Reader{
			URL:           v.url,
			HTTPClient:    r.http,
			OnVideo:       onVideo,
			RetryInterval: readerRetry,
			Log:           log,
		}
		attemptCtx, cancelAttempt := context.WithCancel(ctx)
		errCh := make(chan error, 1)
		go func() { errCh <- rd.Run(attemptCtx) }()
		// A player that got no frame for firstFrameRetry starts over (see
		// firstFrameRetry); that is not a failure.
		retry := time.NewTimer(firstFrameRetry)
		retryC := retry.C
		if v.lastFrame.Load() != 0 {
			retry.Stop()
			retryC = nil
		}

		var err error
		restarted := false
	wait:
		for {
			select {
			case err = <-errCh:
				break wait
			case <-retryC:
				retryC = nil
				if v.lastFrame.Load() == 0 {
					log.Debug("no frame yet: starting the player over", "url", v.url)
					cancelAttempt()
					<-errCh
					restarted = true
					break wait
				}
			case <-firstFrameC:
				firstFrameC = nil
				if v.lastFrame.Load() == 0 {
					v.late.Store(true)
					r.fail(fmt.Errorf("viewer %d (%s): no frame within %v", v.id, v.url, firstFrameTimeout), true)
				}
			}
		}
		retry.Stop()
		cancelAttempt()
		if restarted && ctx.Err() == nil {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("playback ended")
		}
		v.failed.Store(true)
		r.fail(fmt.Errorf("viewer %d: %w", v.id, err), true)
		if !sleepFor(ctx, restartDelay) {
			return
		}
		r.viewerRestarts.Add(1)
	}
}

// viewerFrame accounts for one video frame received by v. Calls for one
// viewer never overlap (one reader at a time, frames delivered in order).
func (r *runner) viewerFrame(v *viewerSlot, started time.Time, nalus [][]byte, recv time.Time) {
	r.framesReceived.Add(1)
	prev := v.lastFrame.Swap(recv.UnixNano())
	if prev == 0 {
		startup := recv.Sub(started)
		r.startup.add(ms(startup))
		if startup <= firstFrameTimeout {
			v.firstInTime.Store(true)
		}
	} else if recv.Sub(time.Unix(0, prev)) > stallGap {
		r.stalls.Add(1)
	}
	if recv.Before(r.warmEnd) {
		return
	}
	if sent, ok := testmedia.AUTimestamp(nalus); ok {
		lat := ms(recv.Sub(sent))
		r.latency.add(lat)
		r.window.add(lat)
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

// runProgress writes a progress line every progressInterval until ctx ends.
func (r *runner) runProgress(ctx context.Context) {
	w := r.cfg.Progress
	tty := isTerminal(w)
	ticker := time.NewTicker(progressInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w)
			}
			return
		case <-ticker.C:
		}
		line := r.progressLine(time.Now())
		if tty {
			fmt.Fprintf(w, "\r%s\x1b[K", line)
		} else {
			fmt.Fprintln(w, line)
		}
	}
}

func (r *runner) progressLine(now time.Time) string {
	var up int
	var sent uint64
	for _, c := range r.cameras {
		if c.current.Load() != nil {
			up++
		}
		sent += c.framesSent()
	}
	playing := 0
	for _, v := range r.viewers {
		if last := v.lastFrame.Load(); last != 0 && now.Sub(time.Unix(0, last)) <= stallGap {
			playing++
		}
	}
	r.errMu.Lock()
	errs := r.errors
	r.errMu.Unlock()
	lat := "-"
	if p := r.window.percentiles(); p.Count > 0 {
		lat = fmt.Sprintf("p50 %.0f p95 %.0f ms", p.P50, p.P95)
	}
	r.window.reset()
	return fmt.Sprintf("%4.0fs/%.0fs  cameras %d/%d up  viewers %d/%d playing  frames sent %d recv %d  errors %d  stalls %d  latency %s",
		now.Sub(r.start).Seconds(), r.cfg.Duration.Seconds(), up, len(r.cameras), playing, len(r.viewers),
		sent, r.framesReceived.Load(), errs, r.stalls.Load(), lat)
}

// isTerminal reports whether w is a character device (a terminal), where the
// progress line is rewritten in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func ms(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}

// sleepUntil waits until t; false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	return sleepFor(ctx, time.Until(t))
}

// sleepFor waits d; false when ctx ended first.
func sleepFor(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
