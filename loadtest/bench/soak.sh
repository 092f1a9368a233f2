#!/bin/bash
# Memory over a long run: a fresh all-in-one node on the default
# configuration takes N RTSP cameras (the built-in 640x360 sample, ~0.4
# Mbit/s, or CLIP=path) and M LL-HLS viewers for DURATION; `streamgrid
# loadtest sample` reads the node's /metrics (loopback) every EVERY seconds
# during the load and for TAIL after it (the node idle: what does it give
# back?) and writes the samples and a plot: RSS, Go heap in use, the cache's
# LRU bytes, goroutines and open files.
#
# usage: flock /tmp/sgbench.lock soak.sh [CAMERAS] [VIEWERS] [DURATION] [TAIL]
#        (default 25 100 30m 90s; EVERY=5s; NODE_ENV="VAR=value ..." for the node)
# out:   $SGB/soak-N-M-DURATION.{json,svg,txt,report.json} (samples, plot, loadtest
#        report), .{load,idle}.heap.pprof (heap profiles under load and idle)
#        and a summary line
. "$(dirname "$0")/lib.sh"
cams=${1:-25}
viewers=${2:-100}
dur=${3:-30m}
tail=${4:-90s}
every=${EVERY:-5s}
secs() { # 30m, 90s, 1h -> seconds
	case $1 in *h) echo $((${1%h} * 3600)) ;; *m) echo $((${1%m} * 60)) ;; *s) echo "${1%s}" ;; *) echo "$1" ;; esac
}
base=$SGB/soak-$cams-$viewers-$dur
trap cleanup EXIT
# shellcheck disable=SC2086
start_sg ${NODE_ENV:-}
clip=()
[ -n "${CLIP:-}" ] && clip=(--clip "$CLIP")
"$SG" loadtest sample --metrics "$SG_API/metrics" --every "$every" \
	--duration "$(($(secs "$dur") + $(secs "$tail") + 2))s" --out "$base.json" \
	--mark "2=load starts" --mark "$(($(secs "$dur") + 2 - 20))=GC + heap profile" \
	--mark "$(($(secs "$dur") + 2))=load ends" --mark "$(($(secs "$dur") + 2 + $(secs "$tail") - 8))=GC + heap profile" \
	>"$base.sample.txt" 2>&1 &
sampler=$!
s0=$SECONDS
sleep 2
rc=0
"$SG" loadtest --publish "$SG_RTSP/load" --play "$SG_HLS/load" --cameras "$cams" --viewers "$viewers" \
	--duration "$dur" "${clip[@]}" --pid "$SG_PID" --quiet --json "$base.report.json" >"$base.txt" 2>&1 &
loader=$!
# Heap profiles (after a forced GC: ?gc=1) 20 s before the load ends and
# 8 s before the tail ends: what the heap really holds under load and idle,
# by function (go tool pprof -top -sample_index=inuse_space FILE). The idle
# one comes late so that the samples before it show what the node gives
# back by itself (its memory watcher trims a quiet heap; the runtime alone
# collects an idle heap only every 2 minutes).
at() { local d=$(($1 - (SECONDS - s0))); [ "$d" -gt 0 ] && sleep "$d"; return 0; }
at $(($(secs "$dur") + 2 - 20))
curl -sf -o "$base.load.heap.pprof" "$SG_API/debug/pprof/heap?gc=1" || true
wait "$loader" || rc=$?
at $(($(secs "$dur") + 2 + $(secs "$tail") - 8))
curl -sf -o "$base.idle.heap.pprof" "$SG_API/debug/pprof/heap?gc=1" || true
wait "$sampler" || rc=$?
stop_sg
cp "$SGB/sg.log" "$base.log"
# RSS at minute 2 and at the end of the load, its range from minute 2 to
# the end (the issue's flatness: within 10 % of minute 2), the largest; the
# heap before the load (fresh node), at the end of the load, a minute after
# it (before the idle profile's forced GC) and at the end of the tail;
# goroutines and files.
jq -r --arg rc "$rc" --argjson loadend "$(($(secs "$dur") + 2))" '
  def mib: . / 1048576 | floor;
  def at($t): [.samples[] | select(.t <= $t)] | last;
  (at(122)) as $m2 | (at($loadend)) as $e | (at($loadend + 60)) as $after | (.samples | first) as $fresh |
  (.samples | last) as $idle |
  [.samples[] | select(.t >= 120 and .t <= $loadend) | .rss_bytes] as $steady |
  "rc=\($rc) samples=\(.samples | length) " +
  "rss_MiB fresh=\($fresh.rss_bytes | mib) min2=\($m2.rss_bytes | mib) end=\($e.rss_bytes | mib) steady=\($steady | min | mib)..\($steady | max | mib) " +
  "(\((($steady | max) / $m2.rss_bytes - 1) * 1000 | round / 10)%..\((($steady | min) / $m2.rss_bytes - 1) * 1000 | round / 10)% of min2) " +
  "max=\([.samples[].rss_bytes] | max | mib) after60s=\($after.rss_bytes | mib) idle=\($idle.rss_bytes | mib) " +
  "heap_MiB fresh=\($fresh.heap_inuse_bytes | mib) end=\($e.heap_inuse_bytes | mib) after60s=\($after.heap_inuse_bytes | mib) idle=\($idle.heap_inuse_bytes | mib) " +
  "lru_MiB end=\($e.cache_lru_bytes | mib) idle=\($idle.cache_lru_bytes | mib) " +
  "goroutines min2=\($m2.goroutines) end=\($e.goroutines) idle=\($idle.goroutines) fds min2=\($m2.open_fds) end=\($e.open_fds) idle=\($idle.open_fds)"' "$base.json"
jq -r '"cameras_ok=\(.cameras_ok)/\(.cameras) viewers_ok=\(.viewers_ok)/\(.viewers) errors=\(.errors) stalls=\(.stalls) latency_ms p50=\(.latency_ms.p50) p99=\(.latency_ms.p99)"' "$base.report.json"
