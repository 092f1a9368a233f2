#!/bin/bash
# Glass-to-glass latency and part availability through the compose cluster
# (3 bus, 2 edge, 2 origin, 2 cache): RTSP cameras (the 720p clip) publish to
# edge1, viewers play from both caches, and (LL-HLS only) part probes follow
# streams at their owning origin and at each cache at once. The load
# generator runs in a container on the cluster's network, so it reaches every
# node directly (the origins' HLS port is not published to the host) and no
# Docker port proxy sits in the path; it is this repository's binary, built
# here (static) and mounted into the streamgrid image.
#
# usage: cluster.sh MODE [CAMERAS] [VIEWERS] [DURATION] [PROBES]
#        (default 10 30 40s 10)
#   MODE lowLatency  the origins' default LL-HLS (200 ms parts, 1 s segments)
#        fmp4        classic HLS, fMP4 1 s segments, 3 in the playlist
#        mpegts      classic HLS, MPEG-TS 1 s segments, 3 in the playlist
# Each run brings a fresh cluster up (docker-compose up -d --build, project
# "sgbench", with loadtest/bench/cluster-compose.yml for the variant) and takes
# it down with its volumes afterwards. NOBUILD=1 skips the image build (to
# measure several modes on one image while the tree changes). Needs the
# images (deploy/base-images.sh on an engine that cannot pull),
# docker-compose or docker compose, jq, ffmpeg.
# Viewers start 3 s after their camera, 5 s for mpegts (see latency.sh).
# out:   $SGB/cluster-MODE.json, .txt (the load generator's output), .log (the
#        cluster's logs) and a summary line
. "$(dirname "$0")/lib.sh"
mode=${1:?usage: cluster.sh lowLatency|fmp4|mpegts [CAMERAS] [VIEWERS] [DURATION] [PROBES]}
n=${2:-10}
v=${3:-30}
dur=${4:-40s}
probes=${5:-10}
project=${SG_BENCH_PROJECT:-sgbench}
case $mode in
lowLatency) export SG_BENCH_VARIANT=lowLatency SG_BENCH_SEGMENT_COUNT=7 ;;
fmp4 | mpegts) export SG_BENCH_VARIANT=$mode SG_BENCH_SEGMENT_COUNT=3 ;;
*) echo "unknown mode $mode" >&2; exit 2 ;;
esac
if docker compose version >/dev/null 2>&1; then
	compose=(docker compose)
else
	compose=(docker-compose)
fi
compose+=(-p "$project" -f "$REPO/docker-compose.yml" -f "$REPO/loadtest/bench/cluster-compose.yml")

clip=$(clip720)
gen=$SGB/streamgrid-static
(cd "$REPO" && CGO_ENABLED=0 go build -o "$gen" ./cmd/streamgrid)

down() {
	"${compose[@]}" logs --no-color -t >"$SGB/cluster-$mode.log" 2>&1 || true
	"${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
}
trap down EXIT
"${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
build=(--build)
[ -z "${NOBUILD:-}" ] || build=()
"${compose[@]}" up -d "${build[@]}" >"$SGB/cluster-up.log" 2>&1 || { cat "$SGB/cluster-up.log" >&2; exit 1; }
image=$(docker image inspect -f '{{.Id}}' streamgrid:local | cut -c8-19)

# every node healthy (the camera has no healthcheck)
nodes=(bus1 bus2 bus3 origin1 origin2 edge1 edge2 cache1 cache2)
for _ in $(seq 90); do
	ok=0
	for s in "${nodes[@]}"; do
		id=$("${compose[@]}" ps -q "$s")
		[ "$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null)" = healthy ] && ok=$((ok + 1))
	done
	[ "$ok" = ${#nodes[@]} ] && break
	sleep 1
done
if [ "$ok" != ${#nodes[@]} ]; then
	echo "cluster not healthy ($ok/${#nodes[@]} nodes)" >&2
	"${compose[@]}" ps >&2
	exit 1
fi
sleep 5 # gossip: every cache has seen both origins

net=${project}_default
delay=3s
[ "$mode" != mpegts ] || delay=5s
parts=()
[ "$mode" != lowLatency ] || parts=(--origin http://origin1:8889/load,http://origin2:8889/load --part-probes "$probes")
metrics=()
for s in "${nodes[@]}"; do metrics+=(--metrics "http://$s:9997/metrics"); done
l0=$(load)
rc=0
docker run --rm --network "$net" -v "$SGB:/sgb" --entrypoint /sgb/streamgrid-static streamgrid:local \
	loadtest --publish rtsp://edge1:8554/load --play http://cache1:8888/load,http://cache2:8888/load \
	"${parts[@]}" --allow-remote edge1,cache1,cache2,origin1,origin2,bus1,bus2,bus3,edge2 \
	--cameras "$n" --viewers "$v" --duration "$dur" --viewer-delay "$delay" --clip /sgb/clip720.ts \
	"${metrics[@]}" --quiet --json "/sgb/cluster-$mode.json" >"$SGB/cluster-$mode.txt" 2>&1 || rc=$?
l1=$(load)
jq -r --arg mode "$mode" --arg load "$l0 -> $l1" --arg rc "$rc" '
  "cluster \($mode) rc=\($rc) cameras_ok=\(.cameras_ok)/\(.cameras) viewers_ok=\(.viewers_ok)/\(.viewers) " +
  "latency_ms p50=\(.latency_ms.p50) p95=\(.latency_ms.p95) p99=\(.latency_ms.p99) (n=\(.latency_ms.count)) " +
  "startup_ms p50=\(.startup_ms.p50) p95=\(.startup_ms.p95) stalls=\(.stalls) errors=\(.errors) cam_lag_max_ms=\(.camera_max_lag_ms) " +
  (if .part_probes > 0 then "part_availability_ms p50=\(.part_availability_ms.p50) p95=\(.part_availability_ms.p95) " +
    "p99=\(.part_availability_ms.p99) max=\(.part_availability_ms.max) (n=\(.part_samples), probes=\(.part_probes), " +
    "probe_errors=\(.part_probe_errors)) " +
    ([.part_availability_by_cache[]? | "\(.play | sub("^http://"; "") | sub(":.*"; "")) p50=\(.part_availability_ms.p50) p95=\(.part_availability_ms.p95) p99=\(.part_availability_ms.p99) n=\(.part_availability_ms.count)"] | join(" ")) + " "
   else "" end) +
  "cpu " + ([.servers[] | "\(.target | sub("^http://"; "") | sub(":.*"; ""))=\(.cpu_percent | . * 10 | round / 10)%"] | join(" ")) +
  " image=\($image) load=\($load)"' --arg image "$image" "$SGB/cluster-$mode.json"
