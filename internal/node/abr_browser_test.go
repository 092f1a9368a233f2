package node

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// videoState is what the test page's <video> element reports.
type videoState struct {
	Time   float64 `json:"t"`
	Width  int     `json:"w"`
	Height int     `json:"h"`
	Ready  int     `json:"rs"`
	Error  string  `json:"e"`
}

// playsInChromium loads src into the <video> element of a page in headless
// Chromium (its built-in HLS player) and waits up to 45 s until it plays
// (what says what src is, for the log). Chromium's HLS player gives up for
// good on a fetch that fails or is slow under load; like a viewer, the test
// reloads the page, twice at most.
func playsInChromium(t *testing.T, src, what string) {
	t.Helper()
	pageURL := videoPage(t, src)
	ctx := startBrowser(t, 90*time.Second).ctx
	if err := chromedp.Run(ctx, chromedp.Navigate(pageURL)); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	reloads := 0
	const probe = `(() => { const v = document.getElementById('v');
		return {t: v.currentTime, w: v.videoWidth, h: v.videoHeight, rs: v.readyState,
			e: v.error ? v.error.code + ' ' + v.error.message : ''}; })()`
	var st videoState
	deadline := time.Now().Add(45 * time.Second)
	for {
		if err := chromedp.Run(ctx, chromedp.Evaluate(probe, &st)); err != nil {
			t.Fatalf("chromium: %v", err)
		}
		if st.Time > 2 && st.Width > 0 {
			t.Logf("chromium plays %s: currentTime %.2f s, picture %dx%d", what, st.Time, st.Width, st.Height)
			return
		}
		if st.Error != "" {
			if reloads++; reloads > 2 {
				t.Fatalf("chromium cannot play %s: %s (after %d reloads)", src, st.Error, reloads-1)
			}
			t.Logf("chromium: media error %q; reloading", st.Error)
			if err := chromedp.Run(ctx, chromedp.Reload()); err != nil {
				t.Fatalf("chromium: %v", err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromium did not play %s within 45 s: %+v", src, st)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestABRPlaysInChromium loads the master playlist of a transcoded stream
// (fMP4 variant) into a <video> element of headless Chromium (its built-in
// HLS player) and waits until it plays.
func TestABRPlaysInChromium(t *testing.T) {
	requireFFmpeg(t)
	testkit.RequireChromium(t)
	c := allInOneConfig(t)
	c.Origin.Transcode.Encoder = "x264"
	c.Origin.Transcode.Ladders = abrLadder()
	c.Origin.HLS.IdleTimeout = 10 * time.Second
	// fMP4 keeps this test about the ladder; the default Low-Latency stream
	// in Chromium (through the compatible view) is TestDefaultStreamPlaysInChromium.
	c.Origin.HLS.Variant = "fmp4"
	n := startNode(t, c, RoleRun)
	a := n.Addrs()
	startCamera(t, "rtsp://"+a.RTSP+"/live/abr1")
	master := "http://" + a.Cache + "/live/abr1/index.m3u8"
	variants := waitMaster(t, master, 4, 60*time.Second)
	// A live player starts three target durations from the end: give every
	// rendition a few segments first.
	base := "http://" + a.Cache + "/live/abr1/"
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		ready := 0
		for _, v := range variants {
			if _, body, err := fetch(base + v.uri); err == nil && len(segments(body)) >= 4 {
				ready++
			}
		}
		if ready == len(variants) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d renditions have 4 segments", ready, len(variants))
		}
	}

	playsInChromium(t, master, "the master playlist")
}
