// Command streamgrid is the whole cluster in one binary: `streamgrid run`
// (the default) is the all-in-one node; `bus`, `edge`, `origin` and `cache`
// run one role each; `loadtest` drives synthetic cameras and viewers.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/node"
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
  passwd    hash a password read from stdin for auth.users[].pass
            (echo -n 'secret' | streamgrid passwd [--sha256])

Every configuration key can be overridden with SG_<SECTION>_<KEY>.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
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
	case "passwd":
		return runPasswd(args, os.Stdin, os.Stdout, stderr)
	case "help":
		fmt.Fprint(stderr, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "streamgrid: unknown command %q\n\n%s", role, usage)
		return 2
	}
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	cfgPath := fs.String("config", "", "configuration file (streamgrid.yml)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*cfgPath, os.Environ())
	if err != nil {
		fmt.Fprintf(stderr, "streamgrid: %v\n", err)
		return 2
	}
	log := newLogger(cfg.Node, stderr)

	n := &node.Node{Config: cfg, Role: role, Log: log}
	if err := n.Start(); err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	sig := <-sigs
	log.Info("signal received, draining (a second signal exits at once)", "signal", sig.String(), "timeout", cfg.Node.DrainTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Node.DrainTimeout)
	done := make(chan struct{})
	go func() {
		n.Drain(ctx)
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

func newLogger(c config.Node, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
