package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser is a headless Chromium for the page tests.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// startBrowser starts headless Chromium (startChrome: skipped without one,
// failed under CI=true) with a deadline for everything the test does in it.
func startBrowser(t *testing.T, limit time.Duration) *browser {
	t.Helper()
	ctx, cancel := context.WithTimeout(startChrome(t).ctx, limit)
	t.Cleanup(cancel)
	return &browser{t: t, ctx: ctx}
}

// startBrowserNode starts headless Chromium, with three minutes for what the
// test does in it, and an all-in-one node serving the HLS variant ("" for
// the default) whose streams outlive the browser's pauses (10 s idle
// timeout). The caller publishes with startCamera.
func startBrowserNode(t *testing.T, variant string) (*browser, Addrs) {
	t.Helper()
	requireFFmpeg(t)
	b := startBrowser(t, 3*time.Minute)
	c := allInOneConfig(t)
	if variant != "" {
		c.Origin.HLS.Variant = variant
	}
	c.Origin.HLS.IdleTimeout = 10 * time.Second
	return b, startNode(t, c, RoleRun).Addrs()
}

func (b *browser) run(actions ...chromedp.Action) {
	b.t.Helper()
	if err := chromedp.Run(b.ctx, actions...); err != nil {
		b.t.Fatalf("chromium: %v", err)
	}
}

// playerState is what the player page reports (window.sgPlayer and its <video>).
type playerState struct {
	Mode     string  `json:"mode"`
	State    string  `json:"state"`
	Error    string  `json:"error"`
	Restarts int     `json:"restarts"`
	Segments int     `json:"segments"`
	Time     float64 `json:"t"`
	Width    int     `json:"w"`
	Height   int     `json:"h"`
	Status   string  `json:"status"`
	Native   string  `json:"native"`
}

const playerProbe = `(() => { const v = document.getElementById('v'), p = window.sgPlayer || {};
	return {mode: p.mode, state: p.state, error: p.error, restarts: p.restarts, segments: p.segments,
		t: v.currentTime, w: v.videoWidth, h: v.videoHeight,
		status: (document.getElementById('st') || {}).textContent || '', native: p.nativeError || ''}; })()`

// waitPlaying loads url and polls the page until its video shows a picture
// and its currentTime moved on by more than 2 s (the stream's timestamps need
// not start at 0).
func (b *browser) waitPlaying(url string, limit time.Duration) playerState {
	b.t.Helper()
	b.run(chromedp.Navigate(url))
	var st playerState
	first := -1.0
	for deadline := time.Now().Add(limit); ; time.Sleep(500 * time.Millisecond) {
		b.run(chromedp.Evaluate(playerProbe, &st))
		if st.Width > 0 && st.Time > 0 && first < 0 {
			first = st.Time
		}
		if first >= 0 && st.Time-first > 2 {
			return st
		}
		if st.State == "error" {
			b.t.Fatalf("%s: the player gave up: %+v", url, st)
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s did not play within %s: %+v", url, limit, st)
		}
	}
}

// TestPlayerPagePlaysInChromium opens the cache's player page of a stream
// on the default configuration (Low-Latency HLS) in headless Chromium: the
// page plays it (the native player, or ours when the native one refuses
// the playlist), and plays it with the MSE player forced (?player=mse).
func TestPlayerPagePlaysInChromium(t *testing.T) {
	b, a := startBrowserNode(t, "")
	startCamera(t, "rtsp://"+a.RTSP+"/live/page")
	page := "http://" + a.Cache + "/live/page/"

	code, body := httpGet(t, page)
	if code != 200 || !strings.Contains(body, "<video") || !strings.Contains(body, "live/page") {
		t.Fatalf("player page: %d %.200s", code, body)
	}
	for _, bad := range []string{"http://", "https://", "//cdn"} {
		if strings.Contains(body, bad) {
			t.Errorf("the player page refers to %q: it must load nothing from elsewhere", bad)
		}
	}
	if code, _ := httpGet(t, "http://"+a.Cache+"/live/../x/"); code != 400 {
		t.Errorf("a bad stream path's page: %d, want 400", code)
	}

	st := b.waitPlaying(page, 60*time.Second)
	t.Logf("player page (auto): %s player, currentTime %.2f s, picture %dx%d, %d segments, status %q, native player: %q",
		st.Mode, st.Time, st.Width, st.Height, st.Segments, st.Status, st.Native)

	st = b.waitPlaying(page+"?player=mse", 60*time.Second)
	if st.Mode != "mse" || st.Segments == 0 {
		t.Fatalf("?player=mse did not play with the MSE player: %+v", st)
	}
	t.Logf("player page (mse): currentTime %.2f s, picture %dx%d, %d segments appended, %d restarts",
		st.Time, st.Width, st.Height, st.Segments, st.Restarts)
}

// TestPlayerPageMPEGTS: an MPEG-TS stream plays in the page through
// Chromium's native HLS player, and the MSE player, forced, says clearly
// that such a stream needs native HLS instead of failing silently.
func TestPlayerPageMPEGTS(t *testing.T) {
	b, a := startBrowserNode(t, "mpegts")
	startCamera(t, "rtsp://"+a.RTSP+"/live/ts")
	page := "http://" + a.Cache + "/live/ts/"

	b.run(chromedp.Navigate(page + "?player=mse"))
	var st playerState
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		b.run(chromedp.Evaluate(playerProbe, &st))
		if st.State == "error" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the MSE player did not refuse the MPEG-TS stream: %+v", st)
		}
	}
	if !strings.Contains(st.Error, "MPEG-TS") || !strings.Contains(st.Status, "native HLS") {
		t.Fatalf("the MSE player's message on an MPEG-TS stream: %+v", st)
	}
	t.Logf("MSE player on MPEG-TS: %q", st.Error)

	var native string
	b.run(chromedp.Evaluate(`document.getElementById('v').canPlayType('application/vnd.apple.mpegurl')`, &native))
	if native == "" {
		t.Skip("this Chromium has no native HLS player: the MPEG-TS stream cannot play here")
	}
	// Chromium's own HLS player may refuse a playlist (the page then falls
	// back to the MSE player, which says the stream needs native HLS).
	b.run(chromedp.Navigate(page))
	first := -1.0
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		b.run(chromedp.Evaluate(playerProbe, &st))
		if st.Native != "" {
			t.Skipf("Chromium's native HLS player refused the MPEG-TS stream (%s); the page then said: %q", st.Native, st.Status)
		}
		if st.Width > 0 && first < 0 {
			first = st.Time
		}
		if first >= 0 && st.Time-first > 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the native player did not play the MPEG-TS stream: %+v", st)
		}
	}
	if st.Mode != "native" {
		t.Fatalf("the page did not use the native player: %+v", st)
	}
	t.Logf("player page (native, MPEG-TS): currentTime %.2f s, picture %dx%d", st.Time, st.Width, st.Height)
}

// TestPlayerPageNative: with the fmp4 variant, which Chromium's own HLS
// player accepts, the page plays through the native player.
func TestPlayerPageNative(t *testing.T) {
	b, a := startBrowserNode(t, "fmp4")
	startCamera(t, "rtsp://"+a.RTSP+"/live/nat")
	page := "http://" + a.Cache + "/live/nat/"
	b.run(chromedp.Navigate(page))
	var native string
	b.run(chromedp.Evaluate(`document.getElementById('v').canPlayType('application/vnd.apple.mpegurl')`, &native))
	if native == "" {
		t.Skip("this Chromium has no native HLS player")
	}
	// Give the playlist a few segments, as a live player starts from its end.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		if _, body, err := fetch("http://" + a.Cache + "/live/nat/video1_stream.m3u8"); err == nil && len(segments(body)) >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no 4 segments within 30 s")
		}
	}
	st := b.waitPlaying(page, 60*time.Second)
	if st.Mode != "native" || st.Native != "" {
		t.Fatalf("the page did not play with the native player: %+v", st)
	}
	t.Logf("player page (native, fmp4): currentTime %.2f s, picture %dx%d", st.Time, st.Width, st.Height)
}
