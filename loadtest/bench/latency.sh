#!/bin/bash
# Glass-to-glass latency through one server: RTSP cameras (the 720p clip,
# an SEI send-time stamp in every frame) and HLS viewers on loopback.
#
# usage: latency.sh MODE [CAMERAS] [VIEWERS] [DURATION]   (default 10 30 40s)
#   MODE lowLatency  the all-in-one's default LL-HLS (200 ms parts, 1 s segments)
#        mpegts      classic HLS, MPEG-TS 1 s segments, 3 in the playlist
#        fmp4        classic HLS, fMP4 1 s segments, 3 in the playlist
#        nginx       nginx-rtmp (RTMP in, hls_fragment 1s, hls_playlist_length 3s)
# Viewers start 3 s after their camera, 5 s for MPEG-TS (mpegts, nginx): the
# load generator's player (gohlslib) cannot start on an MPEG-TS playlist
# listing fewer than 3 segments and starts over after 4 s, which would show up
# as startup time that no real player has.
# out:   $SGB/latency-MODE.json, $SGB/latency-MODE.log (the node's log) and a
#        summary line
# env:   NODE_ENV="VAR=value ..." extra environment for the node (streamgrid modes)
#        PUBLISH=rtmp: the cameras publish over RTMP instead of RTSP (streamgrid modes)
. "$(dirname "$0")/lib.sh"
mode=${1:?usage: latency.sh lowLatency|mpegts|fmp4|nginx [CAMERAS] [VIEWERS] [DURATION]}
n=${2:-10}
v=${3:-30}
dur=${4:-40s}
clip=$(clip720)
trap cleanup EXIT
delay=3s
case $mode in
mpegts | nginx) delay=5s ;;
esac
case $mode in
lowLatency) start_sg ${NODE_ENV:-}; pub=$SG_RTSP/load play=$SG_HLS/load pids=(--pid "$SG_PID") ;;
mpegts | fmp4)
	start_sg ${NODE_ENV:-} SG_ORIGIN_HLS_VARIANT="$mode" SG_ORIGIN_HLS_SEGMENT_COUNT=3
	pub=$SG_RTSP/load play=$SG_HLS/load pids=(--pid "$SG_PID") ;;
nginx)
	start_nginx
	pub=$NGINX_RTMP/live play=$NGINX_HTTP/live pids=()
	for p in $NGINX_CHILDREN "$NGINX_PID"; do pids+=(--pid "$p"); done ;;
*) echo "unknown mode $mode" >&2; exit 2 ;;
esac
[ "${PUBLISH:-rtsp}" != rtmp ] || [ "$mode" = nginx ] || pub=$SG_RTMP/load
l0=$(load)
rc=0
"$SG" loadtest --publish "$pub" --play "$play" --cameras "$n" --viewers "$v" --duration "$dur" \
	--viewer-delay "$delay" \
	--clip "$clip" "${pids[@]}" --quiet --json "$SGB/latency-$mode.json" >"$SGB/latency-$mode.txt" 2>&1 || rc=$?
[ -z "${SG_PID:-}" ] || cp "$SGB/sg.log" "$SGB/latency-$mode.log"
jq -r --arg mode "$mode" --arg load "$l0 -> $(load)" --arg rc "$rc" '
  "\($mode) rc=\($rc) cameras_ok=\(.cameras_ok)/\(.cameras) viewers_ok=\(.viewers_ok)/\(.viewers) " +
  "latency_ms p50=\(.latency_ms.p50) p95=\(.latency_ms.p95) p99=\(.latency_ms.p99) (n=\(.latency_ms.count)) " +
  "startup_ms p50=\(.startup_ms.p50) p95=\(.startup_ms.p95) stalls=\(.stalls) cam_lag_max_ms=\(.camera_max_lag_ms) " +
  "cpu=\([.servers[].cpu_percent] | add | . * 10 | round / 10)% load=\($load)"' "$SGB/latency-$mode.json"
