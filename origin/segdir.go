package origin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Segments on disk. With Origin.SegmentDir set, each muxer keeps its
// finished segments (and their parts) as files in a folder of its own
// (gohlslib's Muxer.Directory) instead of in the Go heap: the heap then holds
// only the segment being written, and what viewers may still ask for lives
// in the page cache, which the kernel can write back and reclaim under
// pressure instead of killing the process. Files are removed when the muxer
// drops their segments, usually before the kernel writes them back at all:
// gohlslib's muxer writes a file per segment, the builtin one appends up to
// 10 s of a stream's segments to one file (internal/llhls segFile).
//
// Layout: SegmentDir/<node>-<pid>-<random>/<muxer>-<random>/. The process
// folder is removed at Close; the folders of processes that are gone (a
// crash, a container restarted as the same pid) are removed at Start.

// segmentRoot creates this process's folder under dir and removes the
// folders earlier processes of this node left behind.
func segmentRoot(dir, node string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("segment folder: %w", err)
	}
	prefix := safeName(node) + "-"
	ownRoots.Lock()
	defer ownRoots.Unlock()
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			if e.IsDir() && strings.HasPrefix(e.Name(), prefix) && leftBehind(strings.TrimPrefix(e.Name(), prefix)) && !ownRoots.m[p] {
				_ = os.RemoveAll(p)
			}
		}
	}
	root, err := os.MkdirTemp(dir, prefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", fmt.Errorf("segment folder: %w", err)
	}
	if ownRoots.m == nil {
		ownRoots.m = map[string]bool{}
	}
	ownRoots.m[root] = true
	return root, nil
}

// ownRoots are the process folders this process made and has not removed:
// another origin of the same node name in this process (tests, a reload)
// must not take them for a previous process's.
var ownRoots struct {
	sync.Mutex
	m map[string]bool
}

// leftBehind reports whether a process folder's "<pid>-<random>" names a
// process that is gone, or this process (which has not made it: a
// container restarted under the same pid).
func leftBehind(rest string) bool {
	p, _, ok := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(p)
	if !ok || err != nil || pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return true
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// safeName keeps a stream path or node name usable as a folder name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_':
			return r
		}
		return '_'
	}, s)
}

// removeSegments removes this process's segment folder (every muxer is
// closed by then).
func (o *Origin) removeSegments() {
	if o.segRoot != "" {
		if err := os.RemoveAll(o.segRoot); err != nil {
			o.Log.Warn("removing the segment folder failed", "dir", o.segRoot, "err", err)
		}
		ownRoots.Lock()
		delete(ownRoots.m, o.segRoot)
		ownRoots.Unlock()
	}
}

// segmentDir gives a new muxer of stream path its own folder; "" keeps its
// segments in memory. builtin: the muxer is internal/llhls's.
func (o *Origin) segmentDir(path string, builtin bool) (string, error) {
	if o.segRoot == "" || o.SegmentAuto && !builtin {
		return "", nil
	}
	dir, err := os.MkdirTemp(o.segRoot, safeName(path)+"-")
	if err != nil {
		return "", fmt.Errorf("segment folder: %w", err)
	}
	return dir, nil
}

// closeMuxer closes an instance's muxer and removes its segment folder.
func (i *instance) closeMuxer() {
	i.muxer.Close()
	if i.dir != "" {
		if err := os.RemoveAll(i.dir); err != nil {
			i.s.log.Warn("removing a muxer's segment folder failed", "dir", i.dir, "err", err)
		}
	}
}
