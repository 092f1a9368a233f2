package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/bus"
)

// The control-plane simulation (`streamgrid loadtest --control-plane`)
// measures the registry and ownership design at a scale no test cluster
// reaches: N synthetic streams (records only, no media) kept by E simulated
// edges and owned by O origins, against a real three-node bus. Midway it
// kills K origins the way SIGKILL does and times how long their streams
// take to be owned again.
//
// What is real: the bus (three `streamgrid bus` processes clustered through
// routes, R3 buckets, unless Bus names another), bus.Registry, and the
// origins: each is an origin.Origin with its own two connections, so the
// claimer, the node liveness (a heartbeat every NodeTTL/4), the batch
// take-over and the watches are the product's own code. The edges are stand-ins making edge/stream.go's
// registry calls at its cadence (see simEdge). An observer, one more
// connection, watches the owners as a cache would and times the re-owning.

// Bounds of a control-plane run.
const (
	MaxCPStreams = 100000
	MaxCPOrigins = 1000
	MaxCPEdges   = 1000
	// cpSampleEvery paces the CPU and counter samples.
	cpSampleEvery = time.Second
)

// ControlPlaneConfig describes one control-plane simulation.
type ControlPlaneConfig struct {
	// Streams, Origins and Edges are how many of each are simulated
	// (Origins >= 2, so that one survives a kill).
	Streams, Origins, Edges int
	// KillOrigins is how many origins are killed at KillAt (< Origins).
	KillOrigins int
	// KillAt is when, from the first stream's start, they are killed:
	// after Ramp, before Duration. Default Duration/2. (A run of 10 000
	// streams needs an 8-minute ramp; a kill a minute after it, not half
	// the run later, saves the other 7.)
	KillAt time.Duration
	// Duration is the whole run from the first stream's start; required, at
	// most MaxDuration.
	Duration time.Duration
	// Ramp staggers the streams' starts (their edges' first claims) over
	// this span. Default min(10 s, Duration/6).
	Ramp time.Duration
	// Bus holds the URLs of a running bus to use. Empty: three bus nodes are
	// started as child processes with BusCommand and stopped at the end.
	Bus []string
	// BusCommand is the command line that starts one bus node, configured
	// through SG_ variables (bus.server.*). Default: this executable with
	// "bus".
	BusCommand []string
	// PIDs are bus processes to sample for CPU when Bus is given.
	PIDs []int
	// Replicas of the registry buckets. Default 3.
	Replicas int
	// LeaseTTL is the registry's claim pacing (bus.lease_ttl). Default
	// 3 s, the product's default.
	LeaseTTL time.Duration
	// NodeTTL is the origins' and edges' liveness TTL (bus.node_ttl).
	// Default bus.DefaultNodeTTL.
	NodeTTL time.Duration
	// OriginCapacity is each origin's origin.capacity. Default: twice what
	// the origins left after the kill need, so capacity never decides.
	OriginCapacity int
	// Standby is the origins' origin.standby patterns (warm standby); empty:
	// off, as before the standby existed. The simulated streams carry no
	// media, so this measures the standbys' subscriptions and their moves,
	// not their media.
	Standby []string
	// Progress receives a progress line every 2 s. Nil prints nothing.
	Progress io.Writer
	// Log receives the run's warnings. Default: discard.
	Log *slog.Logger
	// LapseDump, when set, is a file that gets every goroutine's stack
	// when the first simulated node's own liveness lapses: what the
	// process was doing while a heartbeat's echo was late.
	LapseDump string
	// KillProfile, when set, is a file that gets the simulator's CPU
	// profile from the kill to KillProfileFor after it (or the run's end):
	// what the take-over costs the simulated nodes.
	KillProfile string
}

// KillProfileFor is how long KillProfile profiles after the kill.
const KillProfileFor = 15 * time.Second

func (c ControlPlaneConfig) withDefaults() (ControlPlaneConfig, error) {
	bad := func(format string, args ...any) (ControlPlaneConfig, error) {
		return c, fmt.Errorf("%w: "+format, append([]any{ErrUsage}, args...)...)
	}
	switch {
	case c.Streams < 1 || c.Streams > MaxCPStreams:
		return bad("--streams must be 1..%d", MaxCPStreams)
	case c.Origins < 2 || c.Origins > MaxCPOrigins:
		return bad("--origins must be 2..%d", MaxCPOrigins)
	case c.Edges < 1 || c.Edges > MaxCPEdges:
		return bad("--edges must be 1..%d", MaxCPEdges)
	case c.KillOrigins < 0 || c.KillOrigins >= c.Origins:
		return bad("--kill-origins must be 0..origins-1")
	case c.Duration <= 0 || c.Duration > MaxDuration:
		return bad("--duration must be in (0, %v]", MaxDuration)
	case c.KillAt < 0 || c.KillAt >= c.Duration:
		return bad("--kill-at must be in [0, duration)")
	case c.Ramp < 0 || (c.KillAt == 0 && c.Ramp >= c.Duration/2):
		return bad("--ramp must be shorter than half the duration")
	case c.KillAt > 0 && c.Ramp >= c.KillAt:
		return bad("--ramp must end before --kill-at")
	case len(c.Bus) == 0 && len(c.PIDs) > 0:
		return bad("--pid goes with --bus (the bus this run starts is sampled anyway)")
	}
	if c.Ramp == 0 {
		c.Ramp = min(maxRamp, c.Duration/6)
		if c.KillAt > 0 {
			c.Ramp = min(c.Ramp, c.KillAt/2)
		}
	}
	if c.KillAt == 0 {
		c.KillAt = c.Duration / 2
	}
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = bus.DefaultLeaseTTL
	}
	if c.NodeTTL <= 0 {
		c.NodeTTL = bus.DefaultNodeTTL
	}
	if c.OriginCapacity <= 0 {
		left := c.Origins - c.KillOrigins
		c.OriginCapacity = 2 * ((c.Streams + left - 1) / left)
	}
	if len(c.Bus) == 0 && len(c.BusCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return c, fmt.Errorf("the bus command: %w", err)
		}
		c.BusCommand = []string{exe, "bus"}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// controlPlane is one run.
type controlPlane struct {
	cfg   ControlPlaneConfig
	urls  []string
	pids  []int
	paths []string

	obs     *ownerObserver
	origins []*simOrigin
	edges   []*simEdge

	setup   time.Duration
	bg      sync.WaitGroup       // the killed origins' clean-up
	metrics *prometheus.Registry // every origin's collectors
	logs    *countingHandler     // every simulated node's log
	trace   *killTrace           // their debug records about the orphans

	mu      sync.Mutex
	samples []cpSample
}

// RunControlPlane runs the simulation. The report is nil only when the run
// could not start; it is partial when ctx ends early.
func RunControlPlane(ctx context.Context, cfg ControlPlaneConfig) (*ControlPlaneReport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cp := &controlPlane{cfg: cfg, urls: cfg.Bus, pids: cfg.PIDs, metrics: prometheus.NewRegistry(),
		logs: newCountingHandler(cfg.Log.Handler()), trace: newKillTrace()}
	cp.cfg.Log = slog.New(&traceHandler{next: cp.logs, t: cp.trace})
	if cfg.LapseDump != "" {
		cp.logs.c.onWarn = dumpOnFirstLapse(cfg.LapseDump, cp.cfg.Log)
	}
	began := time.Now()
	if len(cp.urls) == 0 {
		dir, err := os.MkdirTemp("", "sg-controlplane-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		bc := &busCluster{command: cfg.BusCommand, dir: dir}
		if err := bc.start(ctx); err != nil {
			return nil, err
		}
		defer bc.close()
		cp.urls, cp.pids = bc.urls, bc.pids()
	}
	defer cp.stop()
	if err := cp.startNodes(ctx); err != nil {
		return nil, err
	}
	cp.setup = time.Since(began)
	return cp.run(ctx), nil
}

// startNodes starts the observer (which creates the buckets), the origins
// and the edges.
func (cp *controlPlane) startNodes(ctx context.Context) error {
	c := cp.cfg
	rc := registryConfig{replicas: c.Replicas, leaseTTL: c.LeaseTTL, nodeTTL: c.NodeTTL, metrics: cp.metrics}
	// A run's own paths, so that records another run left on a shared bus
	// never count.
	run := strconv.FormatUint(rand.Uint64()%(36*36*36*36), 36)
	cp.paths = make([]string, c.Streams)
	for i := range cp.paths {
		cp.paths[i] = fmt.Sprintf("sim/%s/s%06d", run, i+1)
	}
	var err error
	if cp.obs, err = startOwnerObserver(ctx, cp.urls, rc, cp.paths); err != nil {
		return fmt.Errorf("observer: %w", err)
	}
	cp.origins = make([]*simOrigin, c.Origins)
	cp.edges = make([]*simEdge, c.Edges)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 8)
	)
	start := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := f(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	for i := range cp.origins {
		start(func() (err error) {
			cp.origins[i], err = startSimOrigin(ctx, cp.urls, fmt.Sprintf("sim-origin%04d", i+1), rc, c.OriginCapacity, c.Standby, c.Log)
			return err
		})
	}
	for i := range cp.edges {
		start(func() (err error) {
			cp.edges[i], err = startSimEdge(ctx, cp.urls, fmt.Sprintf("sim-edge%04d", i+1), rc, c.Log)
			return err
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// run publishes the streams, kills the origins midway and reports.
func (cp *controlPlane) run(ctx context.Context) *ControlPlaneReport {
	c := cp.cfg
	rep := &ControlPlaneReport{
		Streams: c.Streams, Origins: c.Origins, Edges: c.Edges, KilledOrigins: c.KillOrigins,
		Replicas: c.Replicas, LeaseTTLS: c.LeaseTTL.Seconds(), NodeTTLS: c.NodeTTL.Seconds(), Standby: c.Standby,
		OwnedAllAfterS: -1, SetupS: round3(cp.setup.Seconds()), MachineCPUs: runtime.NumCPU(),
	}
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	t0 := time.Now()
	for _, e := range cp.edges {
		e.follow(runCtx)
	}
	for i, path := range cp.paths {
		at := t0.Add(time.Duration(int64(c.Ramp) * int64(i) / int64(len(cp.paths))))
		cp.edges[i%len(cp.edges)].publish(runCtx, path, at)
	}
	killAt, end := t0.Add(c.KillAt), t0.Add(c.Duration)
	var allOwned, killed time.Time

	sampleCtx, stopSampling := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		cp.sampleEvery(sampleCtx, cpSampleEvery)
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	nextProgress := t0.Add(2 * time.Second)
loop:
	for {
		now := time.Now()
		if allOwned.IsZero() && cp.obs.owned() == c.Streams {
			allOwned = now
			rep.OwnedAllAfterS = round3(now.Sub(t0).Seconds())
		}
		if killed.IsZero() && !now.Before(killAt) {
			defer cp.profileKill()()
			killed = cp.kill()
		}
		if !now.Before(end) {
			break
		}
		if c.Progress != nil && !now.Before(nextProgress) {
			nextProgress = now.Add(2 * time.Second)
			fmt.Fprintf(c.Progress, "t=%3.0fs owned %d/%d  orphaned %d reowned %d\n",
				now.Sub(t0).Seconds(), cp.obs.owned(), c.Streams, cp.obs.orphans(), cp.obs.reowned())
		}
		select {
		case <-ctx.Done():
			rep.Interrupted = true
			break loop
		case <-tick.C:
		}
	}
	stopSampling()
	<-sampled
	cp.sample(context.Background()) // the last one, at the end
	rep.DurationS = round3(time.Since(t0).Seconds())
	cp.fillReport(rep, t0, allOwned, killed)
	return rep
}

// profileKill starts the kill's CPU profile (KillProfile) and returns
// what stops it early; it stops by itself KillProfileFor later.
func (cp *controlPlane) profileKill() func() {
	if cp.cfg.KillProfile == "" {
		return func() {}
	}
	stop, err := startCPUProfile(cp.cfg.KillProfile)
	if err != nil {
		cp.cfg.Log.Warn("kill profile not written", "err", err)
		return func() {}
	}
	var once sync.Once
	t := time.AfterFunc(KillProfileFor, func() { once.Do(stop) })
	return func() {
		t.Stop()
		once.Do(stop)
	}
}

// kill kills the first KillOrigins origins at once and returns when.
func (cp *controlPlane) kill() time.Time {
	victims := cp.origins[:cp.cfg.KillOrigins]
	names := make([]string, len(victims))
	for i, v := range victims {
		names[i] = v.name
	}
	at := time.Now()
	cp.trace.start(at, cp.obs.markKill(names, at))
	for _, v := range victims {
		v.conn.crash() // every socket first: they die together
	}
	for _, v := range victims {
		// The rest in the background: the clients are closed, and what the
		// origin held in this process freed (its releases fail).
		cp.bg.Go(func() {
			v.conn.close()
			v.o.Close()
		})
	}
	return at
}

// stop ends every simulated node the fast way, as a crash: the
// measurement is over, and what the bus keeps expires by its TTLs (the
// paths are the run's own).
func (cp *controlPlane) stop() {
	for _, o := range cp.origins {
		if o != nil {
			o.conn.crash()
			o.conn.close()
		}
	}
	for _, e := range cp.edges {
		if e != nil {
			e.conn.crash()
			e.conn.close()
		}
	}
	var wg sync.WaitGroup
	for _, e := range cp.edges {
		if e != nil {
			wg.Go(e.live.Close)
		}
	}
	for _, o := range cp.origins {
		if o != nil {
			wg.Go(o.o.Close)
		}
	}
	for _, e := range cp.edges {
		if e != nil {
			wg.Go(e.wg.Wait)
		}
	}
	wg.Wait()
	cp.bg.Wait()
	if cp.obs != nil {
		cp.obs.stop()
	}
}
