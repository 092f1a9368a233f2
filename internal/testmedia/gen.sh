#!/bin/sh
# Regenerates sample.ts, the clip embedded by this package (see clip.go).
#
# H264 Main profile, 640x360, 25 fps, no B-frames, a fixed 1 s GOP (an IDR every
# 25 frames, no scene-cut keyframes), ~400 kbit/s, SPS/PPS repeated in front of
# every IDR; x264's own SEI (encoder settings banner) is stripped so that the only
# SEI a receiver sees is the latency stamp a Camera inserts.
# AAC-LC 44.1 kHz stereo, 64 kbit/s, a 440 Hz tone.
# 4 s, MPEG-TS. Keep the result under 300 KB: it is committed to the repository.
#
# Needs Debian's ffmpeg (built with libx264). Run from this directory: ./gen.sh
set -eu
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel error -y \
	-f lavfi -i testsrc2=size=640x360:rate=25 \
	-f lavfi -i sine=frequency=440:sample_rate=44100 \
	-ac 2 \
	-c:v libx264 -profile:v main -bf 0 -g 25 -keyint_min 25 -sc_threshold 0 -b:v 400k \
	-x264-params repeat-headers=1 \
	-bsf:v filter_units=remove_types=6 \
	-c:a aac -b:a 64k \
	-t 4 \
	-fflags +bitexact -flags:v +bitexact -flags:a +bitexact \
	-f mpegts sample.ts
ls -l sample.ts
