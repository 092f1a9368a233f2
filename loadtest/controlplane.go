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
	"github.com/prometheus/procfs"

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
	// KillOrigins is how many origins are killed at Duration/2 (< Origins).
	KillOrigins int
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
	// Progress receives a progress line every 2 s. Nil prints nothing.
	Progress io.Writer
	// Log receives the run's warnings. Default: discard.
	Log *slog.Logger
}

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
	case c.Ramp < 0 || c.Ramp >= c.Duration/2:
		return bad("--ramp must be shorter than half the duration")
	case len(c.Bus) == 0 && len(c.PIDs) > 0:
		return bad("--pid goes with --bus (the bus this run starts is sampled anyway)")
	}
	if c.Ramp == 0 {
		c.Ramp = min(maxRamp, c.Duration/6)
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

// ControlPlaneReport is what a control-plane run measured. Rates are
// averages over the steady window: from when every stream was owned (and
// the ramp was over) until the kill.
type ControlPlaneReport struct {
	Streams int `json:"streams"`
	// Owned is how many streams have an owner at the end that is not a
	// killed origin.
	Owned         int     `json:"owned"`
	Origins       int     `json:"origins"`
	Edges         int     `json:"edges"`
	KilledOrigins int     `json:"killed_origins"`
	DurationS     float64 `json:"duration_s"`
	Replicas      int     `json:"replicas"`
	LeaseTTLS     float64 `json:"lease_ttl_s"`
	NodeTTLS      float64 `json:"node_ttl_s"`
	// OwnedAllAfterS is when every stream was first owned, from the first
	// stream's start; -1 when that never happened before the kill.
	OwnedAllAfterS float64 `json:"owned_all_after_s"`
	// SetupS is how long starting the bus and the nodes took (not in DurationS).
	SetupS        float64 `json:"setup_s"`
	SteadyWindowS float64 `json:"steady_window_s"`
	// BusCPUCores is the CPU time of all bus nodes per second of the steady
	// window, read from /proc/<pid>/stat; null when no bus process was
	// sampled (Bus given without PIDs). BusCPUCoresAfterKill covers the
	// kill to the end.
	BusCPUCores          *float64       `json:"bus_cpu_cores"`
	BusCPUCoresAfterKill *float64       `json:"bus_cpu_cores_after_kill"`
	BusNodes             []BusNodeUsage `json:"bus_nodes,omitempty"`
	// SimCPUCores is this process' CPU (every simulated node) in the steady
	// window: when it nears the machine's cores, the simulation, not the
	// bus, is the bottleneck.
	SimCPUCores float64 `json:"sim_cpu_cores"`
	// KVOpsPerS is the registry operations the simulated nodes sent per
	// second (creates, updates, puts, deletes, gets: one message each on
	// their registry connections); KVOpsPerStreamS divides it by Streams.
	KVOpsPerS       float64 `json:"kv_ops_per_s"`
	KVOpsPerStreamS float64 `json:"kv_ops_per_stream_s"`
	// KVWritesPerS counts, per bucket, the records the bus stored per second
	// (the bucket stream's sequence: writes and expiry markers).
	KVWritesPerS map[string]float64 `json:"kv_writes_per_s"`
	// KVDeliveriesPerS is what the simulated nodes' registry connections
	// received per second: replies, and every change their watches deliver.
	KVDeliveriesPerS float64 `json:"kv_deliveries_per_s"`
	// HeartbeatsPerS and HeartbeatDeliveriesPerS are the messages the
	// origins' and edges' other connection sent and received per second: their
	// liveness heartbeats (core NATS, not stored), and little else once the
	// streams are claimed.
	HeartbeatsPerS          float64 `json:"heartbeats_per_s"`
	HeartbeatDeliveriesPerS float64 `json:"heartbeat_deliveries_per_s"`
	// Orphaned is how many streams the killed origins owned; Reowned how
	// many of those another origin owned before the end, ReownMS the time
	// from the kill until the owner watch showed that.
	Orphaned int `json:"orphaned"`
	// OwnedPerOrigin is the fewest and the most streams a surviving origin
	// owns at the end.
	OwnedPerOrigin [2]int      `json:"owned_per_origin"`
	Reowned        int         `json:"reowned"`
	ReownMS        Percentiles `json:"reown_ms"`
	// RegistryErrors counts the simulated edges' failed registry calls.
	RegistryErrors int `json:"registry_errors"`
	// OriginCounters sums the origins' counters over the whole run (claims,
	// claim conflicts and errors, lease losses, releases), and Warnings
	// counts the warnings the simulated nodes logged, by message (a lapse
	// of a node's own liveness is one): what a run that churns did.
	OriginCounters map[string]float64 `json:"origin_counters,omitempty"`
	Warnings       map[string]int     `json:"warnings,omitempty"`
	// MachineCPUs and LoadAvg1m (at the end) say how busy the machine was:
	// the simulated nodes, the bus and whatever else runs share it.
	MachineCPUs int      `json:"machine_cpus"`
	LoadAvg1m   float64  `json:"load_avg_1m"`
	Interrupted bool     `json:"interrupted,omitempty"`
	Notes       []string `json:"notes,omitempty"`
}

// BusNodeUsage is one bus process over the steady window.
type BusNodeUsage struct {
	PID      int     `json:"pid"`
	CPUCores float64 `json:"cpu_cores"`
	RSSMaxMB float64 `json:"rss_max_mb"`
}

// OK says whether every stream was owned at the end and every orphan
// re-owned.
func (r *ControlPlaneReport) OK() bool {
	return !r.Interrupted && r.Owned == r.Streams && r.Reowned == r.Orphaned
}

// cpSample is one reading of the counters the report is made of.
type cpSample struct {
	at       time.Time
	busCPU   []float64 // seconds, per bus pid; nil when a read failed
	busRSS   []float64
	simCPU   float64
	ops, in  uint64
	hbOut    uint64 // origins' and edges' media connections
	hbIn     uint64
	bucketSq map[string]uint64
	bucketAt time.Time // when bucketSq was read (it takes requests)
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
		logs: newCountingHandler(cfg.Log.Handler())}
	cp.cfg.Log = slog.New(cp.logs)
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
			cp.origins[i], err = startSimOrigin(ctx, cp.urls, fmt.Sprintf("sim-origin%04d", i+1), rc, c.OriginCapacity, c.Log)
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
		Replicas: c.Replicas, LeaseTTLS: c.LeaseTTL.Seconds(), NodeTTLS: c.NodeTTL.Seconds(),
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
	killAt, end := t0.Add(c.Duration/2), t0.Add(c.Duration)
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

// kill kills the first KillOrigins origins at once and returns when.
func (cp *controlPlane) kill() time.Time {
	victims := cp.origins[:cp.cfg.KillOrigins]
	names := make([]string, len(victims))
	for i, v := range victims {
		names[i] = v.name
	}
	at := time.Now()
	cp.obs.markKill(names, at)
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

// sampleEvery samples until ctx ends.
func (cp *controlPlane) sampleEvery(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		cp.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sample reads the bus processes, this process and the counters.
func (cp *controlPlane) sample(ctx context.Context) {
	s := cpSample{at: time.Now()}
	for _, pid := range cp.pids {
		cpu, rss, err := readProcUsage("/proc", pid)
		if err != nil {
			s.busCPU, s.busRSS = nil, nil
			break
		}
		s.busCPU = append(s.busCPU, cpu)
		s.busRSS = append(s.busRSS, rss)
	}
	s.simCPU, _, _ = readProcUsage("/proc", os.Getpid())
	for _, o := range cp.origins {
		s.ops += o.conn.registryOps()
		s.in += o.conn.registryIn()
		st := o.conn.nc.Stats()
		s.hbOut += st.OutMsgs
		s.hbIn += st.InMsgs
	}
	for _, e := range cp.edges {
		s.ops += e.conn.registryOps()
		s.in += e.conn.registryIn()
		st := e.conn.nc.Stats()
		s.hbOut += st.OutMsgs
		s.hbIn += st.InMsgs
	}
	s.bucketSq = cp.obs.bucketSeqs(ctx)
	s.bucketAt = time.Now()
	cp.mu.Lock()
	cp.samples = append(cp.samples, s)
	cp.mu.Unlock()
}

// fillReport turns the samples and the observer's records into figures.
func (cp *controlPlane) fillReport(rep *ControlPlaneReport, t0, allOwned, killed time.Time) {
	rep.Owned = cp.obs.owned()
	rep.Orphaned, rep.Reowned = cp.obs.orphans(), cp.obs.reowned()
	names := make([]string, 0, len(cp.origins))
	for _, o := range cp.origins {
		names = append(names, o.name)
	}
	rep.OwnedPerOrigin[0], rep.OwnedPerOrigin[1] = cp.obs.spread(names)
	rep.ReownMS = computePercentiles(cp.obs.reownTimes())
	rep.OriginCounters = sumOriginCounters(cp.metrics)
	rep.Warnings = cp.logs.counts()
	for _, e := range cp.edges {
		n, err := e.errors()
		rep.RegistryErrors += n
		if err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: last registry error: %v", e.name, err))
		}
	}

	cp.mu.Lock()
	samples := cp.samples
	cp.mu.Unlock()
	if killed.IsZero() {
		killed = time.Now()
	}
	// The steady window: from a second after every stream was owned (and
	// the ramp ended) until the kill; from half-way to the kill when
	// ownership never completed.
	from := t0.Add(cp.cfg.Ramp)
	if !allOwned.IsZero() {
		from = maxTime(from, allOwned).Add(time.Second)
	}
	if allOwned.IsZero() || killed.Sub(from) < 2*cpSampleEvery {
		from = t0.Add(killed.Sub(t0) / 2)
		rep.Notes = append(rep.Notes, "not every stream was owned a while before the kill: the steady window starts half-way to the kill")
	}
	if fs, err := procfs.NewFS("/proc"); err == nil {
		if la, err := fs.LoadAvg(); err == nil {
			rep.LoadAvg1m = la.Load1
		}
	}
	a, b, ok := sampleSpan(samples, from, killed)
	if !ok {
		// The sampler is held up when the process starves (the clients'
		// counters wait for their connections' locks): take what there is.
		if a, b, ok = sampleSpan(samples, t0, killed); !ok {
			rep.Notes = append(rep.Notes, "too few samples before the kill for any rate")
			return
		}
		rep.Notes = append(rep.Notes, "too few samples in the steady window: the rates cover the whole run before the kill")
	}
	dt := b.at.Sub(a.at).Seconds()
	rep.SteadyWindowS = round3(dt)
	rep.SimCPUCores = round3((b.simCPU - a.simCPU) / dt)
	rep.KVOpsPerS = round3(float64(b.ops-a.ops) / dt)
	rep.KVOpsPerStreamS = round3(rep.KVOpsPerS / float64(rep.Streams))
	rep.KVDeliveriesPerS = round3(float64(b.in-a.in) / dt)
	rep.HeartbeatsPerS = round3(float64(b.hbOut-a.hbOut) / dt)
	rep.HeartbeatDeliveriesPerS = round3(float64(b.hbIn-a.hbIn) / dt)
	rep.KVWritesPerS = map[string]float64{}
	for bucket, seq := range b.bucketSq {
		if prev, ok := a.bucketSq[bucket]; ok && seq >= prev {
			rep.KVWritesPerS[bucket] = round3(float64(seq-prev) / b.bucketAt.Sub(a.bucketAt).Seconds())
		}
	}
	rep.BusCPUCores = busCores(a, b)
	if len(a.busCPU) > 0 && len(b.busCPU) == len(a.busCPU) {
		for i, pid := range cp.pids {
			u := BusNodeUsage{PID: pid, CPUCores: round3((b.busCPU[i] - a.busCPU[i]) / dt)}
			for _, s := range samples {
				if len(s.busRSS) > i {
					u.RSSMaxMB = max(u.RSSMaxMB, round3(s.busRSS[i]/(1<<20)))
				}
			}
			rep.BusNodes = append(rep.BusNodes, u)
		}
	}
	if busy := rep.SimCPUCores + ptrValue(rep.BusCPUCores); busy > 0.8*float64(rep.MachineCPUs) {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the simulator and the bus used %.2f of the machine's %d cores: "+
			"it was saturated, and the rates are what it managed, below what the design asks for", busy, rep.MachineCPUs))
	}
	if len(cp.pids) == 0 {
		rep.Notes = append(rep.Notes, "bus CPU not measured: give the bus processes with --pid")
	}
	if c, d, ok := sampleSpan(samples, killed, time.Now()); ok {
		rep.BusCPUCoresAfterKill = busCores(c, d)
	}
}

// sampleSpan returns the first sample at or after from and the last at or
// before to (a little slack: samples are taken on the 100 ms loop).
func sampleSpan(samples []cpSample, from, to time.Time) (a, b cpSample, ok bool) {
	const slack = 150 * time.Millisecond
	ia, ib := -1, -1
	for i, s := range samples {
		if ia < 0 && !s.at.Before(from.Add(-slack)) {
			ia = i
		}
		if !s.at.After(to.Add(slack)) {
			ib = i
		}
	}
	if ia < 0 || ib <= ia {
		return a, b, false
	}
	return samples[ia], samples[ib], true
}

// busCores is the CPU of every bus process between two samples, in cores.
func busCores(a, b cpSample) *float64 {
	if len(a.busCPU) == 0 || len(b.busCPU) != len(a.busCPU) {
		return nil
	}
	var d float64
	for i := range a.busCPU {
		d += b.busCPU[i] - a.busCPU[i]
	}
	v := round3(d / b.at.Sub(a.at).Seconds())
	return &v
}

func ptrValue(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
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
