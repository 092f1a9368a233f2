#!/bin/bash
# The acceptance run: a fresh all-in-one, 20 RTSP cameras (the built-in
# sample clip) and 60 LL-HLS viewers for 40 s, sampling the node's CPU and
# RSS; 20 s in, ffprobe must find the stream in the cache.
#
# usage: acceptance.sh
# out:   $SGB/lt.json, $SGB/acceptance.{txt,ffprobe}; exits with the loadtest's code
. "$(dirname "$0")/lib.sh"
trap cleanup EXIT
start_sg
echo "load before: $(load)"
(
	sleep 20
	timeout 15 ffprobe -v error -show_entries stream=codec_name,width,height -of compact \
		"$SG_HLS/load/cam0001/index.m3u8" >"$SGB/acceptance.ffprobe" 2>&1
	echo "ffprobe rc=$?" >>"$SGB/acceptance.ffprobe"
) &
probe=$!
rc=0
"$SG" loadtest --publish "$SG_RTSP/load" --play "$SG_HLS/load" --cameras 20 --viewers 60 --duration 40s \
	--pid "$SG_PID" --json "$SGB/lt.json" --quiet >"$SGB/acceptance.txt" 2>&1 || rc=$?
wait "$probe"
echo "load after: $(load)"
cat "$SGB/acceptance.txt" "$SGB/acceptance.ffprobe"
echo "loadtest exit code $rc"
exit "$rc"
