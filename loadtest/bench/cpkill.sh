#!/usr/bin/env bash
# cpkill.sh NAME [loadtest --control-plane flags...]: one control-plane
# simulation (docs/cluster.md, "Owner records by partition: measured"),
# under the benchmark lock, at nice -5, with the CPU of every process of
# the binary (the bus nodes, the simulator) read from /proc every ~0.7 s.
# Writes $SGB/NAME.json (the report), NAME.err, NAME.cpu (the samples) and
# prints the bus's and the simulator's cores per sample from 5 s before
# the kill to 20 s after it (the kill is the report's killed_at).
#   STREAMGRID_BIN=<bin> loadtest/bench/cpkill.sh k20 --streams 5000 --origins 100 --edges 10 \
#     --kill-origins 20 --duration 520s --ramp 250s --node-ttl 1.5s
set -eu
SGB=${SGB:-/tmp/sgbench}
SG=${STREAMGRID_BIN:?STREAMGRID_BIN names the binary to measure}
name=$1
shift
mkdir -p "$SGB"
exec 9>/tmp/e2e.lock
flock 9
echo "start $(date -u +%T) $(uptime)"
(
  while sleep 0.5; do
    echo "T $(date +%s.%N)"
    for p in $(pgrep -f "^$SG "); do
      echo "$p $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null) $(tr '\0' ' ' <"/proc/$p/cmdline" | cut -c1-80)"
    done
  done
) >"$SGB/$name.cpu" &
sampler=$!
trap 'kill $sampler 2>/dev/null' EXIT
rc=0
nice -n -5 "$SG" loadtest --control-plane "$@" --json "$SGB/$name.json" 2>"$SGB/$name.err" || rc=$?
echo "end $(date -u +%T) $(uptime) rc $rc"
python3 - "$SGB/$name.cpu" "$SGB/$name.json" <<'PY'
import collections, datetime, json, sys
rep = json.load(open(sys.argv[2]))
kill = datetime.datetime.fromisoformat(rep["killed_at"].replace("Z", "+00:00")).timestamp() if rep.get("killed_at") else None
last, t, by = {}, None, collections.defaultdict(lambda: [0.0, 0.0])
for line in open(sys.argv[1]):
    f = line.split()
    if f and f[0] == "T":
        t = float(f[1]); continue
    if len(f) < 3 or not f[1].isdigit():
        continue
    bus = " bus " in line
    if f[0] in last and t > last[f[0]][0]:
        by[t][0 if bus else 1] += (int(f[1]) - last[f[0]][1]) / 100 / (t - last[f[0]][0])
    last[f[0]] = (t, int(f[1]))
print("reown_ms", rep.get("reown_ms"))
for t in sorted(by):
    if kill is None or kill - 5 <= t <= kill + 20:
        print("%+6.1f s  bus %.2f  simulator %.2f cores" % (t - (kill or t), by[t][0], by[t][1]))
PY
exit $rc
