package loadtest

import (
	"context"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// What the simulated nodes did, beside the rates: the origins' own
// counters (claims, conflicts, losses) and the warnings they logged (a
// lapse of a node's own liveness is one), so that a run that churns says
// why.

// originCounterNames are the origin counters a control-plane report sums
// over every simulated origin, without the streamgrid_origin_ prefix.
var originCounterNames = []string{
	"claims_total", "claim_conflicts_total", "claim_errors_total",
	"lease_losses_total", "releases_total",
}

// sumOriginCounters reads reg (every simulated origin registers there,
// labelled by node) and sums originCounterNames over the origins.
func sumOriginCounters(reg prometheus.Gatherer) map[string]float64 {
	fams, err := reg.Gather()
	if err != nil && len(fams) == 0 {
		return nil
	}
	out := map[string]float64{}
	for _, mf := range fams {
		name, ok := strings.CutPrefix(mf.GetName(), "streamgrid_origin_")
		if !ok {
			continue
		}
		for _, want := range originCounterNames {
			if name == want {
				out[name] = sumFamily(mf.GetMetric())
			}
		}
	}
	return out
}

func sumFamily(ms []*dto.Metric) float64 {
	var s float64
	for _, m := range ms {
		s += m.GetCounter().GetValue()
	}
	return s
}

// countingHandler counts the records at Warn and above by message, and
// passes every record on to next.
type countingHandler struct {
	next slog.Handler
	c    *logCounts
}

// logCounts is what a countingHandler and the handlers derived from it count.
type logCounts struct {
	mu sync.Mutex
	n  map[string]int
	// onWarn, when set, sees every record at Warn and above (after it is
	// counted), on the logging goroutine.
	onWarn func(slog.Record)
}

func newCountingHandler(next slog.Handler) *countingHandler {
	return &countingHandler{next: next, c: &logCounts{n: map[string]int{}}}
}

func (h *countingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.c.mu.Lock()
		h.c.n[r.Message]++
		f := h.c.onWarn
		h.c.mu.Unlock()
		if f != nil {
			f(r)
		}
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &countingHandler{next: h.next.WithAttrs(as), c: h.c}
}

func (h *countingHandler) WithGroup(name string) slog.Handler {
	return &countingHandler{next: h.next.WithGroup(name), c: h.c}
}

// counts returns a copy of the counts.
func (h *countingHandler) counts() map[string]int {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	out := make(map[string]int, len(h.c.n))
	for k, v := range h.c.n {
		out[k] = v
	}
	return out
}

// lapseWarning begins the warning bus.Liveness logs when a node's own
// liveness lapsed.
const lapseWarning = "this node's liveness lapsed"

// dumpOnFirstLapse returns an onWarn hook that writes every goroutine's
// stack to path at the first lapse warning, once.
func dumpOnFirstLapse(path string, log *slog.Logger) func(slog.Record) {
	var once sync.Once
	return func(r slog.Record) {
		if !strings.HasPrefix(r.Message, lapseWarning) {
			return
		}
		once.Do(func() {
			f, err := os.Create(path)
			if err == nil {
				err = pprof.Lookup("goroutine").WriteTo(f, 2)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				// log is the handler that called us: a goroutine of its own.
				go log.Error("goroutine dump at the first lapse failed", "file", path, "err", err)
			}
		})
	}
}
