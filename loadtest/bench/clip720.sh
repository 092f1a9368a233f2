#!/bin/sh
# Makes the clip the benchmarks publish: H264 Main 1280x720 25 fps, ~2 Mbit/s,
# a fixed 1 s GOP, no B-frames, SPS/PPS in front of every IDR, x264's SEI
# stripped (the load generator adds its own latency stamp), AAC-LC 64 kbit/s,
# 10 s, MPEG-TS. Light noise on the test pattern keeps the encoder near its
# target bitrate (a bare test pattern compresses to a fraction of it).
#
# usage: clip720.sh [OUT.ts]   (default /tmp/sgbench/clip720.ts)
set -eu
out=${1:-/tmp/sgbench/clip720.ts}
mkdir -p "$(dirname "$out")"
[ -s "$out" ] && { echo "$out exists"; exit 0; }
ffmpeg -hide_banner -loglevel error -y \
	-f lavfi -i testsrc2=size=1280x720:rate=25 \
	-f lavfi -i sine=frequency=440:sample_rate=44100 \
	-vf noise=alls=12:allf=t -ac 2 \
	-c:v libx264 -preset veryfast -profile:v main -bf 0 -g 25 -keyint_min 25 -sc_threshold 0 \
	-b:v 2M -maxrate 2M -bufsize 2M \
	-x264-params repeat-headers=1 \
	-bsf:v filter_units=remove_types=6 \
	-c:a aac -b:a 64k \
	-t 10 -f mpegts "$out"
ffprobe -v error -show_entries format=bit_rate,duration -show_entries stream=codec_name,width,height,r_frame_rate \
	-of compact "$out"
