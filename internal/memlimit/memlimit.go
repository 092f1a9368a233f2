// Package memlimit works out a node's memory limit (node.memory_limit, or a
// share of the container's cgroup limit), applies it as Go's soft memory
// limit and derives the share the HLS cache's budget may take of it.
package memlimit

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

const (
	// CgroupShare is the part of a cgroup's limit taken as the node's limit
	// when node.memory_limit is 0: the rest is headroom for what the Go
	// runtime does not count (stacks of cgo threads, the page cache charged
	// to the container, a child ffmpeg) before the kernel's OOM killer.
	CgroupShare = 0.8
	// The limit's shares: the HLS cache's LRU (CacheShare), the origin's
	// segment windows (OriginShare) and the edge's GOP caches (GOPShare).
	// The tenth left is for the bus, connections and the garbage the
	// collector has not yet returned. Under pressure the cache sheds first
	// (Watcher): its objects cost an upstream fetch when gone, a window's or
	// a GOP's cost a viewer's or an origin's media.
	//
	// CacheShare is the most of the limit the HLS cache's LRU may hold.
	CacheShare = 0.5
	// OriginShare is the most the origin's segment windows may hold: past
	// it the origin claims no new stream.
	OriginShare = 0.3
	// GOPShare is the most of the limit the edge's GOP caches (the last GOP
	// of each stream) may hold together.
	GOPShare = 0.1
	// Off, as node.memory_limit, sets no limit even inside a cgroup.
	Off = -1
)

// Root is where the cgroup file system is mounted.
const Root = "/sys/fs/cgroup"

// Limit is a resolved memory limit: Bytes 0 means none.
type Limit struct {
	Bytes  int64
	Source string // "node.memory_limit", "cgroup memory.max", "cgroup memory.limit_in_bytes", "off", "none"
}

// Resolve turns the configured node.memory_limit into the node's limit:
// a positive value as it is, Off as none, 0 as CgroupShare of the limit of
// the cgroup found under root (none outside a limited cgroup).
func Resolve(configured int64, root string) (Limit, error) {
	switch {
	case configured > 0:
		return Limit{Bytes: configured, Source: "node.memory_limit"}, nil
	case configured == Off:
		return Limit{Source: "off"}, nil
	case configured < 0:
		return Limit{}, fmt.Errorf("node.memory_limit: must be 0 (from the cgroup), -1 (off) or a byte count, got %d", configured)
	}
	n, file, err := CgroupLimit(root)
	if err != nil || n <= 0 {
		return Limit{Source: "none"}, err
	}
	return Limit{Bytes: int64(float64(n) * CgroupShare), Source: "cgroup " + file}, nil
}

// CgroupLimit reads the memory limit of the cgroup mounted at root: v2's
// memory.max, else v1's memory/memory.limit_in_bytes. 0 when there is none
// ("max", v1's near-MaxInt64 "unlimited", or no such file).
func CgroupLimit(root string) (n int64, file string, err error) {
	for _, f := range []string{"memory.max", filepath.Join("memory", "memory.limit_in_bytes")} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, "", err
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, filepath.Base(f), nil
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, "", fmt.Errorf("%s: %q is no byte count", f, s)
		}
		// cgroup v1 reports "no limit" as the largest page-aligned int64.
		if v >= math.MaxInt64/2 {
			return 0, filepath.Base(f), nil
		}
		return v, filepath.Base(f), nil
	}
	return 0, "", nil
}

// Apply sets Go's soft memory limit to l unless the GOMEMLIMIT environment
// variable (getenv) already set one, which wins. It reports whether it set it.
func Apply(l Limit, getenv func(string) string) bool {
	if l.Bytes <= 0 || getenv("GOMEMLIMIT") != "" {
		return false
	}
	debug.SetMemoryLimit(l.Bytes)
	return true
}

// CacheBudget is the HLS cache's LRU budget: maxBytes (cache.max_bytes),
// capped at CacheShare of the limit when there is one, and never below
// 1 MiB (the cache's minimum).
func CacheBudget(maxBytes int64, l Limit) int64 {
	if l.Bytes <= 0 {
		return maxBytes
	}
	return max(min(maxBytes, int64(float64(l.Bytes)*CacheShare)), 1<<20)
}

// OriginBudget is the bound of the origin's segment windows: OriginShare of
// the limit, 0 (none) without a limit.
func OriginBudget(l Limit) int64 {
	if l.Bytes <= 0 {
		return 0
	}
	return int64(float64(l.Bytes) * OriginShare)
}

// GOPBudget is the bound of the edge's GOP caches together: GOPShare of the
// limit, 0 (none beyond each stream's 16 MiB) without a limit.
func GOPBudget(l Limit) int64 {
	if l.Bytes <= 0 {
		return 0
	}
	return int64(float64(l.Bytes) * GOPShare)
}
