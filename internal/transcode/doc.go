// Package transcode is the origin's ABR-ladder transcoder: it turns one
// stream (access units in decode order) into the renditions of a Ladder with
// one supervised ffmpeg child process, and helps describe the result in an
// HLS multivariant playlist.
//
// # Choosing the encoder
//
// Detect probes an ffmpeg binary once per node: its version, the encoders,
// filters and hwaccels compiled in, a one-frame test encode with every
// candidate encoder and a CUDA device initialisation. Being compiled in does
// not make an encoder usable: an H100 has NVDEC but no NVENC, and the
// h264_nvenc test encode fails there. Choose then resolves the configured Encoder (auto, nvenc, x264)
// under a Policy (cpu: fall back to x264/x265; refuse: ErrNoGPU instead of a
// silent fallback).
//
// # The ffmpeg pipeline
//
// BuildArgs spells out the command: MPEG-TS on stdin; one decoder (CUDA with
// NVENC); one filter graph that splits the picture into a branch per
// rendition (fps cap, scale or scale_cuda, square pixels); one encoder and
// one MPEG-TS muxer per rendition, written to pipes 3, 4, ...; progress
// reports on the next pipe. Every choice serves low latency (zerolatency
// tunes, no B-frames, decoder slice threading, no muxer delay, flushing each
// packet) and keyframe alignment.
//
// # Timelines and keyframe alignment
//
// The transcoder writes each ffmpeg run's input on its own MPEG-TS timeline:
// the run's first keyframe (feeding always starts at one) is placed at 10 s,
// the rest follow at their original distances. ffmpeg copies timestamps
// through (-copyts) with a 90 kHz encoder time base, so every output frame
// carries exactly the timestamp of the input frame it came from, and the
// reader maps it back onto the caller's 64-bit timeline by adding the
// difference. Output timestamps therefore equal input timestamps, across
// restarts too.
//
// Keyframes are forced on a time grid that starts at each output's first
// frame (the same input frame for every rendition): an IDR whenever
// KeyframeGap has passed since the first frame. Every rendition without an
// fps cap sees the same frames, so they all get their IDRs at identical PTS.
// A capped rendition sees frames on its own grid (whole multiples of 1/fps
// from the first keyframe): its IDRs coincide with the others' when the gap
// is a whole number of its frames and of the source's (1 s at 25 and 15 fps,
// for example); otherwise they may sit up to a frame apart. With the default gap derived from the source
// GOP, the source's own keyframes, and so a passthrough rendition's, fall on
// the same grid for sources with a constant GOP and an integer frame rate.
// Scene-cut keyframes are off; -g is only a backstop at twice the gap.
//
// # Audio
//
// Every rendition's output carries the audio (copied, or encoded to AAC-LC
// per output when Ladder.Audio is "aac"), so each rendition can be packaged
// on its own with audio and video interleaved by ffmpeg. OnAudio is called
// per rendition; the audio of all renditions is the same, and a passthrough
// rendition can use the source's audio with "copy" or rendition 0's with
// "aac". AAC encoding costs a few percent of a core per rendition, which
// buys independent, equally timed outputs.
//
// A source may declare audio and send none (IP cameras with the microphone
// off still list it). ffmpeg cannot start an output whose audio it never
// sees, so a run that got video but no audio (ffmpeg failing on the unknown
// sample rate, or 2 s of video without audio) is followed at once by a
// video-only run; when audio comes again for a second, the next run carries
// it again. Both switches are restarts (OnRestart with ErrAudioChanged);
// Stats.Audio tells which kind of run is on.
//
// # Supervision
//
// Each ffmpeg run is a generation: the process, a stdin feeder, a reader per
// rendition, progress and stderr readers, a stall watchdog and the process
// waiter, all in one errgroup; killing the process and closing its pipes
// stops them. When a run ends for any reason but Close (ffmpeg exits, its
// output stops while input keeps coming for StallTimeout, the input's
// timestamps jump back or more than 10 s ahead, or its audio comes or goes),
// the next run starts after an exponential backoff (250 ms doubling to 5 s,
// reset after 30 s of stable running; none when the input caused the end),
// OnRestart is called before its first output, and feeding resumes at the
// next keyframe. The caller marks a discontinuity there. The few frames still
// inside the old ffmpeg are lost.
//
// Writes never block: a bounded media.Queue sits between WriteVideo/WriteAudio
// and the feeder; when it is full, packets are dropped and counted, video
// until the next keyframe (the caller says which units are keyframes: the
// packet's media.FlagKeyframe; nothing here inspects NAL units for it). ffmpeg's stderr goes to the log at Warn, at most 20
// lines per 10 s (the rest counted); its last lines explain an exit.
// Progress reports give the encode rate and speed over each second, and a
// run whose speed stays under 0.9 for 10 s while input waits is flagged
// behind real time (metric, Stats, a warning).
package transcode
