#!/bin/bash
# The whole benchmark series of docs/benchmarks.md, one run after the other:
# ingest side by side at 1, 10, 25, 50 cameras, 100 back to back, 25 again,
# the GOGC and classic-HLS variants, the acceptance run, LL-HLS latency, part
# availability and the growth series. About 20 minutes.
#
# usage: flock /tmp/sgbench.lock series.sh [OUTDIR]   (default $SGB/series)
set -u
B=$(cd "$(dirname "$0")" && pwd)
export SGB=${SGB:-/tmp/sgbench}
out=${1:-$SGB/series}
mkdir -p "$out"
{
	for n in 1 10 25 50; do echo "== ingest $n"; bash "$B/ingest.sh" "$n" 40s 2>&1 | tail -2; done
	echo "== ingest 100 sg"; ONLY=sg bash "$B/ingest.sh" 100 40s 2>&1 | tail -1
	echo "== ingest 100 nginx"; ONLY=nginx bash "$B/ingest.sh" 100 40s 2>&1 | tail -1
	echo "== ingest 25 again"; bash "$B/ingest.sh" 25 40s 2>&1 | tail -2
	for g in 50 25 15 10; do echo "== GOGC=$g"; NODE_ENV="GOGC=$g" ONLY=sg bash "$B/ingest.sh" 25 40s 2>&1 | tail -1; done
	echo "== mpegts x3"
	NODE_ENV="SG_ORIGIN_HLS_VARIANT=mpegts SG_ORIGIN_HLS_SEGMENT_COUNT=3" bash "$B/ingest.sh" 25 40s 2>&1 | tail -2
} >"$out/ingest.txt"
bash "$B/acceptance.sh" >"$out/acceptance.txt" 2>&1
echo "rc=$?" >>"$out/acceptance.txt"
bash "$B/latency.sh" lowLatency >"$out/latency.txt" 2>&1
PORT_OFFSET=20000 bash "$B/parts.sh" 10 30 40s 10 >"$out/parts.txt" 2>&1
bash "$B/growth.sh" 1 10 25 50 100 >"$out/growth.txt" 2>&1
echo "series done: $out"
