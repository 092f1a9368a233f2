package node

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/hlscheck"
	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/origin"
)

// ffmpegPublishGOP publishes a synthetic H264 (+ AAC) source over RTSP/TCP
// with a keyframe every gop frames (25 fps) until stop is called or the
// test ends.
func ffmpegPublishGOP(t *testing.T, url string, gop int) (stop func()) {
	t.Helper()
	g := strconv.Itoa(gop)
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-ac", "2",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0",
		"-g", g, "-keyint_min", g, "-sc_threshold", "0",
		"-c:a", "aac", "-b:a", "64k", "-rtsp_transport", "tcp", "-f", "rtsp", url)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := false
	stop = func() {
		if !done {
			done = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)
	return stop
}

// checkStream runs the conformance checker (internal/hlscheck) on url for d
// in the background; the returned function waits for it and fails the test
// on a violation, and with late when no segment was fetched after it left
// the playlist.
func checkStream(t *testing.T, url string, d time.Duration, late bool) func() {
	wait := startCheck(url, d)
	return func() {
		t.Helper()
		rep, err := wait()
		if err != nil {
			t.Errorf("check %s: %v", url, err)
			return
		}
		t.Logf("check %s: %d reloads, %d segments, %d parts, %d fetches (%d after leaving the playlist), rules %v",
			url, rep.Reloads, rep.Segments, rep.Parts, rep.Fetches, rep.LateFetches, rep.Checked)
		for _, v := range rep.Violations {
			t.Errorf("check %s: %s %s: %s", url, v.Rule, v.Playlist, v.Detail)
		}
		if late && rep.LateFetches == 0 {
			t.Errorf("check %s: nothing was fetched after leaving the playlist", url)
		}
	}
}

// startCheck runs the conformance checker on url for d in the background (a
// minute more at most); the returned function waits for its report.
func startCheck(url string, d time.Duration) func() (*hlscheck.Report, error) {
	var rep *hlscheck.Report
	var err error
	var wg sync.WaitGroup
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), d+60*time.Second)
		defer cancel()
		rep, err = (&hlscheck.Checker{URL: url, Duration: d}).Run(ctx)
	})
	return func() (*hlscheck.Report, error) {
		wg.Wait()
		return rep, err
	}
}

var prefixRe = regexp.MustCompile(`(?m)([0-9a-f]{12})_video1_(seg|part)\d+\.mp4`)

// fetchText GETs url and returns the body of a 200 answer ("" otherwise).
func fetchText(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(b)
}

// namedPrefixes lists the muxer prefixes a media playlist names, and for
// each whether it names a complete segment of that muxer.
func namedPrefixes(text string) map[string]bool {
	out := map[string]bool{}
	for _, m := range prefixRe.FindAllStringSubmatch(text, -1) {
		out[m[1]] = out[m[1]] || m[2] == "seg"
	}
	return out
}

// TestReturningPathStartsAtTheFirstPart: a path published before (its
// keyframe interval, hence its target duration, is remembered: in the
// origin's stream while it is held, in the registry's playlist state after
// it was released) is served from the new muxer's first part, before its
// first segment is complete, and the stream stays valid (hlscheck) and
// readable (ffprobe, ffmpeg). A 2 s GOP leaves the part-only playlist up
// for almost two seconds, so polling sees it on a busy machine too.
func TestReturningPathStartsAtTheFirstPart(t *testing.T) {
	requireFFmpeg(t)
	a := startNode(t, allInOneConfig(t), RoleRun).Addrs()
	for _, tc := range []struct {
		name    string
		release bool // wait until the origin released the stream (idle_timeout)
	}{
		{"reconnect", false},
		{"after release", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "back/" + strings.ReplaceAll(tc.name, " ", "-")
			pub := "rtsp://" + a.RTSP + "/" + path
			base := "http://" + a.Cache + "/" + path
			media := base + "/video1_stream.m3u8"

			stop := ffmpegPublishGOP(t, pub, 50)
			old := map[string]bool{}
			testkit.WaitFor(t, 20*time.Second, "first session's second segment", func() bool {
				ps := namedPrefixes(fetchText(media))
				for p := range ps {
					old[p] = true
				}
				return strings.Count(fetchText(media), "_video1_seg") >= 2
			})
			stop()
			if tc.release {
				testkit.WaitFor(t, 20*time.Second, "release", func() bool {
					resp, err := http.Get(base + "/index.m3u8")
					if err != nil {
						return false
					}
					resp.Body.Close()
					return resp.StatusCode == http.StatusNotFound
				})
			} else {
				for p := range namedPrefixes(fetchText(media)) {
					old[p] = true
				}
			}

			start := time.Now()
			ffmpegPublishGOP(t, pub, 50)
			var first string
			testkit.WaitFor(t, 20*time.Second, "the new muxer in the playlist", func() bool {
				text := fetchText(media)
				for p := range namedPrefixes(text) {
					if !old[p] {
						first = text
						return true
					}
				}
				return false
			})
			t.Logf("%s: the new publisher's media listed %v after ffmpeg started", path, time.Since(start).Round(time.Millisecond))
			check := checkStream(t, base+"/index.m3u8", 6*time.Second, false)
			for p, seg := range namedPrefixes(first) {
				if !old[p] && seg {
					t.Fatalf("the new muxer was first listed with a complete segment, not from its first part:\n%s", first)
				}
			}
			if !strings.Contains(first, "#EXT-X-TARGETDURATION:2\n") || !strings.Contains(first, "#EXT-X-DISCONTINUITY\n") {
				t.Fatalf("first playlist of the returning path:\n%s", first)
			}
			check()
			codecs := ffprobeCodecs(t, base+"/index.m3u8")
			if !strings.Contains(codecs, "h264|640|360") || !strings.Contains(codecs, "aac") {
				t.Fatalf("ffprobe: %q", codecs)
			}
			ffmpegDecode(t, base+"/index.m3u8")
		})
	}
}

// TestLongerGOPRestartsTheMuxer: a camera that comes back with a keyframe
// interval longer than the target duration remembered for its path makes
// the declared muxer stop before a segment outgrows it; a new muxer, after
// a discontinuity, learns the new target from its first segment, and the
// stream stays valid and readable.
func TestLongerGOPRestartsTheMuxer(t *testing.T) {
	requireFFmpeg(t)
	n := startNode(t, allInOneConfig(t), RoleRun)
	a := n.Addrs()
	const path = "gop/change"
	pub := "rtsp://" + a.RTSP + "/" + path
	base := "http://" + a.Cache + "/" + path
	media := base + "/video1_stream.m3u8"

	stop := ffmpegPublishGOP(t, pub, 25)
	testkit.WaitFor(t, 20*time.Second, "first session's second segment", func() bool {
		return strings.Count(fetchText(media), "_video1_seg") >= 2
	})
	if text := fetchText(media); !strings.Contains(text, "#EXT-X-TARGETDURATION:1\n") {
		t.Fatalf("first session:\n%s", text)
	}
	stop()

	ffmpegPublishGOP(t, pub, 75) // reconfigured: a keyframe every 3 s
	check := checkStream(t, base+"/index.m3u8", 12*time.Second, false)
	var text string
	testkit.WaitFor(t, 30*time.Second, "the 3 s target", func() bool {
		text = fetchText(media)
		return strings.Contains(text, "#EXT-X-TARGETDURATION:3\n")
	})
	// Muxers: the first session's, the reconnect's (declaring 1 s, given
	// up after 1.5 s without a keyframe; its listed parts become a gap)
	// and the restarted one. The discontinuity the second one opened is
	// opened by the third one's first segment.
	if st := streamOf(n, path); st.Recreations != 2 || st.Discontinuity != 1 {
		t.Fatalf("%d muxer re-creations, discontinuity %d; want 2 and 1:\n%s", st.Recreations, st.Discontinuity, text)
	}
	if _, ds, tags, err := playlistState(media); err != nil || ds+tags != 1 {
		t.Fatalf("discontinuity sequence %d + %d tags, want 1 (%v):\n%s", ds, tags, err, fetchText(media))
	}
	check()
	ffmpegDecode(t, base+"/index.m3u8")
}

func streamOf(n *Node, path string) origin.StreamStatus {
	for _, s := range n.origin.Streams() {
		if s.Path == path {
			return s
		}
	}
	return origin.StreamStatus{}
}

// TestFreshPathStartsAtTheFirstPart: a path never published before is
// served from its first muxer's first part (origin.hls.fresh_start: part,
// the default), its target duration assumed to be the segment duration.
// A camera whose first GOP is longer makes that muxer stop; the one that
// replaces it is fed the same GOP again, so its first segment starts at the
// camera's first keyframe (dated before the first playlist was seen), not a
// keyframe later; the stream stays valid and readable.
func TestFreshPathStartsAtTheFirstPart(t *testing.T) {
	requireFFmpeg(t)
	for _, tc := range []struct {
		name    string
		segment time.Duration
		gop     int // frames at 25 fps
		target  string
		restart bool
	}{
		// A 2 s GOP and segment: the part-only playlist lasts ~2 s, so
		// polling sees it on a busy machine too.
		{"as assumed", 2 * time.Second, 50, "2", false},
		{"longer first GOP", time.Second, 75, "3", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := allInOneConfig(t)
			cfg.Origin.HLS.SegmentDuration = tc.segment
			n := startNode(t, cfg, RoleRun)
			a := n.Addrs()
			path := "fresh/" + strings.ReplaceAll(tc.name, " ", "-")
			base := "http://" + a.Cache + "/" + path
			media := base + "/video1_stream.m3u8"

			ffmpegPublishGOP(t, "rtsp://"+a.RTSP+"/"+path, tc.gop)
			var first string
			testkit.WaitFor(t, 20*time.Second, "the media playlist", func() bool {
				first = fetchText(media)
				return first != ""
			})
			seen := time.Now()
			if strings.Contains(first, "_video1_seg") || !strings.Contains(first, "#EXT-X-PART:") {
				t.Fatalf("the fresh path's first playlist is not its first parts:\n%s", first)
			}
			want := "#EXT-X-TARGETDURATION:" + strconv.Itoa(int(tc.segment/time.Second)) + "\n"
			if !strings.Contains(first, want) {
				t.Fatalf("want %q in the first playlist:\n%s", want, first)
			}
			check := checkStream(t, base+"/index.m3u8", 8*time.Second, false)
			var text string
			testkit.WaitFor(t, 30*time.Second, "two complete segments", func() bool {
				text = fetchText(media)
				return strings.Count(text, "_video1_seg") >= 2
			})
			if !strings.Contains(text, "#EXT-X-TARGETDURATION:"+tc.target+"\n") {
				t.Fatalf("want target %s s:\n%s", tc.target, text)
			}
			st := streamOf(n, path)
			if restarted := st.Recreations > 0; restarted != tc.restart {
				t.Fatalf("%d muxer re-creations, want a restart: %v\n%s", st.Recreations, tc.restart, text)
			}
			if at := firstSegmentDate(t, text); !at.Before(seen) {
				t.Fatalf("the first segment is dated %v, after the first playlist was seen (%v): it does not start at the camera's first keyframe:\n%s",
					at, seen, text)
			}
			check()
			ffmpegDecode(t, base+"/index.m3u8")
		})
	}
}

var dateRe = regexp.MustCompile(`#EXT-X-PROGRAM-DATE-TIME:(\S+)\n(?:#[^\n]*\n)*[^#\n]*_video1_seg\d+\.mp4`)

// firstSegmentDate is the EXT-X-PROGRAM-DATE-TIME of a media playlist's
// first complete segment.
func firstSegmentDate(t *testing.T, text string) time.Time {
	t.Helper()
	m := dateRe.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no dated segment:\n%s", text)
	}
	at, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil {
		t.Fatal(err)
	}
	return at
}
