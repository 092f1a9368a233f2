package origin

import (
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/internal/llhls"
)

// What the origin's windows hold in memory. gohlslib keeps a muxer's segments
// (and their parts) in memory, unless they are on disk (segdir.go), until it
// drops them from its own longer window, so
// what a muxer holds is about the bytes fed to it over that window's
// duration. heldBytes counts them per second; Origin.windowBytes adds them
// up for the memory budget (MemoryBudget) and the
// streamgrid_origin_window_bytes gauge.

// heldSlots bounds the window heldBytes can measure, in seconds.
const heldSlots = 64

// heldOverhead is what gohlslib's buffers hold per byte of media fed: its
// parts are marshalled into buffers grown by doubling. Measured in the
// 30-minute soak (docs/benchmarks.md): 34.7 MiB of muxer buffers in the
// heap profile for 23 MiB of media in the windows. The builtin muxer
// (internal/llhls) writes each part into a slice of its exact size: 1.
const heldOverhead = 1.5

// heldBytes counts the bytes fed to one muxer in each of the last heldSlots
// seconds. Safe for concurrent use: the instance's feeder adds, the budget
// and the metrics read.
type heldBytes struct {
	mu   sync.Mutex
	last int64 // the second of the newest add
	slot [heldSlots]struct{ sec, n int64 }
}

// add counts n bytes fed at now.
func (h *heldBytes) add(now time.Time, n int) {
	sec := now.Unix()
	h.mu.Lock()
	sl := &h.slot[sec%heldSlots]
	if sl.sec != sec {
		sl.sec, sl.n = sec, 0
	}
	sl.n += int64(n)
	h.last = max(h.last, sec)
	h.mu.Unlock()
}

// sum is what was fed during the span seconds up to the newest add: the
// muxer's window when it is fed, and still what it holds when it is no
// longer fed (a retired instance keeps its segments until it is closed).
func (h *heldBytes) sum(span int64) int64 {
	span = min(max(span, 1), heldSlots)
	h.mu.Lock()
	defer h.mu.Unlock()
	var total int64
	for _, sl := range h.slot {
		if sl.sec > h.last-span && sl.sec <= h.last {
			total += sl.n
		}
	}
	return total
}

// heldSpan is how many seconds of media one of this stream's muxers holds in
// memory: the listed segments, the retained ones and the one being written;
// with its segments on disk (segdir.go) only the one being written, counted
// twice over for segments longer than their minimum (keyframes further apart).
func (s *stream) heldSpan(onDisk bool) int64 {
	segs := s.hls.SegmentCount + retainedSegments(s.hls.SegmentCount) + 1
	if onDisk {
		segs = 2
	}
	return int64(math.Ceil((time.Duration(segs) * s.hls.SegmentDuration).Seconds()))
}

// windowBytes is the media the stream's open muxers hold in memory, and
// what their buffers take for it (gohlslib's: heldOverhead times).
func (s *stream) windowBytes() (media, buffers int64) {
	inMemory, onDisk := s.heldSpan(false), s.heldSpan(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range s.instances {
		if i.closed {
			continue
		}
		span := inMemory
		if i.dir != "" {
			span = onDisk
		}
		n := i.held.sum(span)
		media += n
		if _, builtin := i.muxer.(*llhls.Muxer); builtin {
			buffers += n
		} else {
			buffers += int64(float64(n) * heldOverhead)
		}
	}
	return media, buffers
}

// windowBytes is what every stream's windows hold on this origin: media and
// the buffers holding it.
func (o *Origin) windowBytes() (media, buffers int64) {
	for _, s := range o.snapshotStreams() {
		m, b := s.windowBytes()
		media, buffers = media+m, buffers+b
	}
	return media, buffers
}

// overBudget reports whether the windows' buffers already take MemoryBudget:
// the origin then claims no new stream (another
// origin, or this one once streams end, takes it), because a window cannot
// shed what its viewers are about to ask for.
func (o *Origin) overBudget() (bool, int64) {
	if o.MemoryBudget <= 0 {
		return false, 0
	}
	_, held := o.windowBytes()
	return held >= o.MemoryBudget, held
}

// windowGauge is streamgrid_origin_window_bytes, read at scrape time.
func (o *Origin) windowGauge() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "streamgrid", Subsystem: "origin", Name: "window_bytes",
		Help:        "Media bytes the streams' segment windows hold in memory (fed to each muxer over the span it keeps there: listed, retained and current segments; only the current one with segments on disk).",
		ConstLabels: prometheus.Labels{"node": o.Node, "role": "origin"},
	}, func() float64 { media, _ := o.windowBytes(); return float64(media) })
}
