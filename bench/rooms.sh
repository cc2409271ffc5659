#!/usr/bin/env bash
# bench/rooms.sh - issue 6 figures: messages/s into one room of 50 members
# via PUT /send, long-poll /sync wake latency after a send (client side, and
# server side from the commit to the reply), incremental sync
# latency for a user in many rooms, initial sync of 100 rooms; each next to
# GET /versions from the same run as the baseline. Builds an optimised
# auralinkd in build-bench/, private PostgreSQL with the default durable
# settings (fsync on, synchronous_commit on). Prints figures only.
#
# PUT /send and the /versions baseline are driven by wrk (-t2 -c32, a Lua
# script: the 50 members' tokens in turn, a unique txnId per request); the
# events stored are counted afterwards against wrk's 2xx replies. pgbench on
# the same cluster gives the cost of a durable commit as a floor: one
# client committing one-row INSERTs, and 32 clients (PostgreSQL's own group
# commit). Wake latency and sync are measured by bench/rooms.py.
#
#   bench/rooms.sh [rooms_for_incremental [seconds]]   (default 1000, 10 s)
#   AL_BENCH_PERF=perf.data bench/rooms.sh ...         also profiles PUT /send
#   AL_BENCH_STATEMENTS=N bench/rooms.sh ...           prints the N costliest statements of
#                                                      each part (plans of the slow ones: the
#                                                      server log, /tmp/auralink-bench-postgres.log)
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
al_install_packages $AL_BUILD_PACKAGES python3 python3-requests wrk curl
BUILD=$AL_ROOT/build-bench
al_build "$BUILD"
STATE=$(mktemp -d /tmp/auralink-bench.XXXXXX)
chmod 755 "$STATE"
PID=
cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	[ -z "${AL_BENCH_STATEMENTS:-}" ] || cp "$(al_pg_dir "$STATE")/postgres.log" /tmp/auralink-bench-postgres.log 2>/dev/null
	al_pg_stop "$STATE"
	rm -rf "$STATE"
}
trap cleanup EXIT

echo "machine: $(uname -srm); $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
SOCK=$(al_pg_start "$STATE")
if [ -n "${AL_BENCH_STATEMENTS:-}" ]; then
	psql -h "$SOCK" -U postgres -d postgres -qc "ALTER SYSTEM SET shared_preload_libraries = pg_stat_statements, auto_explain"
	al_pg_stop "$STATE"
	SOCK=$(al_pg_start "$STATE")
	# and the plans of statements slower than AL_BENCH_EXPLAIN_MS (100) ms into the server log
	psql -h "$SOCK" -U postgres -d postgres -q -c "ALTER SYSTEM SET auto_explain.log_min_duration = ${AL_BENCH_EXPLAIN_MS:-100}" \
		-c "ALTER SYSTEM SET auto_explain.log_analyze = on" -c "SELECT pg_reload_conf()" >/dev/null
fi
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
NROOMS=${1:-1000}
DUR=${2:-10}
BASE=http://127.0.0.1:$PORT
PSQL() { psql -h "$SOCK" -U postgres -d auralink_bench -tAq "$@"; }

# pgbench: durable commits of one-row INSERTs on this cluster (the floor
# under any write path that commits per request).
PSQL -c "CREATE TABLE IF NOT EXISTS bench_commit (id bigserial PRIMARY KEY, v text)"
echo "INSERT INTO bench_commit (v) VALUES ('x');" >"$STATE/commit.sql"
PGB=$(al_pg_bin)/pgbench
pgb() { "$PGB" -h "$SOCK" -U postgres -n -f "$STATE/commit.sql" -c "$1" -j "$2" -T 5 auralink_bench 2>/dev/null |
	awk '/^tps/ {print $3}'; }
PGB1=$(pgb 1 1)
PGB32=$(pgb 32 2)

/usr/bin/python3 "$AL_ROOT/bench/rooms.py" "$BASE" "$NROOMS" setup "$STATE/room.json"
# the room's owner reads the server's wake figures (an admin endpoint)
"$BUILD/auralinkd" --config "$STATE/auralinkd.conf" --grant-admin \
	"$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["owner"])' "$STATE/room.json")" >/dev/null
{
	/usr/bin/python3 - "$STATE/room.json" <<'PY'
import json, sys, urllib.parse
st = json.load(open(sys.argv[1]))
print('local room = "%s"' % urllib.parse.quote(st["room"], safe=""))
print("local tokens = {%s}" % ", ".join('"%s"' % t for t in st["tokens"]))
PY
	cat <<'LUA'
local n = 0
local counter = 1
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function init(args)
  n = 0
end
function request()
  n = n + 1
  local tok = tokens[(n + tid) % #tokens + 1]
  local path = "/_matrix/client/v3/rooms/" .. room .. "/send/m.room.message/w" .. tid .. "-" .. n
  return wrk.format("PUT", path, {["Authorization"] = "Bearer " .. tok, ["Content-Type"] = "application/json"},
    '{"msgtype":"m.text","body":"message ' .. n .. '"}')
end
LUA
} >"$STATE/send.lua"

# run URL [lua]: prints "req/s p50_ms p99_ms non2xx requests"
ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; print v }'; }
run() {
	local out
	if [ -n "${2:-}" ]; then
		out=$(wrk -t2 -c32 -d"${DUR}s" --latency -s "$2" "$1")
	else
		out=$(wrk -t2 -c32 -d"${DUR}s" --latency "$1")
	fi
	echo "$out" >>"$STATE/wrk.out"
	echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
		"$(ms "$(echo "$out" | awk '$1 == "50%" {print $2}')")" \
		"$(ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")" \
		"$(echo "$out" | awk '/Non-2xx/ {print $NF}' | grep . || echo 0)" \
		"$(echo "$out" | awk '/requests in/ {print $1}')"
}
read -r V_RPS V_P50 V_P99 V_BAD V_N < <(run "$BASE/_matrix/client/versions")
BEFORE=$(PSQL -c "SELECT count(*) FROM events WHERE type = 'm.room.message'")
# AL_BENCH_PERF=file: perf record (call graphs) of auralinkd and this
# database's backends while PUT /send runs, into file.
PERF=
if [ -n "${AL_BENCH_PERF:-}" ]; then
	PIDS="$PID,$(pgrep -d, -f 'postgres: .* auralink_bench' || true)"
	perf record -q -g -o "$AL_BENCH_PERF" -p "${PIDS%,}" -- sleep "$DUR" 2>/dev/null &
	PERF=$!
fi
[ -z "${AL_BENCH_STATEMENTS:-}" ] || PSQL -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()" >/dev/null
read -r S_RPS S_P50 S_P99 S_BAD S_N < <(run "$BASE/" "$STATE/send.lua")
[ -z "$PERF" ] || wait "$PERF" || true
statements() {
	[ -n "${AL_BENCH_STATEMENTS:-}" ] || return 0
	echo "statements of $1 (total ms, calls, ms/call, rows, query):"
	PSQL -F ' | ' -c "SELECT round(total_exec_time + total_plan_time), calls, round(((total_exec_time + total_plan_time) / calls)::numeric, 3), rows, left(regexp_replace(query, '\s+', ' ', 'g'), 110) FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT ${AL_BENCH_STATEMENTS}"
	PSQL -c "SELECT pg_stat_statements_reset()" >/dev/null
}
statements "the PUT /send run"
AFTER=$(PSQL -c "SELECT count(*) FROM events WHERE type = 'm.room.message'")
ROOM=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["room"])' "$STATE/room.json")
# one line: depths 1..N each once, N-1 prev edges, each event one prev_event
LINEAR=$(PSQL -v room="$ROOM" <<'SQL'
SELECT count(*) = max(depth) AND count(DISTINCT depth) = count(*)
   AND (SELECT count(*) FROM event_edges x JOIN events e ON e.event_id = x.event_id WHERE e.room_id = :'room') = count(*) - 1
   AND (SELECT count(DISTINCT x.event_id) FROM event_edges x JOIN events e ON e.event_id = x.event_id WHERE e.room_id = :'room') = count(*) - 1
  FROM events WHERE room_id = :'room';
SQL
)

echo "PostgreSQL: fsync=$(PSQL -c 'SHOW fsync'), synchronous_commit=$(PSQL -c 'SHOW synchronous_commit'), wal_sync_method=$(PSQL -c 'SHOW wal_sync_method')"
printf 'pgbench one-row INSERT commits:       %8.0f tps (1 client)  %8.0f tps (32 clients)\n' "$PGB1" "$PGB32"
printf 'baseline GET /versions (wrk):         %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  non-2xx %s\n' \
	"$V_RPS" "$V_P50" "$V_P99" "$V_BAD"
printf 'PUT /send, 1 room, 50 members (wrk):  %8.0f msg/s  p50 %6.2f ms  p99 %6.2f ms  non-2xx %s (goal >= 3000)\n' \
	"$S_RPS" "$S_P50" "$S_P99" "$S_BAD"
echo "  $S_N requests in ${DUR} s, $((AFTER - BEFORE)) events stored; room DAG linear: $LINEAR"
/usr/bin/python3 "$AL_ROOT/bench/rooms.py" "$BASE" "$NROOMS" run "$STATE/room.json"
statements "the sync runs"
# AL_BENCH_KEEP=1: leave the server and PostgreSQL running to look at the
# data (EXPLAIN the statements above); ends on kill or Ctrl-C.
if [ -n "${AL_BENCH_KEEP:-}" ]; then
	echo "kept: psql -h $SOCK -U postgres auralink_bench; server $BASE; kill $$ to end"
	sleep infinity &
	wait $!
fi
