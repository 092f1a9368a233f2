package loadtest

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The kill's trace: from the kill until traceFor after it, the simulated
// nodes' debug records that concern the killed origins' streams (the
// claimer's "claim scheduled", "claim started", the owner record written)
// and their node-wide ones ("liveness changed", "owner partitions joined"),
// kept with their time from the kill, so that the report can show what
// happened to the orphans owned again last (SlowReown.Trace). Before the
// kill, debug records are not even built (Enabled says no).

// traceFor is how long after the kill the trace is kept.
const traceFor = 20 * time.Second

// Bounds of what the trace keeps.
const (
	tracePerPath = 32
	tracePerNode = 64
)

// TraceEvent is one debug record of the trace: when (ms from the kill),
// which node logged it, its message and its other attributes.
type TraceEvent struct {
	MS    float64 `json:"ms"`
	Node  string  `json:"node"`
	Msg   string  `json:"msg"`
	Attrs string  `json:"attrs,omitempty"`
}

// killTrace collects the trace; its handlers pass every record on.
type killTrace struct {
	on atomic.Bool

	mu     sync.Mutex
	at     time.Time
	until  time.Time
	paths  map[string][]TraceEvent // the orphans'
	nodes  map[string][]TraceEvent // node-wide records
	missed int                     // records dropped by the bounds
}

func newKillTrace() *killTrace {
	return &killTrace{paths: map[string][]TraceEvent{}, nodes: map[string][]TraceEvent{}}
}

// start turns the trace on at the kill for the orphans' paths.
func (t *killTrace) start(at time.Time, orphans []string) {
	t.mu.Lock()
	t.at, t.until = at, at.Add(traceFor)
	for _, p := range orphans {
		t.paths[p] = nil
	}
	t.mu.Unlock()
	t.on.Store(true)
	time.AfterFunc(traceFor, func() { t.on.Store(false) })
}

// of returns path's events, and the node-wide events of node.
func (t *killTrace) of(path, node string) (events, nodeEvents []TraceEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]TraceEvent(nil), t.paths[path]...), append([]TraceEvent(nil), t.nodes[node]...)
}

func (t *killTrace) add(node, stream string, r slog.Record) {
	var b strings.Builder
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "node":
			node = a.Value.String()
		case "stream":
			stream = a.Value.String()
		default:
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(a.Key)
			b.WriteByte('=')
			b.WriteString(a.Value.String())
		}
		return true
	})
	t.mu.Lock()
	defer t.mu.Unlock()
	if r.Time.After(t.until) {
		return
	}
	ev := TraceEvent{MS: float64(r.Time.Sub(t.at).Microseconds()) / 1000, Node: node, Msg: r.Message, Attrs: b.String()}
	if stream != "" {
		evs, ok := t.paths[stream]
		switch {
		case !ok:
		case len(evs) < tracePerPath:
			t.paths[stream] = append(evs, ev)
		default:
			t.missed++
		}
		return
	}
	if evs := t.nodes[node]; len(evs) < tracePerNode {
		t.nodes[node] = append(evs, ev)
	} else {
		t.missed++
	}
}

// traceHandler passes records on to next and, while the trace is on, hands
// the debug ones to it; node and stream are attributes its logger was
// given (slog.Logger.With).
type traceHandler struct {
	next         slog.Handler
	t            *killTrace
	node, stream string
}

func (h *traceHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return (l >= slog.LevelDebug && h.t.on.Load()) || h.next.Enabled(ctx, l)
}

func (h *traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelInfo && h.t.on.Load() {
		h.t.add(h.node, h.stream, r)
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.next = h.next.WithAttrs(as)
	for _, a := range as {
		switch a.Key {
		case "node":
			n.node = a.Value.String()
		case "stream":
			n.stream = a.Value.String()
		}
	}
	return &n
}

func (h *traceHandler) WithGroup(name string) slog.Handler {
	n := *h
	n.next = h.next.WithGroup(name)
	return &n
}
