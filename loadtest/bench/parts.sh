#!/bin/bash
# Part availability through the all-in-one: how long after the origin has a
# new LL-HLS part the cache serves it. RTSP cameras (the 720p clip) and
# LL-HLS viewers load the node as in latency.sh; PROBES (stream, cache) pairs
# are followed part by part at the origin (origin.http_address, 127.0.0.1:18889
# with lib.sh's ports) and at the cache (127.0.0.1:18888) with blocking
# playlist reloads at the same time.
#
# usage: parts.sh [CAMERAS] [VIEWERS] [DURATION] [PROBES]   (default 10 30 40s 10)
# out:   $SGB/parts.json, $SGB/parts.txt, $SGB/parts.log (the node's log) and a
#        summary line
. "$(dirname "$0")/lib.sh"
n=${1:-10}
v=${2:-30}
dur=${3:-40s}
probes=${4:-10}
clip=$(clip720)
trap cleanup EXIT
start_sg
l0=$(load)
rc=0
"$SG" loadtest --publish "$SG_RTSP/load" --play "$SG_HLS/load" --origin "$SG_ORIGIN/load" --part-probes "$probes" \
	--cameras "$n" --viewers "$v" --duration "$dur" --clip "$clip" --pid "$SG_PID" \
	--quiet --json "$SGB/parts.json" >"$SGB/parts.txt" 2>&1 || rc=$?
cp "$SGB/sg.log" "$SGB/parts.log"
# The cache's refusals of blocking reloads outside the window and its waits for
# upstream slots: normal viewing must cause none.
curl -sf "$SG_API/metrics" | awk '/^streamgrid_cache_requests_total.*result="refused"/ {r += $NF}
  /^streamgrid_cache_upstream_errors_total.*reason="busy"/ {b += $NF}
  END {printf "cache: blocking reloads refused %d, upstream slot timeouts %d\n", r, b}' || true
jq -r --arg load "$l0 -> $(load)" --arg rc "$rc" '
  "parts rc=\($rc) cameras_ok=\(.cameras_ok)/\(.cameras) viewers_ok=\(.viewers_ok)/\(.viewers) " +
  "part_availability_ms p50=\(.part_availability_ms.p50) p95=\(.part_availability_ms.p95) " +
  "p99=\(.part_availability_ms.p99) max=\(.part_availability_ms.max) (n=\(.part_samples), probes=\(.part_probes), " +
  "probe_errors=\(.part_probe_errors)) latency_ms p50=\(.latency_ms.p50) p95=\(.latency_ms.p95) p99=\(.latency_ms.p99) " +
  "cam_lag_max_ms=\(.camera_max_lag_ms) cpu=\([.servers[].cpu_percent] | add | . * 10 | round / 10)% load=\($load)"' "$SGB/parts.json"
