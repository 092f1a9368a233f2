#!/bin/bash
# Go CPU and heap profiles of the all-in-one under ingest: N RTMP cameras
# (the 720p clip, no viewers) into a fresh node; 15 s in, a 15 s CPU profile
# and a heap profile (after a GC) from the API's /debug/pprof.
#
# usage: pprof.sh [CAMERAS]   (default 25)
# out:   $SGB/pprof-N.{cpu,heap,allocs,json}; read with
#        go tool pprof -top -cum $SG $SGB/pprof-N.cpu
#        go tool pprof -sample_index=inuse_space -top $SG $SGB/pprof-N.heap
. "$(dirname "$0")/lib.sh"
n=${1:-25}
clip=$(clip720)
trap cleanup EXIT
start_sg ${NODE_ENV:-}
out=$SGB/pprof-$n
"$SG" loadtest --publish "$SG_RTMP/load" --cameras "$n" --duration 35s --clip "$clip" --pid "$SG_PID" \
	--quiet --json "$out.json" >"$out.txt" 2>&1 &
lt=$!
sleep 15
curl -sf -o "$out.cpu" "$SG_API/debug/pprof/profile?seconds=15"
curl -sf -o "$out.heap" "$SG_API/debug/pprof/heap?gc=1"
curl -sf -o "$out.allocs" "$SG_API/debug/pprof/allocs"
wait "$lt" || true
jq -r '"cameras ok \(.cameras_ok)/\(.cameras) node cpu \([.servers[].cpu_percent] | add)% rss/camera \([.servers[].rss_per_camera_mb] | add) MiB"' "$out.json"
