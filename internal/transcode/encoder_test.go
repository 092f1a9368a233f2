package transcode

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

func TestChoose(t *testing.T) {
	h264 := Ladder{Renditions: []Rendition{{Name: "a", Width: 640, Bitrate: 1e6}}}
	mixed := Ladder{Renditions: []Rendition{{Name: "a", Width: 640, Bitrate: 1e6}, {Name: "b", Width: 320, Bitrate: 1e5, Codec: CodecH265}}}
	gpu := Capabilities{X264: true, X265: true, NVENCH264: true, NVENCHEVC: true, CUDA: true, ScaleCUDA: true, GPUs: 1}
	gpuNoHEVC := gpu
	gpuNoHEVC.NVENCHEVC = false
	h100 := Capabilities{X264: true, X265: true, CUDA: true, ScaleCUDA: true, GPUs: 1, Err: "h264_nvenc test encode: exit status 1"}
	cpuOnly := Capabilities{X264: true, X265: true}
	noX265 := Capabilities{X264: true}
	nothing := Capabilities{Err: "run ffmpeg: not found"}

	tests := []struct {
		name   string
		enc    Encoder
		pol    Policy
		caps   Capabilities
		ladder Ladder
		want   Encoder
		err    error
	}{
		{"auto gpu", EncoderAuto, PolicyCPU, gpu, h264, EncoderNVENC, nil},
		{"auto gpu refuse", EncoderAuto, PolicyRefuse, gpu, h264, EncoderNVENC, nil},
		{"empty means auto", "", "", gpu, h264, EncoderNVENC, nil},
		{"auto h100 cpu", EncoderAuto, PolicyCPU, h100, h264, EncoderX264, nil},
		{"auto h100 refuse", EncoderAuto, PolicyRefuse, h100, h264, "", ErrNoGPU},
		{"auto cpu only", EncoderAuto, PolicyCPU, cpuOnly, h264, EncoderX264, nil},
		{"auto cpu only refuse", EncoderAuto, PolicyRefuse, cpuOnly, h264, "", ErrNoGPU},
		{"nvenc gpu", EncoderNVENC, PolicyRefuse, gpu, mixed, EncoderNVENC, nil},
		{"nvenc no hevc falls back", EncoderNVENC, PolicyCPU, gpuNoHEVC, mixed, EncoderX264, nil},
		{"nvenc no hevc refuse", EncoderNVENC, PolicyRefuse, gpuNoHEVC, mixed, "", ErrNoGPU},
		{"nvenc h100 cpu", EncoderNVENC, PolicyCPU, h100, h264, EncoderX264, nil},
		{"nvenc h100 refuse", EncoderNVENC, PolicyRefuse, h100, h264, "", ErrNoGPU},
		{"nvenc without scale_cuda", EncoderNVENC, PolicyRefuse, Capabilities{NVENCH264: true, CUDA: true}, h264, "", ErrNoGPU},
		{"x264 on gpu", EncoderX264, PolicyRefuse, gpu, h264, EncoderX264, nil},
		{"x264 missing x265", EncoderX264, PolicyCPU, noX265, mixed, "", ErrNoEncoder},
		{"auto fallback missing x265", EncoderAuto, PolicyCPU, noX265, mixed, "", ErrNoEncoder},
		{"no ffmpeg", EncoderAuto, PolicyCPU, nothing, h264, "", ErrNoEncoder},
	}
	for _, tc := range tests {
		got, err := Choose(tc.enc, tc.pol, tc.caps, tc.ladder)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%s: Choose = %q, %v; want %q, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
	if _, err := Choose("vaapi", PolicyCPU, gpu, h264); err == nil {
		t.Error("vaapi accepted")
	}
	if _, err := Choose(EncoderAuto, "sometimes", gpu, h264); err == nil {
		t.Error("bad policy accepted")
	}
	if _, err := Choose(EncoderAuto, PolicyRefuse, h100, h264); err == nil || !strings.Contains(err.Error(), "h264_nvenc test encode") {
		t.Errorf("refusal does not explain itself: %v", err)
	}
}

// TestDetect probes this machine's ffmpeg: libx264 must be usable, and NVENC
// must be reported unusable where no NVIDIA GPU exists.
func TestDetect(t *testing.T) {
	testkit.Slow(t)
	ffmpeg := testkit.RequireFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	caps := Detect(ctx, ffmpeg)
	t.Logf("capabilities: %+v", caps)
	if caps.FFmpeg == "" {
		t.Error("no ffmpeg version")
	}
	if !caps.X264 {
		t.Errorf("libx264 unusable: %s", caps.Err)
	}
	if gpus, _ := filepath.Glob(devGlob); len(gpus) == 0 {
		if caps.NVENCH264 || caps.NVENCHEVC || caps.CUDA || caps.NVDEC || caps.GPUs != 0 {
			t.Errorf("GPU capabilities reported without a GPU: %+v", caps)
		}
		if caps.Err == "" {
			t.Error("Err does not explain the unusable GPU encoders")
		}
		l := Ladder{Renditions: []Rendition{{Name: "a", Width: 640, Bitrate: 1e6}}}
		if enc, err := Choose(EncoderAuto, PolicyCPU, caps, l); enc != EncoderX264 || err != nil {
			t.Errorf("Choose(auto, cpu) = %q, %v; want x264", enc, err)
		}
		if _, err := Choose(EncoderNVENC, PolicyRefuse, caps, l); !errors.Is(err, ErrNoGPU) {
			t.Errorf("Choose(nvenc, refuse) = %v; want ErrNoGPU", err)
		}
	}
}

func TestDetectFailures(t *testing.T) {
	caps := Detect(context.Background(), filepath.Join(t.TempDir(), "no-ffmpeg"))
	if caps.FFmpeg != "" || caps.X264 || caps.Err == "" {
		t.Errorf("missing binary: %+v", caps)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	caps = Detect(ctx, "ffmpeg")
	if caps.X264 || caps.Err == "" {
		t.Errorf("cancelled context: %+v", caps)
	}
}
