#!/bin/bash
# The cost of signed-URL checks at the cache, side by side: an all-in-one
# node (bus, edge, origin) packages one camera (the 720p clip, 1 s GOP);
# two cache-only nodes join it and are fed by its origin: cache A without
# auth.signing_key, cache B with one. wrk loads both at the same time, A with
# the plain URL and B with a signed one (/s/<token>/...), for one 1 s video
# segment and then for the video media playlist, ROUNDS times. Both caches
# are separate processes doing the same work but for the token check, so
# their req/s and server CPU per request compare directly.
#
# usage: signed.sh [ROUNDS] [CONNECTIONS] [SECONDS]   (default 3 64 10)
# env:   CONTROL=1 gives cache B no key and loads it with the plain URL too:
#        the difference between two identical caches under this setup (the
#        lines are still labelled "signed" for B)
# out:   one line per measurement: requests/s, MB/s, latency p99, server CPU
#        per request, non-2xx answers, load
. "$(dirname "$0")/lib.sh"
wrk_args 3 "$@"
clip=$(clip720)
CACHE_PIDS=
stop_caches() {
	local p
	for p in $CACHE_PIDS; do kill "$p" 2>/dev/null || true; done
	for p in $CACHE_PIDS; do wait "$p" 2>/dev/null || true; done
	CACHE_PIDS=
}
trap 'stop_caches; cleanup' EXIT
start_sg
key=$(head -c 32 /dev/urandom | base64 -w0)
# start_cache NAME N [VAR=value...]: a cache-only node on ports offset by N;
# sets CACHE_PID and CACHE_HLS.
start_cache() {
	local name=$1 n=$2
	shift 2
	local api=127.0.0.1:$(port $((9997 + 100 * n)))
	CACHE_HLS=http://127.0.0.1:$(port $((8888 + 100 * n)))
	env SG_NODE_NAME="$name" SG_BUS_URLS="nats://$SG_BUS_SERVER_LISTEN" SG_GOSSIP_SEEDS="$SG_GOSSIP_BIND" \
		SG_GOSSIP_BIND=127.0.0.1:$(port $((7946 + 100 * n))) SG_API_ADDRESS="$api" \
		SG_CACHE_HTTP_ADDRESS="${CACHE_HLS#http://}" "$@" "$SG" cache >"$SGB/$name.log" 2>&1 &
	CACHE_PID=$!
	CACHE_PIDS="$CACHE_PIDS $CACHE_PID"
	for _ in $(seq 50); do
		curl -sf -o /dev/null "http://$api/healthz" && return 0
		sleep 0.2
	done
	echo "cache $name did not come up:" >&2
	cat "$SGB/$name.log" >&2
	return 1
}
start_cache cacheA 1
PID_A=$CACHE_PID HLS_A=$CACHE_HLS
if [ -n "${CONTROL:-}" ]; then
	start_cache cacheB 2
else
	start_cache cacheB 2 SG_AUTH_SIGNING_KEY="$key"
fi
PID_B=$CACHE_PID HLS_B=$CACHE_HLS
budget=$((rounds * 2 * (secs + 2) + 30))
"$SG" loadtest --publish "$SG_RTSP/load" --cameras 1 --duration "${budget}s" --clip "$clip" --quiet >/dev/null 2>&1 &
cam=$!
signed=$(SG_AUTH_SIGNING_KEY="$key" "$SG" sign --path load/cam0001 --ttl 1h)
base_a=$HLS_A/load/cam0001
base_b=$HLS_B${signed%/index.m3u8}
[ -n "${CONTROL:-}" ] && base_b=$HLS_B/load/cam0001
find_media_segment "$base_a" # sets media and seg
for u in "$base_b/$media" "$base_b/$seg"; do
	curl -sf -o /dev/null "$u" || { echo "signed $u refused" >&2; exit 1; }
done
code=$(curl -s -o /dev/null -w '%{http_code}' "$HLS_B/load/cam0001/$seg")
[ -n "${CONTROL:-}" ] || [ "$code" = 403 ] || { echo "unsigned request to cache B answered $code, want 403" >&2; exit 1; }
echo "segment $seg: $(curl -sf "$base_a/$seg" | wc -c) bytes; playlist $media; signed prefix ${signed%%/load/*}"
for r in $(seq "$rounds"); do
	wrk_bench "plain segment" "$base_a/$seg" "$PID_A" & a=$!
	wrk_bench "signed segment" "$base_b/$seg" "$PID_B" & b=$!
	wait $a $b
	wrk_bench "plain playlist" "$base_a/$media" "$PID_A" & a=$!
	wrk_bench "signed playlist" "$base_b/$media" "$PID_B" & b=$!
	wait $a $b
done
kill "$cam" 2>/dev/null || true
wait "$cam" 2>/dev/null || true
