#!/bin/bash
# Issue 10's figures in one run, one script after the other on one binary:
# CPU and RSS per camera at 25 and 100 RTMP cameras beside nginx-rtmp
# (ingest.sh), publisher start to a playable playlist (startup.sh, fresh
# paths), a segment and a playlist from the cache beside nginx (cache.sh, in
# a private network namespace when unshare works; wrk with 32 connections, the
# issue's figure) and glass-to-glass LL-HLS
# latency (latency.sh). Each part prints its own summary lines; this script
# adds the load average and the time each part took.
#
# usage: targets.sh [STARTUP_RUNS] [CACHE_ROUNDS]   (default 10 3)
# env:   STREAMGRID_BIN, SGB as for the other scripts; PARTS="ingest25 ingest100
#        startup cache latency" (default: all) picks parts.
. "$(dirname "$0")/lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
runs=${1:-10}
rounds=${2:-3}
parts=${PARTS:-ingest25 ingest100 startup cache latency}
t0=$(date +%s)
part() { # part NAME CMD...
	local name=$1 s
	shift
	s=$(date +%s)
	echo "== $name: $(date -u +%H:%M:%S), load $(load)"
	"$@" 2>&1 | grep -v '^  '
	echo "== $name: $(($(date +%s) - s)) s, load $(load)"
}
for p in $parts; do
	case $p in
	ingest25) part "25 RTMP cameras" "$here/ingest.sh" 25 40s ;;
	ingest100) part "100 RTMP cameras" "$here/ingest.sh" 100 40s ;;
	startup) part "start-up, fresh paths" env MODES=fresh "$here/startup.sh" "$runs" ;;
	cache)
		if unshare --net true 2>/dev/null; then
			part "cache serving" unshare --net bash -c "ip link set lo up; '$here/cache.sh' $rounds 32 10"
		else
			part "cache serving (shared loopback)" "$here/cache.sh" "$rounds" 32 10
		fi
		;;
	latency) part "glass-to-glass" "$here/latency.sh" lowLatency ;;
	*) echo "unknown part $p" >&2 && exit 2 ;;
	esac
done
echo "== all parts: $(($(date +%s) - t0)) s"
