#!/usr/bin/env bash
# bench/login.sh - what one argon2id login costs with the default
# (interactive) limits: raw libsodium, then through auralinkd next to GET
# /versions. Builds an optimised auralinkd in build-bench/, runs it on a
# private PostgreSQL under a temporary directory. Prints figures only.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
al_install_packages $AL_BUILD_PACKAGES python3 python3-requests
BUILD=$AL_ROOT/build-bench
al_build "$BUILD"
STATE=$(mktemp -d /tmp/auralink-bench.XXXXXX)
chmod 755 "$STATE"
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; al_pg_stop "$STATE"; rm -rf "$STATE"; }
trap cleanup EXIT

echo "machine: $(uname -srm); $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
cc -O2 -o "$STATE/pwhash_cost" "$AL_ROOT/bench/pwhash_cost.c" $(pkg-config --cflags --libs libsodium)
"$STATE/pwhash_cost" 10

SOCK=$(al_pg_start "$STATE")
al_pg_createdb "$SOCK" auralink_bench
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$STATE/auralinkd.conf" <<CONF
server_name = "localhost:$PORT";
listeners = {
  client = { bind = "127.0.0.1"; port = $PORT; };
  federation = { enabled = false; };
};
database = { conninfo = "host=$SOCK dbname=auralink_bench user=postgres"; migrations_dir = "$AL_ROOT/sql"; };
signing_key_path = "$STATE/signing.key";
worker_threads = 2;
log_level = "warn";
registration = { enabled = true; };
passwords = { argon2_ops_limit = 0; argon2_mem_limit_kib = 0; };
limits = { rate_per_second = 0.0; };
CONF
"$BUILD/auralinkd" --config "$STATE/auralinkd.conf" --generate-keys >/dev/null
"$BUILD/auralinkd" --config "$STATE/auralinkd.conf" 2>"$STATE/auralinkd.log" &
PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/_matrix/client/versions" >/dev/null && break; sleep 0.1; done
/usr/bin/python3 "$AL_ROOT/bench/login.py" "http://127.0.0.1:$PORT"
