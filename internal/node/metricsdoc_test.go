package node

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestMetricsDocumented scrapes a node with a live, watched stream and
// checks that every streamgrid metric it exports is in docs/metrics.md, and
// that the Grafana dashboard uses only documented metrics.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	dash, err := os.ReadFile("../../deploy/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	documented := func(name string) bool { return strings.Contains(string(doc), "`"+name+"`") }
	family := regexp.MustCompile(`streamgrid_[a-z_]+`)
	for _, name := range family.FindAllString(string(dash), -1) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !documented(base) {
			t.Errorf("the dashboard uses %s, which docs/metrics.md does not list", name)
		}
	}

	n := startNode(t, allInOneConfig(t), RoleRun)
	a := n.Addrs()
	startCamera(t, "rtsp://"+a.RTSP+"/live/doc")
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if code, _ := httpGet(t, "http://"+a.Cache+"/live/doc/index.m3u8"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("live/doc not playable")
		}
	}
	_, body := httpGet(t, "http://"+a.API+"/metrics")
	seen := 0
	for _, line := range strings.Split(body, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "#" || f[1] != "TYPE" || !strings.HasPrefix(f[2], "streamgrid_") {
			continue
		}
		seen++
		if !documented(f[2]) {
			t.Errorf("%s is exported but not in docs/metrics.md", f[2])
		}
	}
	if seen < 40 {
		t.Fatalf("only %d streamgrid metrics exported", seen)
	}
	for _, name := range []string{"streamgrid_edge_stream_received_bytes_total", "streamgrid_cache_stream_viewers", "streamgrid_cache_upstream_fetch_seconds"} {
		if !strings.Contains(body, name+"{") && !strings.Contains(body, name+"_bucket{") {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
