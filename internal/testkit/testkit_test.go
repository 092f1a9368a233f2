package testkit

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a testing.TB that records Fatalf and Skip instead of ending
// the goroutine, so the helpers' failure paths can be checked.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

func (r *recorder) Fatal(args ...any) { r.fatal = fmt.Sprint(args...) }

func (r *recorder) Skipf(format string, args ...any) { r.skip = fmt.Sprintf(format, args...) }

func (r *recorder) Skip(args ...any) { r.skip = fmt.Sprint(args...) }

func TestWaitForReturnsOnceTrue(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	go func() {
		for range 3 {
			n.Add(1)
		}
	}()
	WaitFor(t, 5*time.Second, "three increments", func() bool { return n.Load() == 3 })
	calls := 0
	WaitFor(t, 5*time.Second, "the third call", func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3", calls)
	}
}

func TestWaitForTimesOut(t *testing.T) {
	t.Parallel()
	r := &recorder{TB: t}
	calls := 0
	WaitFor(r, 30*time.Millisecond, "nothing", func() bool {
		calls++
		return r.fatal != "" // ends the loop once the timeout was reported
	})
	if !strings.Contains(r.fatal, "timed out after 30ms waiting for nothing") {
		t.Fatalf("failure %q", r.fatal)
	}
	if calls < 2 {
		t.Fatalf("cond polled %d times", calls)
	}
}

func TestRequireToolSkipsOrFails(t *testing.T) {
	const missing = "streamgrid-no-such-tool"
	for _, ci := range []string{"", "true"} {
		t.Run("CI="+ci, func(t *testing.T) {
			t.Setenv("CI", ci)
			r := &recorder{TB: t}
			if p := RequireTool(r, "apt-get install it", missing); p != "" {
				t.Fatalf("path %q for a missing tool", p)
			}
			got, other := r.skip, r.fatal
			if ci == "true" {
				got, other = r.fatal, r.skip
			}
			if !strings.Contains(got, missing+" is missing") || !strings.Contains(got, "apt-get install it") || other != "" {
				t.Fatalf("skip %q, fatal %q", r.skip, r.fatal)
			}
		})
	}
	r := &recorder{TB: t}
	if p := RequireTool(r, "", missing, "go"); p == "" || r.skip != "" || r.fatal != "" {
		t.Fatalf("go not found: path %q, skip %q, fatal %q", p, r.skip, r.fatal)
	}
}

func TestLoggerFollowsEnv(t *testing.T) {
	t.Setenv(LogEnv, "")
	if Logger(t).Enabled(t.Context(), 8) {
		t.Fatal("logger enabled without " + LogEnv)
	}
	t.Setenv(LogEnv, "1")
	if !Logger(t).Enabled(t.Context(), -4) {
		t.Fatal("debug not enabled with " + LogEnv + "=1")
	}
}

func TestBufferConcurrent(t *testing.T) {
	t.Parallel()
	var b Buffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				_, _ = b.Write([]byte("x"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if n := len(b.String()); n != 400 {
		t.Fatalf("%d bytes, want 400", n)
	}
}

func TestFreeUDPPair(t *testing.T) {
	t.Parallel()
	rtp, rtcp := FreeUDPPair(t)
	if rtp%2 != 0 || rtcp != rtp+1 {
		t.Fatalf("pair %d, %d", rtp, rtcp)
	}
}

func TestReadToEOF(t *testing.T) {
	t.Parallel()
	n := 0
	ReadToEOF(t, func() error {
		if n++; n == 3 {
			return io.EOF
		}
		return nil
	})
	if n != 3 {
		t.Fatalf("read called %d times, want 3", n)
	}
	r := &recorder{TB: t}
	boom := errors.New("boom")
	calls := 0
	ReadToEOF(r, func() error {
		if calls++; calls > 1 {
			return io.EOF // the recorder does not stop the goroutine
		}
		return boom
	})
	if r.fatal == "" {
		t.Fatal("an error other than EOF did not fail the test")
	}
}

func TestGetTextEndsEveryLineWithLF(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "#EXTM3U\r\nseg.ts")
	}))
	defer srv.Close()
	code, body, err := GetText(nil, srv.URL)
	if err != nil || code != http.StatusTeapot || body != "#EXTM3U\nseg.ts\n" {
		t.Fatalf("GetText: %d %q %v", code, body, err)
	}
	if _, _, err := GetText(&http.Client{}, "http://127.0.0.1:0/"); err == nil {
		t.Fatal("no error for a closed port")
	}
}

func TestStartRefused(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	stopped := false
	if err := StartRefused(t, func() error { return boom }, func() { stopped = true }); err != boom || stopped {
		t.Fatalf("error %v, stopped %v", err, stopped)
	}
	r := &recorder{TB: t}
	if err := StartRefused(r, func() error { return nil }, func() { stopped = true }); err != nil || !stopped || r.fatal == "" {
		t.Fatalf("a start that succeeds: error %v, stopped %v, fatal %q", err, stopped, r.fatal)
	}
}

func TestFFmpegDecode(t *testing.T) {
	Slow(t)
	ffmpeg := RequireFFmpeg(t)
	clip := filepath.Join(t.TempDir(), "clip.ts")
	if out, err := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=s=64x64:d=1",
		"-c:v", "mpeg2video", clip).CombinedOutput(); err != nil {
		t.Fatalf("making the clip: %v\n%s", err, out)
	}
	if err := FFmpegDecode(clip, 1); err != nil {
		t.Fatalf("decoding a good clip: %v", err)
	}
	if err := FFmpegDecode("/nonexistent/streamgrid.ts", 1); err == nil || !strings.Contains(err.Error(), "nonexistent") {
		t.Fatalf("decoding a missing file: %v", err)
	}
}
