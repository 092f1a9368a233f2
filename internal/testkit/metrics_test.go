package testkit

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetricSum(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "c"}, []string{"stream", "reason"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g", Help: "g", ConstLabels: prometheus.Labels{"node": "n1"}})
	reg.MustRegister(c, g)
	c.WithLabelValues("a", "x").Add(1)
	c.WithLabelValues("a", "y").Add(2)
	c.WithLabelValues("b", "x").Add(4)
	g.Set(7)
	for _, tc := range []struct {
		name   string
		family string
		labels map[string]string
		want   float64
	}{
		{"every series", "c_total", nil, 7},
		{"one label", "c_total", map[string]string{"stream": "a"}, 3},
		{"two labels", "c_total", map[string]string{"stream": "b", "reason": "x"}, 4},
		{"no such series", "c_total", map[string]string{"stream": "c"}, 0},
		{"no such label", "c_total", map[string]string{"rendition": "144p"}, 0},
		{"gauge", "g", map[string]string{"node": "n1"}, 7},
		{"no such family", "nope", nil, 0},
	} {
		if got := MetricSum(t, reg, tc.family, tc.labels); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
