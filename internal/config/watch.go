package config

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watcher calls OnChange when the contents of the file at Path change.
//
// It watches the file's directory, not the file: editors save by writing a
// temporary file and renaming it over the original (vim, emacs, sed -i), and
// Kubernetes swaps a ConfigMap's files through a symlink. Either way the
// watch on the original inode would go silent. Events in the directory are
// debounced, then the file is read and its hash compared with the last one,
// so saves that change nothing and other files' events cost one read.
type Watcher struct {
	// Path is the configuration file.
	Path string
	// Debounce is how long the directory must stay quiet before the file is
	// read. Default 250 ms.
	Debounce time.Duration
	// OnChange is called (on the watcher's goroutine, one call at a time)
	// after the file's contents changed.
	OnChange func()
	// Log. Default slog.Default().
	Log *slog.Logger

	w       *fsnotify.Watcher
	last    [sha256.Size]byte
	checked atomic.Int32 // debounced reads of the file (tests)
	done    chan struct{}
	once    sync.Once
}

// Start begins watching.
func (w *Watcher) Start() error {
	if w.Path == "" || w.OnChange == nil {
		return errors.New("config watcher: Path and OnChange are required")
	}
	if w.Debounce <= 0 {
		w.Debounce = 250 * time.Millisecond
	}
	if w.Log == nil {
		w.Log = slog.Default()
	}
	abs, err := filepath.Abs(w.Path)
	if err != nil {
		return fmt.Errorf("config watcher: %w", err)
	}
	w.Path = abs
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("config watcher: %w", err)
	}
	if err := fw.Add(filepath.Dir(abs)); err != nil {
		fw.Close()
		return fmt.Errorf("config watcher: %w", err)
	}
	w.w = fw
	w.last, _ = w.hash()
	w.done = make(chan struct{})
	go w.run()
	return nil
}

// Close stops watching and waits. Calling it twice, or before Start, is harmless.
func (w *Watcher) Close() {
	if w.w != nil {
		w.once.Do(w.stop)
	}
}

// stop closes the file watch, which ends run, and waits for it.
func (w *Watcher) stop() {
	w.w.Close()
	<-w.done
}

func (w *Watcher) hash() ([sha256.Size]byte, error) {
	b, err := os.ReadFile(w.Path)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(b), nil
}

func (w *Watcher) run() {
	defer close(w.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case _, ok := <-w.w.Events:
			if !ok {
				return
			}
			// Any event in the directory may be the file (a rename onto
			// it, a symlink swap): look once things are quiet.
			timer.Reset(w.Debounce)
		case err, ok := <-w.w.Errors:
			if !ok {
				return
			}
			w.Log.Warn("config file watch error", "err", err)
		case <-timer.C:
			h, err := w.hash()
			w.checked.Add(1)
			if err != nil {
				// Mid-save (removed before the rename) or gone: a later event says more.
				w.Log.Debug("config file not readable", "file", w.Path, "err", err)
				continue
			}
			if bytes.Equal(h[:], w.last[:]) {
				continue
			}
			w.last = h
			w.Log.Info("config file changed; reloading", "file", w.Path)
			w.OnChange()
		}
	}
}
