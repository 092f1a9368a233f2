#!/bin/bash
# Where the all-in-one's CPU goes: N RTMP cameras (the 720p clip, no viewers),
# perf samples the node for 20 s in the steady part, and the Go runtime's
# gctrace gives the live heap next to the RSS. perf reads the Go symbol table
# of the (unstripped) binary; the API's /debug/pprof gives Go's own view.
#
# usage: profile.sh [CAMERAS] [PART]   (default 25; PART=ingest|viewers: add
#        2 viewers per camera)
# out:   $SGB/perf-N.txt (flat and cumulative top entries, CPU by component),
#        $SGB/gctrace-N.log (heap before -> after GC, and the goal, per cycle)
. "$(dirname "$0")/lib.sh"
n=${1:-25}
viewers=0
[ "${2:-ingest}" = viewers ] && viewers=$((2 * n))
clip=$(clip720)
trap cleanup EXIT
start_sg GODEBUG=gctrace=1
"$SG" loadtest --publish "$SG_RTMP/load" --play "$SG_HLS/load" --cameras "$n" --viewers "$viewers" \
	--duration 40s --clip "$clip" --pid "$SG_PID" --quiet --json "$SGB/profile-$n.json" >"$SGB/profile-$n.txt" 2>&1 &
lt=$!
sleep 15
perf record -F 499 -g -p "$SG_PID" -o "$SGB/perf-$n.data" -- sleep 20 2>/dev/null
wait "$lt" || true
cp "$SGB/sg.log" "$SGB/gctrace-$n.log"
{
	echo "== flat (self) =="
	perf report -i "$SGB/perf-$n.data" --no-children --sort symbol --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40
	echo "== cumulative (children) =="
	perf report -i "$SGB/perf-$n.data" --children --sort symbol --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60
	echo "== by component (perfsplit.py) =="
	perf script -i "$SGB/perf-$n.data" -F comm,tid,ip,sym 2>/dev/null >"$SGB/perf-$n.script"
	python3 "$(dirname "$0")/perfsplit.py" "$SGB/perf-$n.script"
} >"$SGB/perf-$n.txt"
sed -n '/== by component/,$p' "$SGB/perf-$n.txt"
grep -E '^gc ' "$SGB/gctrace-$n.log" | tail -3
jq -c '{cameras_ok, viewers_ok, latency_ms, servers}' "$SGB/profile-$n.json"
