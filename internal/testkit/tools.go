package testkit

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// CI reports whether the tests run under CI (CI=true), where a missing tool
// the project installs is a failure rather than a skip.
func CI() bool { return os.Getenv("CI") == "true" }

// RequireTool returns the path of the first of names found on PATH. When none
// is, it skips the test, naming the tool and how to install it (install, e.g.
// "apt-get install ffmpeg"); under CI=true it fails the test instead, because
// CI installs every tool the tests use.
func RequireTool(t testing.TB, install string, names ...string) string {
	t.Helper()
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if CI() {
		t.Fatalf("%s is missing, and CI=true requires it: %s", names[0], install)
		return ""
	}
	t.Skipf("%s is missing: skipping (%s to run this test)", names[0], install)
	return ""
}

// RequireFFmpeg returns the path of ffmpeg, skipping the test when it is
// missing (failing it under CI=true).
func RequireFFmpeg(t testing.TB) string {
	t.Helper()
	return RequireTool(t, "apt-get install ffmpeg", "ffmpeg")
}

// RequireFFprobe returns the path of ffprobe, skipping the test when it is
// missing (failing it under CI=true).
func RequireFFprobe(t testing.TB) string {
	t.Helper()
	return RequireTool(t, "apt-get install ffmpeg", "ffprobe")
}

// chromiumNames are the names a Chromium binary goes by.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// RequireChromium returns the path of a Chromium (or Chrome) binary, skipping
// the test when none is installed (failing it under CI=true).
func RequireChromium(t testing.TB) string {
	t.Helper()
	return RequireTool(t, "apt-get install chromium", chromiumNames...)
}

// RequireDocker skips the test unless a Docker engine answers `docker info`.
// It never fails: CI runs the compose test on its own, where Docker is.
func RequireDocker(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is missing: skipping (install Docker to run this test)")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skipf("no Docker engine answers `docker info` (%v): skipping", err)
	}
}

// FFmpegDecode decodes the first seconds of url with ffmpeg (for 40 s at
// most) and returns an error, with what ffmpeg said, unless ffmpeg decoded
// them without a word.
func FFmpegDecode(url string, seconds int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error",
		"-i", url, "-t", strconv.Itoa(seconds), "-f", "null", "-").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		return fmt.Errorf("ffmpeg: %v\n%s", err, out)
	}
	return nil
}
