package loadtest

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/node"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// testBusNodeEnv makes the test binary a bus node (`streamgrid bus`): the
// control-plane test starts its bus as child processes of this binary.
const testBusNodeEnv = "LOADTEST_TEST_BUS_NODE"

// runTestBusNode is `streamgrid bus --config FILE` in the test binary.
func runTestBusNode(args []string) int {
	path := ""
	if i := slices.Index(args, "--config"); i >= 0 && i+1 < len(args) {
		path = args[i+1]
	}
	cfg, err := config.Load(path, os.Environ())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	n := &node.Node{Config: cfg, Role: node.RoleBus, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if err := n.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	<-ctx.Done()
	stop()
	n.Close()
	return 0
}

// TestControlPlane runs the simulation small: 50 streams on 3 origins, one
// killed midway, on a real three-node bus of child processes.
func TestControlPlane(t *testing.T) {
	testkit.Slow(t)               // a 16 s simulation against three bus processes
	t.Setenv(testBusNodeEnv, "1") // for the children
	var progress bytes.Buffer
	rep, err := RunControlPlane(t.Context(), ControlPlaneConfig{
		Streams: 50, Origins: 3, Edges: 1, KillOrigins: 1,
		Duration:   16 * time.Second,
		BusCommand: []string{os.Args[0]},
		Progress:   &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	rep.WriteTable(&table)
	t.Logf("report:\n%s", table.String())
	if rep.Owned != rep.Streams {
		t.Errorf("owned %d of %d streams at the end", rep.Owned, rep.Streams)
	}
	if rep.Orphaned == 0 || rep.Reowned != rep.Orphaned || rep.ReownMS.Count != uint64(rep.Orphaned) || rep.ReownMS.Max <= 0 {
		t.Errorf("orphaned %d, re-owned %d, re-own times %+v", rep.Orphaned, rep.Reowned, rep.ReownMS)
	}
	if n := len(rep.ReownSlowest); n == 0 || n > 12 || rep.ReownSlowest[0].MS != rep.ReownMS.Max ||
		!slices.IsSortedFunc(rep.ReownSlowest, func(a, b SlowReown) int { return cmp.Compare(b.MS, a.MS) }) {
		t.Errorf("slowest re-owned orphans %+v (max %v)", rep.ReownSlowest, rep.ReownMS.Max)
	}
	// Each of them carries its trace: the taker scheduled the claim, started
	// it and wrote the record, before the observer saw it.
	for _, s := range rep.ReownSlowest {
		wrote := slices.IndexFunc(s.Trace, func(e TraceEvent) bool { return e.Node == s.Owner && e.Msg == "owner record written" })
		started := slices.IndexFunc(s.Trace, func(e TraceEvent) bool { return e.Node == s.Owner && e.Msg == "claim started" })
		if wrote < 0 || started < 0 || started > wrote || s.ClaimedMS <= 0 || s.ClaimedMS > s.MS {
			t.Errorf("re-owned after %v ms by %s (record: %v ms), trace %+v", s.MS, s.Owner, s.ClaimedMS, s.Trace)
		}
	}
	if !rep.OK() {
		t.Error("report not OK")
	}
	if rep.BusCPUCores == nil || *rep.BusCPUCores <= 0 || len(rep.BusNodes) != busNodes {
		t.Errorf("bus CPU not measured: %v, nodes %+v", rep.BusCPUCores, rep.BusNodes)
	}
	// Owner and stream records are written on changes only (none in a
	// quiet steady window), but every bucket's writes are read.
	for _, b := range []string{bus.BucketOwners, bus.BucketStreams, bus.BucketState, bus.BucketSources} {
		if _, ok := rep.KVWritesPerS[b]; !ok {
			t.Errorf("writes of %s not counted: %v", b, rep.KVWritesPerS)
		}
	}
	if rep.HeartbeatsPerS <= 0 {
		t.Errorf("heartbeats not counted: %v/s", rep.HeartbeatsPerS)
	}
	if rep.RegistryErrors != 0 {
		t.Errorf("%d registry errors: %v", rep.RegistryErrors, rep.Notes)
	}
}
