package loadtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicksPerSecond is USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat. The kernel fixes it at 100 for user space on every
// architecture Linux runs Go on (sysconf(_SC_CLK_TCK) would need cgo).
const clockTicksPerSecond = 100

// maxMetricsBody bounds a /metrics response.
const maxMetricsBody = 16 << 20

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

// readProcUsage reads a process' CPU time (user + system) from
// <root>/<pid>/stat and its resident memory from <root>/<pid>/status.
func readProcUsage(root string, pid int) (cpuSeconds, rssBytes float64, err error) {
	dir := root + "/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("read process stat: %w", err)
	}
	cpuSeconds, err = parseProcStat(string(stat))
	if err != nil {
		return 0, 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return 0, 0, fmt.Errorf("read process status: %w", err)
	}
	rssBytes, err = parseProcStatusRSS(string(status))
	if err != nil {
		return 0, 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return cpuSeconds, rssBytes, nil
}

// parseProcStat returns utime + stime, in seconds, from the contents of
// /proc/<pid>/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from its closing parenthesis.
func parseProcStat(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed stat: no command name")
	}
	// after ")": state(3) ppid(4) ... utime(14) stime(15)
	fields := strings.Fields(stat[i+1:])
	if len(fields) < 13 {
		return 0, errors.New("malformed stat: too few fields")
	}
	utime, err := strconv.ParseUint(fields[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed stat utime: %w", err)
	}
	stime, err := strconv.ParseUint(fields[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed stat stime: %w", err)
	}
	return float64(utime+stime) / clockTicksPerSecond, nil
}

// parseProcStatusRSS returns VmRSS, in bytes, from the contents of
// /proc/<pid>/status.
func parseProcStatusRSS(status string) (float64, error) {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("malformed VmRSS line %q", strings.TrimSpace(line))
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed VmRSS: %w", err)
		}
		return float64(kb) * 1024, nil
	}
	return 0, errors.New("no VmRSS in status (a zombie or kernel thread?)")
}

// scrapeProcessMetrics fetches a Prometheus text exposition and returns its
// process_cpu_seconds_total and process_resident_memory_bytes.
func scrapeProcessMetrics(ctx context.Context, client *http.Client, url string) (cpuSeconds, rssBytes float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("metrics request: %w", err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("fetch metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return 0, 0, fmt.Errorf("fetch metrics: %s", resp.Status)
	}
	return parseProcessMetrics(io.LimitReader(resp.Body, maxMetricsBody))
}

// parseProcessMetrics reads a Prometheus text exposition and returns the
// values of process_cpu_seconds_total and process_resident_memory_bytes (the
// first series of each, whatever its labels).
func parseProcessMetrics(r io.Reader) (cpuSeconds, rssBytes float64, err error) {
	const (
		cpuName = "process_cpu_seconds_total"
		rssName = "process_resident_memory_bytes"
	)
	var haveCPU, haveRSS bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() && !(haveCPU && haveRSS) {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		var target *float64
		var have *bool
		var rest string
		switch {
		case strings.HasPrefix(line, cpuName):
			target, have, rest = &cpuSeconds, &haveCPU, line[len(cpuName):]
		case strings.HasPrefix(line, rssName):
			target, have, rest = &rssBytes, &haveRSS, line[len(rssName):]
		default:
			continue
		}
		if *have || rest == "" {
			continue
		}
		switch rest[0] {
		case '{':
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		case ' ', '\t':
		default:
			continue // a longer name sharing the prefix
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		*target, *have = v, true
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("read metrics: %w", err)
	}
	if !haveCPU || !haveRSS {
		return 0, 0, fmt.Errorf("metrics lack %s or %s", cpuName, rssName)
	}
	return cpuSeconds, rssBytes, nil
}
