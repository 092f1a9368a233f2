package bus

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestServerCollector: the embedded server's monitoring figures come out as
// Prometheus series that follow what clients do.
func TestServerCollector(t *testing.T) {
	s, nc := startBus(t, 1<<20)
	startRegistry(t, nc, 2*time.Second) // JetStream API traffic
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector(prometheus.Labels{"node": "n1", "role": "bus"}))

	sub, err := nc.SubscribeSync("sg.test")
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(strings.Repeat("x", 1000))
	for range 10 {
		if err := nc.Publish("sg.test", payload); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		if _, err := sub.NextMsg(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		if m.GetLabel()[0].GetValue() != "n1" {
			t.Errorf("%s: labels %v", mf.GetName(), m.GetLabel())
		}
		if c := m.GetCounter(); c != nil {
			got[mf.GetName()] = c.GetValue()
		} else {
			got[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	if len(got) != len(natsSeries) {
		t.Errorf("%d series, want %d: %v", len(got), len(natsSeries), got)
	}
	for name, min := range map[string]float64{
		"streamgrid_bus_connections":                  1,
		"streamgrid_bus_subscriptions":                1,
		"streamgrid_bus_received_messages_total":      10,
		"streamgrid_bus_received_bytes_total":         10000,
		"streamgrid_bus_sent_messages_total":          10,
		"streamgrid_bus_jetstream_api_requests_total": 1,
	} {
		if got[name] < min {
			t.Errorf("%s = %v, want at least %v", name, got[name], min)
		}
	}
	if n := testutil.CollectAndCount(s.Collector(nil)); n != len(natsSeries) {
		t.Errorf("unlabelled collector: %d series", n)
	}
	s.Close()
	if n := testutil.CollectAndCount(s.Collector(nil)); n != 0 {
		t.Errorf("a stopped server exports %d series", n)
	}
}
