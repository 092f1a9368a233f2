#!/bin/bash
# How the all-in-one's cost grows: for each camera count, a fresh node takes N
# RTSP cameras (the 720p clip) and N LL-HLS viewers (one per camera) for 40 s;
# prints CPU and RSS per camera and the signs of not keeping up: viewer
# stalls and restarts, camera send lag, latency, streams whose ownership
# lease was lost (the origin stops and re-claims them), dropped packets.
#
# usage: growth.sh [CAMERAS...]   (default 1 10 25 50 100)
# out:   $SGB/growth-N.{json,txt,log} and one line per count
. "$(dirname "$0")/lib.sh"
counts=${*:-1 10 25 50 100}
clip=$(clip720)
trap cleanup EXIT
for n in $counts; do
	start_sg
	l0=$(load)
	rc=0
	t0=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat) # this shell and its children so far
	w0=$(date +%s)
	"$SG" loadtest --publish "$SG_RTSP/load" --play "$SG_HLS/load" --cameras "$n" --viewers "$n" \
		--duration 40s --clip "$clip" --pid "$SG_PID" --quiet --json "$SGB/growth-$n.json" \
		>"$SGB/growth-$n.txt" 2>&1 || rc=$?
	# the load generator's own CPU: seconds used / seconds it ran
	gen="$(( ($(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat) - t0) / 100 ))s/$(( $(date +%s) - w0 ))s"
	drops=$(curl -sf $SG_API/metrics |
		awk '/^streamgrid_(edge|origin)_packets_(dropped|lost)_total/ && !/no_picture/ {s += $NF} END {print s + 0}')
	stop_sg
	cp "$SGB/sg.log" "$SGB/growth-$n.log"
	lost=$(grep -c 'ownership lost' "$SGB/growth-$n.log" || true)
	jq -r --arg rc "$rc" --arg load "$l0 -> $(load)" --arg lost "$lost" --arg drops "$drops" --arg gen "$gen" '
	  .servers[0] as $s |
	  "cameras=\(.cameras) rc=\($rc) cameras_ok=\(.cameras_ok) viewers_ok=\(.viewers_ok)/\(.viewers) viewer_restarts=\(.viewer_restarts) " +
	  "stalls=\(.stalls) cam_lag_max_ms=\(.camera_max_lag_ms) latency_ms p50=\(.latency_ms.p50) p95=\(.latency_ms.p95) p99=\(.latency_ms.p99) " +
	  "cpu=\($s.cpu_percent)% cpu/cam=\($s.cpu_per_camera)% rss=\($s.rss_mb)MiB rss/cam=\($s.rss_per_camera_mb)MiB " +
	  "leases_lost=\($lost) drops=\($drops) generator_cpu=\($gen) load=\($load)"' "$SGB/growth-$n.json"
done
