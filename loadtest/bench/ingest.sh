#!/bin/bash
# Ingest cost, side by side: N synthetic RTMP cameras publish the 720p25
# 2 Mbit/s clip to the all-in-one (LL-HLS, passthrough) and, at the same time,
# N more to nginx + nginx-rtmp (hls on, 1 s fragments, 3 s playlist). Two
# loadtests run concurrently with identical settings, one per server, each
# sampling its server's CPU and RSS from /proc. No viewers.
#
# usage: ingest.sh CAMERAS [DURATION]     (default 40s, whole seconds)
# env:   ONLY=sg|nginx runs one side; CLIP=sample publishes the built-in clip; NODE_ENV="SG_ORIGIN_HLS_VARIANT=mpegts ..."
#        is passed to the node.
# out:   $SGB/ingest-N-{sg,nginx}.json and one summary line per server.
. "$(dirname "$0")/lib.sh"
n=${1:?usage: ingest.sh CAMERAS [DURATION]}
dur=${2:-40s}
clip=$(clip720)
clipargs=(--clip "$clip")
[ "${CLIP:-}" = sample ] && clipargs=() # CLIP=sample: the built-in 640x360 ~400 kbit/s clip
trap cleanup EXIT
rm -f "$SGB/ingest-$n-"*
build_sg
[ "${ONLY:-}" = nginx ] || start_sg ${NODE_ENV:-}
[ "${ONLY:-}" = sg ] || start_nginx
sleep 1
l0=$(load)
lt() { # lt NAME PUBLISH PIDS...
	local name=$1 pub=$2; shift 2
	local pids=()
	for p in "$@"; do pids+=(--pid "$p"); done
	local rc=0
	"$SG" loadtest --publish "$pub" --cameras "$n" --duration "$dur" "${clipargs[@]}" \
		"${pids[@]}" --quiet --json "$SGB/ingest-$n-$name.json" >"$SGB/ingest-$n-$name.txt" 2>&1 || rc=$?
	echo "rc=$rc" >>"$SGB/ingest-$n-$name.txt"
}
jobs=()
if [ "${ONLY:-}" != nginx ]; then lt sg "$SG_RTMP/load" "$SG_PID" & jobs+=($!); fi
if [ "${ONLY:-}" != sg ]; then lt nginx "$NGINX_RTMP/live" $NGINX_CHILDREN "$NGINX_PID" & jobs+=($!); fi
# mid-run: how many streams each server packages, and the node's drop counters
half=$(( ${dur%s} / 2 ))
sleep "$half"
if [ -n "${SYSCALLS:-}" ]; then # syscalls/s of each server over 10 s
	(
		for p in ${SG_PID:-} ${NGINX_WORKER:-}; do
			perf stat -x, -e 'syscalls:sys_enter_*' -p "$p" -- sleep 10 2>&1 |
				awk -F, -v p="$p" '$1+0 > 0 {n += $1; split($3, a, "sys_enter_"); c[a[2]] = $1}
					END {printf "syscalls pid %s: %.0f/s:", p, n / 10
						for (k in c) if (c[k] / n > 0.05) printf " %s %.0f", k, c[k] / 10; print ""}' &
		done
		wait
	)
	sleep "$(( ${dur%s} / 4 > 10 ? ${dur%s} / 4 - 10 : 0 ))"
else
	sleep "$(( ${dur%s} / 4 ))"
fi
streams=$(curl -sf $SG_API/v1/streams | jq '.origin | length' 2>/dev/null || echo '?')
playlists=$(ls "$SGB/hls" 2>/dev/null | grep -c '\.m3u8$' || true)
curl -s $SG_API/metrics >"$SGB/ingest-$n-sg.metrics" || true
drops=$(grep -E '^streamgrid_(edge|origin)_packets_(dropped|lost)_total' "$SGB/ingest-$n-sg.metrics" |
	awk '{s += $NF} END {print s + 0}')
wait "${jobs[@]}" || true
[ "${ONLY:-}" = nginx ] || cp "$SGB/sg.log" "$SGB/ingest-$n-sg.log"
l1=$(load)
for name in sg nginx; do
	f=$SGB/ingest-$n-$name.json
	[ -s "$f" ] || continue
	# nginx: the sums over its processes (master, worker, cache manager)
	jq -r --arg name "$name" --arg load "$l0 -> $l1" --arg streams "$streams" --arg pl "$playlists" --arg drops "$drops" '
	  def r: . * 1000 | round / 1000;
	  ([.servers[].cpu_percent] | add) as $cpu | ([.servers[].rss_mb] | add) as $rss |
	  ([.servers[].rss_base_mb] | add) as $base | ([.servers[].rss_per_camera_mb] | add) as $rsscam |
	  "\($name) cameras=\(.cameras) ok=\(.cameras_ok) restarts=\(.camera_restarts) lag_max_ms=\(.camera_max_lag_ms) dropped=\(.camera_dropped_packets) " +
	  "cpu=\($cpu|r)% cpu/cam=\($cpu / .cameras | r)% rss=\($rss|r)MiB base=\($base|r) rss/cam=\($rsscam|r)MiB " +
	  (if $name=="sg" then "streams=\($streams) drops=\($drops)" else "playlists=\($pl)" end) + " load=\($load)"' "$f"
done
