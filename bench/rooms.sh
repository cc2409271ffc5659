#!/usr/bin/env bash
# bench/rooms.sh - issue 6 figures: messages/s into one room of 50 members
# via PUT /send, long-poll /sync wake latency after a send, incremental sync
# latency for a user in many rooms, initial sync of 100 rooms; each next to
# GET /versions from the same run as the baseline. Builds an optimised
# auralinkd in build-bench/, private PostgreSQL. Prints figures only.
#
#   bench/rooms.sh [rooms_for_incremental]   (default 1000)
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
worker_threads = $(nproc);
log_level = "warn";
registration = { enabled = true; };
passwords = { argon2_ops_limit = 0; argon2_mem_limit_kib = 0; };
limits = { rate_per_second = 0.0; };
CONF
"$BUILD/auralinkd" --config "$STATE/auralinkd.conf" --generate-keys >/dev/null
"$BUILD/auralinkd" --config "$STATE/auralinkd.conf" 2>"$STATE/auralinkd.log" &
PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/_matrix/client/versions" >/dev/null && break; sleep 0.1; done
/usr/bin/python3 "$AL_ROOT/bench/rooms.py" "http://127.0.0.1:$PORT" "${1:-1000}"
