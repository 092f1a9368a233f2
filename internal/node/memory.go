package node

import (
	"os"
	"runtime/debug"

	"github.com/streamgrid/streamgrid/internal/memlimit"
)

// startMemoryLimit resolves node.memory_limit (a byte count, or a share of
// the container's cgroup limit), sets it as Go's soft memory limit unless
// GOMEMLIMIT is set, and exports it. The cache's budget is capped at a share
// of it (memlimit.CacheBudget) where the cache starts and on reload.
func (n *Node) startMemoryLimit() {
	l, err := memlimit.Resolve(n.Config.Node.MemoryLimit, memlimit.Root)
	if err != nil {
		// An unreadable cgroup file is no reason not to run: the node
		// runs without a limit, and says so.
		n.Log.Warn("memory limit: cgroup limit unreadable; running without one", "err", err)
	}
	if l.Bytes == 0 && n.Config.Node.MemoryLimit == 0 && os.Getenv("GOMEMLIMIT") != "" {
		// The operator gave the runtime a limit: the cache's budget follows it.
		l = memlimit.Limit{Bytes: debug.SetMemoryLimit(-1), Source: "GOMEMLIMIT"}
	}
	n.memLimit = l
	set := memlimit.Apply(l, os.Getenv)
	switch {
	case l.Bytes > 0 && !set:
		n.Log.Info("memory limit: GOMEMLIMIT is set and wins for the Go runtime; the cache's budget still follows node.memory_limit",
			"memory_limit", l.Bytes, "from", l.Source, "GOMEMLIMIT", os.Getenv("GOMEMLIMIT"))
	case l.Bytes > 0:
		n.Log.Info("memory limit set", "bytes", l.Bytes, "from", l.Source,
			"cache_budget", memlimit.CacheBudget(n.Config.Cache.MaxBytes, l))
	}
	n.m.memoryLimit.Set(float64(l.Bytes))
}
