package transcode

import (
	"strconv"
	"strings"
	"time"

	"github.com/streamgrid/streamgrid/internal/media"
)

// File descriptors of the ffmpeg child: stdin (0) carries the source as
// MPEG-TS, rendition i is written to fd firstOutputFD+i, and the -progress
// report to the fd after the last rendition.
const firstOutputFD = 3

// timelineStart is where the transcoder puts the first keyframe of every
// ffmpeg run on the MPEG-TS timeline it writes (in 90 kHz ticks): far enough
// from 0 that audio slightly ahead of the keyframe never goes negative, and on
// a whole second, so that every integer frame-rate grid (the fps filter's)
// contains it.
const timelineStart = 10 * 90000

// progressFD returns the descriptor of the -progress pipe for a ladder of n
// renditions.
func progressFD(n int) int { return firstOutputFD + n }

// BuildArgs returns ffmpeg's argument list (without the program name) for
// transcoding src, fed as MPEG-TS on stdin, to every rendition of l with
// encoder enc (EncoderX264 or EncoderNVENC; anything else is treated as x264).
// Rendition i comes out as MPEG-TS on fd 3+i, the progress report on fd
// 3+len(l.Renditions).
//
// The pipeline: one decoder, one filter graph that splits the picture into
// one branch per rendition (fps cap, scale, pixel format), one encoder and
// one MPEG-TS muxer per rendition. Timestamps are copied through (-copyts)
// with a 90 kHz encoder time base, so an output frame carries exactly the
// timestamp of the input frame it was made from. Keyframes are forced on a
// time grid that starts at each output's first frame (the same input frame
// for every rendition), so all renditions have their IDRs at the same PTS;
// B-frames and scene-cut keyframes are off. Audio is copied or encoded to
// AAC into every rendition's output.
func BuildArgs(l Ladder, enc Encoder, src SourceInfo) []string {
	nvenc := enc == EncoderNVENC
	outs := l.Outputs(src)
	gap := l.KeyframeGap(src)

	args := []string{
		"-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning",
		"-progress", "pipe:" + strconv.Itoa(progressFD(len(outs))), "-stats_period", "1",
	}
	if nvenc {
		args = append(args, "-hwaccel", "cuda", "-hwaccel_output_format", "cuda")
	}
	// Start quickly. The MPEG-TS demuxer always probes for the whole
	// analyzeduration (new streams could still appear), and 0.2 s is enough
	// to decode the first keyframe and an audio frame; fps is not probed
	// (the timestamps carry it). -fflags nobuffer is deliberately absent: it
	// discards the packets read while probing, which loses the whole first
	// GOP. -flags low_delay turns the decoder's frame threading (a frame of
	// delay per thread) into slice threading.
	args = append(args,
		"-analyzeduration", "200000", "-fpsprobesize", "0", "-flags", "low_delay",
		"-f", "mpegts", "-i", "pipe:0",
		"-copyts",
		"-filter_complex", filterGraph(outs, nvenc),
	)
	forceKeys := "expr:gte(t," + "n_forced*" + seconds(gap) + "-0.001)"
	for i, o := range outs {
		r := o.Rendition
		args = append(args, "-map", "[v"+strconv.Itoa(i)+"]")
		args = append(args, videoCodecArgs(o, nvenc)...)
		args = append(args,
			"-b:v", strconv.Itoa(r.Bitrate),
			"-maxrate", strconv.Itoa(r.maxRate()),
			"-bufsize", strconv.Itoa(r.maxRate()),
			"-bf", "0",
			"-forced-idr", "1",
			"-force_key_frames", forceKeys,
			"-enc_time_base", "1:90000",
		)
		if o.FPS > 0 {
			// A backstop only: the forced keyframes come first.
			args = append(args, "-g", strconv.Itoa(2*gopFrames(gap, o.FPS)))
		}
		args = append(args, audioArgs(l, src)...)
		args = append(args,
			"-max_muxing_queue_size", "1024",
			// Video PES packets carry their length (when under 64 KiB), so
			// the reader can hand a frame on as soon as it is complete
			// instead of when the next one starts.
			"-muxdelay", "0", "-muxpreload", "0", "-flush_packets", "1", "-omit_video_pes_length", "0",
			"-f", "mpegts", "pipe:"+strconv.Itoa(firstOutputFD+i),
		)
	}
	return args
}

// filterGraph builds the -filter_complex graph: [0:v:0] split into one
// branch per rendition, each ending in [vI].
func filterGraph(outs []Output, nvenc bool) string {
	var b strings.Builder
	in := func(i int) string { return "[s" + strconv.Itoa(i) + "]" }
	if len(outs) == 1 {
		in = func(int) string { return "[0:v:0]" }
	} else {
		b.WriteString("[0:v:0]split=" + strconv.Itoa(len(outs)))
		for i := range outs {
			b.WriteString(in(i))
		}
		b.WriteString(";")
	}
	for i, o := range outs {
		if i > 0 {
			b.WriteString(";")
		}
		b.WriteString(in(i))
		var chain []string
		if o.capped {
			chain = append(chain, "fps="+strconv.Itoa(o.FPS))
		}
		w, h := dim(o.Width), dim(o.Height)
		// setsar=1: square pixels, as the RESOLUTION of a variant implies
		// (426x240 from 640x360 would otherwise carry a 640:639 SAR).
		if nvenc {
			chain = append(chain, "scale_cuda="+w+":"+h, "setsar=1")
		} else {
			chain = append(chain, "scale="+w+":"+h, "setsar=1", "format=yuv420p")
		}
		b.WriteString(strings.Join(chain, ","))
		b.WriteString("[v" + strconv.Itoa(i) + "]")
	}
	return b.String()
}

// dim renders an output dimension for a scale filter: 0 (unknown) becomes
// -2, "keep the aspect ratio, even".
func dim(v int) string {
	if v <= 0 {
		return "-2"
	}
	return strconv.Itoa(v)
}

// videoCodecArgs selects and tunes the encoder of one rendition.
func videoCodecArgs(o Output, nvenc bool) []string {
	h265 := o.Codec == media.CodecH265
	switch {
	case nvenc && h265:
		return []string{"-c:v", "hevc_nvenc", "-profile:v", "main",
			"-preset", "p2", "-tune", "ll", "-rc", "cbr", "-zerolatency", "1"}
	case nvenc:
		return []string{"-c:v", "h264_nvenc", "-profile:v", "main",
			"-preset", "p2", "-tune", "ll", "-rc", "cbr", "-zerolatency", "1"}
	case h265:
		return []string{"-c:v", "libx265", "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "main",
			"-x265-params", "log-level=error:scenecut=0:open-gop=0"}
	default:
		return []string{"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "main",
			"-sc_threshold", "0"}
	}
}

// audioArgs maps and codes the audio of one output (nothing without audio).
func audioArgs(l Ladder, src SourceInfo) []string {
	if !src.hasAudio() {
		return nil
	}
	args := []string{"-map", "0:a:0"}
	if l.audioMode() == AudioCopy {
		return append(args, "-c:a", "copy")
	}
	rate, channels := aacParams(src)
	return append(args, "-c:a", "aac", "-b:a", strconv.Itoa(l.audioBitrate()),
		"-ar", strconv.Itoa(rate), "-ac", strconv.Itoa(channels))
}

// gopFrames is the keyframe interval in frames at fps (at least 1).
func gopFrames(gap time.Duration, fps int) int {
	n := int((gap*time.Duration(fps) + time.Second/2) / time.Second)
	return max(n, 1)
}

// seconds formats d in seconds with millisecond precision.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}
