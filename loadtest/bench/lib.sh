# Shared by the benchmark scripts (sourced, not run). Everything lives under
# $SGB (default /tmp/sgbench) and listens on loopback only. The ports are
# offset from the defaults by $PORT_OFFSET (default 10000: RTSP 18554, RTMP
# 11935, HLS 18888, origin HLS 18889, API 19997) so a benchmark can run next
# to a compose cluster or a dev node on the defaults; another offset
# (PORT_OFFSET=20000) lets it run next to another benchmark's node.
set -eu
SGB=${SGB:-/tmp/sgbench}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
SG=${STREAMGRID_BIN:-$SGB/streamgrid} # another build to measure
mkdir -p "$SGB"
PORT_OFFSET=${PORT_OFFSET:-10000}
port() { echo $(($1 + PORT_OFFSET)); }

export SG_API_ADDRESS=127.0.0.1:$(port 9997)
export SG_BUS_SERVER_LISTEN=127.0.0.1:$(port 4222)
export SG_GOSSIP_BIND=127.0.0.1:$(port 7946)
export SG_EDGE_RTSP_ADDRESS=127.0.0.1:$(port 8554)
export SG_EDGE_RTP_ADDRESS=127.0.0.1:$(port 8000)
export SG_EDGE_RTCP_ADDRESS=127.0.0.1:$(port 8001)
export SG_EDGE_RTMP_ADDRESS=127.0.0.1:$(port 1935)
export SG_ORIGIN_HTTP_ADDRESS=127.0.0.1:$(port 8889)
export SG_CACHE_HTTP_ADDRESS=127.0.0.1:$(port 8888)
SG_API=http://$SG_API_ADDRESS
SG_RTSP=rtsp://$SG_EDGE_RTSP_ADDRESS
SG_RTMP=rtmp://$SG_EDGE_RTMP_ADDRESS
SG_HLS=http://$SG_CACHE_HTTP_ADDRESS
SG_ORIGIN=http://$SG_ORIGIN_HTTP_ADDRESS # the origin's HLS for caches (origin.http_address)
NGINX_RTMP_ADDRESS=127.0.0.1:$(port 1936)
NGINX_HTTP_ADDRESS=127.0.0.1:$((8080 + PORT_OFFSET))
NGINX_RTMP=rtmp://$NGINX_RTMP_ADDRESS # nginx-rtmp (application "live")
NGINX_HTTP=http://$NGINX_HTTP_ADDRESS  # nginx: its HLS output and static files

# build_sg builds the binary once.
build_sg() {
	[ -x "$SG" ] || (cd "$REPO" && go build -o "$SG" ./cmd/streamgrid)
}

# start_sg [VAR=value...]: a fresh all-in-one node; sets SG_PID.
start_sg() {
	build_sg
	stop_sg
	# a node left by another run would answer the health check for this one
	if curl -sf -o /dev/null "$SG_API/healthz"; then
		echo "another node already answers on $SG_API (try another PORT_OFFSET)" >&2
		return 1
	fi
	env "$@" "$SG" run >"$SGB/sg.log" 2>&1 &
	SG_PID=$!
	for _ in $(seq 50); do
		curl -sf -o /dev/null "$SG_API/healthz" && kill -0 "$SG_PID" 2>/dev/null && return 0
		sleep 0.2
	done
	echo "streamgrid did not come up:" >&2
	cat "$SGB/sg.log" >&2
	return 1
}

stop_sg() {
	if [ -n "${SG_PID:-}" ] && kill -0 "$SG_PID" 2>/dev/null; then
		kill "$SG_PID"
		for _ in $(seq 50); do kill -0 "$SG_PID" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$SG_PID" 2>/dev/null || true
	fi
	SG_PID=
}

# start_nginx: a separate nginx instance (its own prefix, config and ports,
# not the system service) with nginx-rtmp configured as the classic setup;
# sets NGINX_PID (master), NGINX_WORKER and NGINX_CHILDREN (the worker and
# the cache manager, which runs nginx-rtmp's HLS cleanup).
start_nginx() {
	stop_nginx
	local p=$SGB/nginx
	rm -rf "$p" "$SGB/hls"
	mkdir -p "$p/logs" "$p/html" "$SGB/hls"
	cat >"$p/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
pid $p/nginx.pid;
error_log $p/logs/error.log warn;
events { worker_connections 4096; }
rtmp {
    server {
        listen $NGINX_RTMP_ADDRESS;
        application live {
            live on;
            hls on;
            hls_path $SGB/hls;
            hls_fragment 1s;
            hls_playlist_length 3s;
        }
    }
}
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; video/mp4 mp4 m4s; }
    server {
        listen $NGINX_HTTP_ADDRESS;
        location /hls/ { alias $SGB/hls/; add_header Cache-Control no-cache; }
        # the loadtest's layout, <base>/camNNNN/index.m3u8, over nginx-rtmp's flat one
        location ~ ^/live/(cam[0-9]+)/index\.m3u8\$ { alias $SGB/hls/\$1.m3u8; add_header Cache-Control no-cache; }
        location ~ ^/live/cam[0-9]+/(.+\.ts)\$ { alias $SGB/hls/\$1; }
        location / { root $p/html; }
    }
}
CONF
	nginx -p "$p" -c "$p/nginx.conf" -g 'daemon off;' &
	NGINX_PID=$!
	for _ in $(seq 50); do
		NGINX_WORKER=$(ps -o pid=,args= --ppid "$NGINX_PID" | awk '/worker process/ {print $1; exit}')
		if [ -n "$NGINX_WORKER" ]; then
			sleep 0.5 # the cache manager starts after the worker
			NGINX_CHILDREN=$(ps -o pid= --ppid "$NGINX_PID" | tr '\n' ' ')
			return 0
		fi
		sleep 0.1
	done
	echo "nginx did not start" >&2
	return 1
}

stop_nginx() {
	if [ -n "${NGINX_PID:-}" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
		kill -QUIT "$NGINX_PID"
		for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$NGINX_PID" 2>/dev/null || true
	fi
	NGINX_PID=
}

cleanup() {
	stop_sg
	stop_nginx
}

# load: the 1-minute load average (other users of the machine).
load() {
	cut -d' ' -f1-3 /proc/loadavg
}

# clip720: makes the 720p25 2 Mbit/s clip (clip720.sh) unless it exists and
# prints its path.
clip720() {
	local clip=$SGB/clip720.ts
	sh "$REPO/loadtest/bench/clip720.sh" "$clip" >/dev/null
	echo "$clip"
}

# require_wrk: exit when wrk is not installed.
require_wrk() {
	command -v wrk >/dev/null || { echo "wrk is missing (apt-get install -y wrk)" >&2; exit 1; }
}

# wrk_args DEFAULT_ROUNDS [ROUNDS] [CONNECTIONS] [SECONDS]: the arguments of a
# wrk benchmark script, in rounds, conns and secs (which wrk_bench reads);
# CONNECTIONS defaults to 64, SECONDS to 10. Exits when wrk is not installed.
wrk_args() {
	rounds=${2:-$1}
	conns=${3:-64}
	secs=${4:-10}
	require_wrk
}

# find_media_segment BASE [oldest|newest]: the video media playlist of the
# stream at BASE/index.m3u8 and its oldest (default) or newest complete
# segment, in $media and $seg; tries for 15 s.
find_media_segment() {
	local base=$1 pick=${2:-oldest}
	media= seg=
	for _ in $(seq 50); do
		media=$(curl -sf "$base/index.m3u8" | grep -v '^#' | grep -m1 video) || true
		if [ -n "$media" ] && [ "$pick" = newest ]; then
			seg=$(curl -sf "$base/$media" | grep -v '^#' | grep 'seg' | tail -1) || true
		elif [ -n "$media" ]; then
			seg=$(curl -sf "$base/$media" | grep -v '^#' | grep -m1 'seg') || true
		fi
		[ -n "$seg" ] && return 0
		sleep 0.3
	done
	echo "no playlist or segment at $base" >&2
	return 1
}

# cpu_ticks PID...: CPU time (user + system, in clock ticks of 10 ms) used so
# far by these processes.
cpu_ticks() {
	local t=0 p
	for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
	echo "$t"
}

# wrk_bench NAME URL PID...: wrk with $conns connections for $secs seconds,
# then one line: requests/s, MB/s, latency p99, the CPU time the server
# processes PID... spent per request, non-2xx answers, load. NAME_WIDTH
# (default 17) pads the name column.
wrk_bench() {
	local name=$1 url=$2 out c0 c1
	shift 2
	c0=$(cpu_ticks "$@")
	out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency "$url")
	c1=$(cpu_ticks "$@")
	echo "$out" | awk -v name="$name" -v width="${NAME_WIDTH:-17}" -v load="$(load)" -v ticks=$((c1 - c0)) '
		/Requests\/sec/ {rps = $2} /Transfer\/sec/ {tps = $2} /^ +99%/ {p99 = $2} / Non-2xx/ {bad = $NF}
		/requests in/ {n = $1}
		END {printf "%-" width "s %9.0f req/s %10s/s p99 %8s  server cpu %5.1f us/req  non2xx %d  load %s\n",
			name, rps, tps, p99, ticks * 10000 / (n > 0 ? n : 1), bad + 0, load}'
}
