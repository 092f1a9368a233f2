package main

import (
	"log/slog"
	"os"

	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/node"
)

// waitReloading reloads the configuration on every signal from hup (SIGHUP,
// caught by the caller before the node started) and when the file at path
// changes, until a signal arrives on stop; it returns that signal.
func waitReloading(n *node.Node, path string, log *slog.Logger, hup, stop <-chan os.Signal) os.Signal {
	reload := func() { _ = n.ReloadFile(path) }
	if path != "" {
		w := &config.Watcher{Path: path, OnChange: reload, Log: log}
		if err := w.Start(); err != nil {
			log.Warn("config file not watched; SIGHUP still reloads it", "err", err)
		}
		defer w.Close()
	}
	for {
		select {
		case <-hup:
			log.Info("SIGHUP: reloading the configuration", "file", path)
			reload()
		case sig := <-stop:
			return sig
		}
	}
}
