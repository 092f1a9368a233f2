package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/internal/testmedia"
	"github.com/streamgrid/streamgrid/internal/transcode"
)

// abrLadder is a small three-rendition ladder for the 640x360 sample.
func abrLadder() []config.LadderRule {
	return []config.LadderRule{{Match: "live/*", Ladder: transcode.Ladder{
		Passthrough: true,
		Renditions: []transcode.Rendition{
			{Name: "240p", Width: 426, Height: 240, Bitrate: 400_000},
			{Name: "180p", Width: 320, Height: 180, Bitrate: 250_000},
			{Name: "144p", Width: 256, Height: 144, Bitrate: 150_000},
		},
	}}}
}

func startCamera(t *testing.T, url string) {
	t.Helper()
	cam := &testmedia.Camera{URL: url}
	if err := cam.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cam.Close)
}

// fetch GETs url; it returns the status and body (testkit.GetText's).
func fetch(url string) (int, string, error) { return testkit.GetText(nil, url) }

var streamInf = regexp.MustCompile(`(?m)^#EXT-X-STREAM-INF:(.*)\n(\S+)$`)

type variantLine struct{ attrs, uri string }

// waitMaster polls the master playlist until it lists want variants.
func waitMaster(t *testing.T, url string, want int, limit time.Duration) []variantLine {
	t.Helper()
	deadline := time.Now().Add(limit)
	last := ""
	for time.Now().Before(deadline) {
		code, body, err := fetch(url)
		if err == nil && code == 200 {
			last = body
			if m := streamInf.FindAllStringSubmatch(body, -1); len(m) >= want {
				var out []variantLine
				for _, x := range m {
					out = append(out, variantLine{x[1], x[2]})
				}
				return out
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s did not list %d variants within %v; last:\n%s", url, want, limit, last)
	return nil
}

// segInfo is a real segment of a media playlist: its EXTINF and
// EXT-X-PROGRAM-DATE-TIME.
type segInfo struct {
	dur string
	pdt time.Time
}

// segments maps the media sequence numbers of a media playlist's real
// segments to their duration and date.
func segments(body string) map[int]segInfo {
	out := map[int]segInfo{}
	msn, k := 0, -1
	var cur segInfo
	gap := false
	for _, line := range strings.Split(body, "\n") {
		switch {
		case strings.HasPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"):
			msn, _ = strconv.Atoi(strings.TrimPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"))
		case strings.HasPrefix(line, "#EXT-X-PROGRAM-DATE-TIME:"):
			cur.pdt, _ = time.Parse(time.RFC3339Nano, strings.TrimPrefix(line, "#EXT-X-PROGRAM-DATE-TIME:"))
		case strings.HasPrefix(line, "#EXTINF:"):
			cur.dur = strings.TrimSuffix(strings.TrimPrefix(line, "#EXTINF:"), ",")
		case line == "#EXT-X-GAP":
			gap = true
		case line != "" && !strings.HasPrefix(line, "#"):
			k++
			if !gap {
				out[msn+k] = cur
			}
			gap, cur = false, segInfo{}
		}
	}
	return out
}

// waitAligned polls every variant's media playlist until at least want
// media sequence numbers at or after from are common to all, and fails when
// a common number has different durations or dates (more than 100 ms apart)
// in two renditions; at least one date must have been compared.
func waitAligned(t *testing.T, base string, variants []variantLine, from, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	datesCompared := 0 // gohlslib dates the last two segments only
	for {
		lists := make([]map[int]segInfo, len(variants))
		for k, v := range variants {
			_, body, err := fetch(base + v.uri)
			if err != nil {
				t.Fatal(err)
			}
			lists[k] = segments(body)
		}
		common := 0
		for msn, s0 := range lists[0] {
			if msn < from {
				continue
			}
			all := true
			for k := 1; k < len(lists); k++ {
				o, ok := lists[k][msn]
				if !ok {
					all = false
					continue
				}
				dated := !o.pdt.IsZero() && !s0.pdt.IsZero()
				if dated {
					datesCompared++
				}
				if o.dur != s0.dur || dated && o.pdt.Sub(s0.pdt).Abs() > 100*time.Millisecond {
					t.Fatalf("segment %d differs: %s has %s at %v, %s has %s at %v", msn,
						variants[0].uri, s0.dur, s0.pdt, variants[k].uri, o.dur, o.pdt)
				}
			}
			if all {
				common++
			}
		}
		if common >= want && datesCompared > 0 {
			t.Logf("%d segments from %d aligned across %d renditions", common, from, len(lists))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d segments from %d common to every rendition: %v", want, from, lists)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// cpuSeconds is the CPU time (user + system) process pid has used.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100 // USER_HZ
}

// ffmpegChildren lists the ffmpeg processes this test process started.
func ffmpegChildren() []int {
	var pids []int
	self := os.Getpid()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		open, closeP := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closeP < open || s[open+1:closeP] != "ffmpeg" {
			continue
		}
		f := strings.Fields(s[closeP+1:])
		if len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == self {
			pid, _ := strconv.Atoi(filepath.Base(d))
			pids = append(pids, pid)
		}
	}
	return pids
}

type originStatus struct {
	Path              string  `json:"path"`
	Refused           string  `json:"refused"`
	Encoder           string  `json:"encoder"`
	TranscodeRestarts uint64  `json:"transcode_restarts"`
	TranscodeSpeed    float64 `json:"transcode_speed"`
	Renditions        []struct {
		Name, Playlist string
		Ready          bool
	} `json:"renditions"`
}

func originStreams(t *testing.T, api string) []originStatus {
	t.Helper()
	_, body := httpGet(t, api+"/v1/streams")
	var v struct {
		Origin []originStatus `json:"origin"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return v.Origin
}

// TestABRLadder transcodes a live camera to a three-rendition ladder on the
// CPU and checks the master playlist, every rendition's picture size, the
// alignment of the renditions' segments, and a restart after ffmpeg dies.
func TestABRLadder(t *testing.T) {
	requireFFmpeg(t)
	c := allInOneConfig(t)
	c.Origin.Transcode.Encoder = "x264"
	c.Origin.Transcode.Ladders = abrLadder()
	c.Origin.HLS.IdleTimeout = 10 * time.Second
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, c, RoleRun)
	a := n.Addrs()
	api := "http://" + a.API
	startCamera(t, "rtsp://"+a.RTSP+"/live/abr1")
	base := "http://" + a.Cache + "/live/abr1/"

	variants := waitMaster(t, base+"index.m3u8", 4, 60*time.Second)
	if len(variants) != 4 {
		t.Fatalf("want 4 variants (source + 3), got %d", len(variants))
	}
	wantRes := map[string]string{"": "640x360", "r240p_": "426x240", "r180p_": "320x180", "r144p_": "256x144"}
	for k, v := range variants {
		for _, attr := range []string{"BANDWIDTH=", "AVERAGE-BANDWIDTH=", "RESOLUTION=", "CODECS=\"avc1.", "FRAME-RATE="} {
			if !strings.Contains(v.attrs, attr) {
				t.Errorf("variant %d (%s) lacks %s: %s", k, v.uri, attr, v.attrs)
			}
		}
		prefix := ""
		if m := regexp.MustCompile(`^(r[a-z0-9]+_)`).FindString(v.uri); m != "" {
			prefix = m
		}
		if want := wantRes[prefix]; !strings.Contains(v.attrs, "RESOLUTION="+want) {
			t.Errorf("variant %s: want RESOLUTION=%s in %s", v.uri, want, v.attrs)
		}
	}
	_, health := httpGet(t, api+"/healthz")
	if !strings.Contains(health, `"transcode": "ffmpeg=`) || !strings.Contains(health, "x264=yes") {
		t.Errorf("healthz lacks checks.transcode: %s", health)
	}

	// Every rendition decodes at its declared size.
	for _, v := range variants[1:] {
		prefix := v.uri[:strings.IndexByte(v.uri, '_')+1]
		want := strings.Replace(wantRes[prefix], "x", "|", 1)
		if got := ffprobeCodecs(t, base+v.uri); !strings.Contains(got, "h264|"+want) {
			t.Errorf("ffprobe %s: %q, want h264 %s", v.uri, got, want)
		}
	}

	// Segment boundaries are aligned: the same media sequence number has the
	// same duration and date in every rendition.
	waitAligned(t, base, variants, 0, 3)
	for _, st := range originStreams(t, api) {
		if st.Path == "live/abr1" {
			t.Logf("encoder %s, speed %.2f (real-time factor), renditions %+v", st.Encoder, st.TranscodeSpeed, st.Renditions)
		}
	}

	// Kill ffmpeg: the transcoder restarts it and every rendition playlist
	// shows a discontinuity.
	pids := ffmpegChildren()
	if len(pids) != 1 {
		t.Fatalf("want one ffmpeg child, found %v", pids)
	}
	cpu0, wall0 := cpuSeconds(pids[0]), time.Now()
	time.Sleep(2 * time.Second)
	t.Logf("ffmpeg (3 renditions from 640x360 25 fps, x264) uses %.2f CPU cores",
		(cpuSeconds(pids[0])-cpu0)/time.Since(wall0).Seconds())
	_, srcBody, _ := fetch(base + variants[0].uri)
	killedAt := 0
	for msn := range segments(srcBody) {
		killedAt = max(killedAt, msn)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		restarted := false
		for _, st := range originStreams(t, api) {
			if st.Path == "live/abr1" && st.TranscodeRestarts >= 1 {
				restarted = true
			}
		}
		discs := 0
		for _, v := range variants[1:] {
			if _, body, err := fetch(base + v.uri); err == nil && strings.Contains(body, "#EXT-X-DISCONTINUITY\n") {
				discs++
			}
		}
		if restarted && discs == len(variants)-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after killing ffmpeg: restarted %v, %d of %d rendition playlists show a discontinuity", restarted, discs, len(variants)-1)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if got := ffmpegChildren(); len(got) != 1 || got[0] == pids[0] {
		t.Fatalf("ffmpeg children after the restart: %v (killed %d)", got, pids[0])
	}
	// The restarted renditions are numbered onto the source again.
	waitAligned(t, base, variants, killedAt+1, 2)
}

// TestABRRefusedWithoutGPU: nvenc with fallback refuse on a machine without
// a usable NVENC leaves the stream unclaimed, visibly.
func TestABRRefusedWithoutGPU(t *testing.T) {
	requireFFmpeg(t)
	c := allInOneConfig(t)
	c.Origin.Transcode.Encoder = "nvenc"
	c.Origin.Transcode.Fallback = "refuse"
	c.Origin.Transcode.Ladders = abrLadder()
	n := startNode(t, c, RoleRun)
	if n.origin.Capabilities().Capabilities.NVENCH264 {
		t.Skip("this machine has a usable NVENC: nothing is refused")
	}
	a := n.Addrs()
	api := "http://" + a.API
	startCamera(t, "rtsp://"+a.RTSP+"/live/gpu1")
	startCamera(t, "rtsp://"+a.RTSP+"/other/plain")

	// A stream no ladder matches is still packaged.
	waitPlayable(t, "http://"+a.Cache+"/other/plain/index.m3u8", time.Now(), 20*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var refused *originStatus
		for _, st := range originStreams(t, api) {
			if st.Path == "live/gpu1" {
				refused = &st
			}
		}
		if refused != nil && strings.Contains(refused.Refused, "no GPU encoder") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("live/gpu1 not listed as refused: %+v", refused)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, metrics := httpGet(t, api+"/metrics")
	if !regexp.MustCompile(`streamgrid_origin_transcode_refused_total\{[^}]*reason="no_gpu"[^}]*\} 1`).MatchString(metrics) {
		t.Errorf("refusal not counted:\n%s", grepLines(metrics, "transcode"))
	}
	if !strings.Contains(metrics, `streamgrid_origin_transcode_capability{capability="nvenc_h264",node="aio",role="origin"} 0`) {
		t.Errorf("capability gauges missing:\n%s", grepLines(metrics, "capability"))
	}
	if !strings.Contains(metrics, `streamgrid_origin_streams_refused{node="aio",role="origin"} 1`) {
		t.Errorf("unclaimed stream not in the gauge:\n%s", grepLines(metrics, "streams_refused"))
	}
	// The cluster's stream list says who refused the stream, and why.
	_, body := httpGet(t, api+"/v1/streams")
	var list struct{ Streams []streamRecord }
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	var rec *streamRecord
	for i := range list.Streams {
		if list.Streams[i].Path == "live/gpu1" {
			rec = &list.Streams[i]
		}
	}
	if rec == nil || rec.Origin != "" || len(rec.Refused) != 1 || rec.Refused[0].Node != "aio" ||
		!strings.Contains(rec.Refused[0].Reason, "no GPU encoder") {
		t.Errorf("/v1/streams does not show the refusal: %s", body)
	}
	// The node list shows the origin's gossiped transcode capacity.
	_, body = httpGet(t, api+"/v1/nodes")
	var nodes []nodeView
	if err := json.Unmarshal([]byte(body), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].Transcode == nil || nodes[0].Transcode.GPU != 0 || nodes[0].Transcode.CPU != 2 {
		t.Errorf("/v1/nodes does not show transcode capacity: %s", body)
	}
	_, health := httpGet(t, api+"/healthz")
	if !strings.Contains(health, "refused(no GPU encoder") {
		t.Errorf("healthz does not show the refusal: %s", health)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := n.registry.OwnerOf(ctx, "live/gpu1"); err == nil {
		t.Fatal("live/gpu1 has an owner")
	}
	if code, _, _ := fetch("http://" + a.Cache + "/live/gpu1/index.m3u8"); code == 200 {
		t.Fatal("the refused stream is served")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
