package loadtest

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

const seriesExposition = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines{node="aio",role="run"} 381
go_memstats_heap_inuse_bytes{node="aio",role="run"} 1.2582912e+08
process_open_fds{node="aio",role="run"} 97
process_resident_memory_bytes{node="aio",role="run"} 2.097152e+08
streamgrid_cache_lru_bytes{node="c1",role="cache"} 1e+06
streamgrid_cache_lru_bytes{node="c2",role="cache"} 2e+06
streamgrid_cache_lru_bytes_total_fake 7
`

// parseSeriesMetrics is scrapeSeries without the request.
func parseSeriesMetrics(r io.Reader) ([]float64, error) {
	fams, err := parseMetrics(r)
	if err != nil {
		return nil, err
	}
	return seriesValues(fams)
}

func TestParseSeriesMetrics(t *testing.T) {
	v, err := parseSeriesMetrics(strings.NewReader(seriesExposition))
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{2.097152e+08, 1.2582912e+08, 3e+06, 381, 97}
	for i := range want {
		if v[i] != want[i] {
			t.Errorf("%s = %v, want %v", seriesMetrics[i], v[i], want[i])
		}
	}
	if _, err := parseSeriesMetrics(strings.NewReader("go_goroutines 3\n")); err == nil {
		t.Error("missing metrics were not reported")
	}
}

// TestSampleMain samples a stand-in /metrics a few times and checks the
// JSON and that the plot is well-formed SVG with one polyline per series.
func TestSampleMain(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The goroutine count grows by one per scrape.
		io.WriteString(w, strings.Replace(seriesExposition, " 381\n", fmt.Sprintf(" %d\n", 381+n.Add(1)), 1))
	}))
	defer srv.Close()
	out := filepath.Join(t.TempDir(), "soak.json")
	var stdout, stderr bytes.Buffer
	rc := SampleMain([]string{"--metrics", srv.URL, "--every", "20ms", "--duration", "200ms", "--out", out,
		"--mark", "0.1=load ends, idle"}, &stdout, &stderr)
	if rc != 0 {
		t.Fatalf("rc %d: %s", rc, stderr.String())
	}
	var s Series
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Samples) < 3 || s.Samples[0].Goroutines != 382 || s.Samples[1].Goroutines != 383 ||
		s.Samples[0].LRUBytes != 3e6 || len(s.Marks) != 1 || s.Marks[0].Label != "load ends, idle" {
		t.Fatalf("series %+v", s)
	}
	svg, err := os.ReadFile(strings.TrimSuffix(out, ".json") + ".svg")
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(svg))
	polylines := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("plot is no well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
	}
	if polylines != 5 {
		t.Errorf("%d polylines, want 5", polylines)
	}
	if rc := SampleMain([]string{"--out", out}, io.Discard, io.Discard); rc != 2 {
		t.Errorf("without --metrics: rc %d", rc)
	}
}
