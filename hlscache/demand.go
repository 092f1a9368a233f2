package hlscache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// On-demand cameras. An edge pulls such a camera only while viewers ask for
// it. A request for a stream the cache has no route for asks the cluster
// (Demander) whether an edge lists the path as an on-demand source; when one
// does, the request waits (up to DemandWait) for the stream to become
// playable instead of answering 404. While viewers keep asking for a stream
// that turned out to be on demand, the cache repeats the demand at most once
// per demandRepeat, so the edge keeps pulling; the edge stops close_after
// after the last one. Whether a routed stream is on demand is asked once and
// re-checked every demandRecheck, so ordinary streams cost one no-responders
// round trip per recheck, off the request path.

// Demander signals viewers' demand for a stream path to the edges
// (bus.Demander). Demand reports whether an edge lists the path as an
// on-demand source.
type Demander interface {
	Demand(ctx context.Context, path string) (bool, error)
}

const (
	// demandRepeat is the most often a cache signals demand for one path.
	demandRepeat = time.Second
	// demandRecheck is how often a routed stream that is not on demand is asked about again.
	demandRecheck = 30 * time.Second
	// demandAskTimeout bounds one demand round trip.
	demandAskTimeout = 2 * time.Second
	// maxDemandEntries bounds the table against requests for random paths.
	maxDemandEntries = 4096
)

// demandEntry is what the cache knows of one path's demand.
type demandEntry struct {
	known    atomic.Bool // an ask was answered
	onDemand atomic.Bool
	last     atomic.Int64 // unix ns of the last ask
	asking   atomic.Bool
}

// demandTable rate-limits and remembers demand signals per path.
type demandTable struct {
	d     Demander
	ctx   context.Context
	spawn func(func()) bool // runs f on a goroutine the cache waits for; false when closing
	now   func() time.Time

	paths sync.Map // path → *demandEntry
	n     atomic.Int64

	signals *prometheus.CounterVec // result: on_demand, not_on_demand, error
	waits   *prometheus.CounterVec // result: ready, timeout, gone
}

func newDemandTable(d Demander, ctx context.Context, node string, spawn func(func()) bool) *demandTable {
	o := newMetricOpts(node)
	return &demandTable{
		d: d, ctx: ctx, spawn: spawn, now: time.Now,
		signals: o.counterVec("streamgrid_cache_demand_signals_total",
			"Demand messages sent for viewer requests, by answer (on_demand: an edge pulls the path on demand; not_on_demand; error).", "result"),
		waits: o.counterVec("streamgrid_cache_demand_waits_total",
			"Viewer requests that waited for an on-demand camera to start, by how the wait ended (ready, timeout, gone).", "result"),
	}
}

func (t *demandTable) collectors() []prometheus.Collector {
	return []prometheus.Collector{t.signals, t.waits}
}

func (t *demandTable) entry(path string) *demandEntry {
	if e, ok := t.paths.Load(path); ok {
		return e.(*demandEntry)
	}
	if t.n.Load() >= maxDemandEntries {
		t.prune()
	}
	e, loaded := t.paths.LoadOrStore(path, &demandEntry{})
	if !loaded {
		t.n.Add(1)
	}
	return e.(*demandEntry)
}

// prune forgets the paths not asked about for a while.
func (t *demandTable) prune() {
	old := t.now().Add(-2 * demandRecheck).UnixNano()
	t.paths.Range(func(k, v any) bool {
		if v.(*demandEntry).last.Load() < old {
			t.paths.Delete(k)
			t.n.Add(-1)
		}
		return true
	})
}

// ask signals demand and records the answer.
func (t *demandTable) ask(ctx context.Context, path string, e *demandEntry) bool {
	ctx, cancel := context.WithTimeout(ctx, demandAskTimeout)
	defer cancel()
	ok, err := t.d.Demand(ctx, path)
	switch {
	case err != nil:
		t.signals.WithLabelValues("error").Inc()
		return e.onDemand.Load()
	case ok:
		t.signals.WithLabelValues("on_demand").Inc()
	default:
		t.signals.WithLabelValues("not_on_demand").Inc()
	}
	e.onDemand.Store(ok)
	e.known.Store(true)
	return ok
}

// unknown is called for a request of a path without a route: it reports
// whether the path is an on-demand camera, now asked to start. It asks at
// most once per demandRepeat per path; in between it answers from the last
// answer.
func (t *demandTable) unknown(ctx context.Context, path string) bool {
	e := t.entry(path)
	now := t.now().UnixNano()
	if now-e.last.Load() < int64(demandRepeat) && e.known.Load() {
		return e.onDemand.Load()
	}
	// Requests arriving together before the first answer all ask: rare,
	// and none of them answers 404 for a camera that is merely starting.
	e.last.Store(now)
	return t.ask(ctx, path, e)
}

// seen is called for a request of a routed stream: it repeats the demand of
// an on-demand stream (at most once per demandRepeat) and finds out, off the
// request path, whether a stream is on demand.
func (t *demandTable) seen(path string) {
	e := t.entry(path)
	every := int64(demandRecheck)
	if e.onDemand.Load() {
		every = int64(demandRepeat)
	}
	now := t.now().UnixNano()
	if now-e.last.Load() < every || !e.asking.CompareAndSwap(false, true) {
		return
	}
	e.last.Store(now)
	if !t.spawn(func() {
		defer e.asking.Store(false)
		t.ask(t.ctx, path, e)
	}) {
		e.asking.Store(false)
	}
}

// waitDemanded holds a request for an on-demand stream that has no route
// yet: it waits for a routing change until deadline. It reports whether a
// change came.
func (c *Cache) waitDemanded(ctx context.Context, changed <-chan struct{}, deadline time.Time) bool {
	if c.waitRoute(ctx, changed, deadline) {
		return true
	}
	if ctx.Err() != nil {
		c.demand.waits.WithLabelValues("gone").Inc()
	} else {
		c.demand.waits.WithLabelValues("timeout").Inc()
	}
	return false
}
