package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/node"
)

// waitReloading reloads the configuration on SIGHUP and when the file at
// path changes, until a signal arrives on stop; it returns that signal.
func waitReloading(n *node.Node, path string, log *slog.Logger, stop <-chan os.Signal) os.Signal {
	reload := func() { _ = n.ReloadFile(path) }
	if path != "" {
		w := &config.Watcher{Path: path, OnChange: reload, Log: log}
		if err := w.Start(); err != nil {
			log.Warn("config file not watched; SIGHUP still reloads it", "err", err)
		}
		defer w.Close()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
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
