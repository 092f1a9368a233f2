package node

import (
	"bytes"
	"encoding/json"
	"image/jpeg"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/media"
)

func TestAVCCToAnnexB(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want []byte
		err  bool
	}{
		{"two units", []byte{0, 0, 0, 2, 0x67, 1, 0, 0, 0, 1, 0x65}, []byte{0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x65}, false},
		{"empty", nil, []byte{}, false},
		{"short length", []byte{0, 0, 1}, nil, true},
		{"too long", []byte{0, 0, 0, 9, 1}, nil, true},
	} {
		got, err := avccToAnnexB(tc.in)
		if (err != nil) != tc.err || !tc.err && !bytes.Equal(got, tc.want) {
			t.Errorf("%s: %x %v", tc.name, got, err)
		}
	}
	if k, v := firstKeyframe([]*media.Packet{{Codec: media.CodecAAC, Flags: media.FlagKeyframe}, {Codec: media.CodecH264}, {Codec: media.CodecH264, Flags: media.FlagKeyframe, Seq: 7}}); k == nil || k.Seq != 7 || !v {
		t.Errorf("firstKeyframe: %+v %v", k, v)
	}
}

// TestSnapshot publishes a real stream and asks the API for JPEGs of its
// latest keyframe: at the stream's size, scaled, shared by concurrent
// requests, and with clear errors for an unknown stream, a bad width and a
// node without ffmpeg.
func TestSnapshot(t *testing.T) {
	requireFFmpeg(t)
	n := startNode(t, allInOneConfig(t), RoleRun)
	a := n.Addrs()
	api := "http://" + a.API
	startCamera(t, "rtsp://"+a.RTSP+"/live/snap")

	var rec streamRecord
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, body := httpGet(t, api+"/v1/streams/live/snap")
		if code == 200 && json.Unmarshal([]byte(body), &rec) == nil && rec.Width > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no record of live/snap: %d %s", code, body)
		}
	}
	get := func(url string) (int, string, []byte) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), b.Bytes()
	}
	snap := api + "/v1/streams/live/snap/snapshot.jpg"
	var body []byte
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		code, ct, b := get(snap)
		if code == 200 {
			if ct != "image/jpeg" {
				t.Fatalf("snapshot Content-Type %q", ct)
			}
			body = b
			break
		}
		if code != 503 || !strings.Contains(string(b), `"error"`) {
			t.Fatalf("snapshot: %d %s", code, b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot within 15 s: %d %s", code, b)
		}
	}
	img, err := jpeg.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the snapshot is not a JPEG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != rec.Width || b.Dy() != rec.Height {
		t.Fatalf("snapshot %dx%d, stream %dx%d", b.Dx(), b.Dy(), rec.Width, rec.Height)
	}
	t.Logf("snapshot: %d bytes, %dx%d", len(body), rec.Width, rec.Height)

	// Scaled, by concurrent requests that share one decode.
	before := n.api.snaps.decodes.Load()
	var wg sync.WaitGroup
	sizes := make([][2]int, 8)
	for i := range sizes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, b := get(snap + "?width=320")
			if code != 200 {
				t.Errorf("scaled snapshot: %d %s", code, b)
				return
			}
			im, err := jpeg.Decode(bytes.NewReader(b))
			if err != nil {
				t.Errorf("scaled snapshot: %v", err)
				return
			}
			sizes[i] = [2]int{im.Bounds().Dx(), im.Bounds().Dy()}
		}()
	}
	wg.Wait()
	wantH := (rec.Height*320/rec.Width + 1) &^ 1
	for _, s := range sizes {
		if s[0] != 320 || s[1] < wantH-2 || s[1] > wantH+2 {
			t.Fatalf("scaled snapshot %dx%d, want 320x%d", s[0], s[1], wantH)
		}
	}
	if d := n.api.snaps.decodes.Load() - before; d != 1 {
		t.Errorf("8 concurrent requests ran %d decodes, want 1", d)
	}

	for _, tc := range []struct {
		url  string
		code int
	}{
		{api + "/v1/streams/live/nobody/snapshot.jpg", 404},
		{snap + "?width=7", 400},
		{snap + "?width=abc", 400},
		{api + "/v1/streams/live/ca%20m/snapshot.jpg", 400},
	} {
		if code, _, b := get(tc.url); code != tc.code || !strings.Contains(string(b), `"error"`) {
			t.Errorf("%s: %d %s, want %d with a JSON error", tc.url, code, b, tc.code)
		}
	}
	_, metrics := httpGet(t, api+"/metrics")
	for _, want := range []string{`streamgrid_api_snapshots_total{node="aio",result="not_found",role="run"} 1`, `streamgrid_api_snapshots_total{node="aio",result="bad_request",role="run"} 3`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	n.api.snaps.ffmpeg = "/nonexistent/ffmpeg"
	if code, _, b := get(snap + "?width=200"); code != 503 || !strings.Contains(string(b), "ffmpeg is not installed") {
		t.Errorf("without ffmpeg: %d %s", code, b)
	}
}
