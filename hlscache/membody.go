package hlscache

import (
	"errors"
	"io"
	"sync/atomic"
)

// Segment and part bodies in memfds, served with sendfile(2).
//
// A finished segment or part of at least memBodyMin bytes that enters the
// LRU of a plain-HTTP cache (Linux) is copied into a sealed memfd of its own
// and mapped read-only; the object's body is that mapping, so every path
// that reads a body (http.ServeContent for HEAD, Range and conditional
// requests, the in-memory fallback) reads it as before, and the heap copy
// is dropped. A plain GET over a viewerConn sends the headers with
// MSG_MORE and the body with sendfile(2) from the memfd at an offset, as
// nginx sends a file with tcp_nopush: no per-request open, no copy of the
// body through user space, one TCP push (viewerconn_linux.go).
//
// Lifetime: a memBody is reference-counted. The LRU holds one reference
// while the object is stored; each answer that reads the body holds one
// (writeObject, acquire). Eviction, expiry, replacement or shedding drop the
// LRU's; the last reference unmaps and closes the memfd, so an object
// evicted while a sendfile from it is in flight keeps its fd until that
// send ends. An answer that finds the object already freed (evicted and
// every send done between its lookup and acquire) looks it up again.

// memBodyMin is the smallest body kept in a memfd: below it the syscalls
// and the page rounding cost more than the copy they save (playlists and
// most init sections stay on the heap).
const memBodyMin = 16 << 10

// memPage is the granularity of a memfd's memory.
const memPage = 4 << 10

// memBody is a body held in a sealed memfd, mapped read-only into data.
type memBody struct {
	fd    int
	data  []byte
	refs  atomic.Int32 // the LRU's and the in-flight answers'; 0: freed
	stats *memStats
}

// memStats counts a cache's live memBodies (the memory they pin, evicted
// ones still being sent included) and bounds how many fds they take.
type memStats struct {
	max     int64 // memfds at most; further bodies stay on the heap
	objects atomic.Int64
	bytes   atomic.Int64 // page-rounded
	failed  atomic.Int64 // bodies kept on the heap: limit reached or memfd error
}

// errMemBodyLimit: the cache holds its maximum of memfds.
var errMemBodyLimit = errors.New("memfd limit reached")

// memSize is the memory a body of n bytes takes in a memfd.
func memSize(n int) int64 { return (int64(n) + memPage - 1) &^ (memPage - 1) }

// acquire takes a reference for an answer; false when the body is freed.
func (m *memBody) acquire() bool {
	for {
		n := m.refs.Load()
		if n <= 0 {
			return false
		}
		if m.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a reference; the last one frees the memfd and its mapping.
func (m *memBody) release() {
	switch n := m.refs.Add(-1); {
	case n == 0:
		size := memSize(len(m.data))
		m.free()
		m.stats.objects.Add(-1)
		m.stats.bytes.Add(-size)
	case n < 0:
		panic("hlscache: memBody released more often than acquired")
	}
}

// newMemBody moves body into a memfd when s allows one more; nil when the
// body stays on the heap (max 0: the cache keeps no memfds).
func (s *memStats) newMemBody(body []byte) *memBody {
	if s == nil || s.max == 0 || len(body) < memBodyMin {
		return nil
	}
	if s.objects.Add(1) > s.max {
		s.objects.Add(-1)
		s.failed.Add(1)
		return nil
	}
	m, err := newMemBody(body)
	if err != nil {
		s.objects.Add(-1)
		s.failed.Add(1)
		return nil
	}
	m.stats = s
	m.refs.Store(1)
	s.bytes.Add(memSize(len(body)))
	return m
}

// memSource is a memBody's bytes [off, end) as an io.Reader: what a plain
// GET hands to net/http's ReadFrom, which reads the first bytes (its sniff)
// and passes the rest to the connection (viewerConn.ReadFrom), which sends
// them with sendfile.
type memSource struct {
	mem      *memBody
	off, end int
}

func (s *memSource) Read(p []byte) (int, error) {
	if s.off >= s.end {
		return 0, io.EOF
	}
	n := copy(p, s.mem.data[s.off:s.end])
	s.off += n
	return n, nil
}

// rest is what is left to send.
func (s *memSource) rest() []byte { return s.mem.data[s.off:s.end] }
