package node

import (
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/memlimit"
)

func TestMemoryLimit(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	c := config.Default()
	c.Node.MemoryLimit = 300 << 20
	n := &Node{Config: c, Role: RoleRun, Log: slog.New(slog.DiscardHandler), name: "n1", metrics: prometheus.NewRegistry(),
		m: newMetrics("n1", RoleRun)}
	if err := n.m.register(n.metrics); err != nil {
		t.Fatal(err)
	}
	n.startMemoryLimit()
	if got := debug.SetMemoryLimit(-1); got != 300<<20 {
		t.Errorf("Go's memory limit %d, want %d", got, 300<<20)
	}
	if got := memlimit.CacheBudget(c.Cache.MaxBytes, n.memLimit); got != 150<<20 {
		t.Errorf("cache budget %d, want half the limit", got)
	}
	if got := memlimit.OriginBudget(n.memLimit); got != 90<<20 {
		t.Errorf("origin budget %d, want 30 %% of the limit", got)
	}
	if got := memlimit.GOPBudget(n.memLimit); got != 30<<20 {
		t.Errorf("GOP budget %d, want a tenth of the limit", got)
	}
	const want = `
# HELP streamgrid_node_memory_limit_bytes The node's memory limit (node.memory_limit, or 80 % of the cgroup limit); 0: none.
# TYPE streamgrid_node_memory_limit_bytes gauge
streamgrid_node_memory_limit_bytes{node="n1",role="run"} 3.145728e+08
`
	if err := testutil.GatherAndCompare(n.metrics, strings.NewReader(want), "streamgrid_node_memory_limit_bytes"); err != nil {
		t.Error(err)
	}
}
