// Package testkit holds what the tests of every package share: polling for a
// condition instead of sleeping, a logger that is quiet unless asked, reading
// a metric from a registry, skipping (or, under CI, failing) when an external
// tool is missing, and marking the slow tests that -short leaves out.
//
// It imports nothing of streamgrid's, so the tests of any package — bus's and
// media's included — can use it without an import cycle. Helpers that need a
// streamgrid package live beside it (testkit/testbus for an embedded bus).
//
// The fast loop is `go test -short ./...`: tests that run ffmpeg, Chromium or
// Docker, and multi-second cluster or soak tests, call Slow first. Without
// -short everything runs, as CI does.
package testkit

import (
	"log/slog"
	"os"
	"testing"
	"time"
)

// LogEnv is the environment variable that turns test logs on: with
// SG_TEST_LOG=1 (any non-empty value) the components under test log at Debug
// to stderr; without it their logs are discarded.
const LogEnv = "SG_TEST_LOG"

// Logger returns the logger to hand to a component under test: silent unless
// SG_TEST_LOG is set, then Debug-level text on stderr tagged with the test's
// name. It writes to stderr rather than t.Log so that a goroutine logging
// after its test ended does not panic.
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv(LogEnv) == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).
		With("test", t.Name())
}

// WaitFor polls cond until it returns true and returns how long that took;
// after timeout it fails the test with "timed out after <timeout> waiting for
// <what>". It polls often at first (a condition that holds at once costs
// nothing) and then every timeout/500, between 10 ms and 200 ms. Like
// t.Fatal, call it from the test's goroutine.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	step := min(max(timeout/500, 10*time.Millisecond), 200*time.Millisecond)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(wait)
		wait = min(2*wait, step)
	}
	return time.Since(start)
}

// Slow skips the test under -short. Call it first in tests that run external
// tools (ffmpeg, Chromium, Docker) or take seconds (clusters, soaks): the
// -short loop stays under a minute, and a full run still covers them.
func Slow(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow test: skipped under -short (run without -short to include it)")
	}
}
