#!/usr/bin/env bash
# bench/aura_resolve.sh - issue 3 figures: with 100,000 AuraIDs, GET
# /aura_id/resolve/{id} (random handles among all of them) and GET
# /aura_id/search, next to GET /_matrix/client/versions on the same server
# as a baseline. Prints req/s and p99 latency; never passes or fails.
#
#   bench/aura_resolve.sh [seconds] [count]   (default 10 s per run, 100000 AuraIDs)
#
# Goals (issue 3): resolve >= 15,000 req/s and p99 <= 5 ms; search p99 <= 20 ms,
# both under wrk -t2 -c32. wrk runs on the same machine as the server and
# PostgreSQL, so on a small machine the three share the cores.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
DUR=${1:-10}
COUNT=${2:-100000}
al_install_packages $AL_BUILD_PACKAGES wrk curl python3
al_build "$AL_ROOT/build"
BIN=$AL_ROOT/build/auralinkd

W=$(mktemp -d /tmp/auralink-bench.XXXXXX)
chmod 755 "$W"
cleanup() {
	[ -n "${AL_PID:-}" ] && kill "$AL_PID" 2>/dev/null && wait "$AL_PID" 2>/dev/null
	al_pg_stop "$W"
	rm -rf "$W"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CPORT=$(free_port) FPORT=$(free_port)
SERVER_NAME=localhost:$FPORT CLIENT_PORT=$CPORT FED_PORT=$FPORT STATE=$W CA_FILE="" MIGRATIONS=$AL_ROOT/sql
SOCK=$(al_pg_start "$W")
al_pg_createdb "$SOCK" auralink
al_tls_cert "$W" localhost
al_write_config "$W/auralinkd.conf"
# No rate limiting and no per-request log line: the figures are the server's.
sed -i -e 's/log_level = "info"/log_level = "warn"/' \
	-e 's/rate_per_second = [0-9.]*;/rate_per_second = 0.0;/' "$W/auralinkd.conf"
"$BIN" --config "$W/auralinkd.conf" --generate-keys >/dev/null
PSQL="psql -h $SOCK -U postgres -d auralink -qtAX -v ON_ERROR_STOP=1"

"$BIN" --config "$W/auralinkd.conf" 2>>"$W/auralinkd.log" &
AL_PID=$!
BASE=http://127.0.0.1:$CPORT
until curl -sf "$BASE/_matrix/client/versions" >/dev/null; do sleep 0.02; done

# One real user for a token, then COUNT users with AuraIDs in one statement.
TOKEN=$(curl -sf -X POST "$BASE/_matrix/client/v3/register" -H 'Content-Type: application/json' \
	-d '{"auth":{"type":"m.login.dummy"},"username":"benchviewer","password":"bench-password"}' |
	/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
T0=$(date +%s%N)
$PSQL -c "WITH u AS (
    INSERT INTO users (user_id, localpart, displayname)
    SELECT '@user' || i || ':$SERVER_NAME', 'user' || i, 'Bench User ' || i
      FROM generate_series(1, $COUNT) AS i
    RETURNING user_id, localpart, displayname)
  INSERT INTO aura_id_registry (aura_id, user_id, username, display_name)
  SELECT '@' || localpart || '.aura', user_id, localpart, displayname FROM u"
$PSQL -c "VACUUM ANALYZE users" -c "VACUUM ANALYZE aura_id_registry"
T1=$(date +%s%N)

# Restart on the populated database, as a server with COUNT AuraIDs would
# start (its first maintenance tick preloads the resolve cache).
kill "$AL_PID"; wait "$AL_PID" || true
"$BIN" --config "$W/auralinkd.conf" 2>>"$W/auralinkd.log" &
AL_PID=$!
until curl -sf "$BASE/_matrix/client/versions" >/dev/null; do sleep 0.02; done
sleep 2

cat >"$W/resolve.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $TOKEN"
local n = $COUNT
function init(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000) end
function request()
  return wrk.format("GET", "/_auralink/client/v1/aura_id/resolve/@user" .. math.random(1, n) .. ".aura")
end
LUA
cat >"$W/search.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $TOKEN"
local n = $COUNT
function init(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000) end
-- a prefix of a handle ("user1234"), limit 10: exact, prefix and substring matches
function request()
  return wrk.format("GET", "/_auralink/client/v1/aura_id/search?limit=10&q=user" .. math.random(1, n))
end
LUA

# run URL [lua [connections]]: prints "req/s p99_ms non2xx"
run() {
	local url=$1 script=${2:-} conns=${3:-32} threads=2 out
	[ "$conns" -ge 2 ] || threads=1
	if [ -n "$script" ]; then
		out=$(wrk -t$threads -c"$conns" -d"${DUR}s" --latency -s "$script" "$url")
	else
		out=$(wrk -t$threads -c"$conns" -d"${DUR}s" --latency -H "Authorization: Bearer $TOKEN" "$url")
	fi
	echo "$out" >>"$W/wrk.out"
	local rps p99 non2xx
	rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
	p99=$(echo "$out" | awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; print v}')
	non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
	echo "$rps $p99 ${non2xx:-0}"
}

read -r BASE_RPS BASE_P99 BASE_BAD < <(run "$BASE/_matrix/client/versions")
# Search before resolve: resolves mark up to COUNT handles used, and the
# batched last_used_at writes that follow would compete with the search.
read -r SEA_RPS SEA_P99 SEA_BAD < <(run "$BASE/" "$W/search.lua")
read -r SEA1_RPS SEA1_P99 SEA1_BAD < <(run "$BASE/" "$W/search.lua" 1)
# Warm-up: whatever the start-up preload did not cover.
run "$BASE/" "$W/resolve.lua" >/dev/null
read -r RES_RPS RES_P99 RES_BAD < <(run "$BASE/" "$W/resolve.lua")
ONE=$(curl -s -H "Authorization: Bearer $TOKEN" "$BASE/_auralink/client/v1/aura_id/resolve/@user42.aura")
HITS=$(curl -s -H "Authorization: Bearer $TOKEN" "$BASE/_auralink/client/v1/aura_id/search?q=user4242&limit=10" |
	/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')

echo "machine: $(nproc) cores ($(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "wrk -t2 -c32 -d${DUR}s --latency; $COUNT AuraIDs inserted in $(( (T1 - T0) / 1000000 )) ms; worker_threads=$(awk -F'= *|;' '/^worker_threads/ {print $2}' "$W/auralinkd.conf")"
printf '%-44s %10.0f req/s  p99 %7.2f ms  non-2xx %s\n' "GET /_matrix/client/versions (baseline)" "$BASE_RPS" "$BASE_P99" "$BASE_BAD"
printf '%-44s %10.0f req/s  p99 %7.2f ms  non-2xx %s  (goal >= 15000 req/s, p99 <= 5 ms)\n' "GET /aura_id/resolve/{random of $COUNT}" "$RES_RPS" "$RES_P99" "$RES_BAD"
printf '%-44s %10.0f req/s  p99 %7.2f ms  non-2xx %s  (goal p99 <= 20 ms)\n' "GET /aura_id/search?q=userN&limit=10" "$SEA_RPS" "$SEA_P99" "$SEA_BAD"
printf '%-44s %10.0f req/s  p99 %7.2f ms  non-2xx %s\n' "  same, one connection (wrk -t1 -c1)" "$SEA1_RPS" "$SEA1_P99" "$SEA1_BAD"
echo "sample resolve: $ONE"
echo "sample search q=user4242: $HITS results"
echo "auralinkd resident memory: $(awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' /proc/$AL_PID/status)"
echo "last_used_at written: $($PSQL -c "SELECT count(*) FROM aura_id_registry WHERE last_used_at IS NOT NULL") of $COUNT"
