package config

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// TestWatcherSeesEditorSaves: a save by rename (vim, sed -i) and an in-place
// write both trigger a reload; a save that changes nothing and other files
// in the directory do not.
func TestWatcherSeesEditorSaves(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "streamgrid.yml")
	if err := os.WriteFile(path, []byte("node: {name: a}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	w := &Watcher{Path: path, Debounce: 20 * time.Millisecond, OnChange: func() { calls.Add(1) }}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	waitCalls := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for calls.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("OnChange called %d times, want %d", calls.Load(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	save := func(body string) { // write a temporary file, rename it over
		tmp := filepath.Join(dir, ".streamgrid.yml.swp")
		if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	save("node: {name: b}\n")
	waitCalls(1)
	if err := os.WriteFile(path, []byte("node: {name: c}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitCalls(2)
	// Same contents, and another file: read, but no call.
	checked := w.checked.Load()
	save("node: {name: c}\n")
	if err := os.WriteFile(filepath.Join(dir, "other.yml"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for w.checked.Load() == checked {
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not look at the file after the events")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("OnChange called %d times after a save that changed nothing, want 2", n)
	}
	save("node: {name: d}\n")
	waitCalls(3)
}
