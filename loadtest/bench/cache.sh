#!/bin/bash
# Cache serving, side by side: wrk fetches one video segment and one media
# playlist from the all-in-one's HLS cache, and the same bytes as static files
# from nginx (sendfile on). One camera keeps publishing (the 720p clip) to the
# node meanwhile. Both servers are loaded at the same time (one wrk each),
# ROUNDS times; the server CPU time per request is the figure that depends
# least on what else runs on the machine.
#
# usage: cache.sh [ROUNDS] [CONNECTIONS] [SECONDS]   (default 2 64 10)
# env:   PPROF=FILE also saves the node's CPU profile (/debug/pprof) over the
#        first segment measurement to FILE (it costs the node a little CPU)
# out:   one line per measurement: requests/s, MB/s, latency p99, server CPU
#        per request, load
. "$(dirname "$0")/lib.sh"
wrk_args 2 "$@"
clip=$(clip720)
trap cleanup EXIT
start_sg
start_nginx
budget=$(( rounds * 2 * (secs + 2) + 15 ))
"$SG" loadtest --publish "$SG_RTSP/load" --cameras 1 --duration "${budget}s" --clip "$clip" --quiet >/dev/null 2>&1 &
cam=$!
sleep 6
base=$SG_HLS/load/cam0001
html=$SGB/nginx/html/load/cam0001
mkdir -p "$html"
# pick_segment: the newest complete segment and the video media playlist,
# copied to nginx. A segment stays available for its duration plus the
# playlist's after it left the playlist (RFC 8216 6.2.2); the cache answers
# 404 after that, so every round measures a fresh one.
pick_segment() {
	find_media_segment "$base" newest # sets media and seg
	curl -sf -o "$html/$seg" "$base/$seg"
	curl -sf -o "$html/$media" "$base/$media"
	echo "segment $seg: $(stat -c %s "$html/$seg") bytes; playlist $media: $(stat -c %s "$html/$media") bytes"
}
NAME_WIDTH=15 # the column width of wrk_bench lines
# Both servers are loaded at the same time, so they share the same conditions
# (each wrk gets one thread; the machine is shared by everything).
for r in $(seq "$rounds"); do
	pick_segment
	if [ "$r" = 1 ] && [ -n "${PPROF:-}" ]; then
		curl -sf -o "$PPROF" "http://$SG_API_ADDRESS/debug/pprof/profile?seconds=$secs" &
	fi
	wrk_bench "sg segment" "$base/$seg" "$SG_PID" & a=$!
	wrk_bench "nginx segment" "$NGINX_HTTP/load/cam0001/$seg" $NGINX_CHILDREN "$NGINX_PID" & b=$!
	wait $a $b
	wrk_bench "sg playlist" "$base/$media" "$SG_PID" & a=$!
	wrk_bench "nginx playlist" "$NGINX_HTTP/load/cam0001/$media" $NGINX_CHILDREN "$NGINX_PID" & b=$!
	wait $a $b
done
kill "$cam" 2>/dev/null || true
wait "$cam" 2>/dev/null || true
