package node

import (
	"os"
	"runtime/debug"
	"time"

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

// startMemoryWatch keeps the node within its limit and gives memory back
// when it goes quiet (memlimit.Watcher): under pressure the cache sheds its
// least recently used objects first; a node whose load has ended collects
// and returns its freed pages within a minute instead of holding them until
// the runtime's next periodic collection. It is the last start step, so
// every part it sheds from runs.
func (n *Node) startMemoryWatch() error {
	w := &memlimit.Watcher{
		Limit: n.memLimit.Bytes,
		OnTrim: func(before, after memlimit.Heap) {
			n.m.memoryTrims.Inc()
			n.Log.Debug("memory: quiet node trimmed its heap",
				"heap_before", before.Objects, "heap_after", after.Objects, "live", after.Live)
		},
	}
	if n.cache != nil {
		cache := n.cache
		var warned time.Time // Shed runs on the watcher's goroutine only
		w.Shed = func(b int64) int64 {
			freed := cache.Shed(b)
			// Under lasting pressure this runs every period: every byte is
			// counted (streamgrid_cache_shed_bytes_total), the log says it
			// at most once a minute.
			if now := time.Now(); now.Sub(warned) >= time.Minute {
				warned = now
				n.Log.Warn("memory: near the node's limit; cache objects shed",
					"limit", n.memLimit.Bytes, "asked", b, "freed", freed)
			}
			return freed
		}
	}
	n.bgWG.Add(1)
	go func() {
		defer n.bgWG.Done()
		w.Run(n.bgCtx)
	}()
	return nil
}
