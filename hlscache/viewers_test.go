package hlscache

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestViewerTracker(t *testing.T) {
	t.Parallel()
	var gone []string
	v := newViewerTracker(func(s string) { gone = append(gone, s) })
	t0 := time.Unix(1000, 0)
	for _, r := range []struct {
		stream, addr, ua string
		playlist         bool
		at               time.Duration
	}{
		{"live/a", "10.0.0.1:5000", "chrome", true, 0},
		{"live/a", "10.0.0.1:5001", "chrome", true, time.Second},  // same client, new port
		{"live/a", "10.0.0.1:5002", "vlc", true, time.Second},     // same address, another player
		{"live/a", "10.0.0.2:5000", "chrome", false, time.Second}, // a segment only: not counted as watching
		{"live/b", "10.0.0.3:1", "x", true, 2 * time.Second},
		{"live/c", "bad-address", "x", true, 0},
	} {
		v.seen(r.stream, r.addr, r.ua, r.playlist, t0.Add(r.at))
	}
	st := v.stats(t0.Add(2 * time.Second))
	if st["live/a"] != (ViewerStats{Viewers: 2, Requests: 4}) || st["live/b"].Viewers != 1 || st["live/c"].Viewers != 1 {
		t.Fatalf("stats: %+v", st)
	}
	// live/c's client is silent past the window: its viewer goes, then the stream.
	v.prune(t0.Add(viewerWindow + 500*time.Millisecond))
	st = v.stats(t0.Add(viewerWindow + 500*time.Millisecond))
	if _, ok := st["live/c"]; ok || st["live/a"].Viewers != 2 || len(gone) != 1 || gone[0] != "live/c" {
		t.Fatalf("after prune: %+v, gone %v", st, gone)
	}

	// The per-stream series follow the table.
	reg := prometheus.NewRegistry()
	reg.MustRegister(&streamCollector{node: "n1", viewers: v, now: func() time.Time { return t0.Add(viewerWindow) }})
	series := func() map[string]float64 {
		out := map[string]float64{}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				stream := ""
				for _, l := range m.GetLabel() {
					if l.GetName() == "stream" {
						stream = l.GetValue()
					}
				}
				val := m.GetGauge().GetValue() + m.GetCounter().GetValue()
				out[mf.GetName()+" "+stream] = val
			}
		}
		return out
	}
	got := series()
	if got["streamgrid_cache_stream_requests_total live/a"] != 4 || got["streamgrid_cache_stream_viewers live/a"] != 2 ||
		got["streamgrid_cache_stream_viewers live/b"] != 1 || len(got) != 4 {
		t.Fatalf("series: %v", got)
	}
	v.prune(t0.Add(time.Hour))
	if got := series(); len(got) != 0 {
		t.Fatalf("series after every stream went: %v", got)
	}
}
