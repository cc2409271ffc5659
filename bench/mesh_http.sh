#!/usr/bin/env bash
# bench/mesh_http.sh - mesh figures over HTTP (issue 5). Prints figures;
# never passes or fails.
#  1. 10,000 online nodes (2,000 relays, the rest peers of 8,000 AuraIDs)
#     loaded from PostgreSQL at start; POST /mesh/routes/find-optimal with
#     wrk: cold (every request a new destination: search + INSERT of the
#     route) and warm (cached route), next to GET /_matrix/client/versions
#     in the same run.
#  2. 100,000 nodes heartbeating every 30 s = 3,333 heartbeats/s (wrk with a
#     paced Lua script): CPU of the server process from /proc/PID/stat
#     (utime + stime) over the run, as a share of one core.
#
#   bench/mesh_http.sh [seconds]    (default 10 s per run)
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
DUR=${1:-10}
al_install_packages $AL_BUILD_PACKAGES wrk curl
al_build "$AL_ROOT/build"
BIN=$AL_ROOT/build/auralinkd

W=$(mktemp -d /tmp/auralink-meshbench.XXXXXX)
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
# Rate limits off: the load generator is one client.
sed -i -e 's/log_level = "info"/log_level = "warn"/' \
	-e 's/rate_per_second = [0-9.]*;/rate_per_second = 0.0;/' "$W/auralinkd.conf"
"$BIN" --config "$W/auralinkd.conf" --generate-keys >/dev/null
PSQL() { psql -h "$SOCK" -U postgres -d auralink -qAt -v ON_ERROR_STOP=1 "$@"; }
BASE=http://127.0.0.1:$CPORT

start_server() {
	local t0 t1
	t0=$(date +%s%N)
	"$BIN" --config "$W/auralinkd.conf" >>"$W/auralinkd.log" 2>&1 &
	AL_PID=$!
	until curl -sf "$BASE/_matrix/client/versions" >/dev/null; do sleep 0.01; done
	t1=$(date +%s%N)
	START_MS=$(( (t1 - t0) / 1000000 ))
}
stop_server() { kill "$AL_PID"; wait "$AL_PID" || true; AL_PID=""; }
token_of() {
	curl -sf -X POST "$BASE/_matrix/client/v3/register" -H 'Content-Type: application/json' \
		-d "{\"auth\":{\"type\":\"m.login.dummy\"},\"username\":\"$1\",\"password\":\"pw-$1-x\"}" |
		/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start_server
ALICE=$(token_of alice)
CROWD=$(token_of crowd)
stop_server

# The world, written directly (the AuraID rows are what POST /aura_id writes).
PSQL <<SQL
INSERT INTO aura_id_registry (aura_id, user_id, username) VALUES
  ('@alice.aura', '@alice:$SERVER_NAME', 'alice'), ('@crowd.aura', '@crowd:$SERVER_NAME', 'crowd');
INSERT INTO users (user_id, localpart)
  SELECT '@peer' || i || ':$SERVER_NAME', 'peer' || i FROM generate_series(1, 7999) i;
INSERT INTO aura_id_registry (aura_id, user_id, username)
  SELECT '@peer' || i || '.aura', '@peer' || i || ':$SERVER_NAME', 'peer' || i FROM generate_series(1, 7999) i;
-- alice in London; 7,999 peers and 2,000 relays around the world
INSERT INTO mesh_nodes (aura_id, user_id, node_type, latitude, longitude, bandwidth_capacity_mbps)
  VALUES ('@alice.aura', '@alice:$SERVER_NAME', 'peer', 51.5, -0.13, 100);
INSERT INTO mesh_nodes (aura_id, user_id, node_type, latitude, longitude, bandwidth_capacity_mbps,
                        max_connections, reputation_score, trust_level)
  SELECT '@peer' || i || '.aura', '@peer' || i || ':$SERVER_NAME', 'peer', random() * 120 - 55,
         random() * 360 - 180, 5 + random() * 95, 20, 30 + random() * 70, 'new'
  FROM generate_series(1, 7999) i;
INSERT INTO mesh_nodes (aura_id, user_id, node_type, latitude, longitude, bandwidth_capacity_mbps,
                        max_connections, current_connections, reputation_score, trust_level)
  SELECT '@crowd.aura', '@crowd:$SERVER_NAME', 'relay', random() * 120 - 55, random() * 360 - 180,
         200 + random() * 800, 500, (random() * 450)::int, r, CASE WHEN r >= 90 THEN 'verified' ELSE 'trusted' END
  FROM (SELECT 70 + random() * 30 AS r FROM generate_series(1, 2000)) s;
SQL
UPDATE_SCORES="UPDATE mesh_nodes SET trust_level = CASE WHEN reputation_score >= 90 THEN 'verified' WHEN reputation_score >= 70 THEN 'trusted' WHEN reputation_score >= 30 THEN 'new' ELSE 'suspicious' END"
PSQL -c "$UPDATE_SCORES"
start_server
LOAD10K_MS=$START_MS

cat >"$W/find_cold.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local d = (n * 7919 + math.random(0, 7998)) % 7999 + 1
  local body = '{"source_aura_id":"@alice.aura","destination_aura_id":"@peer' .. d .. '.aura"}'
  return wrk.format("POST", "/_auralink/client/v1/mesh/routes/find-optimal",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer TOKEN"}, body)
end
LUA
sed -i "s/TOKEN/$ALICE/" "$W/find_cold.lua"
cat >"$W/find_warm.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"source_aura_id":"@alice.aura","destination_aura_id":"@peer42.aura"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $ALICE"
LUA
rate() { wrk -t2 -c32 -d"$1" ${2:+-s "$2"} "$3" | awk '/Requests\/sec/ {print $2} /Non-2xx/ {print "non2xx:" $NF > "/dev/stderr"}'; }
# cold: short enough that destinations rarely repeat within the 5-minute cache
COLD_RPS=$(rate 2s "$W/find_cold.lua" "$BASE/_auralink/client/v1/mesh/routes/find-optimal")
ROUTES=$(PSQL -c "SELECT count(*) FROM mesh_routes")
WARM_RPS=$(rate "${DUR}s" "$W/find_warm.lua" "$BASE/_auralink/client/v1/mesh/routes/find-optimal")
BASE_RPS=$(rate "${DUR}s" "" "$BASE/_matrix/client/versions")
SAMPLE=$(curl -s -X POST "$BASE/_auralink/client/v1/mesh/routes/find-optimal" -H "Authorization: Bearer $ALICE" \
	-d '{"source_aura_id":"@alice.aura","destination_aura_id":"@peer4242.aura"}')
stop_server

# 100,000 nodes for the heartbeat load (all of @crowd.aura)
PSQL -c "INSERT INTO mesh_nodes (aura_id, user_id, node_type, latitude, longitude)
  SELECT '@crowd.aura', '@crowd:$SERVER_NAME', 'peer', random() * 120 - 55, random() * 360 - 180
  FROM generate_series(1, 88000)"
TOTAL=$(PSQL -c "SELECT count(*) FROM mesh_nodes")
PSQL -c "COPY (SELECT node_id FROM mesh_nodes WHERE aura_id = '@crowd.aura' ORDER BY random() LIMIT 100000) TO STDOUT" >"$W/ids"
start_server
LOAD100K_MS=$START_MS
RSS_KB=$(awk '/VmRSS/ {print $2}' /proc/$AL_PID/status)
{
	echo 'local ids = {}'
	echo 'for line in io.lines("'"$W/ids"'") do ids[#ids + 1] = line end'
	cat <<LUA
local i = 0
local step = 1
setup = function(thread) thread:set("id", 0) end
init = function(args) i = math.random(1, #ids) end
-- 10 connections, one request each 3 ms: about 3,333/s
delay = function() return 3 end
request = function()
  i = i % #ids + 1
  local body = '{"node_id":"' .. ids[i] .. '","current_connections":3,"bandwidth_used_mbps":1.5,"avg_latency_ms":20,"packet_loss_rate":0.001}'
  return wrk.format("POST", "/_auralink/client/v1/mesh/nodes/heartbeat",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer $CROWD"}, body)
end
LUA
} >"$W/hb.lua"
C0=$(cpu_ticks "$AL_PID")
T0=$(date +%s%N)
HB_OUT=$(wrk -t2 -c10 -d"${DUR}s" -s "$W/hb.lua" "$BASE/_auralink/client/v1/mesh/nodes/heartbeat")
T1=$(date +%s%N)
sleep 1.5 # let the last batched flush run inside the window below
C1=$(cpu_ticks "$AL_PID")
T2=$(date +%s%N)
HB_RPS=$(echo "$HB_OUT" | awk '/Requests\/sec/ {print $2}')
HB_NON2XX=$(echo "$HB_OUT" | awk '/Non-2xx/ {print $NF}')
HZ=$(getconf CLK_TCK)
CPU_PCT=$(awk -v c="$((C1 - C0))" -v hz="$HZ" -v ns="$((T2 - T0))" 'BEGIN {printf "%.1f", 100 * (c / hz) / (ns / 1e9)}')
stop_server

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); wrk -t2 -c32"
echo "registry start-up: 10,000 nodes ${LOAD10K_MS} ms, $TOTAL nodes ${LOAD100K_MS} ms; RSS with $TOTAL nodes: $((RSS_KB / 1024)) MiB"
printf 'find-optimal cold (new destination each, search + INSERT): %8.0f req/s (2 s run, %s routes stored)\n' "$COLD_RPS" "$ROUTES"
printf 'find-optimal warm (cached route):                            %8.0f req/s\n' "$WARM_RPS"
printf 'baseline GET /_matrix/client/versions:                       %8.0f req/s\n' "$BASE_RPS"
printf 'heartbeats: %s req/s for %s s (non-2xx: %s), server CPU %s %% of one core (goal <= 30 %% at 3,333/s)\n' \
	"$HB_RPS" "$DUR" "${HB_NON2XX:-0}" "$CPU_PCT"
echo "sample route: $SAMPLE" | cut -c1-400
