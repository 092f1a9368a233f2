package loadtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

const controlPlaneUsage = `usage: streamgrid loadtest --control-plane --streams N --origins O --edges E
       --kill-origins K --duration D [--json F] [--bus URL,...] [options]

Simulates the control plane at scale: N streams (registry records, no media)
kept by E simulated edges and owned by O real origins (origin.Origin, its own
connections each), against a three-node bus started as child processes
(` + "`streamgrid bus`" + `, R3 buckets) or the bus at --bus. At D/2 (or --kill-at) it kills K
origins as SIGKILL would (their connections drop, no lease is released) and
times, through the owner watch, how long each of their streams waits for a new
owner. Reports bus CPU (all bus processes, from /proc, while steady), registry
operations per second and re-own times. Exits 0 when every stream is owned at
the end and every orphan was re-owned, 1 otherwise, 2 on usage errors.

example:
  streamgrid loadtest --control-plane --streams 10000 --origins 100 --edges 10 \
    --kill-origins 10 --duration 90s --json cp.json

options:
`

// isControlPlane says whether a loadtest command line asks for the
// control-plane simulation.
func isControlPlane(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool {
		return a == "--control-plane" || a == "-control-plane" || a == "--control-plane=true" || a == "-control-plane=true"
	})
}

// controlPlaneMain is `streamgrid loadtest --control-plane`.
func controlPlaneMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("loadtest --control-plane", controlPlaneUsage, stderr)
	var (
		cfg           ControlPlaneConfig
		opts          mainOptions
		busURLs, pids listFlag
	)
	fs.Bool("control-plane", true, "run the control-plane simulation (this mode)")
	fs.IntVar(&cfg.Streams, "streams", 1000, "synthetic streams (1.."+strconv.Itoa(MaxCPStreams)+")")
	fs.IntVar(&cfg.Origins, "origins", 10, "simulated origins (2.."+strconv.Itoa(MaxCPOrigins)+")")
	fs.IntVar(&cfg.Edges, "edges", 1, "simulated edges the streams are spread over (1.."+strconv.Itoa(MaxCPEdges)+")")
	fs.IntVar(&cfg.KillOrigins, "kill-origins", 1, "origins killed at --kill-at (0..origins-1)")
	fs.DurationVar(&cfg.KillAt, "kill-at", 0, "when the origins are killed, from the first stream's start: after the ramp, before the end (default duration/2)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "total run time from the first stream's start (required)")
	fs.DurationVar(&cfg.Ramp, "ramp", 0, "stagger the streams' starts over this span (default min(10s, duration/6))")
	fs.Var(&busURLs, "bus", "NATS URLs of a running bus to use instead of starting three nodes (repeatable or comma-separated)")
	fs.Var(&pids, "pid", "with --bus: a bus process to sample for CPU (repeatable)")
	fs.IntVar(&cfg.Replicas, "replicas", 3, "replicas of the registry buckets")
	fs.DurationVar(&cfg.LeaseTTL, "lease-ttl", 0, "bus.lease_ttl: claim pacing and the origins' rescan period (default 3s)")
	fs.DurationVar(&cfg.NodeTTL, "node-ttl", 0, "the origins' and edges' liveness TTL, bus.node_ttl (default 750ms)")
	fs.IntVar(&cfg.OriginCapacity, "origin-capacity", 0, "each origin's origin.capacity (default: twice what the surviving origins need)")
	var standby listFlag
	fs.Var(&standby, "standby", "the origins' origin.standby patterns (repeatable or comma-separated, e.g. '*'); default none: no warm standby")
	cpuProfile := fs.String("cpuprofile", "", "write the simulator's CPU profile (every simulated node, not the bus) to this file")
	mutexProfile := fs.String("mutexprofile", "", "write the simulator's mutex contention profile to this file")
	blockProfile := fs.String("blockprofile", "", "write the simulator's blocking profile (waits of 1 ms and more) to this file")
	heapProfile := fs.String("memprofile", "", "write the simulator's heap profile to this file just before the kill: every stream up, every simulated node's memory")
	fs.StringVar(&cfg.KillProfile, "kill-cpuprofile", "", "write the simulator's CPU profile from the kill to 15 s after it to this file (not with --cpuprofile)")
	fs.StringVar(&cfg.LapseDump, "lapse-dump", "", "write every goroutine's stack to this file when a simulated node's own liveness first lapses")
	opts.addFlags(fs)
	if code := parseArgs(fs, args, stderr); code >= 0 {
		return code
	}
	if *cpuProfile != "" && cfg.KillProfile != "" {
		fmt.Fprintln(stderr, "loadtest: --cpuprofile and --kill-cpuprofile exclude each other (one CPU profile at a time)")
		return 2
	}
	if *cpuProfile != "" {
		stopProfile, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "loadtest: %v\n", err)
			return 2
		}
		defer stopProfile()
	}
	killAt := cfg.KillAt
	if killAt == 0 {
		killAt = cfg.Duration / 2
	}
	defer runtimeProfiles(*mutexProfile, *blockProfile, *heapProfile, killAt, stderr)()
	if os.Getenv("GOGC") == "" {
		// A hundred simulated nodes share this process' heap and its
		// collector, which a real node has for itself: with the default
		// the collector took 9-11 % of the simulator's CPU in a ramp of
		// 10 000 streams (docs/cluster.md), CPU the nodes' heartbeats
		// wait for. Memory is not what a simulation runs short of.
		debug.SetGCPercent(400)
	}
	if cfg.Duration == 0 {
		fmt.Fprintln(stderr, "loadtest: --duration is required (see --control-plane --help)")
		return 2
	}
	cfg.Bus = busURLs
	cfg.Standby = standby
	var ok bool
	if cfg.PIDs, ok = parsePIDs(pids, stderr); !ok {
		return 2
	}
	return runReported(opts, stdout, stderr, func(ctx context.Context, log *slog.Logger, progress io.Writer) (reporter, error) {
		cfg.Log, cfg.Progress = log, progress
		return asReporter(RunControlPlane(ctx, cfg))
	})
}

// WriteTable prints the report for people.
func (r *ControlPlaneReport) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", name, fmt.Sprintf(format, args...))
	}
	status := "PASS"
	if !r.OK() {
		status = "FAIL"
	}
	row("result", "%s", status)
	row("streams", "%d on %d origins, %d edges; node TTL %gs, R%d; warm standby %v",
		r.Streams, r.Origins, r.Edges, r.NodeTTLS, r.Replicas, r.Standby)
	row("owned at the end", "%d (all owned after %gs)", r.Owned, r.OwnedAllAfterS)
	cores := func(p *float64) string {
		if p == nil {
			return "not measured"
		}
		return strconv.FormatFloat(*p, 'f', 3, 64) + " cores"
	}
	row("bus CPU (steady)", "%s over %gs; after the kill %s", cores(r.BusCPUCores), r.SteadyWindowS, cores(r.BusCPUCoresAfterKill))
	row("simulator CPU", "%.3f cores", r.SimCPUCores)
	row("scheduling latency", "p50 %g ms, p99 %g ms, p99.9 %g ms, worst 1 s p99 %g ms; GC %.0f %% of the simulator's CPU",
		r.SimSched.P50MS, r.SimSched.P99MS, r.SimSched.P999MS, r.SimSched.WorstP99MS, 100*r.SimSched.GCCPUFraction)
	row("registry ops", "%.1f/s (%.3f per stream per s); deliveries to the nodes %.1f/s",
		r.KVOpsPerS, r.KVOpsPerStreamS, r.KVDeliveriesPerS)
	row("heartbeats", "%.1f/s sent by the origins and edges, %.1f/s delivered to them", r.HeartbeatsPerS, r.HeartbeatDeliveriesPerS)
	writes := make([]string, 0, len(r.KVWritesPerS))
	for _, b := range slices.Sorted(maps.Keys(r.KVWritesPerS)) {
		writes = append(writes, fmt.Sprintf("%s %.1f", b, r.KVWritesPerS[b]))
	}
	row("stored writes/s", "%v", writes)
	row("per origin", "%d to %d streams (surviving origins, at the end)", r.OwnedPerOrigin[0], r.OwnedPerOrigin[1])
	row("killed", "%d origins: %d streams orphaned, %d re-owned", r.KilledOrigins, r.Orphaned, r.Reowned)
	row("re-own ms", "p50 %.0f  p99 %.0f  max %.0f", r.ReownMS.P50, r.ReownMS.P99, r.ReownMS.Max)
	for i, s := range r.ReownSlowest {
		if i == 3 {
			break
		}
		row("re-owned late", "%s after %.0f ms by %s (its record says %.0f ms; epoch %d)", s.Path, s.MS, s.Owner, s.ClaimedMS, s.Epoch)
	}
	row("registry errors", "%d", r.RegistryErrors)
	if len(r.OriginCounters) > 0 {
		var cs []string
		for _, k := range originCounterNames {
			cs = append(cs, fmt.Sprintf("%s %.0f", strings.TrimSuffix(k, "_total"), r.OriginCounters[k]))
		}
		row("origins did", "%s", strings.Join(cs, ", "))
	}
	for _, m := range slices.Sorted(maps.Keys(r.Warnings)) {
		row("warned", "%d× %s", r.Warnings[m], m)
	}
	for _, n := range r.Notes {
		row("note", "%s", n)
	}
	tw.Flush()
}

// runtimeProfiles turns on the mutex and block profiles asked for and
// schedules the heap profile a second before the kill (killAt: every node
// still holds its records; at the end they are gone); the returned
// function writes the first two and cancels the third.
func runtimeProfiles(mutex, block, heap string, killAt time.Duration, stderr io.Writer) func() {
	write := func(name, path string) {
		if err := writeProfile(name, path); err != nil {
			fmt.Fprintf(stderr, "loadtest: %v\n", err)
		}
	}
	var done []func()
	if mutex != "" {
		runtime.SetMutexProfileFraction(5)
		done = append(done, func() { write("mutex", mutex) })
	}
	if block != "" {
		runtime.SetBlockProfileRate(int(time.Millisecond))
		done = append(done, func() { write("block", block) })
	}
	if heap != "" && killAt > 0 {
		t := time.AfterFunc(killAt-time.Second, func() {
			runtime.GC()
			write("heap", heap)
		})
		done = append(done, func() { t.Stop() })
	}
	return func() {
		for _, f := range done {
			f()
		}
	}
}

// writeProfile writes the runtime profile name (mutex, block, heap) to path.
func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = pprof.Lookup(name).WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// startCPUProfile profiles this process into path until the returned
// function is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
