package node

import (
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// consoleState is what the console page reports.
type consoleState struct {
	LoadedAt   float64 `json:"loadedAt"`
	Polls      int     `json:"polls"`
	Streams    int     `json:"streams"`
	Marker     int     `json:"marker"`
	Navs       int     `json:"navs"`
	Thumb      int     `json:"thumb"`
	Uptime     string  `json:"uptime"`
	Resolution string  `json:"resolution"`
	Player     *struct {
		Mode  string  `json:"mode"`
		State string  `json:"state"`
		Time  float64 `json:"t"`
		Width int     `json:"w"`
	} `json:"player"`
}

const consoleProbe = `(() => { const c = window.sgConsole || {}, card = document.querySelector('.stream[data-path="live/con1"]');
	const k = (name) => { const e = card && card.querySelector('[data-k="' + name + '"]'); return e ? e.textContent : ''; };
	const img = card && card.querySelector('img');
	return {loadedAt: c.loadedAt || 0, polls: c.polls || 0, streams: c.streams || 0, marker: window.testMarker || 0,
		navs: performance.getEntriesByType('navigation').length, thumb: img && img.complete ? img.naturalWidth : 0,
		uptime: k('uptime'), resolution: k('resolution'), player: c.player}; })()`

// TestConsoleInChromium opens the API's console in headless Chromium: it
// lists the cluster's streams with a thumbnail, updates in place (the
// uptime moves on while a variable of the page survives: no reload), and a
// click on a stream plays it in the page. SG_CONSOLE_SCREENSHOT=docs/console.png
// writes a screenshot.
func TestConsoleInChromium(t *testing.T) {
	b, a := startBrowserNode(t, "")
	startCamera(t, "rtsp://"+a.RTSP+"/live/con1")
	startCamera(t, "rtsp://"+a.RTSP+"/live/con2")

	b.run(chromedp.Navigate("http://" + a.API + "/"))
	var st consoleState
	poll := func(what string, limit time.Duration, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(limit); ; time.Sleep(300 * time.Millisecond) {
			b.run(chromedp.Evaluate(consoleProbe, &st))
			if ok() {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("console: %s within %s: %+v", what, limit, st)
			}
		}
	}
	poll("both streams with a thumbnail", 30*time.Second, func() bool { return st.Streams == 2 && st.Thumb > 0 && st.Resolution != "—" })
	t.Logf("console lists %d streams; live/con1 thumbnail %d px wide, resolution %s, uptime %s", st.Streams, st.Thumb, st.Resolution, st.Uptime)
	b.run(chromedp.Evaluate(`window.testMarker = 42`, nil))
	first := st
	poll("an update in place", 20*time.Second, func() bool { return st.Polls >= first.Polls+2 && st.Uptime != first.Uptime })
	if st.LoadedAt != first.LoadedAt || st.Marker != 42 || st.Navs != 1 {
		t.Fatalf("the console reloaded: before %+v, after %+v", first, st)
	}
	t.Logf("console updated in place: %d polls, uptime %s → %s", st.Polls, first.Uptime, st.Uptime)

	// Play a stream from the console.
	b.run(chromedp.Click(`.stream[data-path="live/con1"]`, chromedp.ByQuery))
	start := -1.0
	poll("the clicked stream playing", 60*time.Second, func() bool {
		if st.Player == nil || st.Player.Width == 0 {
			return false
		}
		if start < 0 {
			start = st.Player.Time
		}
		return st.Player.Time-start > 2
	})
	t.Logf("console plays live/con1: %s player, %s, currentTime %.2f s", st.Player.Mode, st.Player.State, st.Player.Time)

	if out := os.Getenv("SG_CONSOLE_SCREENSHOT"); out != "" {
		var png []byte
		b.run(chromedp.FullScreenshot(&png, 100))
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot written to %s (%d bytes)", out, len(png))
	}
}
