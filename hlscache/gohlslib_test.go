package hlscache

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// ffmpegH264 encodes seconds of a test pattern as Annex-B H264 (25 fps, an
// IDR every second, no B-frames, an AUD before every access unit) and
// returns its access units, AUDs removed.
func ffmpegH264(t *testing.T, seconds int) [][][]byte {
	t.Helper()
	testkit.Slow(t)
	testkit.RequireFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-t", strconv.Itoa(seconds),
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-bf", "0",
		"-x264-params", "aud=1", "-f", "h264", "-").Output()
	if err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	var aus [][][]byte
	for _, nalu := range splitAnnexB(out) {
		if len(nalu) == 0 {
			continue
		}
		if nalu[0]&0x1f == 9 { // access unit delimiter: a new access unit
			aus = append(aus, nil)
			continue
		}
		if len(aus) == 0 {
			aus = append(aus, nil)
		}
		aus[len(aus)-1] = append(aus[len(aus)-1], nalu)
	}
	return aus
}

// splitAnnexB splits an Annex-B byte stream at its start codes.
func splitAnnexB(b []byte) [][]byte {
	var nalus [][]byte
	start := -1
	for i := 0; i+3 <= len(b); {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				nalus = append(nalus, bytes.TrimRight(b[start:i], "\x00"))
			}
			i += 3
			start = i
			continue
		}
		i++
	}
	if start >= 0 {
		nalus = append(nalus, b[start:])
	}
	return nalus
}

var uriAttr = regexp.MustCompile(`URI="([^"]+)"`)

// TestGohlslibOrigin runs the cache in front of a real gohlslib LL-HLS muxer
// fed with ffmpeg-encoded H264: playlists, init, segments and parts come
// through byte for byte, a blocking reload is answered once the muxer
// produces the segment, and gohlslib's empty 200 for unknown files is a 404.
func TestGohlslibOrigin(t *testing.T) {
	t.Parallel()
	aus := ffmpegH264(t, 6)
	if len(aus) < 100 {
		t.Fatalf("ffmpeg produced %d access units", len(aus))
	}
	var sps, pps []byte
	for _, n := range aus[0] {
		switch n[0] & 0x1f {
		case 7:
			sps = n
		case 8:
			pps = n
		}
	}
	track := &gohlslib.Track{Codec: &codecs.H264{SPS: sps, PPS: pps}, ClockRate: 90000}
	mux := &gohlslib.Muxer{
		Tracks:        []*gohlslib.Track{track},
		Variant:       gohlslib.MuxerVariantLowLatency,
		OnEncodeError: func(err error) { t.Errorf("muxer: %v", err) },
	}
	if err := mux.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mux.Close) // also releases requests blocked inside the muxer
	write := func(from, to int) {
		for i := from; i < to; i++ {
			if err := mux.WriteH264(track, time.Now(), int64(i)*90000/25, aus[i]); err != nil {
				t.Fatalf("write AU %d: %v", i, err)
			}
		}
	}
	write(0, 100) // four seconds: three segments closed, one being built

	e := newEnv(t, nil)
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) bool {
		mux.Handle(w, r)
		return true
	})
	e.own("live/cam1")

	r := e.get("/live/cam1/index.m3u8")
	if r.status != 200 || !strings.Contains(r.body, "#EXT-X-STREAM-INF") {
		t.Fatalf("multivariant: %d %q", r.status, r.body)
	}
	checkHeaders(t, r, map[string]string{"Content-Type": "application/vnd.apple.mpegurl", "Cache-Control": "public, max-age=30"})
	var media string
	for line := range strings.SplitSeq(r.body, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			media = strings.TrimSpace(line)
		}
	}
	r = e.get("/live/cam1/" + media)
	if r.status != 200 || !strings.Contains(r.body, "#EXT-X-PART-INF") {
		t.Fatalf("media playlist %s: %d %q", media, r.status, r.body)
	}
	checkHeaders(t, r, map[string]string{"Content-Type": "application/vnd.apple.mpegurl", "Cache-Control": "no-cache"})

	// Every init, segment and part the playlist names comes through intact.
	var files []string
	mediaSeq, segments := -1, 0
	for line := range strings.SplitSeq(r.body, "\n") {
		switch {
		case strings.HasPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"):
			mediaSeq, _ = strconv.Atoi(strings.TrimPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"))
		case strings.HasPrefix(line, "#EXTINF:"):
			segments++
		case strings.HasPrefix(line, "#EXT-X-MAP:"), strings.HasPrefix(line, "#EXT-X-PART:"):
			files = append(files, uriAttr.FindStringSubmatch(line)[1])
		case line != "" && !strings.HasPrefix(line, "#") && line != "gap.mp4":
			files = append(files, line)
		}
	}
	if mediaSeq < 0 || len(files) < 3 {
		t.Fatalf("playlist lists %d files, media sequence %d:\n%s", len(files), mediaSeq, r.body)
	}
	t.Logf("%s lists %d files from media sequence %d", media, len(files), mediaSeq)
	for _, f := range files {
		direct, err := http.Get("http://" + e.origin.addr() + "/live/cam1/" + f)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := io.ReadAll(direct.Body)
		direct.Body.Close()
		r := e.get("/live/cam1/" + f)
		if r.status != 200 || r.body != string(want) || len(want) == 0 {
			t.Errorf("%s: %d, %d bytes, want %d", f, r.status, len(r.body), len(want))
		}
		checkHeaders(t, r, map[string]string{"Content-Type": "video/mp4", "Cache-Control": "public, max-age=3600"})
		if r := e.get("/live/cam1/" + f); r.header.Get("X-Cache") != "HIT" {
			t.Errorf("%s again: %s", f, r.header.Get("X-Cache"))
		}
	}

	// gohlslib answers an empty 200 for a file it does not have.
	if r := e.get("/live/cam1/000000000000_video1_seg999.mp4"); r.status != 404 {
		t.Errorf("unknown file: %d", r.status)
	}

	// A blocking reload for the segment being built is held by the muxer
	// until it closes; the cache passes the answer on.
	next := mediaSeq + segments
	blocked := make(chan response, 1)
	e.getAsync("/live/cam1/"+media+"?_HLS_msn="+strconv.Itoa(next), blocked)
	testkit.WaitFor(t, 5*time.Second, "the blocking reload upstream", func() bool {
		for _, q := range e.origin.receivedQueries() {
			if q == "_HLS_msn="+strconv.Itoa(next) {
				return true
			}
		}
		return false
	})
	write(100, len(aus))
	r = <-blocked
	if r.status != 200 || !strings.Contains(r.body, "#EXT-X-PART-INF") {
		t.Fatalf("blocking reload: %d %q", r.status, r.body)
	}
	if r.header.Get("Cache-Control") != "no-cache" {
		t.Errorf("blocking reload Cache-Control %q", r.header.Get("Cache-Control"))
	}
}
