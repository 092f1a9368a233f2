//go:build linux

package hlscache

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// memBodySupported: memfds and sendfile(2) are available.
const memBodySupported = true

// newMemBody copies body into a new sealed memfd mapped read-only.
func newMemBody(body []byte) (*memBody, error) {
	fd, err := unix.MemfdCreate("hlscache-body", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	m, err := fillMemBody(fd, body)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return m, nil
}

func fillMemBody(fd int, body []byte) (*memBody, error) {
	for off := 0; off < len(body); {
		n, err := unix.Pwrite(fd, body[off:], int64(off))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("memfd write: %w", err)
		}
		off += n
	}
	// Sealed: nothing can change, grow or shrink it (a shrunk file would
	// fault its mapping's readers).
	seals := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		return nil, fmt.Errorf("memfd seal: %w", err)
	}
	data, err := unix.Mmap(fd, 0, len(body), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("memfd mmap: %w", err)
	}
	return &memBody{fd: fd, data: data}, nil
}

// free unmaps and closes; only release calls it, at the last reference.
func (m *memBody) free() {
	_ = unix.Munmap(m.data)
	_ = unix.Close(m.fd)
	m.data = nil
}

// memfdLimit is how many memfds a cache may hold: a quarter of the open-file
// limit (Go raises the soft limit to the hard one at start), leaving the
// rest to viewers' connections and everything else, and a quarter of the
// process's memory mappings (vm.max_map_count; each body is one). Beyond
// it bodies stay on the heap. (A 256 MiB cache of 1 s 720p segments and
// their parts holds a few thousand objects.)
func memfdLimit() int64 {
	limit := int64(1 << 16)
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil && rl.Cur != unix.RLIM_INFINITY {
		limit = int64(rl.Cur / 4)
	}
	if b, err := os.ReadFile("/proc/sys/vm/max_map_count"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			limit = min(limit, n/4)
		}
	}
	return limit
}
