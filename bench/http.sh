#!/usr/bin/env bash
# bench/http.sh - issue 2 figures: plain /versions vs nginx serving the same
# bytes, the key document over TLS (keep-alive), idle RSS and start-up time.
# Prints figures; never passes or fails.
#
#   bench/http.sh [seconds]    (default 10 s per wrk run)
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
DUR=${1:-10}
al_install_packages $AL_BUILD_PACKAGES wrk nginx-light curl
al_build "$AL_ROOT/build"
BIN=$AL_ROOT/build/auralinkd

W=$(mktemp -d /tmp/auralink-bench.XXXXXX)
chmod 755 "$W"
NGINX_PID=""
cleanup() {
	[ -n "${AL_PID:-}" ] && kill "$AL_PID" 2>/dev/null && wait "$AL_PID" 2>/dev/null
	[ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null
	al_pg_stop "$W"
	rm -rf "$W"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CPORT=$(free_port) FPORT=$(free_port) NPORT=$(free_port)
SERVER_NAME=localhost:$FPORT CLIENT_PORT=$CPORT FED_PORT=$FPORT STATE=$W CA_FILE="" MIGRATIONS=$AL_ROOT/sql
SOCK=$(al_pg_start "$W")
al_pg_createdb "$SOCK" auralink
al_tls_cert "$W" localhost
al_write_config "$W/auralinkd.conf"
sed -i 's/log_level = "info"/log_level = "warn"/' "$W/auralinkd.conf"
"$BIN" --config "$W/auralinkd.conf" --generate-keys >/dev/null

# Sets AL_PID and START_MS (exec to first answered /versions).
start_server() {
	local t0 t1
	t0=$(date +%s%N)
	"$BIN" --config "$W/auralinkd.conf" >>"$W/auralinkd.log" 2>&1 &
	AL_PID=$!
	until curl -sf "http://127.0.0.1:$CPORT/_matrix/client/versions" >/dev/null; do sleep 0.005; done
	t1=$(date +%s%N)
	START_MS=$(( (t1 - t0) / 1000000 ))
}

# First start applies the migrations; the figure is the second start on existing state.
start_server
kill "$AL_PID"; wait "$AL_PID" || true
start_server
sleep 1
RSS_KB=$(awk '/VmRSS/ {print $2}' /proc/$AL_PID/status)

# nginx (2 workers) serving the same bytes from a file.
mkdir -p "$W/www/_matrix/client" "$W/nginx"
curl -s "http://127.0.0.1:$CPORT/_matrix/client/versions" >"$W/www/_matrix/client/versions"
cat >"$W/nginx/nginx.conf" <<NGX
worker_processes 2;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  default_type application/json;
  server { listen 127.0.0.1:$NPORT; root $W/www; }
}
NGX
nginx -c "$W/nginx/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
until curl -sf "http://127.0.0.1:$NPORT/_matrix/client/versions" >/dev/null; do sleep 0.05; done

rate() { wrk -t2 -c32 -d"${DUR}s" "$1" | awk '/Requests\/sec/ {print $2}'; }
NGINX_RPS=$(rate "http://127.0.0.1:$NPORT/_matrix/client/versions")
AL_RPS=$(rate "http://127.0.0.1:$CPORT/_matrix/client/versions")
KEY_RPS=$(rate "https://127.0.0.1:$FPORT/_matrix/key/v2/server")

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); wrk -t2 -c32 -d${DUR}s"
printf 'nginx /versions (file, 2 workers):   %10.0f req/s\n' "$NGINX_RPS"
printf 'auralinkd /versions (plain HTTP):    %10.0f req/s  = %.2fx nginx (goal >= 0.5x)\n' "$AL_RPS" "$(echo "$AL_RPS $NGINX_RPS" | awk '{print $1/$2}')"
printf 'auralinkd /key/v2/server (TLS, k-a): %10.0f req/s  = %.2fx own /versions (goal >= 0.4x)\n' "$KEY_RPS" "$(echo "$KEY_RPS $AL_RPS" | awk '{print $1/$2}')"
printf 'idle RSS: %.1f MB (goal <= 20 MB)\n' "$(echo "$RSS_KB" | awk '{print $1/1024}')"
printf 'start to serving on existing state: %d ms (goal <= 1000 ms)\n' "$START_MS"
