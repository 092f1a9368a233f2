// Command streamgrid is the whole cluster in one binary: `streamgrid run`
// (the default) is the all-in-one node; `bus`, `edge`, `origin` and `cache`
// run one role each; `loadtest` drives synthetic cameras and viewers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/node"
	"github.com/streamgrid/streamgrid/internal/version"
)

const usage = `usage: streamgrid [command] [--config streamgrid.yml]

commands:
  run       all-in-one: embedded NATS + edge + origin + cache (default)
  bus       a NATS server node (JetStream, clustered through routes)
  edge      RTSP/RTMP ingest and camera pulls
  origin    HLS / LL-HLS packaging
  cache     the viewers' HTTP server
  loadtest  synthetic cameras and viewers (streamgrid loadtest --help)
  camera    a simulated IP camera: an RTSP server looping a test clip
            (streamgrid camera [--listen :8554] [--path stream1])
  sign      a signed playback URL path (streamgrid sign --path live/cam1 [--ttl 1h] [--ip CIDR])
  version   print the version and exit (also --version)
  passwd    hash a password read from stdin for auth.users[].pass
            (echo -n 'secret' | streamgrid passwd [--sha256])
  check     check a live HLS stream against RFC 8216 / LL-HLS
            (streamgrid check URL [--duration 20s] [--json])
  encoders  what the transcoder finds in ffmpeg: x264, NVENC, CUDA, NVDEC
            (streamgrid encoders [--ffmpeg PATH] [--json])

Without --config, ./streamgrid.yml and then /etc/streamgrid/streamgrid.yml
are read when they exist (the log says which); else the defaults apply.
Every configuration key can be overridden with SG_<SECTION>_<KEY>.
`

// configSearch is where a configuration is looked for without --config, in order.
var configSearch = []string{"streamgrid.yml", "/etc/streamgrid/streamgrid.yml"}

// findConfig returns the configuration file to read: the explicit one, else
// the first of configSearch that exists ("" when none does).
func findConfig(explicit string, exists func(string) bool) string {
	if explicit != "" {
		return explicit
	}
	for _, p := range configSearch {
		if exists(p) {
			return p
		}
	}
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// versionLine is what `streamgrid version` prints.
func versionLine() string {
	return fmt.Sprintf("streamgrid %s (%s, %s/%s)", version.String(), version.GoVersion(), runtime.GOOS, runtime.GOARCH)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	for _, a := range args {
		if a == "--version" || a == "-version" {
			fmt.Fprintln(stdout, versionLine())
			return 0
		}
		if a == "--" {
			break
		}
	}
	role := node.RoleRun
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		role, args = args[0], args[1:]
	}
	switch role {
	case node.RoleRun, node.RoleBus, node.RoleEdge, node.RoleOrigin, node.RoleCache:
	case "loadtest":
		return runLoadtest(args, stderr)
	case "camera":
		return runCamera(args, stderr)
	case "sign":
		return runSign(args, os.Stdout, stderr)
	case "passwd":
		return runPasswd(args, os.Stdin, os.Stdout, stderr)
	case "check":
		return runCheck(args, stdout, stderr)
	case "encoders":
		return runEncoders(args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "version":
		fmt.Fprintln(stdout, versionLine())
		return 0
	default:
		fmt.Fprintf(stderr, "streamgrid: unknown command %q\n\n%s", role, usage)
		return 2
	}
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stdout, usage) }
	cfgFlag := fs.String("config", "", "configuration file (default: ./streamgrid.yml, then /etc/streamgrid/streamgrid.yml, when present)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfgPath := findConfig(*cfgFlag, fileExists)
	cfg, err := config.Load(cfgPath, os.Environ())
	if err != nil {
		fmt.Fprintf(stderr, "streamgrid: %v\n", err)
		return 2
	}
	level := new(slog.LevelVar)
	log := newLogger(cfg.Node, level, stderr)
	if cfgPath != "" {
		abs, _ := filepath.Abs(cfgPath)
		log.Info("configuration read", "file", abs, "version", version.String())
	} else {
		log.Info("no configuration file (looked for "+strings.Join(configSearch, ", ")+"): defaults and SG_* variables apply", "version", version.String())
	}

	// Signals are caught before the node starts: a SIGHUP that arrives as
	// the start-up log line is written must reload, not kill, the process.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	n := &node.Node{Config: cfg, Role: role, Log: log, LogLevel: level}
	if err := n.Start(); err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	sig := waitReloading(n, cfgPath, log, hup, sigs)
	log.Info("signal received, draining (a second signal exits at once)", "signal", sig.String(), "timeout", cfg.Node.DrainTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Node.DrainTimeout)
	done := make(chan struct{})
	go func() {
		if err := n.Drain(ctx); err != nil {
			log.Warn("drain incomplete; closing", "err", err)
		}
		n.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-sigs:
		log.Warn("second signal: exiting now")
	}
	cancel()
	return 0
}

func newLogger(c config.Node, level *slog.LevelVar, w io.Writer) *slog.Logger {
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
