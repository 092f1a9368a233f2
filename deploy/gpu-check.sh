#!/usr/bin/env bash
# gpu-check.sh: checks streamgrid's GPU paths end to end on a machine with an
# NVIDIA GPU and prints the figures for docs/benchmarks.md:
#
#   1. the GPU (nvidia-smi) and what `streamgrid encoders` detects;
#   2. NVDEC: a generated 1080p H.264 clip decoded with -hwaccel cuda and on
#      the CPU, frames per second of each;
#   3. one 3-rung ladder (720p/480p/360p) end to end: an all-in-one
#      streamgrid, the clip published over RTSP in real time (-re), the
#      renditions' playlists awaited at the cache and each rendition checked
#      with ffprobe; start-up time and the transcoder's speed from /metrics.
#      With NVENC the ladder runs on the GPU (encoder nvenc, no CPU
#      fallback); on a GPU without NVENC (A100, H100, H200) it says so and
#      runs the same ladder with encoder x264, labelled as such.
#
# Usage: deploy/gpu-check.sh [--cpu-only]
#   --cpu-only  run the CPU parts (CPU decode, the x264 ladder) without a GPU:
#               proves the script and the ladder work on any machine.
# Env: STREAMGRID  streamgrid binary (default: built with `go build` when go
#                  exists, else `streamgrid` on PATH)
#      FFMPEG, FFPROBE  (default: ffmpeg, ffprobe on PATH); deploy/ffmpeg-portable.sh
#                  builds small static ones for a machine that has none.
# Exit status: 0 when everything this GPU supports worked; 1 when a check
# failed; 2 on a usage or set-up error (no ffmpeg, no streamgrid); 3 when no
# NVIDIA GPU was found (without --cpu-only). Runs in about a minute, at most
# about three (every wait is bounded).
set -euo pipefail

cpu_only=0
case "${1:-}" in
--cpu-only) cpu_only=1 ;;
"") ;;
-h | --help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "usage: $0 [--cpu-only]" >&2
	exit 2
	;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
FFMPEG=${FFMPEG:-ffmpeg}
FFPROBE=${FFPROBE:-ffprobe}
# The NVIDIA driver's libraries (libcuda, libnvcuvid, libnvidia-encode) and
# nvidia-smi live under /usr/local/nvidia in many container images.
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
	[[ -d $d ]] && LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
done
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
[[ -d /usr/local/nvidia/bin ]] && PATH=$PATH:/usr/local/nvidia/bin

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		timeout 15 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

failures=0
fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}
section() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
# elapsed START: seconds since START, two decimals.
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# http_get URL: the body of a 200 answer on stdout; fails otherwise. curl when
# there is one, else bash's /dev/tcp (plain HTTP/1.0 to 127.0.0.1).
http_get() {
	if command -v curl >/dev/null; then
		curl -fsS --max-time 5 "$1"
		return
	fi
	local rest=${1#http://} hostport path status
	hostport=${rest%%/*} path=/${rest#*/}
	exec 9<>"/dev/tcp/${hostport%:*}/${hostport#*:}" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&9
	local resp
	resp=$(timeout 5 cat <&9) || true
	exec 9<&-
	status=${resp%%$'\r'*}
	[[ $status == *" 200 "* ]] || return 1
	printf '%s' "${resp#*$'\r\n\r\n'}"
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on.
used_ports=" "
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 40000))
		[[ $used_ports == *" $p "* ]] && continue
		if ! (exec 8<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used_ports+="$p "
			echo "$p"
			return
		fi
	done
	echo "no free port found" >&2
	return 1
}

# --- tools ----------------------------------------------------------------
for t in "$FFMPEG" "$FFPROBE"; do
	if ! command -v "$t" >/dev/null; then
		echo "error: $t not found (set FFMPEG / FFPROBE; deploy/ffmpeg-portable.sh builds portable ones)"
		exit 2
	fi
done
if [[ -z ${STREAMGRID:-} ]]; then
	if command -v go >/dev/null; then
		echo "building streamgrid..."
		(cd "$root" && go build -o "$tmp/streamgrid" ./cmd/streamgrid)
		STREAMGRID=$tmp/streamgrid
	else
		STREAMGRID=streamgrid
	fi
fi
if ! command -v "$STREAMGRID" >/dev/null; then
	echo "error: streamgrid binary $STREAMGRID not found (set STREAMGRID)"
	exit 2
fi
# Relative paths with a slash (.gpu/ffmpeg) become absolute: streamgrid's
# configuration names ffmpeg too.
absolute() { if [[ $1 == */* ]]; then echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; else echo "$1"; fi; }
STREAMGRID=$(absolute "$STREAMGRID") FFMPEG=$(absolute "$FFMPEG") FFPROBE=$(absolute "$FFPROBE")

section "machine"
echo "date:        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "cpu:         $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)"
echo "streamgrid:  $("$STREAMGRID" version)"
echo "ffmpeg:      $("$FFMPEG" -hide_banner -version | head -n1)"

gpu_name=""
section "GPU"
if command -v nvidia-smi >/dev/null &&
	gpu_line=$(timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,pci.bus_id --format=csv,noheader 2>&1) &&
	[[ -n $gpu_line ]]; then
	echo "$gpu_line"
	gpu_name=$(head -n1 <<<"$gpu_line" | cut -d, -f1)
else
	echo "no NVIDIA GPU: ${gpu_line:-nvidia-smi not found}"
	if ((!cpu_only)); then
		echo "Nothing GPU-related can be checked here; $0 --cpu-only checks the CPU parts."
		exit 3
	fi
	echo "(--cpu-only: running the CPU parts)"
fi

# --- detection --------------------------------------------------------------
section "streamgrid encoders"
timeout 90 "$STREAMGRID" encoders --ffmpeg "$FFMPEG" || fail "streamgrid encoders"
enc_json=$(timeout 90 "$STREAMGRID" encoders --ffmpeg "$FFMPEG" --json) || true
has() { grep -q "\"$1\": true" <<<"$enc_json"; }
problem() { grep -o "\"Err\": \".*\"" <<<"$enc_json" | tr ';' '\n' | grep -i "$1" | head -n1 | sed 's/^"Err": "//; s/"$//; s/^ //' || true; }

nvenc=0 nvdec=0
if [[ -n $gpu_name ]]; then
	has CUDA || fail "CUDA: not usable with $FFMPEG on $gpu_name: $(problem cuda)"
	if has NVDEC; then nvdec=1; else fail "NVDEC: not usable on $gpu_name: $(problem nvdec)"; fi
	if has NVENCH264 && has ScaleCUDA && has CUDA; then
		nvenc=1
		echo "NVENC: available on $gpu_name (h264_nvenc$(has NVENCHEVC && echo ", hevc_nvenc"))"
	else
		why=$(problem h264_nvenc)
		if [[ $gpu_name =~ (A100|A30|A800|H100|H200|H800|H20) ]] ||
			[[ $why =~ (unsupported device|No capable devices|No NVENC capable) ]]; then
			echo "NVENC: not available on this GPU ($gpu_name)${why:+ [$why]}"
		else
			fail "NVENC: not usable on $gpu_name: ${why:-scale_cuda or CUDA missing}"
		fi
	fi
fi

# --- test clip ----------------------------------------------------------------
section "test clip"
clip=$tmp/clip-1080p.mp4
t0=$(now)
timeout 120 "$FFMPEG" -hide_banner -nostdin -loglevel error \
	-f lavfi -i "testsrc2=size=1920x1080:rate=25" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
	-t 10 -c:v libx264 -preset veryfast -profile:v main -pix_fmt yuv420p -g 50 -bf 0 -b:v 6M \
	-c:a aac -b:a 128k -movflags +faststart -y "$clip"
echo "1920x1080 25 fps H.264 main + AAC, 10 s, $(($(stat -c %s "$clip") / 1024)) KiB, made in $(elapsed "$t0") s"

# --- decode -------------------------------------------------------------------
# decode_fps LABEL ARGS...: decodes the clip 5 times over (1250 frames) to
# the null muxer and prints the frame rate.
decode_fps() {
	local label=$1 t frames
	shift
	t=$(now)
	if ! timeout 60 "$FFMPEG" -hide_banner -nostdin -loglevel error "$@" -stream_loop 4 -i "$clip" \
		-map 0:v:0 -f null - -progress "$tmp/progress.txt"; then
		fail "$label decode"
		return
	fi
	local secs
	secs=$(elapsed "$t")
	frames=$(grep '^frame=' "$tmp/progress.txt" | tail -n1 | cut -d= -f2)
	awk -v l="$label" -v f="$frames" -v s="$secs" 'BEGIN { printf "%-26s %5d frames in %6.2f s = %7.1f fps (%.1fx real time)\n", l, f, s, f / s, f / s / 25 }'
}
section "decode (1080p H.264, 1250 frames, wall clock incl. start-up)"
decode_fps "CPU (h264, $(nproc) cores)"
if ((nvdec)); then
	decode_fps "NVDEC (-hwaccel cuda)" -hwaccel cuda
elif [[ -n $gpu_name ]]; then
	echo "NVDEC: skipped (not detected)"
else
	echo "NVDEC: skipped (no GPU)"
fi

# --- ladder -----------------------------------------------------------------
# run_ladder ENCODER FALLBACK LABEL: an all-in-one streamgrid transcoding the
# published clip into 720p/480p/360p.
run_ladder() {
	local encoder=$1 fallback=$2 label=$3
	section "ladder: $label"
	local api bus gossip rtsp origin cache dir=$tmp/ladder-$encoder
	api=$(free_port) bus=$(free_port) gossip=$(free_port) rtsp=$(free_port) origin=$(free_port) cache=$(free_port)
	mkdir -p "$dir"
	cat >"$dir/streamgrid.yml" <<EOF
node: {name: gpu-check, log_level: info, drain_timeout: 2s}
api: {address: "127.0.0.1:$api"}
bus: {server: {listen: "127.0.0.1:$bus"}}
gossip: {bind: "127.0.0.1:$gossip"}
edge: {rtsp_address: "127.0.0.1:$rtsp", rtp_address: "", rtcp_address: "", rtmp_address: ""}
origin:
  http_address: "127.0.0.1:$origin"
  transcode:
    ffmpeg: "$FFMPEG"
    encoder: $encoder
    fallback: $fallback
    ladders:
      - match: "live/*"
        renditions:
          - {name: 720p, width: 1280, height: 720, bitrate: 2500000}
          - {name: 480p, width: 854, height: 480, bitrate: 1200000}
          - {name: 360p, width: 640, height: 360, bitrate: 700000}
cache: {http_address: "127.0.0.1:$cache"}
EOF
	local t_node sg pub
	t_node=$(now)
	"$STREAMGRID" run --config "$dir/streamgrid.yml" >"$dir/streamgrid.log" 2>&1 &
	sg=$!
	pids+=("$sg")
	local i ok=0 deadline=$(($(date +%s) + 60))
	while (($(date +%s) < deadline)); do
		if http_get "http://127.0.0.1:$api/healthz" >/dev/null 2>&1; then ok=1 && break; fi
		kill -0 "$sg" 2>/dev/null || break
		sleep 0.1
	done
	if ((!ok)); then
		fail "$label: streamgrid did not become healthy within 60 s; its log:"
		tail -n 20 "$dir/streamgrid.log"
		return
	fi
	echo "node healthy in $(elapsed "$t_node") s"

	local t_pub
	t_pub=$(now)
	"$FFMPEG" -hide_banner -nostdin -loglevel error -re -stream_loop -1 -i "$clip" -c copy \
		-f rtsp -rtsp_transport tcp "rtsp://127.0.0.1:$rtsp/live/gpucheck" >"$dir/publisher.log" 2>&1 &
	pub=$!
	pids+=("$pub")

	# Wait for the multivariant playlist and every rendition's media playlist
	# with a segment in it.
	local base="http://127.0.0.1:$cache/live/gpucheck" mv="" uris=() u ready=0
	deadline=$(($(date +%s) + 45))
	while (($(date +%s) < deadline)); do
		if mv=$(http_get "$base/index.m3u8" 2>/dev/null); then
			mapfile -t uris < <(grep -v '^#' <<<"$mv" | grep -v '^[[:space:]]*$' | tr -d '\r')
			if ((${#uris[@]} >= 3)); then
				ready=1
				for u in "${uris[@]}"; do
					http_get "$base/$u" 2>/dev/null | grep -q '^#EXTINF' || {
						ready=0
						break
					}
				done
				((ready)) && break
			fi
		fi
		kill -0 "$sg" 2>/dev/null || break
		sleep 0.1
	done
	if ((!ready)); then
		fail "$label: the renditions' playlists did not appear at the cache within 45 s (${#uris[@]} listed)"
		echo "--- streamgrid log (last 25 lines)"
		tail -n 25 "$dir/streamgrid.log"
		echo "--- publisher log"
		tail -n 5 "$dir/publisher.log"
		return
	fi
	echo "start-up: first segment of all ${#uris[@]} renditions at the cache $(elapsed "$t_pub") s after the publisher started"
	grep '^#EXT-X-STREAM-INF' <<<"$mv" | sed 's/^/  /'

	local want=("1280x720" "854x480" "640x360") got
	for i in "${!uris[@]}"; do
		u=${uris[$i]}
		got=$(timeout 30 "$FFPROBE" -v error -select_streams v:0 -show_entries stream=codec_name,width,height,profile \
			-of default=nw=1 "$base/$u" 2>&1 | head -n 4 | tr '\n' ' ') || true
		local wh
		wh=$(sed -n 's/.*width=\([0-9]*\).*height=\([0-9]*\).*/\1x\2/p' <<<"$got")
		if [[ $got == *codec_name=h264* && $wh == "${want[$i]:-}" ]]; then
			echo "  ffprobe $u: OK $got"
		else
			fail "$label: ffprobe $u: want h264 ${want[$i]:-?}, got: $got"
		fi
	done

	# Let the transcoder run 15 s past start-up, then read its figures.
	local until
	until=$(awk -v a="$t_pub" 'BEGIN { printf "%d", a + 20 }')
	while (($(date +%s) < until)) && kill -0 "$sg" 2>/dev/null; do sleep 0.5; done
	local metrics
	metrics=$(http_get "http://127.0.0.1:$api/metrics" 2>/dev/null) || true
	echo "metrics after $(elapsed "$t_pub") s of publishing:"
	grep -E '^streamgrid_(transcode_(speed|fps|behind_realtime|lag_seconds|restarts_total|processes)|origin_transcode_slots_used)[{ ]' <<<"$metrics" |
		sed 's/^/  /' || echo "  (no transcode metrics found)"
	local speed
	speed=$(grep -E '^streamgrid_transcode_speed[{ ]' <<<"$metrics" | awk '{ print $2; exit }') || true
	local restarts
	restarts=$(grep -E '^streamgrid_transcode_restarts_total[{ ]' <<<"$metrics" | awk '{ s += $2 } END { print s + 0 }') || true
	if [[ -n $speed ]]; then
		awk -v s="$speed" 'BEGIN { printf "transcoder speed: %.2fx real time (the publisher sends at 1x: about 1 means it keeps up)\n", s
			if (s < 0.9) print "WARN: the transcoder does not keep up with real time on this machine" }'
	fi
	((${restarts:-0} == 0)) || fail "$label: ffmpeg restarted $restarts times"
	if [[ $encoder == nvenc ]] && ! grep -qE 'origin_transcode_slots_used\{[^}]*kind="gpu"[^}]*\} 1' <<<"$metrics"; then
		fail "$label: the stream is not on a GPU slot"
	fi
	grep -iE 'level=(WARN|ERROR)' "$dir/streamgrid.log" | head -n 5 | sed 's/^/  log: /' || true

	local t_stop
	t_stop=$(now)
	kill -TERM "$pub" "$sg" 2>/dev/null || true
	timeout 20 tail --pid="$sg" -f /dev/null || fail "$label: streamgrid did not exit within 20 s of SIGTERM"
	timeout 5 tail --pid="$pub" -f /dev/null || kill -KILL "$pub" 2>/dev/null || true
	echo "stopped in $(elapsed "$t_stop") s"
}

if ((nvenc)); then
	run_ladder nvenc refuse "NVENC (NVDEC decode, scale_cuda, h264_nvenc)"
else
	if [[ -n $gpu_name ]]; then
		echo
		echo "NVENC: not available on this GPU ($gpu_name): the ladder runs with encoder: x264."
		echo "NVDEC decode + x264 encode: not supported by streamgrid's transcoder (it decodes on the"
		echo "GPU only together with NVENC), so the ladder below is CPU only: CPU decode, scale, libx264."
	fi
	run_ladder x264 cpu "x264 on the CPU ($(nproc) cores; no NVENC used)"
fi

section "summary"
if ((failures)); then
	echo "$failures check(s) FAILED"
	exit 1
fi
echo "all checks passed"
