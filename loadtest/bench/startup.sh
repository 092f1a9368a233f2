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
#
# A returning path (MODES="fresh return", or "return"): each run publishes to
# a new path until its media playlist lists a complete segment (the origin
# has measured the camera's keyframe interval), stops ffmpeg, waits
# RETURN_GAP seconds (default 1: a camera reconnecting while the origin
# still holds the stream; past origin.hls.idle_timeout the stream is
# released and its next owner reads the interval from the registry's
# playlist state) and times a second publisher on the same path, until the
# media playlist lists a part (or a segment) of a muxer the first session's
# playlist did not name (a new 12-hex-digit file prefix).
#
# usage: startup.sh [RUNS] [PROTOCOLS]   (default 10 "rtsp rtmp")
# env:   NODE_ENV="SG_ORIGIN_HLS_VARIANT=fmp4 ..." is passed to the node; with a
#        classic variant the condition is a media playlist listing a segment.
#        MODES="fresh" (default), "return" or "fresh return"; RETURN_GAP=1.
# out:   $SGB/startup-PROTO.txt (fresh) and $SGB/startup-return-PROTO.txt (one
#        time in ms per run), $SGB/startup.log (the node's log) and one
#        summary line per protocol and mode.
. "$(dirname "$0")/lib.sh"
runs=${1:-10}
protos=${2:-rtsp rtmp}
modes=${MODES:-fresh}
gap=${RETURN_GAP:-1}
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

# media_playlist BASE: the media playlist the cache serves under BASE (the
# first one index.m3u8 lists); one attempt, each request bounded to 2 s.
media_playlist() {
	local media
	media=$(curl -sf --max-time 2 "$1/index.m3u8" | grep -m1 -v -e '^#' -e '^$') || return 1
	[ -n "$media" ] || return 1
	curl -sf --max-time 2 "$1/$media"
}

# prefixes: the muxer file prefixes (12 hex digits) named on stdin.
prefixes() {
	grep -o '[0-9a-f]\{12\}_[a-z]*[0-9]*_\(part\|seg\)' | cut -c1-12 | sort -u
}

# playable BASE [OLD]: whether the cache serves a media playlist with a part
# (or a segment) under BASE, of a muxer whose prefix is not in the file OLD.
playable() {
	local pl
	pl=$(media_playlist "$1") || return 1
	if [ -z "${2:-}" ]; then
		grep -q "$want" <<<"$pl"
		return
	fi
	grep "$want" <<<"$pl" | prefixes | grep -qvxF -f "$2"
}

# publish PROTO PATH: starts ffmpeg publishing the clip to PATH (PUB_PID).
publish() {
	local url
	case $1 in
	rtsp) url=$SG_RTSP/$2 fmt=(-f rtsp -rtsp_transport tcp) ;;
	rtmp) url=$SG_RTMP/$2 fmt=(-f flv) ;;
	esac
	ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$clip" -c copy "${fmt[@]}" "$url" \
		>>"$SGB/startup-ffmpeg.log" 2>&1 &
	PUB_PID=$!
}

# run_once PROTO PATH [OLD]: prints the milliseconds to playable (see
# playable), or "fail"; adds "PATH T0" to $SGB/startup-t0.txt (T0: ffmpeg's
# start, ms since the epoch).
run_once() {
	local proto=$1 path=$2 t0 t
	t0=$(now_ms)
	echo "$path $t0" >>"$SGB/startup-t0.txt"
	publish "$proto" "$path"
	t=fail
	while [ $(($(now_ms) - t0)) -lt 10000 ]; do
		if playable "$SG_HLS/$path" "${3:-}"; then
			t=$(($(now_ms) - t0))
			break
		fi
		sleep 0.02
	done
	stop_pub
	echo "$t"
}

# run_return PROTO PATH: a first session on PATH until its media playlist
# lists a segment, a pause of RETURN_GAP s, then run_once timing the second.
run_return() {
	local proto=$1 path=$2 t0 old=$SGB/startup-old.txt
	t0=$(now_ms)
	publish "$proto" "$path"
	: >"$old"
	while [ $(($(now_ms) - t0)) -lt 10000 ]; do
		if media_playlist "$SG_HLS/$path" | grep -q '^[^#].*seg'; then
			break
		fi
		sleep 0.05
	done
	sleep 0.3 # the origin notes the keyframe interval with its next snapshot
	media_playlist "$SG_HLS/$path" | prefixes >"$old" || true
	stop_pub
	if [ ! -s "$old" ]; then
		echo fail
		return
	fi
	sleep "$gap"
	run_once "$proto" "$path" "$old"
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
for mode in $modes; do
	for proto in $protos; do
		case $mode in
		fresh) out=$SGB/startup-$proto.txt ;;
		return) out=$SGB/startup-return-$proto.txt ;;
		*) echo "unknown mode $mode" >&2; exit 1 ;;
		esac
		: >"$out"
		for i in $(seq "$runs"); do
			if [ "$mode" = fresh ]; then
				run_once "$proto" "start/$proto$tag$i" >>"$out"
			else
				run_return "$proto" "return/$proto$tag$i" >>"$out"
			fi
			sleep 0.5 # let the node settle between runs
		done
	done
done
cp "$SGB/sg.log" "$SGB/startup.log"
for mode in $modes; do
	for proto in $protos; do
		if [ "$mode" = fresh ]; then
			summary "$proto" "$SGB/startup-$proto.txt"
			stages "$proto"
		else
			summary "$proto returning (gap ${gap}s)" "$SGB/startup-return-$proto.txt"
		fi
	done
done
