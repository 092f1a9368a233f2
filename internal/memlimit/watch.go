package memlimit

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Heap is what the watcher reads of the Go heap (runtime/metrics).
type Heap struct {
	// Allocs is the bytes allocated since the process started.
	Allocs uint64
	// Objects is the heap memory occupied by objects, live or not yet
	// collected.
	Objects uint64
	// Live is the heap the last garbage collection found reachable.
	Live uint64
}

// heapSamples are the runtime/metrics names ReadHeap reads, in Heap's order.
var heapSamples = []string{
	"/gc/heap/allocs:bytes",
	"/memory/classes/heap/objects:bytes",
	"/gc/heap/live:bytes",
}

// ReadHeap reads the Go heap's figures; it costs a few microseconds and
// stops nothing.
func ReadHeap() Heap {
	s := make([]metrics.Sample, len(heapSamples))
	for i, name := range heapSamples {
		s[i].Name = name
	}
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	return Heap{Allocs: v(0), Objects: v(1), Live: v(2)}
}

// Watcher keeps a node's memory to its limit and gives it back when the
// node goes quiet. Every Period it reads the heap (Read) and:
//
//   - pressure: when the live heap passes PressureShare of the limit, it
//     asks Shed to drop that much above ReliefShare of the limit from what
//     can be dropped without harm (the HLS cache's least recently used
//     objects; a viewer asking for one again is served from the origin).
//     The Go runtime's soft limit alone cannot do that: it collects harder,
//     but the cache's objects are live. So a node under pressure sheds cache
//     objects long before the kernel's OOM killer would act.
//   - quiet: when fewer than QuietBytes were allocated during the last
//     period, it runs Trim (two collections, the second returning freed
//     pages to the operating system), at most once per MinInterval. From
//     the fourth trim of a quiet spell on (what an ended load leaves has
//     been collected by then: the cache's objects leave within their
//     availability window, streams within their idle timeout), a trim that
//     freed less than MinGarbage doubles the wait for the next, up to
//     MaxInterval; a busy period resets it. Go collects an idle heap
//     only every two minutes and returns freed pages gradually, and what an
//     ended load leaves (the cache's expired objects, closed streams) is
//     garbage only the next collection can see; sync.Pools (the bus
//     server's buffers, the metrics handler's gzip writers) empty only at
//     the second collection after their last use. A node whose load has
//     ended is thus back near a fresh node's heap within a minute, and an
//     idle one collects at most every MaxInterval.
//
// A busy node allocates far more than QuietBytes a period and is left to
// the runtime's own collector, so the trim costs nothing under load.
type Watcher struct {
	Limit int64 // the node's limit in bytes; 0: no pressure handling

	Period        time.Duration // how often it reads the heap (default 5 s)
	PressureShare float64       // default 0.9
	ReliefShare   float64       // default 0.8
	QuietBytes    uint64        // default 4 MiB
	MinGarbage    uint64        // default 8 MiB
	MinInterval   time.Duration // default 30 s
	MaxInterval   time.Duration // default 8 min

	// Shed, if set, drops up to n bytes of cache and returns what it dropped.
	Shed func(n int64) int64
	// OnTrim, if set, is told of each trim: the heap before and after.
	OnTrim func(before, after Heap)
	// Read and Trim default to ReadHeap and a double collection with
	// debug.FreeOSMemory; tests replace them.
	Read func() Heap
	Trim func()

	prev     Heap
	lastTrim time.Time
	wait     time.Duration // before the next trim
	spell    int           // trims since the node was last busy
	started  bool
}

func (w *Watcher) defaults() {
	if w.Period <= 0 {
		w.Period = 5 * time.Second
	}
	if w.PressureShare <= 0 {
		w.PressureShare = 0.9
	}
	if w.ReliefShare <= 0 {
		w.ReliefShare = 0.8
	}
	if w.QuietBytes == 0 {
		w.QuietBytes = 4 << 20
	}
	if w.MinGarbage == 0 {
		w.MinGarbage = 8 << 20
	}
	if w.MinInterval <= 0 {
		w.MinInterval = 30 * time.Second
	}
	if w.MaxInterval < w.MinInterval {
		w.MaxInterval = max(8*time.Minute, w.MinInterval)
	}
	if w.Read == nil {
		w.Read = ReadHeap
	}
	if w.Trim == nil {
		w.Trim = func() {
			runtime.GC() // empties the pools' primary caches into their victims
			debug.FreeOSMemory()
		}
	}
}

// quietSpellTrims is how many trims of a quiet spell come every MinInterval
// whatever they free.
const quietSpellTrims = 4

// Run watches until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	w.defaults()
	t := time.NewTicker(w.Period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			w.Step(now)
		}
	}
}

// Step is one look at the heap at now; Run calls it every Period. The first
// call only takes the baseline.
func (w *Watcher) Step(now time.Time) {
	w.defaults()
	h := w.Read()
	prev, first := w.prev, !w.started
	w.prev, w.started = h, true
	if w.Limit > 0 && w.Shed != nil && float64(h.Live) > w.PressureShare*float64(w.Limit) {
		w.Shed(int64(h.Live) - int64(w.ReliefShare*float64(w.Limit)))
	}
	if first || h.Allocs-prev.Allocs >= w.QuietBytes {
		w.wait, w.spell = w.MinInterval, 0 // busy: the next quiet period trims soon
		return
	}
	if !w.lastTrim.IsZero() && now.Sub(w.lastTrim) < w.wait {
		return
	}
	w.Trim()
	w.lastTrim = now
	after := w.Read()
	w.prev = after
	w.spell++
	switch {
	case w.spell < quietSpellTrims || h.Objects >= after.Objects+w.MinGarbage:
		w.wait = w.MinInterval
	default:
		w.wait = min(2*max(w.wait, w.MinInterval), w.MaxInterval)
	}
	if w.OnTrim != nil {
		w.OnTrim(h, after)
	}
}
