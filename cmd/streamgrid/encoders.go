package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/streamgrid/streamgrid/internal/transcode"
)

const encodersUsage = `usage: streamgrid encoders [--ffmpeg PATH] [--json] [--timeout 60s]

Probes ffmpeg the way the transcoder does at start-up (test encodes with
libx264, libx265, h264_nvenc and hevc_nvenc, a CUDA device, the scale_cuda
filter, an NVDEC test decode) and prints what it found and which encoder an
H.264 ladder with encoder: auto would get. Exit status: 0 when ffmpeg could
be run, 2 when it could not.
`

// encodersReport is what `streamgrid encoders --json` prints.
type encodersReport struct {
	FFmpegPath   string                 `json:"ffmpeg_path"`
	Capabilities transcode.Capabilities `json:"capabilities"`
	// Auto is what encoder: auto resolves to for an H.264 ladder with the
	// default fallback policy (cpu); empty when nothing can encode.
	Auto string `json:"auto_h264"`
	// GPULadder: the full GPU pipeline (NVDEC/CUDA decode, scale_cuda,
	// NVENC) is usable for an H.264 ladder.
	GPULadder bool `json:"gpu_ladder"`
}

// runEncoders is `streamgrid encoders`.
func runEncoders(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("encoders", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, encodersUsage); fs.PrintDefaults() }
	ffmpeg := fs.String("ffmpeg", "ffmpeg", "the ffmpeg binary to probe")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	timeout := fs.Duration("timeout", 60*time.Second, "bound on the whole probe")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	rep := newEncodersReport(*ffmpeg, transcode.Detect(ctx, *ffmpeg))
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		writeEncoders(stdout, rep)
	}
	if rep.Capabilities.FFmpeg == "" {
		return 2
	}
	return 0
}

func newEncodersReport(path string, caps transcode.Capabilities) encodersReport {
	h264 := transcode.Ladder{Renditions: []transcode.Rendition{{Name: "probe", Width: 1280, Bitrate: 3_000_000}}}
	rep := encodersReport{FFmpegPath: path, Capabilities: caps, GPULadder: caps.NVENC(h264)}
	if enc, err := transcode.Choose(transcode.EncoderAuto, transcode.PolicyCPU, caps, h264); err == nil {
		rep.Auto = string(enc)
	}
	return rep
}

// writeEncoders prints the report as aligned "name  value" lines, then the
// probes' problems one per line.
func writeEncoders(w io.Writer, rep encodersReport) {
	c := rep.Capabilities
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	version := c.FFmpeg
	if version == "" {
		version = "not runnable"
	}
	auto := rep.Auto
	if auto == "" {
		auto = "none (no usable encoder)"
	}
	rows := [][2]string{
		{"ffmpeg", rep.FFmpegPath + " (" + version + ")"},
		{"NVIDIA GPUs", fmt.Sprint(c.GPUs)},
		{"libx264", yes(c.X264)},
		{"libx265", yes(c.X265)},
		{"h264_nvenc", yes(c.NVENCH264)},
		{"hevc_nvenc", yes(c.NVENCHEVC)},
		{"CUDA", yes(c.CUDA)},
		{"scale_cuda", yes(c.ScaleCUDA)},
		{"NVDEC", yes(c.NVDEC)},
		{"GPU ladder", yes(rep.GPULadder)},
		{"encoder auto", auto},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%-13s %s\n", r[0]+":", r[1])
	}
	if c.Err != "" {
		fmt.Fprintln(w, "problems:")
		for _, p := range strings.Split(c.Err, "; ") {
			fmt.Fprintf(w, "  - %s\n", p)
		}
	}
}
