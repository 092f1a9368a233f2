package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestComputePercentiles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []float64
		want   Percentiles
	}{
		{"empty", nil, Percentiles{}},
		{"one", []float64{7.5}, Percentiles{P50: 7.5, P95: 7.5, P99: 7.5, Max: 7.5, Count: 1}},
		{"1..100", seq(1, 100), Percentiles{P50: 50, P95: 95, P99: 99, Max: 100, Count: 100}},
		{"1..1000 reversed", reversed(seq(1, 1000)), Percentiles{P50: 500, P95: 950, P99: 990, Max: 1000, Count: 1000}},
		{"two", []float64{2, 1}, Percentiles{P50: 1, P95: 2, P99: 2, Max: 2, Count: 2}},
		{"rounded", []float64{1.23456}, Percentiles{P50: 1.235, P95: 1.235, P99: 1.235, Max: 1.235, Count: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := computePercentiles(tc.values); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func seq(from, to int) []float64 {
	var out []float64
	for i := from; i <= to; i++ {
		out = append(out, float64(i))
	}
	return out
}

func reversed(v []float64) []float64 {
	slices.Reverse(v)
	return v
}

func TestReservoirBounded(t *testing.T) {
	r := newReservoir(1000, 42)
	const n = 20000
	for i := range n {
		r.add(float64(i % 1000))
	}
	r.add(5000) // the maximum, late: the sample may miss it, Max must not
	if len(r.samples) != 1000 {
		t.Fatalf("%d samples kept", len(r.samples))
	}
	p := r.percentiles()
	if p.Count != n+1 || p.Max != 5000 {
		t.Errorf("count %d, max %v", p.Count, p.Max)
	}
	// a uniform sample of a uniform 0..999 distribution
	if math.Abs(p.P50-500) > 60 || math.Abs(p.P95-950) > 30 {
		t.Errorf("percentiles far off: %+v", p)
	}
	r.reset()
	if p := r.percentiles(); p.Count != 0 || p.Max != 0 {
		t.Errorf("after reset: %+v", p)
	}
}

func TestReportJSON(t *testing.T) {
	rep := &Report{
		Cameras: 2, CamerasOK: 2, Viewers: 3, ViewersOK: 3,
		ErrorSamples: []string{"x"},
		LatencyMS:    Percentiles{P50: 1, P95: 2, P99: 3, Max: 4, Count: 5},
		PartProbes:   2, PartSamples: 7, PartAvailabilityMS: Percentiles{P50: 11, P95: 12, P99: 13, Max: 14, Count: 7},
		PartByCache: []CacheParts{{Play: "http://c1/load", PartAvailabilityMS: Percentiles{P50: 21, Count: 3}},
			{Play: "http://c2/load", PartAvailabilityMS: Percentiles{P50: 22, Count: 4}}},
		Servers: []ServerUsage{{Target: "pid 1", CPUPercent: 50, RSSMB: 100, CPUPerCamera: 25, RSSPerCameraMB: 10}},
	}
	m := reportJSON(t, rep)
	for _, key := range []string{
		"cameras_ok", "cameras", "viewers_ok", "viewers", "errors", "error_samples",
		"latency_ms", "startup_ms", "stalls", "frames_sent", "frames_received", "duration_s", "servers",
		"camera_restarts", "viewer_restarts", "interrupted", "publish", "transport", "play",
		"part_availability_ms", "part_samples", "part_probes", "part_probe_errors", "part_availability_by_cache",
	} {
		if _, ok := m[key]; !ok {
			t.Errorf("report JSON lacks %q: %v", key, m)
		}
	}
	lat := m["latency_ms"].(map[string]any)
	for _, key := range []string{"p50", "p95", "p99", "max", "count"} {
		if _, ok := lat[key]; !ok {
			t.Errorf("latency_ms lacks %q", key)
		}
	}
	srv := m["servers"].([]any)[0].(map[string]any)
	for _, key := range []string{"target", "cpu_percent", "rss_mb", "rss_base_mb", "cpu_per_camera", "rss_per_camera_mb", "samples", "sample_errors"} {
		if _, ok := srv[key]; !ok {
			t.Errorf("servers[0] lacks %q", key)
		}
	}

	table := reportTable(rep)
	for _, want := range []string{"PASS", "2 / 2", "3 / 3", "p50 1", "pid 1", "error: x",
		"part availability ms", "p50 11.0", "2 probes", "at http://c2/load", "p50 22.0"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestReportOK(t *testing.T) {
	for _, tc := range []struct {
		rep  Report
		want bool
	}{
		{Report{Cameras: 2, CamerasOK: 2, Viewers: 100, ViewersOK: 95}, true},
		{Report{Cameras: 2, CamerasOK: 2, Viewers: 100, ViewersOK: 94}, false},
		{Report{Cameras: 2, CamerasOK: 1}, false},
		{Report{Cameras: 1, CamerasOK: 1}, true},
		{Report{Cameras: 1, CamerasOK: 1, Interrupted: true}, false},
		{Report{Cameras: 1, CamerasOK: 1, Viewers: 3, ViewersOK: 2}, false},
	} {
		if got := tc.rep.OK(); got != tc.want {
			t.Errorf("%+v: OK %v", tc.rep, got)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	base := Config{Publish: "rtsp://127.0.0.1:8554/load/", Play: []string{"http://localhost:8888/load"},
		Cameras: 2, Viewers: 3, Duration: time.Minute}

	got, err := base.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got.Ramp != 10*time.Second || got.Warmup != 5*time.Second || got.ViewerDelay != 3*time.Second ||
		got.Transport != "tcp" || got.Publish != "rtsp://127.0.0.1:8554/load" || got.Log == nil {
		t.Errorf("defaults: %+v", got)
	}
	short := base
	short.Duration = 8 * time.Second
	if got, err := short.withDefaults(); err != nil || got.Ramp != 2*time.Second {
		t.Errorf("short ramp %v, %v", got.Ramp, err)
	}

	for _, tc := range []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"ipv6 loopback and rtmp", func(c *Config) { c.Publish = "rtmp://[::1]:1935/load" }, true},
		{"127.x", func(c *Config) { c.Play = []string{"http://127.9.9.9:8888/load"} }, true},
		{"remote publish", func(c *Config) { c.Publish = "rtsp://edge1:8554/load" }, false},
		{"remote allowed", func(c *Config) {
			c.Publish = "rtsp://edge1:8554/load"
			c.AllowRemote = []string{"EDGE1"}
		}, true},
		{"remote play", func(c *Config) { c.Play = []string{"http://203.0.113.7/load"} }, false},
		{"remote play allowed", func(c *Config) {
			c.Play = []string{"http://[2001:db8::1]:8888/load"}
			c.AllowRemote = []string{"[2001:db8::1]"}
		}, true},
		{"remote metrics", func(c *Config) { c.MetricsURLs = []string{"http://example.com/metrics"} }, false},
		{"bad scheme", func(c *Config) { c.Publish = "srt://127.0.0.1/load" }, false},
		{"play scheme", func(c *Config) { c.Play = []string{"rtsp://127.0.0.1/load"} }, false},
		{"no host", func(c *Config) { c.Publish = "rtsp:///load" }, false},
		{"no play", func(c *Config) { c.Play = nil }, false},
		{"no play no viewers", func(c *Config) { c.Play, c.Viewers = nil, 0 }, true},
		{"zero cameras", func(c *Config) { c.Cameras = 0 }, false},
		{"too many cameras", func(c *Config) { c.Cameras = MaxCameras + 1 }, false},
		{"negative viewers", func(c *Config) { c.Viewers = -1 }, false},
		{"no duration", func(c *Config) { c.Duration = 0 }, false},
		{"too long", func(c *Config) { c.Duration = MaxDuration + time.Second }, false},
		{"ramp too long", func(c *Config) { c.Ramp = time.Minute }, false},
		{"warmup too long", func(c *Config) { c.Warmup = 2 * time.Minute }, false},
		{"negative ramp", func(c *Config) { c.Ramp = -time.Second }, false},
		{"transport udp", func(c *Config) { c.Transport = "UDP" }, true},
		{"transport bad", func(c *Config) { c.Transport = "quic" }, false},
		{"bad pid", func(c *Config) { c.PIDs = []int{0} }, false},
		{"too short for viewers", func(c *Config) { c.Duration = 6 * time.Second }, false},
		{"short without viewers", func(c *Config) { c.Duration, c.Viewers = 2*time.Second, 0 }, true},
		{"origin", func(c *Config) { c.Origins = []string{"http://127.0.0.1:8889/load"} }, true},
		{"origin and probes", func(c *Config) { c.Origins, c.PartProbes = []string{"http://[::1]:8889/load"}, MaxPartProbes }, true},
		{"remote origin", func(c *Config) { c.Origins = []string{"http://origin1:8889/load"} }, false},
		{"remote origin allowed", func(c *Config) {
			c.Origins, c.AllowRemote = []string{"http://origin1:8889/load"}, []string{"origin1"}
		}, true},
		{"origin scheme", func(c *Config) { c.Origins = []string{"rtsp://127.0.0.1:8889/load"} }, false},
		{"origin without play", func(c *Config) { c.Origins, c.Play, c.Viewers = []string{"http://127.0.0.1:8889/load"}, nil, 0 }, false},
		{"probes without origin", func(c *Config) { c.PartProbes = 2 }, false},
		{"too many probes", func(c *Config) { c.Origins, c.PartProbes = []string{"http://127.0.0.1:8889/load"}, MaxPartProbes+1 }, false},
		{"negative probes", func(c *Config) { c.Origins, c.PartProbes = []string{"http://127.0.0.1:8889/load"}, -1 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mod(&c)
			_, err := c.withDefaults()
			if tc.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrUsage) {
				t.Errorf("accepted or wrong error: %v", err)
			}
		})
	}
}

func TestMainUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--help"}, 0},
		{[]string{}, 2},
		{[]string{"--publish", "rtsp://127.0.0.1:1/load"}, 2},
		{[]string{"--publish", "rtsp://10.0.0.1:8554/load", "--duration", "5s"}, 2},
		{[]string{"--publish", "rtsp://127.0.0.1:1/load", "--duration", "2h"}, 2},
		{[]string{"--publish", "rtsp://127.0.0.1:1/load", "--duration", "5s", "--viewers", "2"}, 2},
		{[]string{"--publish", "rtsp://127.0.0.1:1/load", "--duration", "5s", "--pid", "abc"}, 2},
		{[]string{"--publish", "rtsp://127.0.0.1:1/load", "--duration", "5s", "extra"}, 2},
		{[]string{"--bogus"}, 2},
		{[]string{"--publish", "rtsp://127.0.0.1:1/load", "--duration", "5s", "--clip", "/nonexistent.ts"}, 2},
		{[]string{"--publish", "rtsp://127.0.0.1:1/load", "--duration", "5s", "--part-probes", "2"}, 2},
		{[]string{"--publish", "rtsp://127.0.0.1:1/load", "--duration", "5s", "--origin", "http://127.0.0.1:1/load"}, 2},
		{[]string{"--publish", "rtsp://127.0.0.1:1/load", "--duration", "5s", "--play", "http://127.0.0.1:2/load",
			"--origin", "http://10.1.1.1:8889/load"}, 2},
		{[]string{"--control-plane", "--help"}, 0},
		{[]string{"--control-plane"}, 2},
		{[]string{"--control-plane", "--duration", "5s", "--origins", "1"}, 2},
		{[]string{"--control-plane", "--duration", "5s", "--origins", "3", "--kill-origins", "3"}, 2},
		{[]string{"--control-plane", "--duration", "5s", "--streams", "0"}, 2},
		{[]string{"--control-plane", "--duration", "5s", "--pid", "1"}, 2},
		{[]string{"--control-plane", "--duration", "5s", "--bus", "nats://127.0.0.1:1", "--pid", "x"}, 2},
		{[]string{"--control-plane", "--duration", "5s", "extra"}, 2},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(tc.args, &stdout, &stderr); code != tc.code {
			t.Errorf("%q: exit %d, want %d\n%s", tc.args, code, tc.code, stderr.String())
		}
	}
}

func TestLoadClip(t *testing.T) {
	sample, err := loadClip("")
	if err != nil || sample.Width != 640 {
		t.Fatalf("sample: %v", err)
	}
	// the embedded sample, read from its file like any other clip
	clip, err := loadClip(filepath.Join("..", "internal", "testmedia", "sample.ts"))
	if err != nil {
		t.Fatal(err)
	}
	if clip.Width != sample.Width || clip.Height != sample.Height || len(clip.Video) != len(sample.Video) ||
		len(clip.Audio) != len(sample.Audio) {
		t.Errorf("clip %dx%d %d video %d audio frames, sample %dx%d %d/%d", clip.Width, clip.Height,
			len(clip.Video), len(clip.Audio), sample.Width, sample.Height, len(sample.Video), len(sample.Audio))
	}

	garbage := filepath.Join(t.TempDir(), "garbage.ts")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte{0x47, 1, 2, 3}, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{garbage, filepath.Join(t.TempDir(), "missing.ts")} {
		if _, err := loadClip(path); !errors.Is(err, ErrUsage) {
			t.Errorf("%s: %v", path, err)
		}
	}
}

func TestStoreMax(t *testing.T) {
	var m atomic.Int64
	for _, v := range []int64{3, 1, 7, 7, 2} {
		storeMax(&m, v)
	}
	if m.Load() != 7 {
		t.Errorf("max %d", m.Load())
	}
}

func TestListFlag(t *testing.T) {
	var l listFlag
	for _, v := range []string{"a,b", " c ", ",,", "d"} {
		if err := l.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"a", "b", "c", "d"}; !slices.Equal(l, want) {
		t.Errorf("got %q", l)
	}
	if l.String() != "a,b,c,d" {
		t.Errorf("String %q", l.String())
	}
}

// procStat is a /proc/<pid>/stat line: a command name with spaces and
// parentheses, utime 250 and stime 50 ticks (3 s), RSS 512 pages.
const procStat = "1234 (we ird) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 1000000 512 " +
	"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0\n"

func TestReadProcUsage(t *testing.T) {
	root := t.TempDir()
	write := func(pid, stat string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, pid, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("1234", procStat)
	write("66", strings.Replace(procStat, ") S ", ") Z ", 1))
	write("77", "77 (x) S 1 2\n")

	cpu, rss, err := readProcUsage(root, 1234)
	if err != nil || cpu != 3 || rss != float64(512*os.Getpagesize()) {
		t.Errorf("stat: cpu %v, rss %v, %v", cpu, rss, err)
	}
	for _, pid := range []int{66, 77, 88} { // a zombie, a short line, no process
		if _, _, err := readProcUsage(root, pid); err == nil {
			t.Errorf("pid %d accepted", pid)
		}
	}

	cpu, rss, err = readProcUsage("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if cpu < 0 || rss < 1<<20 {
		t.Errorf("own usage: cpu %v s, rss %v B", cpu, rss)
	}
}

func TestProcessMetrics(t *testing.T) {
	const exposition = `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_cpu_seconds_total_extra 99
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes{node="a"} NaN
process_resident_memory_bytes{node="b"} 1.048576e+08 1700000000000
process_resident_memory_bytes{node="c"} 5
`
	for _, tc := range []struct {
		name, text string
		cpu, rss   float64
		err        bool
	}{
		{name: "first finite series", text: exposition, cpu: 12.5, rss: 1.048576e8},
		{name: "no rss", text: "process_cpu_seconds_total 1\n", err: true},
		{name: "only NaN", text: "process_cpu_seconds_total NaN\nprocess_resident_memory_bytes 1\n", err: true},
		{name: "malformed", text: "process_cpu_seconds_total{ 1\nprocess_resident_memory_bytes 1\n", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cpu, rss, err := parseProcessMetrics(strings.NewReader(tc.text))
			if tc.err {
				if err == nil {
					t.Errorf("accepted: %v, %v", cpu, rss)
				}
				return
			}
			if err != nil || cpu != tc.cpu || rss != tc.rss {
				t.Errorf("got %v, %v, %v", cpu, rss, err)
			}
		})
	}
}

// parseProcessMetrics is scrapeProcessMetrics without the request.
func parseProcessMetrics(r io.Reader) (cpuSeconds, rssBytes float64, err error) {
	fams, err := parseMetrics(r)
	if err != nil {
		return 0, 0, err
	}
	return processMetrics(fams)
}

func FuzzParseProcessMetrics(f *testing.F) {
	f.Add("process_cpu_seconds_total 1\nprocess_resident_memory_bytes 2\n")
	f.Add("process_cpu_seconds_total{a=\"}\"} 1 2\nprocess_resident_memory_bytes{ 2\n")
	f.Add("# TYPE process_cpu_seconds_total summary\nprocess_cpu_seconds_total{quantile=\"0.5\"} +Inf\n")
	f.Fuzz(func(t *testing.T, s string) {
		cpu, rss, err := parseProcessMetrics(strings.NewReader(s))
		if err == nil && (math.IsNaN(cpu) || math.IsNaN(rss) || math.IsInf(cpu, 0) || math.IsInf(rss, 0)) {
			t.Errorf("non-finite values %v %v", cpu, rss)
		}
	})
}

func TestUsageSampler(t *testing.T) {
	now := time.Now()
	s := &usageSampler{target: "x"}
	// CPU 0.5 s per second, RSS growing from 100 MiB to 300 MiB
	readings := []struct {
		cpu, rss float64
	}{{0, 100 << 20}, {0.5, 200 << 20}, {1, 300 << 20}, {1.5, 250 << 20}}
	i := 0
	s.read = func(context.Context) (float64, float64, error) {
		r := readings[i]
		i++
		return r.cpu, r.rss, nil
	}
	for range readings {
		s.sample(t.Context(), now)
		time.Sleep(20 * time.Millisecond)
	}
	u := s.usage(4)
	if u.Samples != 4 || u.RSSMB != 300 || u.RSSBaseMB != 100 || u.RSSPerCameraMB != 50 {
		t.Errorf("usage %+v", u)
	}
	if u.CPUPercent <= 0 || u.CPUPerCamera != round3(u.CPUPercent/4) {
		t.Errorf("cpu %+v", u)
	}
}

// reportTable renders rep as the table the command prints.
func reportTable(rep *Report) *bytes.Buffer {
	var b bytes.Buffer
	rep.WriteTable(&b)
	return &b
}

// reportJSON returns rep as the JSON object --json writes.
func reportJSON(t *testing.T, rep *Report) map[string]any {
	t.Helper()
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
