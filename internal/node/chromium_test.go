package node

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// chromeProc is one headless Chromium.
type chromeProc struct {
	ctx    context.Context
	cancel func()
}

func startChrome(t *testing.T) *chromeProc {
	t.Helper()
	testkit.Slow(t)
	profile := chromeProfileDir(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(testkit.RequireChromium(t)),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("mute-audio", true),
		// Several tabs play at once: none is a "background" tab whose
		// muted video Chromium would pause.
		chromedp.Flag("disable-background-media-suspend", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(profile),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &chromeProc{ctx: ctx, cancel: func() { cancel(); acancel() }}
	if err := chromedp.Run(ctx); err != nil { // starts the browser
		b.cancel()
		t.Fatalf("chromium: %v", err)
	}
	var proc *os.Process
	if c := chromedp.FromContext(ctx); c != nil && c.Browser != nil {
		proc = c.Browser.Process()
	}
	// Registered after the profile's cleanup, so it runs before it.
	t.Cleanup(func() {
		b.cancel()
		waitExited(proc, 5*time.Second)
	})
	return b
}

// chromeProfileDir is a fresh Chromium profile directory. It is not
// t.TempDir: Chromium's helper processes may still write to the profile for a
// moment after the browser is cancelled, and t.TempDir's cleanup fails the
// test when its RemoveAll meets them ("directory not empty"). This one's
// cleanup, which runs after the browser's (cleanups run last-registered
// first), retries for a couple of seconds and only logs if it gives up.
func chromeProfileDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "streamgrid-chrome-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var err error
		for deadline := time.Now().Add(3 * time.Second); ; {
			if err = os.RemoveAll(dir); err == nil {
				return
			}
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("chromium profile %s left behind: %v", dir, err)
	})
	return dir
}

// waitExited waits, up to limit, for proc (reaped by chromedp) to be gone.
func waitExited(proc *os.Process, limit time.Duration) {
	if proc == nil {
		return
	}
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); {
		if proc.Signal(syscall.Signal(0)) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// videoProbe reads the page's <video id="v">, with the frames it decoded.
const videoProbe = `(() => { const v = document.getElementById('v');
	const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {totalVideoFrames: 0};
	return {t: v.currentTime, w: v.videoWidth, h: v.videoHeight, rs: v.readyState, f: q.totalVideoFrames,
		e: v.error ? v.error.code + ' ' + v.error.message : ''}; })()`

// tabState is what videoProbe reports.
type tabState struct {
	Time   float64 `json:"t"`
	Width  int     `json:"w"`
	Height int     `json:"h"`
	Ready  int     `json:"rs"`
	Frames int     `json:"f"`
	Error  string  `json:"e"`
}

// videoPage serves a page whose <video> plays src with the browser's own
// HLS player, as a player page does.
func videoPage(t *testing.T, src string) string {
	t.Helper()
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><body><video id="v" src="%s" muted autoplay playsinline></video></body></html>`, src)
	}))
	t.Cleanup(page.Close)
	return page.URL
}

// open loads a page in a new tab; the tab closes with the test.
func (b *chromeProc) open(t *testing.T, url string) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(cancel)
	if err := chromedp.Run(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return ctx
}

func probe(t *testing.T, ctx context.Context) tabState {
	t.Helper()
	var st tabState
	if err := chromedp.Run(ctx, chromedp.Evaluate(videoProbe, &st)); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return st
}

// waitPlaying polls the tab until its video's currentTime passes minTime;
// a media error fails at once (no reload: a viewer's first try must play).
func waitPlaying(t *testing.T, ctx context.Context, what string, minTime float64, limit time.Duration) tabState {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		st := probe(t, ctx)
		if st.Error != "" {
			t.Fatalf("%s: chromium media error %q", what, st.Error)
		}
		if st.Time > minTime && st.Width > 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: chromium did not play within %v: %+v", what, limit, st)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestDefaultStreamPlaysInChromium plays the default configuration's
// (Low-Latency) stream with Chromium's built-in HLS player from
// index.m3u8, starting in the first second of the stream and in its
// middle: the cache answers Chromium's <video> with the compatible view.
func TestDefaultStreamPlaysInChromium(t *testing.T) {
	b := startChrome(t)
	c := allInOneConfig(t)
	c.Origin.HLS.IdleTimeout = 10 * time.Second
	n := startNode(t, c, RoleRun)
	a := n.Addrs()
	src := "http://" + a.Cache + "/live/chrome/index.m3u8"
	startCamera(t, "rtsp://"+a.RTSP+"/live/chrome")

	// At once: the page asks before the stream has its first segment.
	first := b.open(t, videoPage(t, src))
	st := waitPlaying(t, first, "start of the stream", 2, 40*time.Second)
	t.Logf("chromium plays from the start: currentTime %.2f s, %d frames, %dx%d", st.Time, st.Frames, st.Width, st.Height)

	// In the middle of the stream.
	mid := b.open(t, videoPage(t, src))
	st = waitPlaying(t, mid, "middle of the stream", 2, 40*time.Second)
	t.Logf("chromium plays from the middle: currentTime %.2f s, %d frames", st.Time, st.Frames)

	// LL-capable clients keep the Low-Latency playlists on the same URL.
	_, body, err := fetch(src)
	if err != nil {
		t.Fatal(err)
	}
	if code, media, _ := fetch("http://" + a.Cache + "/live/chrome/" + lastLine(body)); code != 200 || !contains(media, "#EXT-X-SERVER-CONTROL") {
		t.Fatalf("index.m3u8 without a browser's headers is not Low-Latency (%d):\n%s", code, media)
	}
}

func lastLine(s string) string {
	lines := strings.Fields(s)
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
