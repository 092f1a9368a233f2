package node

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// ffmpegPublish starts ffmpeg publishing a synthetic 1 s-GOP source until the test ends.
func ffmpegPublish(t *testing.T, codec, format, url string, extra ...string) *exec.Cmd {
	t.Helper()
	args := []string{"-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-ac", "2"}
	switch codec {
	case "h264":
		args = append(args, "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-bf", "0")
	case "h265":
		args = append(args, "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "keyint=25:min-keyint=25:bframes=0:log-level=error")
	}
	args = append(args, "-c:a", "aac", "-b:a", "64k")
	args = append(args, extra...)
	args = append(args, "-f", format, url)
	cmd := exec.Command("ffmpeg", args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// waitPlayable polls the playlist until the cache answers 200, and returns how long that took.
func waitPlayable(t *testing.T, url string, since time.Time, limit time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if _, _, _, err := playlistState(url); err == nil {
			return time.Since(since)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not playable within %v", url, limit)
	return 0
}

func ffprobeCodecs(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffprobe", "-hide_banner", "-loglevel", "error",
		"-show_entries", "stream=codec_name,width,height", "-of", "compact=p=0:nk=1", url).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", url, err, out)
	}
	return string(out)
}

func ffmpegDecode(t *testing.T, url string) {
	t.Helper()
	if err := testkit.FFmpegDecode(url, 4); err != nil {
		t.Fatalf("decoding %s: %v", url, err)
	}
}

// TestFFmpegPublishers pushes with real ffmpeg over every ingest path and
// reads back with ffprobe and ffmpeg, which must decode without an error.
// The paced cases run on a second node whose edge paces its reads
// (edge.read_interval), since that changes how the RTMP and RTSP-over-TCP
// byte streams are read.
func TestFFmpegPublishers(t *testing.T) {
	requireFFmpeg(t)
	a := startNode(t, allInOneConfig(t), RoleRun).Addrs()
	pc := allInOneConfig(t)
	pc.Edge.ReadInterval = 20 * time.Millisecond
	p := startNode(t, pc, RoleRun).Addrs()
	cases := []struct {
		name, codec, format, url, path, want string
		extra                                []string
		cache                                string
	}{
		{"rtsp-tcp-h264", "h264", "rtsp", "rtsp://" + a.RTSP + "/live/cam1", "live/cam1", "h264", []string{"-rtsp_transport", "tcp"}, a.Cache},
		{"rtsp-udp-h264", "h264", "rtsp", "rtsp://" + a.RTSP + "/live/udp1", "live/udp1", "h264", []string{"-rtsp_transport", "udp"}, a.Cache},
		{"rtmp-h264", "h264", "flv", "rtmp://" + a.RTMP + "/rtmp/c1.live", "rtmp/c1.live", "h264", nil, a.Cache},
		{"rtsp-tcp-h265", "h265", "rtsp", "rtsp://" + a.RTSP + "/live/hevc", "live/hevc", "hevc", []string{"-rtsp_transport", "tcp"}, a.Cache},
		{"paced-rtmp-h264", "h264", "flv", "rtmp://" + p.RTMP + "/paced/rtmp", "paced/rtmp", "h264", nil, p.Cache},
		{"paced-rtsp-tcp-h264", "h264", "rtsp", "rtsp://" + p.RTSP + "/paced/rtsp", "paced/rtsp", "h264", []string{"-rtsp_transport", "tcp"}, p.Cache},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			ffmpegPublish(t, tc.codec, tc.format, tc.url, tc.extra...)
			url := "http://" + tc.cache + "/" + tc.path + "/index.m3u8"
			took := waitPlayable(t, url, start, 20*time.Second)
			t.Logf("%s: playlist available at the cache %v after ffmpeg started", tc.path, took.Round(time.Millisecond))
			codecs := ffprobeCodecs(t, url)
			if !strings.Contains(codecs, tc.want+"|640|360") || !strings.Contains(codecs, "aac") {
				t.Fatalf("ffprobe: %q, want %s 640x360 and aac", codecs, tc.want)
			}
			ffmpegDecode(t, url)
		})
	}
}
