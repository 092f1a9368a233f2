package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const mainUsage = `usage: streamgrid loadtest --publish URL [--play URL]... --duration D [options]

Synthetic cameras publish the built-in sample clip (H264 + AAC, 640x360, 25 fps,
~400 kbit/s; --clip FILE.ts publishes another) to <publish>/cam0001, cam0002,
...; synthetic viewers play <play>/camNNNN/index.m3u8 over HLS / LL-HLS and
measure glass-to-glass latency, startup time and stalls. With --origin, a
few streams are also followed part by part at their owning origin and at the
cache at once (LL-HLS blocking playlist reloads): part availability is how
long after the origin the cache serves each new part. Exits 0 when every
camera ran without failure and at least 95% of the viewers played, 1
otherwise, 2 on usage errors.

streamgrid loadtest sample --metrics URL --out FILE.json [--every 5s]
[--duration D] [--mark SECONDS=LABEL]... reads a node's /metrics instead
(RSS, Go heap in use, the cache's LRU bytes, goroutines, open files) until
D or SIGINT/SIGTERM, and writes FILE.json and a plot, FILE.svg
(loadtest/bench/soak.sh runs both).

streamgrid loadtest --control-plane --streams N --origins O --edges E
--kill-origins K --duration D [--json F] [--bus URL,...] simulates the
registry and ownership at scale instead (no media, real origins and a real
three-node bus it starts) and kills K origins midway: bus CPU, registry
operations per second, re-own times (--control-plane --help).

Targets must be loopback (127.0.0.0/8, ::1, localhost) unless named with
--allow-remote.

example:
  streamgrid loadtest --publish rtsp://127.0.0.1:8554/load \
    --play http://127.0.0.1:8888/load --cameras 20 --viewers 100 --duration 2m \
    --metrics http://127.0.0.1:9997/metrics --json report.json
  # part availability at the cache (the all-in-one's origin HLS port is 8889)
  streamgrid loadtest --publish rtsp://127.0.0.1:8554/load \
    --play http://127.0.0.1:8888/load --origin http://127.0.0.1:8889/load \
    --cameras 10 --viewers 30 --duration 40s

options:
`

// Main is the `streamgrid loadtest` command line. It returns the exit code:
// 0 when every camera was OK and at least 95 % of the viewers were, 1
// otherwise (or when interrupted), 2 on usage errors. SIGINT or SIGTERM stop
// the run early; the partial report is still written.
func Main(args []string, stdout, stderr io.Writer) int {
	if isControlPlane(args) {
		return controlPlaneMain(args, stdout, stderr)
	}
	cfg, opts, code := parseMainFlags(args, stderr)
	if code >= 0 {
		return code
	}

	return runReported(opts, stdout, stderr, func(ctx context.Context, log *slog.Logger, progress io.Writer) (reporter, error) {
		cfg.Log, cfg.Progress = log, progress
		return asReporter(Run(ctx, cfg))
	})
}

// reporter is the report of either mode.
type reporter interface {
	WriteTable(w io.Writer)
	OK() bool
}

// asReporter hands a mode's report on; a nil one stays nil.
func asReporter[T any, R interface {
	*T
	reporter
}](rep R, err error) (reporter, error) {
	if rep == nil {
		return nil, err
	}
	return rep, err
}

// runReported runs a mode as the command line does: the log (and, unless
// quiet, the progress lines) on stderr, SIGINT or SIGTERM stopping the run
// early, the table on stdout and the JSON report in opts.jsonPath. run
// returns a nil report when the run could not start. It returns the exit
// code: 0 when the report is OK, 1 otherwise, 2 on usage errors.
func runReported(opts mainOptions, stdout, stderr io.Writer,
	run func(ctx context.Context, log *slog.Logger, progress io.Writer) (reporter, error)) int {
	// the logger and the progress line share stderr from several goroutines
	stderr = &syncWriter{w: stderr}
	level := slog.LevelWarn
	if opts.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	var progress io.Writer
	if !opts.quiet {
		progress = stderr
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, log, progress)
	if errors.Is(err, ErrUsage) {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return 2
	}
	if rep == nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return 1
	}

	rep.WriteTable(stdout)
	if opts.jsonPath != "" {
		if err := writeJSON(opts.jsonPath, rep, stdout); err != nil {
			fmt.Fprintf(stderr, "loadtest: %v\n", err)
			return 1
		}
	}
	if err != nil || !rep.OK() {
		return 1
	}
	return 0
}

// mainOptions are the command line's settings that are not Config's.
type mainOptions struct {
	jsonPath       string
	quiet, verbose bool
}

func (o *mainOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.jsonPath, "json", "", "write the report as JSON to this file (- for stdout)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line")
	fs.BoolVar(&o.verbose, "v", false, "debug logging")
}

// newFlagSet returns a command line's flags: errors go to stderr, and
// --help prints usage, then the flags.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses args, which must hold flags only. It returns the exit
// code when the command must stop here (0 after --help, 2 on an error), -1
// otherwise.
func parseArgs(fs *flag.FlagSet, args []string, stderr io.Writer) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loadtest: unexpected arguments %q\n", fs.Args())
		return 2
	}
	return -1
}

// parseMainFlags reads Main's command line into a Config. code is the exit
// code when Main must stop here (help, usage error), -1 otherwise.
func parseMainFlags(args []string, stderr io.Writer) (_ Config, _ mainOptions, code int) {
	fs := newFlagSet("loadtest", mainUsage, stderr)
	var (
		cfg         Config
		opts        mainOptions
		play        listFlag
		pids        listFlag
		origins     listFlag
		metrics     listFlag
		allowRemote listFlag
	)
	fs.StringVar(&cfg.Publish, "publish", "", "base publish URL, rtsp://host:8554/load or rtmp://host:1935/load (required)")
	fs.StringVar(&cfg.Transport, "transport", "tcp", "RTSP transport: tcp or udp")
	fs.Var(&play, "play", "base play URL of a cache, e.g. http://host:8888/load (repeatable or comma-separated; required with viewers)")
	fs.Var(&origins, "origin", "base HLS URL of an origin as the caches reach it, e.g. http://host:8889/load (repeatable or comma-separated): probes part availability at the caches")
	fs.StringVar(&cfg.OriginSecret, "origin-secret", os.Getenv("SG_AUTH_ORIGIN_SECRET"), "the cluster's auth.origin_secret, sent to --origin URLs (default $SG_AUTH_ORIGIN_SECRET)")
	fs.IntVar(&cfg.PartProbes, "part-probes", 0, "streams x caches probed for part availability with --origin (default 4, at most "+strconv.Itoa(MaxPartProbes)+")")
	fs.IntVar(&cfg.Cameras, "cameras", 1, "number of synthetic cameras (1.."+strconv.Itoa(MaxCameras)+")")
	fs.IntVar(&cfg.Viewers, "viewers", 0, "number of synthetic viewers (0.."+strconv.Itoa(MaxViewers)+")")
	fs.DurationVar(&cfg.Duration, "duration", 0, "total run time, at most 1h (required)")
	fs.DurationVar(&cfg.Ramp, "ramp", 0, "stagger camera and viewer starts over this span (default min(10s, duration/4))")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "ignore latency samples before this (default min(5s, duration/2))")
	fs.DurationVar(&cfg.ViewerDelay, "viewer-delay", 0, "start each viewer this long after its camera (default 3s)")
	fs.BoolVar(&cfg.NoAudio, "no-audio", false, "publish video only")
	fs.StringVar(&cfg.ClipFile, "clip", "", "MPEG-TS file to publish instead of the built-in sample (H264 without B-frames, SPS/PPS in band, optional AAC)")
	fs.Var(&pids, "pid", "local server process to sample CPU and memory from /proc (repeatable)")
	fs.Var(&metrics, "metrics", "Prometheus /metrics URL of a server to sample CPU and memory from (repeatable)")
	fs.Var(&allowRemote, "allow-remote", "host that may be targeted although not loopback (repeatable or comma-separated)")
	opts.addFlags(fs)
	if code := parseArgs(fs, args, stderr); code >= 0 {
		return cfg, opts, code
	}
	if cfg.Publish == "" || cfg.Duration == 0 {
		fmt.Fprintln(stderr, "loadtest: --publish and --duration are required (see --help)")
		return cfg, opts, 2
	}
	cfg.Play = play
	cfg.Origins = origins
	cfg.MetricsURLs = metrics
	cfg.AllowRemote = allowRemote
	var ok bool
	if cfg.PIDs, ok = parsePIDs(pids, stderr); !ok {
		return cfg, opts, 2
	}
	return cfg, opts, -1
}

// parsePIDs reads --pid values; false (said on stderr) when one is no number.
func parsePIDs(pids []string, stderr io.Writer) ([]int, bool) {
	var out []int
	for _, p := range pids {
		pid, err := strconv.Atoi(p)
		if err != nil {
			fmt.Fprintf(stderr, "loadtest: invalid --pid %q\n", p)
			return nil, false
		}
		out = append(out, pid)
	}
	return out, true
}

func writeJSON(path string, rep any, stdout io.Writer) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	data = append(data, '\n')
	if path == "-" {
		_, err = stdout.Write(data)
		return err
	}
	// write then rename, so a reader never sees half a report
	tmp := path + ".tmp-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// syncWriter serialises writes to a writer shared by goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// listFlag is a repeatable flag whose values may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string {
	return strings.Join(*l, ",")
}

func (l *listFlag) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}
