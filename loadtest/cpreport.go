package loadtest

// What a control-plane run measured (controlplane.go runs it): the samples
// taken during the run and the report made of them.

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/procfs"
)

// ControlPlaneReport is what a control-plane run measured. Rates are
// averages over the steady window: from when every stream was owned (and
// the ramp was over) until the kill.
type ControlPlaneReport struct {
	Streams int `json:"streams"`
	// Owned is how many streams have an owner at the end that is not a
	// killed origin.
	Owned         int `json:"owned"`
	Origins       int `json:"origins"`
	Edges         int `json:"edges"`
	KilledOrigins int `json:"killed_origins"`
	// KilledAt is when the origins were killed (zero: none were).
	KilledAt  time.Time `json:"killed_at,omitzero"`
	DurationS float64   `json:"duration_s"`
	Replicas  int       `json:"replicas"`
	LeaseTTLS float64   `json:"lease_ttl_s"`
	NodeTTLS  float64   `json:"node_ttl_s"`
	// Standby is the origins' origin.standby patterns (none: off).
	Standby []string `json:"standby,omitempty"`
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
	// SimSched is how long the simulator's goroutines (every node's
	// heartbeats among them) waited, runnable, for a CPU over the whole
	// run, and the GC's share of its CPU: a starved simulator shows here.
	SimSched SchedLatency `json:"sim_sched"`
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
	// ReownSlowest is the orphans owned again last (at most 12), slowest
	// first: which origin took them and when, for a tail to be looked into.
	ReownSlowest []SlowReown `json:"reown_slowest,omitempty"`
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
	sched    schedSample
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
	s := cpSample{at: time.Now(), sched: readSched()}
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
		s.addConn(o.conn)
	}
	for _, e := range cp.edges {
		s.addConn(e.conn)
	}
	s.bucketSq = cp.obs.bucketSeqs(ctx)
	s.bucketAt = time.Now()
	cp.mu.Lock()
	cp.samples = append(cp.samples, s)
	cp.mu.Unlock()
}

// addConn adds a simulated node's connection counters.
func (s *cpSample) addConn(c *simConn) {
	s.ops += c.registryOps()
	s.in += c.registryIn()
	st := c.nc.Stats()
	s.hbOut += st.OutMsgs
	s.hbIn += st.InMsgs
}

// fillReport turns the samples and the observer's records into figures.
func (cp *controlPlane) fillReport(rep *ControlPlaneReport, t0, allOwned, killed time.Time) {
	rep.KilledAt = killed
	cp.fillOwnership(rep)

	cp.mu.Lock()
	samples := cp.samples
	cp.mu.Unlock()
	scheds := make([]schedSample, 0, len(samples))
	for _, s := range samples {
		scheds = append(scheds, s.sched)
	}
	rep.SimSched = schedLatency(scheds)
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
	cp.fillRates(rep, samples, a, b)
	if c, d, ok := sampleSpan(samples, killed, time.Now()); ok {
		rep.BusCPUCoresAfterKill = busCores(c, d)
	}
}

// fillOwnership fills in who owns what at the end, the re-owning, and what
// the simulated nodes counted and logged.
func (cp *controlPlane) fillOwnership(rep *ControlPlaneReport) {
	rep.Owned = cp.obs.owned()
	rep.Orphaned, rep.Reowned = cp.obs.orphans(), cp.obs.reowned()
	names := make([]string, 0, len(cp.origins))
	for _, o := range cp.origins {
		names = append(names, o.name)
	}
	rep.OwnedPerOrigin[0], rep.OwnedPerOrigin[1] = cp.obs.spread(names)
	rep.ReownMS = computePercentiles(cp.obs.reownTimes())
	rep.ReownSlowest = cp.obs.slowest()
	for i := range rep.ReownSlowest {
		s := &rep.ReownSlowest[i]
		s.Trace, s.TakerTrace = cp.trace.of(s.Path, s.Owner)
	}
	rep.OriginCounters = sumOriginCounters(cp.metrics)
	rep.Warnings = cp.logs.counts()
	for _, e := range cp.edges {
		n, err := e.errors()
		rep.RegistryErrors += n
		if err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: last registry error: %v", e.name, err))
		}
	}
}

// fillRates fills in the rates between samples a and b (the steady window).
func (cp *controlPlane) fillRates(rep *ControlPlaneReport, samples []cpSample, a, b cpSample) {
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
