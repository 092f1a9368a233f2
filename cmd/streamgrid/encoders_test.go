package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamgrid/streamgrid/internal/transcode"
)

// The text report of an H100-like machine (NVDEC and CUDA, no NVENC) and of a
// GPU with NVENC: one line per capability, what auto resolves to, and the
// problems one per line.
func TestWriteEncoders(t *testing.T) {
	h100 := transcode.Capabilities{FFmpeg: "5.1.9", X264: true, CUDA: true, ScaleCUDA: true, NVDEC: true, GPUs: 1,
		Err: "h264_nvenc test encode: exit status 1: OpenEncodeSessionEx failed; libx265 not compiled in"}
	l4 := transcode.Capabilities{FFmpeg: "5.1.9", X264: true, X265: true, NVENCH264: true, NVENCHEVC: true,
		CUDA: true, ScaleCUDA: true, NVDEC: true, GPUs: 1}
	for _, tc := range []struct {
		name string
		caps transcode.Capabilities
		want []string
		not  []string
	}{
		{"h100", h100,
			[]string{"ffmpeg:       /x/ffmpeg (5.1.9)\n", "NVIDIA GPUs:  1\n", "h264_nvenc:   no\n", "NVDEC:        yes\n",
				"GPU ladder:   no\n", "encoder auto: x264\n", "problems:\n  - h264_nvenc test encode: exit status 1: OpenEncodeSessionEx failed\n  - libx265 not compiled in\n"},
			nil},
		{"l4", l4,
			[]string{"h264_nvenc:   yes\n", "hevc_nvenc:   yes\n", "GPU ladder:   yes\n", "encoder auto: nvenc\n"},
			[]string{"problems:"}},
		{"no ffmpeg", transcode.Capabilities{Err: "run /x/ffmpeg: not found"},
			[]string{"ffmpeg:       /x/ffmpeg (not runnable)\n", "libx264:      no\n", "encoder auto: none (no usable encoder)\n", "  - run /x/ffmpeg: not found\n"},
			nil},
	} {
		var b bytes.Buffer
		writeEncoders(&b, newEncodersReport("/x/ffmpeg", tc.caps))
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, w, b.String())
			}
		}
		for _, n := range tc.not {
			if strings.Contains(b.String(), n) {
				t.Errorf("%s: output has %q:\n%s", tc.name, n, b.String())
			}
		}
	}
}

// A missing ffmpeg exits 2 and says why, in text and in JSON; a stray
// argument is refused.
func TestEncodersCommand(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-ffmpeg")
	var stdout, stderr bytes.Buffer
	if code := runEncoders([]string{"--ffmpeg", missing}, &stdout, &stderr); code != 2 || !strings.Contains(stdout.String(), "(not runnable)") {
		t.Errorf("text: exit %d, stdout:\n%s", code, stdout.String())
	}
	stdout.Reset()
	if code := runEncoders([]string{"--json", "--ffmpeg", missing}, &stdout, &stderr); code != 2 {
		t.Errorf("json: exit %d", code)
	}
	var rep encodersReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, stdout.String())
	}
	if rep.FFmpegPath != missing || rep.Capabilities.X264 || rep.Auto != "" || !strings.Contains(rep.Capabilities.Err, "no-ffmpeg") {
		t.Errorf("json report: %+v", rep)
	}
	if code := runEncoders([]string{"extra"}, &stdout, &stderr); code != 2 {
		t.Errorf("stray argument: exit %d", code)
	}
}
