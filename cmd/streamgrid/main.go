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
  loadtest  synthetic cameras and viewers (streamgrid loadtest --help), or the
            registry and ownership at fleet scale (loadtest --control-plane --help)
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
	keepSysmonAwake()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if hasVersionFlag(args) {
		fmt.Fprintln(stdout, versionLine())
		return 0
	}
	role := node.RoleRun
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		role, args = args[0], args[1:]
	}
	if code, done := runCommand(role, args, stdout, stderr); done {
		return code
	}
	cfgPath, cfg, code := loadConfig(role, args, stdout, stderr)
	if cfg == nil {
		return code
	}
	level := new(slog.LevelVar)
	log := newLogger(cfg.Node, level, stderr)
	logConfigSource(log, cfgPath)
	return runNode(&node.Node{Config: cfg, Role: role, Log: log, LogLevel: level}, cfgPath, log)
}

// hasVersionFlag reports a --version (or -version) before any "--".
func hasVersionFlag(args []string) bool {
	for _, a := range args {
		if a == "--version" || a == "-version" {
			return true
		}
		if a == "--" {
			break
		}
	}
	return false
}

// runCommand runs the commands that are not a node role; done is false for
// a role, which run starts as a node.
func runCommand(role string, args []string, stdout, stderr io.Writer) (code int, done bool) {
	switch role {
	case node.RoleRun, node.RoleBus, node.RoleEdge, node.RoleOrigin, node.RoleCache:
		return 0, false
	case "loadtest":
		return runLoadtest(args, stderr), true
	case "camera":
		return runCamera(args, stderr), true
	case "sign":
		return runSign(args, os.Stdout, stderr), true
	case "passwd":
		return runPasswd(args, os.Stdin, os.Stdout, stderr), true
	case "check":
		return runCheck(args, stdout, stderr), true
	case "encoders":
		return runEncoders(args, stdout, stderr), true
	case "help":
		fmt.Fprint(stdout, usage)
		return 0, true
	case "version":
		fmt.Fprintln(stdout, versionLine())
		return 0, true
	default:
		fmt.Fprintf(stderr, "streamgrid: unknown command %q\n\n%s", role, usage)
		return 2, true
	}
}

// loadConfig parses a role's flags and loads its configuration; when cfg is
// nil, run exits with code.
func loadConfig(role string, args []string, stdout, stderr io.Writer) (cfgPath string, cfg *config.Config, code int) {
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stdout, usage) }
	cfgFlag := fs.String("config", "", "configuration file (default: ./streamgrid.yml, then /etc/streamgrid/streamgrid.yml, when present)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", nil, 0
		}
		return "", nil, 2
	}
	cfgPath = findConfig(*cfgFlag, fileExists)
	cfg, err := config.Load(cfgPath, os.Environ())
	if err != nil {
		fmt.Fprintf(stderr, "streamgrid: %v\n", err)
		return "", nil, 2
	}
	return cfgPath, cfg, 0
}

// logConfigSource logs which configuration file was read, if any.
func logConfigSource(log *slog.Logger, cfgPath string) {
	if cfgPath != "" {
		abs, _ := filepath.Abs(cfgPath)
		log.Info("configuration read", "file", abs, "version", version.String())
	} else {
		log.Info("no configuration file (looked for "+strings.Join(configSearch, ", ")+"): defaults and SG_* variables apply", "version", version.String())
	}
}

// runNode starts n, reloads cfgPath on SIGHUP, and drains then closes n on
// SIGINT or SIGTERM (a second one exits at once). log is the process's
// logger (n's own gains the node's name at Start).
func runNode(n *node.Node, cfgPath string, log *slog.Logger) int {
	// Signals are caught before the node starts: a SIGHUP that arrives as
	// the start-up log line is written must reload, not kill, the process.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := n.Start(); err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	sig := waitReloading(n, cfgPath, log, hup, sigs)
	timeout := n.Config.Node.DrainTimeout
	log.Info("signal received, draining (a second signal exits at once)", "signal", sig.String(), "timeout", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
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
