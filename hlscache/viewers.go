package hlscache

import (
	"hash/maphash"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// viewerWindow is how long a client counts as watching a stream after its
// last playlist request. Players reload a live playlist at least every
// target duration, so a few seconds of silence mean the viewer left.
const viewerWindow = 10 * time.Second

// maxClientsPerStream bounds the memory one stream's estimate may take; past
// it the count saturates.
const maxClientsPerStream = 100_000

// ViewerStats is a cache's view of one stream's audience.
type ViewerStats struct {
	// Viewers estimates the clients watching: distinct (address, User-Agent)
	// pairs that asked for one of the stream's playlists in the last 10 s.
	// Viewers behind one NAT with the same browser count once.
	Viewers int `json:"viewers"`
	// Requests counts viewer requests for the stream (every kind) since the
	// stream was first asked for here.
	Requests uint64 `json:"requests"`
}

// viewerTracker keeps, per stream, the clients seen recently and a request
// count. Streams nobody asked for within the window are forgotten (and their
// per-stream metric series removed), so its size follows the audience.
type viewerTracker struct {
	seed   maphash.Seed
	onGone func(stream string) // a stream left the table

	// mu guards the table; every request takes it shared only (a stream's
	// own counters are atomic and its clients have their own lock), so
	// viewers of different streams never wait on each other.
	mu      sync.RWMutex
	streams map[string]*streamViewers
}

type streamViewers struct {
	requests atomic.Uint64
	lastSeen atomic.Int64 // unix ns of the last request

	mu      sync.Mutex
	clients map[uint64]time.Time // hash of (address, User-Agent) → last playlist request
}

func newViewerTracker(onGone func(string)) *viewerTracker {
	return &viewerTracker{seed: maphash.MakeSeed(), onGone: onGone, streams: make(map[string]*streamViewers)}
}

// seen records a request of remoteAddr (host:port) with userAgent for
// stream; playlist requests mark the client as watching.
func (v *viewerTracker) seen(stream, remoteAddr, userAgent string, playlist bool, now time.Time) {
	var key uint64
	if playlist {
		host, _, err := net.SplitHostPort(remoteAddr)
		if err != nil {
			host = remoteAddr
		}
		var h maphash.Hash
		h.SetSeed(v.seed)
		h.WriteString(host)
		h.WriteByte(0)
		h.WriteString(userAgent)
		key = h.Sum64()
	}
	v.mu.RLock()
	s := v.streams[stream]
	v.mu.RUnlock()
	if s == nil {
		v.mu.Lock()
		if s = v.streams[stream]; s == nil {
			s = &streamViewers{clients: make(map[uint64]time.Time)}
			v.streams[stream] = s
		}
		v.mu.Unlock()
	}
	s.requests.Add(1)
	s.lastSeen.Store(now.UnixNano())
	if playlist {
		s.mu.Lock()
		if _, ok := s.clients[key]; ok || len(s.clients) < maxClientsPerStream {
			s.clients[key] = now
		}
		s.mu.Unlock()
	}
}

// prune forgets clients silent for the window, and streams with none left
// and no request within it.
func (v *viewerTracker) prune(now time.Time) {
	var gone []string
	v.mu.Lock()
	for name, s := range v.streams {
		s.mu.Lock()
		for k, at := range s.clients {
			if now.Sub(at) > viewerWindow {
				delete(s.clients, k)
			}
		}
		idle := len(s.clients) == 0
		s.mu.Unlock()
		if idle && now.Sub(time.Unix(0, s.lastSeen.Load())) > viewerWindow {
			delete(v.streams, name)
			gone = append(gone, name)
		}
	}
	v.mu.Unlock()
	if v.onGone != nil {
		for _, name := range gone {
			v.onGone(name)
		}
	}
}

// stats returns every tracked stream's audience as of now.
func (v *viewerTracker) stats(now time.Time) map[string]ViewerStats {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make(map[string]ViewerStats, len(v.streams))
	for name, s := range v.streams {
		n := 0
		s.mu.Lock()
		for _, at := range s.clients {
			if now.Sub(at) <= viewerWindow {
				n++
			}
		}
		s.mu.Unlock()
		out[name] = ViewerStats{Viewers: n, Requests: s.requests.Load()}
	}
	return out
}
