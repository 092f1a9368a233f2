package transcode

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Encoder selects the video encoders of a ladder.
type Encoder string

// Encoders.
const (
	// EncoderAuto picks NVENC when a usable NVIDIA encoder is present and
	// otherwise follows the Policy.
	EncoderAuto Encoder = "auto"
	// EncoderNVENC decodes, scales and encodes on an NVIDIA GPU (CUDA decode,
	// scale_cuda, h264_nvenc / hevc_nvenc).
	EncoderNVENC Encoder = "nvenc"
	// EncoderX264 encodes on the CPU: libx264 for H264 renditions, libx265 for
	// H265 ones.
	EncoderX264 Encoder = "x264"
)

// Validate accepts "", auto, nvenc and x264. VAAPI and Quick Sync are refused:
// streamgrid does not drive them.
func (e Encoder) Validate() error {
	switch e {
	case "", EncoderAuto, EncoderNVENC, EncoderX264:
		return nil
	case "vaapi", "qsv":
		return fmt.Errorf("encoder %q is not supported (use auto, nvenc or x264)", string(e))
	}
	return fmt.Errorf("encoder %q is not one of auto, nvenc, x264", string(e))
}

// Policy says what happens when no GPU encoder is usable.
type Policy string

// Policies.
const (
	// PolicyCPU falls back to the CPU encoders (the default).
	PolicyCPU Policy = "cpu"
	// PolicyRefuse refuses to transcode without a GPU encoder: no silent
	// fallback.
	PolicyRefuse Policy = "refuse"
)

// Validate accepts "", cpu and refuse.
func (p Policy) Validate() error {
	switch p {
	case "", PolicyCPU, PolicyRefuse:
		return nil
	}
	return fmt.Errorf("fallback policy %q is not one of cpu, refuse", string(p))
}

// Errors returned by Choose.
var (
	// ErrNoGPU: a GPU encoder was required (nvenc, or auto with policy
	// refuse) and none is usable.
	ErrNoGPU = errors.New("transcode: no usable GPU encoder")
	// ErrNoEncoder: the CPU encoders the ladder needs are missing from ffmpeg.
	ErrNoEncoder = errors.New("transcode: ffmpeg lacks the encoders the ladder needs")
)

// Capabilities is what Detect found out about an ffmpeg binary and the GPUs
// it can use.
type Capabilities struct {
	// FFmpeg is ffmpeg's version string ("5.1.9-0+deb12u1"); empty when ffmpeg
	// could not be run.
	FFmpeg string
	// X264 and X265: libx264 / libx265 encoded a test frame.
	X264, X265 bool
	// NVENCH264 and NVENCHEVC: h264_nvenc / hevc_nvenc encoded a test frame.
	// Being compiled in is not enough: an H100, for one, has NVDEC but no
	// NVENC, and the test encode fails there.
	NVENCH264, NVENCHEVC bool
	// CUDA: ffmpeg lists the cuda hwaccel and could open a CUDA device.
	CUDA bool
	// ScaleCUDA: ffmpeg has the scale_cuda filter.
	ScaleCUDA bool
	// NVDEC: a small H.264 clip decoded on the GPU through -hwaccel cuda
	// (the transcoder's GPU decode path). Reported only: the GPU pipeline
	// (NVENC) needs CUDA, and the CPU one does not use NVDEC.
	NVDEC bool
	// GPUs is the number of NVIDIA devices (/dev/nvidiaN).
	GPUs int
	// Err explains the probes that failed, "; "-separated; empty when all
	// succeeded.
	Err string
}

// NVENC reports whether the full GPU pipeline (CUDA decode, scale_cuda and the
// NVENC encoders that l needs) is usable.
func (c Capabilities) NVENC(l Ladder) bool {
	h264, h265 := l.Codecs()
	return c.CUDA && c.ScaleCUDA && (!h264 || c.NVENCH264) && (!h265 || c.NVENCHEVC) && (h264 || h265)
}

// CPU reports whether the CPU encoders that l needs are usable.
func (c Capabilities) CPU(l Ladder) bool {
	h264, h265 := l.Codecs()
	return (!h264 || c.X264) && (!h265 || c.X265)
}

// devGlob matches the device nodes of NVIDIA GPUs (not nvidiactl, nvidia-uvm).
var devGlob = "/dev/nvidia[0-9]*"

var versionRe = regexp.MustCompile(`^ffmpeg version (\S+)`)

// Detect probes ffmpegPath ("ffmpeg" when empty): its version, encoders,
// hwaccels and filters, then a one-frame test encode with every candidate
// encoder and a CUDA device initialisation (run in parallel: each ffmpeg
// start costs a fraction of a second). It never fails: what could not be
// probed is reported unusable and explained in Err. ctx bounds the whole
// probe.
func Detect(ctx context.Context, ffmpegPath string) (caps Capabilities) {
	if ffmpegPath == "" {
		ffmpegPath = "ffmpeg"
	}
	d := &detector{ctx: ctx, ffmpeg: ffmpegPath}
	defer func() { caps.Err = d.err() }()

	if devs, err := filepath.Glob(devGlob); err == nil {
		caps.GPUs = len(devs)
	}

	out, err := probe(ctx, ffmpegPath, "-version")
	if err != nil {
		d.fail("run %s: %v", ffmpegPath, err)
		return caps
	}
	if m := versionRe.FindSubmatch(out); m != nil {
		caps.FFmpeg = string(m[1])
	} else {
		caps.FFmpeg = "unknown"
	}

	l := d.list()
	caps.ScaleCUDA = l.filters["scale_cuda"]

	// The test runs are independent; each sets its own field of caps.
	var wg sync.WaitGroup
	parallel := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	parallel(func() { caps.NVDEC = testDecode(ctx, ffmpegPath, l.hwaccels["cuda"], l.encoders["libx264"], d.fail) })
	parallel(func() { caps.X264 = d.testEncode(l.encoders, "libx264") })
	parallel(func() { caps.X265 = d.testEncode(l.encoders, "libx265") })
	parallel(func() { caps.NVENCH264 = d.testEncode(l.encoders, "h264_nvenc") })
	parallel(func() { caps.NVENCHEVC = d.testEncode(l.encoders, "hevc_nvenc") })
	parallel(func() { caps.CUDA = d.testCUDA(l.hwaccels) })
	wg.Wait()
	return caps
}

// detector is one Detect run: the ffmpeg it probes and the problems its
// probes (which run in parallel) met.
type detector struct {
	ctx    context.Context
	ffmpeg string

	mu       sync.Mutex
	problems []string
}

// fail records a problem.
func (d *detector) fail(format string, args ...any) {
	d.mu.Lock()
	d.problems = append(d.problems, fmt.Sprintf(format, args...))
	d.mu.Unlock()
}

// err returns the problems met, sorted, joined by "; " ("" for none).
func (d *detector) err() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	sort.Strings(d.problems)
	return strings.Join(d.problems, "; ")
}

// listings are the names the ffmpeg build lists.
type listings struct{ encoders, filters, hwaccels map[string]bool }

// list asks ffmpeg for its encoders, filters and hardware accelerations,
// in parallel.
func (d *detector) list() listings {
	var l listings
	var wg sync.WaitGroup
	one := func(into *map[string]bool, col int, what string) {
		defer wg.Done()
		out, err := probe(d.ctx, d.ffmpeg, "-"+what)
		if err != nil {
			d.fail("list %s: %v", what, err)
		}
		*into = listed(out, col)
	}
	wg.Add(3)
	go one(&l.encoders, 1, "encoders")
	go one(&l.filters, 1, "filters")
	go one(&l.hwaccels, 0, "hwaccels")
	wg.Wait()
	return l
}

// testEncode reports whether encoder name, when compiled in, encodes a frame.
func (d *detector) testEncode(encoders map[string]bool, name string) bool {
	if !encoders[name] {
		d.fail("%s not compiled in", name)
		return false
	}
	_, err := probe(d.ctx, d.ffmpeg, "-loglevel", "error",
		"-f", "lavfi", "-i", "color=s=256x144:d=0.04",
		"-c:v", name, "-frames:v", "1", "-f", "null", "-")
	if err != nil {
		d.fail("%s test encode: %v", name, err)
		return false
	}
	return true
}

// testCUDA reports whether the cuda hwaccel, when compiled in, opens a device.
func (d *detector) testCUDA(hwaccels map[string]bool) bool {
	if !hwaccels["cuda"] {
		d.fail("cuda hwaccel not compiled in")
		return false
	}
	_, err := probe(d.ctx, d.ffmpeg, "-loglevel", "error", "-init_hw_device", "cuda",
		"-f", "lavfi", "-i", "color=s=64x64:d=0.04", "-frames:v", "1", "-f", "null", "-")
	if err != nil {
		d.fail("cuda device: %v", err)
		return false
	}
	return true
}

// testDecode reports whether NVDEC decodes H.264: a clip made with libx264
// is decoded with -hwaccel cuda into CUDA frames, which hwdownload brings
// back. Where NVDEC cannot take the stream, ffmpeg falls back to the CPU
// decoder; hwdownload then gets no GPU frames and fails, so a clean exit
// means the GPU decoded. Without the cuda hwaccel it reports false silently
// (the CUDA probe explains that).
func testDecode(ctx context.Context, ffmpegPath string, cuda, x264 bool, fail func(string, ...any)) bool {
	if !cuda {
		return false
	}
	if !x264 {
		fail("nvdec test decode: no libx264 to make the test clip")
		return false
	}
	clip, err := probe(ctx, ffmpegPath, "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=s=256x144:r=25:d=0.2",
		"-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "h264", "-")
	if err != nil {
		fail("nvdec test clip: %v", err)
		return false
	}
	_, err = probeInput(ctx, ffmpegPath, clip, "-loglevel", "error",
		"-hwaccel", "cuda", "-hwaccel_output_format", "cuda", "-f", "h264", "-i", "pipe:0",
		"-vf", "hwdownload,format=nv12", "-f", "null", "-")
	if err != nil {
		fail("nvdec test decode: %v", err)
		return false
	}
	return true
}

// probe runs ffmpeg with args and returns its stdout; a failure carries the
// first line ffmpeg wrote to stderr (the cause, usually).
func probe(ctx context.Context, ffmpegPath string, args ...string) ([]byte, error) {
	return probeInput(ctx, ffmpegPath, nil, args...)
}

// probeInput is probe with stdin fed from in (nil: no input, -nostdin).
func probeInput(ctx context.Context, ffmpegPath string, in []byte, args ...string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pre := []string{"-hide_banner", "-nostdin"}
	if in != nil {
		pre = pre[:1]
	}
	cmd := exec.CommandContext(ctx, ffmpegPath, append(pre, args...)...)
	if in != nil {
		cmd.Stdin = bytes.NewReader(in)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if line := firstLine(stderr.Bytes()); line != "" {
			return nil, fmt.Errorf("%w: %s", err, line)
		}
		return nil, err
	}
	return stdout.Bytes(), nil
}

// firstLine returns the first non-empty line of b, trimmed and capped.
func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	line = strings.TrimSpace(line)
	if len(line) > 200 {
		line = line[:200] + "…"
	}
	return line
}

// listed collects the names in column col of ffmpeg's -encoders, -filters or
// -hwaccels listing (whitespace-separated, after the " = " or "---" header).
func listed(out []byte, col int) map[string]bool {
	names := make(map[string]bool)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > col {
			names[f[col]] = true
		}
	}
	return names
}

// Choose resolves the configured encoder against the detected capabilities
// for ladder l:
//
//   - auto: nvenc when usable; otherwise x264 with policy cpu, ErrNoGPU with
//     policy refuse;
//   - nvenc: nvenc when usable; otherwise x264 with policy cpu, ErrNoGPU with
//     policy refuse;
//   - x264: x264.
//
// Whatever resolves to x264 fails with ErrNoEncoder when ffmpeg lacks
// libx264 (or libx265 for H265 renditions). Invalid values fail too.
func Choose(enc Encoder, pol Policy, caps Capabilities, l Ladder) (Encoder, error) {
	if err := enc.Validate(); err != nil {
		return "", err
	}
	if err := pol.Validate(); err != nil {
		return "", err
	}
	cpu := func() (Encoder, error) {
		if !caps.CPU(l) {
			return "", fmt.Errorf("%w: %s", ErrNoEncoder, explain(caps))
		}
		return EncoderX264, nil
	}
	switch enc {
	case EncoderX264:
		return cpu()
	default: // auto, nvenc
		if caps.NVENC(l) {
			return EncoderNVENC, nil
		}
		if pol == PolicyRefuse {
			return "", fmt.Errorf("%w (fallback policy refuse): %s", ErrNoGPU, explain(caps))
		}
		return cpu()
	}
}

func explain(caps Capabilities) string {
	if caps.Err == "" {
		return "no detail"
	}
	return caps.Err
}
