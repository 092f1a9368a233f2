#!/bin/bash
# Start-up time: from the start of an ffmpeg publisher to a playable playlist
# at the cache, on the all-in-one with its default configuration (LL-HLS).
# Each run publishes the 720p25 clip (clip720.sh: 1 s GOP starting with an
# IDR, SPS/PPS in band, AAC; remuxed to Matroska) with `ffmpeg -re -c copy` to a fresh path, over
# RTSP (TCP) or RTMP, and polls the cache every 20 ms: index.m3u8, then the
# first media playlist it lists, until that lists at least one part
# (#EXT-X-PART). The time is taken from just before ffmpeg is started to the
# end of the request that returned that media playlist; a run that is not
# playable within 10 s counts as failed (and as 10 s in the figures).
#
# usage: startup.sh [RUNS] [PROTOCOLS]   (default 10 "rtsp rtmp")
# env:   NODE_ENV="SG_ORIGIN_HLS_VARIANT=fmp4 ..." is passed to the node; with a
#        classic variant the condition is a media playlist listing a segment.
# out:   $SGB/startup-PROTO.txt (one time in ms per run), $SGB/startup.log (the
#        node's log) and one summary line per protocol.
. "$(dirname "$0")/lib.sh"
runs=${1:-10}
protos=${2:-rtsp rtmp}
# the clip remuxed into Matroska once: ffmpeg's RTSP muxer needs the AAC
# configuration up front, which MPEG-TS (ADTS) does not carry
clip=$SGB/clip720.mkv
[ -s "$clip" ] || ffmpeg -hide_banner -loglevel error -y -i "$(clip720)" -c copy -bsf:a aac_adtstoasc "$clip"
PUB_PID=
stop_pub() {
	if [ -n "$PUB_PID" ] && kill -0 "$PUB_PID" 2>/dev/null; then
		kill "$PUB_PID"
		wait "$PUB_PID" 2>/dev/null || true
	fi
	PUB_PID=
}
trap 'stop_pub; cleanup' EXIT
start_sg ${NODE_ENV:-}
want='^#EXT-X-PART:'
case "${NODE_ENV:-}" in *VARIANT=mpegts* | *VARIANT=fmp4*) want='^[^#].*seg' ;; esac

now_ms() { date +%s%3N; }

# playable BASE: whether the cache serves a media playlist with a part (or a
# segment) under BASE; one attempt, each request bounded to 2 s.
playable() {
	local media
	media=$(curl -sf --max-time 2 "$1/index.m3u8" | grep -m1 -v -e '^#' -e '^$') || return 1
	[ -n "$media" ] || return 1
	curl -sf --max-time 2 "$1/$media" | grep -q "$want"
}

# run_once PROTO PATH: prints the milliseconds to playable, or "fail"; adds
# "PATH T0" to $SGB/startup-t0.txt (T0: ffmpeg's start, ms since the epoch).
run_once() {
	local proto=$1 path=$2 url t0 t
	case $proto in
	rtsp) url=$SG_RTSP/$path fmt=(-f rtsp -rtsp_transport tcp) ;;
	rtmp) url=$SG_RTMP/$path fmt=(-f flv) ;;
	esac
	t0=$(now_ms)
	echo "$path $t0" >>"$SGB/startup-t0.txt"
	ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$clip" -c copy "${fmt[@]}" "$url" \
		>>"$SGB/startup-ffmpeg.log" 2>&1 &
	PUB_PID=$!
	t=fail
	while [ $(($(now_ms) - t0)) -lt 10000 ]; do
		if playable "$SG_HLS/$path"; then
			t=$(($(now_ms) - t0))
			break
		fi
		sleep 0.02
	done
	stop_pub
	echo "$t"
}

# summary NAME FILE: median and p90 (nearest rank) of the times in FILE, a
# failed run counting as 10 s.
summary() {
	sed 's/^fail$/10000/' "$2" | sort -n | awk -v name="$1" -v load="$(load)" '
		{v[NR] = $1} END {
			if (NR == 0) { print name " no runs"; exit }
			p50 = v[int((NR + 1) / 2)]; p90 = v[int(NR * 0.9 + 0.999)]
			printf "%s runs=%d median=%d ms p90=%d ms min=%d max=%d load %s\n", name, NR, p50, p90, v[1], v[NR], load
		}'
	grep -c '^fail$' "$2" | awk '$1 > 0 {print "  failed runs: " $1}'
}

# stages PROTO: from the node's log, the median time from ffmpeg's start to
# the edge's "publish started" (tracks known, stream registered) and to the
# origin's "stream claimed".
stages() {
	local proto=$1
	grep '^start/'"$proto" "$SGB/startup-t0.txt" | while read -r path t0; do
		for msg in "publish started" "stream claimed"; do
			ts=$(grep -F "msg=\"$msg\"" "$SGB/sg.log" | grep -F "stream=$path " | head -n1 | sed -n 's/^time=\([^ ]*\) .*/\1/p')
			[ -n "$ts" ] && echo "$msg $(($(date -d "$ts" +%s%3N) - t0))"
		done
	done | sed 's/ started/_started/; s/ claimed/_claimed/' | sort -k1,1 -k2n | awk -v name="$proto" '
		$1 != k { flush(); k = $1; n = 0 }
		{ v[++n] = $2 }
		function flush() { if (n > 0) line = line sprintf(" %s %d ms (n=%d);", k, v[int((n + 1) / 2)], n) }
		END { flush(); print name " stages, median from ffmpeg start:" line }'
}

l0=$(load)
echo "load before: $l0"
tag=$(date +%s)
: >"$SGB/startup-ffmpeg.log"
: >"$SGB/startup-t0.txt"
for proto in $protos; do
	: >"$SGB/startup-$proto.txt"
	for i in $(seq "$runs"); do
		run_once "$proto" "start/$proto$tag$i" >>"$SGB/startup-$proto.txt"
		sleep 0.5 # let the node settle between runs
	done
done
cp "$SGB/sg.log" "$SGB/startup.log"
for proto in $protos; do
	summary "$proto" "$SGB/startup-$proto.txt"
	stages "$proto"
done
