package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// seriesMetrics are the series a soak samples from a node's /metrics, in
// the order of SeriesSample's fields.
var seriesMetrics = []string{
	"process_resident_memory_bytes",
	"go_memstats_heap_inuse_bytes",
	"streamgrid_cache_lru_bytes",
	"go_goroutines",
	"process_open_fds",
}

// SeriesSample is one reading of a node's memory and resources.
type SeriesSample struct {
	// T is seconds since the sampling began.
	T          float64 `json:"t"`
	RSS        float64 `json:"rss_bytes"`
	HeapInuse  float64 `json:"heap_inuse_bytes"`
	LRUBytes   float64 `json:"cache_lru_bytes"`
	Goroutines float64 `json:"goroutines"`
	OpenFDs    float64 `json:"open_fds"`
}

// Series is what `loadtest sample` writes: the samples and the marks (load
// start, load end) placed on the plot.
type Series struct {
	URL     string         `json:"url"`
	Every   float64        `json:"every_s"`
	Marks   []SeriesMark   `json:"marks,omitempty"`
	Samples []SeriesSample `json:"samples"`
}

// SeriesMark is a labelled time on the plot.
type SeriesMark struct {
	T     float64 `json:"t"`
	Label string  `json:"label"`
}

// seriesValues returns the seriesMetrics from a parsed exposition; a
// metric with several series (streamgrid_cache_lru_bytes of several caches)
// is summed. Every one must be present.
func seriesValues(fams map[string]*dto.MetricFamily) ([]float64, error) {
	vals := make([]float64, len(seriesMetrics))
	for i, name := range seriesMetrics {
		vs := metricValues(fams[name])
		if len(vs) == 0 {
			return nil, fmt.Errorf("no %s in the metrics", name)
		}
		for _, v := range vs {
			vals[i] += v
		}
	}
	return vals, nil
}

func scrapeSeries(ctx context.Context, client *http.Client, url string) ([]float64, error) {
	fams, err := scrapeMetrics(ctx, client, url)
	if err != nil {
		return nil, err
	}
	return seriesValues(fams)
}

// SampleMain is `streamgrid loadtest sample`: it reads a node's /metrics
// every few seconds until its duration ends (or SIGINT/SIGTERM), then
// writes the samples as JSON and a plot of them as SVG next to it.
func SampleMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadtest sample", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("metrics", "", "the node's /metrics URL (loopback, or with a metrics user in the URL) (required)")
	every := fs.Duration("every", 5*time.Second, "sampling interval")
	duration := fs.Duration("duration", 0, "stop after this long (default: at SIGINT/SIGTERM)")
	out := fs.String("out", "", "JSON file to write; the plot goes to the same name with .svg (required)")
	var marks markFlag
	fs.Var(&marks, "mark", "SECONDS=LABEL drawn as a vertical line on the plot (repeatable)")
	replot := fs.String("replot", "", "read this JSON file (written by an earlier run) and write its plot next to it; nothing is sampled")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *replot != "" {
		if err := replotSeries(*replot); err != nil {
			fmt.Fprintf(stderr, "loadtest sample: %v\n", err)
			return 1
		}
		return 0
	}
	if *url == "" || *out == "" || *every <= 0 {
		fmt.Fprintln(stderr, "loadtest sample: --metrics and --out are required")
		return 2
	}
	s := Series{URL: *url, Every: every.Seconds()}
	for _, m := range marks {
		t, label, ok := strings.Cut(m, "=")
		v, err := strconv.ParseFloat(t, 64)
		if !ok || err != nil {
			fmt.Fprintf(stderr, "loadtest sample: --mark %q is not SECONDS=LABEL\n", m)
			return 2
		}
		s.Marks = append(s.Marks, SeriesMark{T: v, Label: label})
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	failures := s.sample(ctx, *every, stderr)
	if err := writeSeries(*out, &s); err != nil {
		fmt.Fprintf(stderr, "loadtest sample: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%d samples (%d failed) in %s and %s\n", len(s.Samples), failures, *out, svgName(*out))
	if len(s.Samples) == 0 {
		return 1
	}
	return 0
}

// sample reads s.URL every interval until ctx ends, appending to
// s.Samples; it reports failed reads to stderr and returns their count.
func (s *Series) sample(ctx context.Context, every time.Duration, stderr io.Writer) (failures int) {
	client := &http.Client{Timeout: every}
	began := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		now := time.Now()
		v, err := scrapeSeries(ctx, client, s.URL)
		switch {
		case err == nil:
			s.Samples = append(s.Samples, SeriesSample{T: now.Sub(began).Seconds(),
				RSS: v[0], HeapInuse: v[1], LRUBytes: v[2], Goroutines: v[3], OpenFDs: v[4]})
		case ctx.Err() == nil:
			failures++
			fmt.Fprintf(stderr, "loadtest sample: %v\n", err)
		}
		select {
		case <-ctx.Done():
			return failures
		case <-tick.C:
		}
	}
}

// replotSeries reads a Series written by an earlier run and writes its
// plot next to it.
func replotSeries(path string) error {
	var s Series
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	return writePlot(path, &s)
}

func svgName(jsonPath string) string {
	return strings.TrimSuffix(jsonPath, ".json") + ".svg"
}

func writeSeries(path string, s *Series) error {
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return err
	}
	return errors.Join(os.WriteFile(path, append(b, '\n'), 0o644), writePlot(path, s))
}

// writePlot writes s's plot (WriteSeriesSVG) next to the JSON file at path.
func writePlot(path string, s *Series) error {
	var svg strings.Builder
	WriteSeriesSVG(&svg, s)
	return os.WriteFile(svgName(path), []byte(svg.String()), 0o644)
}

// WriteSeriesSVG plots a series: memory (RSS, heap in use, cache LRU) in
// MiB, goroutines and open files, one panel each over the same time axis.
func WriteSeriesSVG(w io.Writer, s *Series) {
	const (
		width, panelH, left, right, top, gap = 900, 200, 70, 20, 30, 50
	)
	type line struct {
		label, color string
		get          func(SeriesSample) float64
	}
	mib := func(f func(SeriesSample) float64) func(SeriesSample) float64 {
		return func(x SeriesSample) float64 { return f(x) / (1 << 20) }
	}
	panels := []struct {
		title string
		lines []line
	}{
		{"memory (MiB)", []line{
			{"RSS", "#d62728", mib(func(x SeriesSample) float64 { return x.RSS })},
			{"Go heap in use", "#1f77b4", mib(func(x SeriesSample) float64 { return x.HeapInuse })},
			{"cache LRU", "#2ca02c", mib(func(x SeriesSample) float64 { return x.LRUBytes })},
		}},
		{"goroutines", []line{{"goroutines", "#9467bd", func(x SeriesSample) float64 { return x.Goroutines }}}},
		{"open files", []line{{"open fds", "#8c564b", func(x SeriesSample) float64 { return x.OpenFDs }}}},
	}
	height := top + len(panels)*(panelH+gap) + 10
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	tMax := 1.0
	for _, x := range s.Samples {
		tMax = max(tMax, x.T)
	}
	for _, m := range s.Marks {
		tMax = max(tMax, m.T)
	}
	plotW := float64(width - left - right)
	xOf := func(t float64) float64 { return left + t/tMax*plotW }
	for pi, p := range panels {
		y0 := float64(top + pi*(panelH+gap))
		vMax := 0.0
		for _, l := range p.lines {
			for _, x := range s.Samples {
				vMax = max(vMax, l.get(x))
			}
		}
		step := niceStep(vMax / 4)
		vTop := math.Max(step, math.Ceil(vMax/step)*step)
		yOf := func(v float64) float64 { return y0 + panelH - v/vTop*panelH }
		fmt.Fprintf(w, `<text x="%d" y="%.0f" font-weight="bold">%s</text>`+"\n", left, y0-8, p.title)
		for v := 0.0; v <= vTop+step/2; v += step {
			fmt.Fprintf(w, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`, left, width-right, yOf(v), yOf(v))
			fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, yOf(v)+4, strconv.FormatFloat(v, 'f', -1, 64))
		}
		tStep := niceStep(tMax / 8)
		for t := 0.0; t <= tMax; t += tStep {
			fmt.Fprintf(w, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#eee"/>`, xOf(t), xOf(t), y0, y0+panelH)
			fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle">%ss</text>`+"\n", xOf(t), y0+panelH+14, strconv.FormatFloat(t, 'f', -1, 64))
		}
		for mi, m := range s.Marks {
			// Labels at the bottom, staggered: marks may be close together.
			fmt.Fprintf(w, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#555" stroke-dasharray="4 3"/>`, xOf(m.T), xOf(m.T), y0, y0+panelH)
			fmt.Fprintf(w, `<text x="%.1f" y="%.1f" fill="#555" font-size="11">%s</text>`+"\n", xOf(m.T)+3, y0+panelH-6-float64(mi%3)*13, xmlEscape(m.Label))
		}
		for li, l := range p.lines {
			var pts strings.Builder
			for _, x := range s.Samples {
				fmt.Fprintf(&pts, "%.1f,%.1f ", xOf(x.T), yOf(l.get(x)))
			}
			fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", l.color, strings.TrimSpace(pts.String()))
			lx := width - right - 130
			ly := y0 + 14 + float64(li)*15
			fmt.Fprintf(w, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/><text x="%d" y="%.1f">%s</text>`+"\n",
				lx, lx+18, ly-4, ly-4, l.color, lx+24, ly, l.label)
		}
		fmt.Fprintf(w, `<rect x="%d" y="%.0f" width="%.0f" height="%d" fill="none" stroke="#999"/>`+"\n", left, y0, plotW, panelH)
	}
	fmt.Fprintln(w, "</svg>")
}

// niceStep rounds a raw axis step up to 1, 2 or 5 × a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// markFlag collects repeated --mark values as they are (labels may hold commas).
type markFlag []string

func (m *markFlag) String() string     { return strings.Join(*m, " ") }
func (m *markFlag) Set(v string) error { *m = append(*m, v); return nil }
