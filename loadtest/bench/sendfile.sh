#!/bin/bash
# Does sendfile from the page cache pay on this machine? sendfilecmp answers
# one 261 631-byte body (a 1 s 720p segment's size) the cache's way (writev
# from memory) and nginx's way (sendfile from a file in DIR, at several
# offsets, or from a memfd); wrk -t1 -c32 loads each alone for SECS, the
# modes alternating, ROUNDS times. Out: CPU per answer (the server's user +
# system time over the run / answers) and answers/s. DIR's filesystem
# matters: ext4 or xfs keep large page-cache folios, tmpfs does not.
#
# usage: sendfile.sh [ROUNDS] [SECS] [DIR]   (default 3 8 $SGB)
. "$(dirname "$0")/lib.sh"
rounds=${1:-3}
secs=${2:-8}
dir=${3:-$SGB}
require_wrk
mkdir -p "$SGB" "$dir"
bin=$SGB/sendfilecmp
go build -o "$bin" "$REPO/loadtest/bench/sendfilecmp"
body=$SGB/sendfile-body
head -c 261631 /dev/urandom >"$body"
addr=127.0.0.1:$(port 18090)
one() { # one LABEL ARGS...: start, load, measure, stop
	local label=$1 pid t0 t1 out reqs
	shift
	"$bin" -body "$body" -dir "$dir" -addr "$addr" "$@" >/dev/null &
	pid=$!
	for _ in $(seq 50); do curl -sf -o /dev/null "http://$addr/" && break; sleep 0.1; done
	t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
	out=$(wrk -t1 -c32 -d"${secs}s" "http://$addr/seg.mp4" 2>&1)
	t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	reqs=$(echo "$out" | awk '/requests in/{print $1}')
	printf '%-28s %8s answers/s  cpu %6.1f us/answer  errors %s  load %s\n' "$label" \
		"$(echo "$out" | awk '/Requests\/sec/{print $2}')" \
		"$(echo "($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / $reqs" | bc -l)" \
		"$(echo "$out" | awk '/Socket errors|Non-2xx/{n++} END{print n+0}')" "$(load)"
}
for r in $(seq "$rounds"); do
	one "writev from memory" -mode mem
	one "sendfile, file, offset 0" -mode file -sync
	one "sendfile, file, offset 4096" -mode file -sync -offset 4096
	one "sendfile, file, offset 5000" -mode file -sync -offset 5000
	one "sendfile, memfd" -mode memfd
done
