package loadtest

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/procfs"
)

// usageSampler samples one server's CPU time and resident memory at a fixed
// interval, from /proc or from Prometheus metrics.
type usageSampler struct {
	// target names the server in the report.
	target string
	// read returns the process' total CPU time in seconds and its resident
	// memory in bytes.
	read func(ctx context.Context) (cpuSeconds, rssBytes float64, err error)

	mu          sync.Mutex
	samples     int
	errs        int
	first       cpuSample
	steadyStart cpuSample
	last        cpuSample
	baseRSS     float64
	maxRSS      float64
}

type cpuSample struct {
	at  time.Time
	cpu float64
}

func newPIDSampler(pid int) *usageSampler {
	return &usageSampler{
		target: "pid " + strconv.Itoa(pid),
		read: func(context.Context) (float64, float64, error) {
			return readProcUsage("/proc", pid)
		},
	}
}

func newMetricsSampler(client *http.Client, url string) *usageSampler {
	return &usageSampler{
		target: url,
		read: func(ctx context.Context) (float64, float64, error) {
			return scrapeProcessMetrics(ctx, client, url)
		},
	}
}

// run samples every interval until ctx ends. Samples from steadyFrom on
// count for the CPU average.
func (s *usageSampler) run(ctx context.Context, interval time.Duration, steadyFrom time.Time) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		s.sample(ctx, steadyFrom)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func (s *usageSampler) sample(ctx context.Context, steadyFrom time.Time) {
	readCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	cpu, rss, err := s.read(readCtx)
	cancel()
	now := time.Now()

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			s.errs++
		}
		return
	}
	cur := cpuSample{at: now, cpu: cpu}
	if s.samples == 0 {
		s.first = cur
		s.baseRSS = rss
	}
	if s.steadyStart.at.IsZero() && !now.Before(steadyFrom) {
		s.steadyStart = cur
	}
	s.last = cur
	s.samples++
	s.maxRSS = max(s.maxRSS, rss)
}

// usage summarises the samples; cameras divides the per-camera figures.
func (s *usageSampler) usage(cameras int) ServerUsage {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := ServerUsage{Target: s.target, Samples: s.samples, SampleErrors: s.errs}
	if s.samples == 0 {
		return u
	}
	// The CPU average covers the steady part when it holds two samples at
	// least, otherwise the whole run.
	from := s.steadyStart
	if from.at.IsZero() || !s.last.at.After(from.at) {
		from = s.first
	}
	if d := s.last.at.Sub(from.at).Seconds(); d > 0 {
		u.CPUPercent = round3(math.Max(0, s.last.cpu-from.cpu) / d * 100)
	}
	const mib = 1 << 20
	u.RSSMB = round3(s.maxRSS / mib)
	u.RSSBaseMB = round3(s.baseRSS / mib)
	if cameras > 0 {
		u.CPUPerCamera = round3(u.CPUPercent / float64(cameras))
		u.RSSPerCameraMB = round3(math.Max(0, s.maxRSS-s.baseRSS) / mib / float64(cameras))
	}
	return u
}

// readProcUsage reads a process' CPU time (user + system) and resident
// memory from <root>/<pid>/stat, through procfs.
func readProcUsage(root string, pid int) (cpuSeconds, rssBytes float64, err error) {
	fs, err := procfs.NewFS(root)
	if err != nil {
		return 0, 0, fmt.Errorf("open %s: %w", root, err)
	}
	p, err := fs.Proc(pid)
	if err != nil {
		return 0, 0, fmt.Errorf("read process stat: %w", err)
	}
	st, err := p.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("pid %d: read process stat: %w", pid, err)
	}
	if st.State == "Z" {
		// its memory is gone: not a sample of the server
		return 0, 0, fmt.Errorf("pid %d is a zombie", pid)
	}
	return st.CPUTime(), float64(st.ResidentMemory()), nil
}

// scrapeProcessMetrics fetches a Prometheus exposition and returns its
// process_cpu_seconds_total and process_resident_memory_bytes.
func scrapeProcessMetrics(ctx context.Context, client *http.Client, url string) (cpuSeconds, rssBytes float64, err error) {
	fams, err := scrapeMetrics(ctx, client, url)
	if err != nil {
		return 0, 0, err
	}
	return processMetrics(fams)
}

// processMetrics returns the values of process_cpu_seconds_total and
// process_resident_memory_bytes (the first finite series of each, whatever
// its labels).
func processMetrics(fams map[string]*dto.MetricFamily) (cpuSeconds, rssBytes float64, err error) {
	const (
		cpuName = "process_cpu_seconds_total"
		rssName = "process_resident_memory_bytes"
	)
	cpu, rss := metricValues(fams[cpuName]), metricValues(fams[rssName])
	if len(cpu) == 0 || len(rss) == 0 {
		return 0, 0, fmt.Errorf("metrics lack %s or %s", cpuName, rssName)
	}
	return cpu[0], rss[0], nil
}
