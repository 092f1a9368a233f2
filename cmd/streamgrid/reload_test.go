package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

const testConfig = `node: {name: hup, log_level: %s}
api: {address: "127.0.0.1:0"}
bus: {server: {listen: "127.0.0.1:0", store_dir: %q}}
gossip: {bind: "127.0.0.1:0"}
edge: {rtsp_address: "127.0.0.1:0", rtp_address: "", rtcp_address: "", rtmp_address: "127.0.0.1:0"}
origin: {http_address: "127.0.0.1:0"}
cache: {http_address: "127.0.0.1:0"}
`

// TestSIGHUPReloads runs the command, changes its file, sends SIGHUP and
// SIGTERM to this process, and reads the log: the reload was applied, and a
// key that needs a restart was named.
func TestSIGHUPReloads(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "streamgrid.yml")
	write := func(level, extra string) {
		body := strings.Replace(testConfig, "%s", level, 1)
		body = strings.Replace(body, "%q", `"`+filepath.Join(dir, "js")+`"`, 1) + extra
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("info", "")
	var log testkit.Buffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"run", "--config", file}, io.Discard, &log) }()
	waitLog := func(what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(log.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", what, log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitLog("streamgrid node started")
	// The file watcher may see this change too; SIGHUP makes sure.
	write("debug", "hooks: {queue_size: 7}\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("applied=[node.log_level]")
	waitLog("key=hooks.queue_size")
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case rc := <-done:
		if rc != 0 {
			t.Fatalf("exit code %d", rc)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}
