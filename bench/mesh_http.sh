#!/usr/bin/env bash
# bench/mesh_http.sh - mesh figures over HTTP (issue 5). Prints figures;
# never passes or fails.
#  1. 10,000 online nodes (2,000 relays, the rest peers of 8,000 AuraIDs)
#     loaded from PostgreSQL at start; POST /mesh/routes/find-optimal with
#     wrk: cold (every request a new route: search + INSERT of the route,
#     after the server's AuraID cache is loaded) and warm (cached route),
#     next to GET /_matrix/client/versions in the same run.
#  2. 100,000 nodes heartbeating every 30 s = 3,333 heartbeats/s (wrk with a
#     paced Lua script): CPU of the server process from /proc/PID/stat
#     (utime + stime) over the run, as a share of one core.
#
# Each find-optimal run prints req/s, wrk's p99 latency (32 connections on
# this machine, wrk included) and non-2xx answers; the cold run also the
# server's own time in the search (search_us of the answers: p50/p99).
#
#   bench/mesh_http.sh [seconds]    (default 10 s per run)
#   MESH_BENCH_PERF=FILE bench/mesh_http.sh   also perf-records the server
#       during the cold run: flat profile in FILE, perf.data in FILE.data
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
write_config() {
	al_write_config "$W/auralinkd.conf"
	# Rate limits off: the load generator is one client.
	sed -i -e 's/log_level = "info"/log_level = "warn"/' \
		-e 's/rate_per_second = [0-9.]*;/rate_per_second = 0.0;/' "$W/auralinkd.conf"
	BASE=http://127.0.0.1:$CLIENT_PORT
}
write_config
"$BIN" --config "$W/auralinkd.conf" --generate-keys >/dev/null
PSQL() { psql -h "$SOCK" -U postgres -d auralink -qAt -v ON_ERROR_STOP=1 "$@"; }

# A port picked free at the start may be taken by another program by the
# next start (the machine runs other builds and tests): then new ports (the
# server name stays) and another try.
start_server() {
	local t0 t1 try
	for try in 1 2 3; do
		t0=$(date +%s%N)
		"$BIN" --config "$W/auralinkd.conf" >>"$W/auralinkd.log" 2>&1 &
		AL_PID=$!
		until curl -sf "$BASE/_matrix/client/versions" >/dev/null; do
			kill -0 "$AL_PID" 2>/dev/null || break
			sleep 0.01
		done
		if kill -0 "$AL_PID" 2>/dev/null; then
			t1=$(date +%s%N)
			START_MS=$(( (t1 - t0) / 1000000 ))
			return 0
		fi
		wait "$AL_PID" || true
		AL_PID=""
		al_say "auralinkd did not start (try $try): $(tail -n 1 "$W/auralinkd.log")"
		CLIENT_PORT=$(free_port) FED_PORT=$(free_port)
		write_config
	done
	al_die "auralinkd did not start: see the lines above"
}
stop_server() { kill "$AL_PID"; wait "$AL_PID" || true; AL_PID=""; }
token_of() {
	curl -sf -X POST "$BASE/_matrix/client/v3/register" -H 'Content-Type: application/json' \
		-d "{\"auth\":{\"type\":\"m.login.dummy\"},\"username\":\"$1\",\"password\":\"pw-$1-x\"}" |
		/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# CPU ticks of the private cluster's backends (children of its postmaster)
pg_ticks() {
	local pm t=0 p
	pm=$(head -n 1 "$SOCK/data/postmaster.pid")
	for p in $(pgrep -P "$pm"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
	echo "$t"
}

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
# The server loads its AuraID cache on its first tick, a second after the
# start: before that, every request for an AuraID it has not seen yet reads
# PostgreSQL on the worker's connection (the cold run's destinations are
# all new), which measures the restart, not the route. Wait for it.
sleep 2

# Cold: every request a key the route cache has not seen. The cache key is
# (source, destination, media, require_aic): 7,999 destinations x 3 media
# (audio, video, data) = 23,997 keys, walked in a permuted order (7919 is
# prime to 23,997); each wrk thread starts at its own offset (wrk threads
# share no state and math.random is not seeded per thread, so without the
# offset both threads ask for the same destinations and half the "cold"
# requests are cache hits). search_us of each answer (the server's time in
# mesh_registry_find) is collected for its percentiles.
cat >"$W/find_cold.lua" <<'LUA'
local threads = {}
local media = {"audio", "video", "data"}
setup = function(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
local n = 0
us, cpu = {}, {}
init = function(args) n = tid * 12000 end
request = function()
  n = n + 1
  local k = (n * 7919) % 23997
  local d = k % 7999 + 1
  local body = '{"source_aura_id":"@alice.aura","destination_aura_id":"@peer' .. d ..
    '.aura","media_type":"' .. media[math.floor(k / 7999) + 1] .. '"}'
  return wrk.format("POST", "/_auralink/client/v1/mesh/routes/find-optimal",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer TOKEN"}, body)
end
response = function(status, headers, body)
  local v = body:match('"search_us":(%d+)')
  if v then us[#us + 1] = tonumber(v) end
  v = body:match('"search_cpu_us":(%d+)')
  if v then cpu[#cpu + 1] = tonumber(v) end
  cached_count = (cached_count or 0) + (body:find('"cached":true', 1, true) and 1 or 0)
end
done = function(summary, latency, requests)
  local wall, cpu_all, cached = {}, {}, 0
  for _, t in ipairs(threads) do
    for _, x in ipairs(t:get("us")) do wall[#wall + 1] = x end
    for _, x in ipairs(t:get("cpu")) do cpu_all[#cpu_all + 1] = x end
    cached = cached + (t:get("cached_count") or 0)
  end
  local function pct(a, p) return #a > 0 and a[math.max(1, math.ceil(#a * p))] or -1 end
  table.sort(wall)
  table.sort(cpu_all)
  io.write(string.format("search_us: wall p50 %d p99 %d max %d, cpu p50 %d p99 %d max %d (n=%d, cached %d)\n",
    pct(wall, 0.5), pct(wall, 0.99), pct(wall, 1.0), pct(cpu_all, 0.5), pct(cpu_all, 0.99),
    pct(cpu_all, 1.0), #wall, cached))
end
LUA
sed -i "s/TOKEN/$ALICE/" "$W/find_cold.lua"
cat >"$W/find_warm.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"source_aura_id":"@alice.aura","destination_aura_id":"@peer42.aura"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $ALICE"
LUA
# run NAME DURATION SCRIPT URL: wrk --latency into $W/NAME.out
run() {
	local c0 p0 n
	c0=$(cpu_ticks "$AL_PID") p0=$(pg_ticks)
	wrk -t2 -c32 -d"$2" --latency ${3:+-s "$3"} "$4" >"$W/$1.out"
	sleep 0.2 # the last batch of rows
	n=$(awk '/requests in/ {print $1}' "$W/$1.out")
	awk -v c="$(($(cpu_ticks "$AL_PID") - c0))" -v p="$(($(pg_ticks) - p0))" -v n="$n" -v hz="$(getconf CLK_TCK)" \
		'BEGIN {printf "CPU per request: server %.0f us, postgres %.0f us", c * 1e6 / hz / n, p * 1e6 / hz / n}' >"$W/$1.cpu"
}
rps() { awk '/Requests\/sec/ {print $2}' "$W/$1.out"; }
p99() { awk '$1 == "99%" {print $2}' "$W/$1.out"; }
non2xx() { awk '/Non-2xx/ {n = $NF} END {print n + 0}' "$W/$1.out"; }
# cold: short enough that keys rarely repeat (23,997 of them)
if [ -n "${MESH_BENCH_PERF:-}" ]; then
	perf record -q -g -o "$W/cold.perf" -p "$AL_PID" -- sleep 2 >/dev/null 2>&1 &
	PERF_PID=$!
fi
run cold 2s "$W/find_cold.lua" "$BASE/_auralink/client/v1/mesh/routes/find-optimal"
if [ -n "${MESH_BENCH_PERF:-}" ]; then
	wait "$PERF_PID" || true
	perf report -i "$W/cold.perf" --no-children -g none --percent-limit 0.5 --stdio 2>/dev/null |
		grep -v '^#' | grep -v '^$' >"$MESH_BENCH_PERF"
	cp "$W/cold.perf" "$MESH_BENCH_PERF.data"
fi
COLD_US=$(awk '/^search_us:/ {sub(/^search_us: /, ""); print}' "$W/cold.out")
ROUTES=$(PSQL -c "SELECT count(*) FROM mesh_routes")
run warm "${DUR}s" "$W/find_warm.lua" "$BASE/_auralink/client/v1/mesh/routes/find-optimal"
run base "${DUR}s" "" "$BASE/_matrix/client/versions"
SAMPLE=$(curl -s -X POST "$BASE/_auralink/client/v1/mesh/routes/find-optimal" -H "Authorization: Bearer $ALICE" \
	-d '{"source_aura_id":"@alice.aura","destination_aura_id":"@peer4242.aura"}')
stop_server

# 100,000 nodes of @crowd.aura for the heartbeat load (its 2,000 relays and
# 98,000 peers)
PSQL -c "INSERT INTO mesh_nodes (aura_id, user_id, node_type, latitude, longitude)
  SELECT '@crowd.aura', '@crowd:$SERVER_NAME', 'peer', random() * 120 - 55, random() * 360 - 180
  FROM generate_series(1, 98000)"
TOTAL=$(PSQL -c "SELECT count(*) FROM mesh_nodes")
PSQL -c "COPY (SELECT node_id FROM mesh_nodes WHERE aura_id = '@crowd.aura' ORDER BY random() LIMIT 100000) TO STDOUT" >"$W/ids"
start_server
LOAD100K_MS=$START_MS
RSS_KB=$(awk '/VmRSS/ {print $2}' /proc/$AL_PID/status)
{
	echo 'local ids = {}'
	echo 'for line in io.lines("'"$W/ids"'") do ids[#ids + 1] = line end'
	cat <<LUA
-- Each wrk thread walks its own half of the ids (wrk threads share
-- nothing and math.random is not seeded per thread: with a random start
-- both threads began at the same id and every second heartbeat came
-- within mesh.heartbeat_min_interval_ms of the first one: 429).
local threads = 0
setup = function(thread) thread:set("tid", threads); threads = threads + 1 end
local i = 0
init = function(args) i = math.floor(tid * #ids / 2) end
-- 13 connections, each a request, its answer and a 3 ms delay (about
-- 3.9 ms with wrk's timer granularity): about 3,333/s
delay = function() return 3 end
request = function()
  i = i % #ids + 1
  local body = '{"node_id":"' .. ids[i] .. '","current_connections":3,"bandwidth_used_mbps":1.5,"avg_latency_ms":20,"packet_loss_rate":0.001}'
  return wrk.format("POST", "/_auralink/client/v1/mesh/nodes/heartbeat",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer $CROWD"}, body)
end
LUA
} >"$W/hb.lua"
C0=$(cpu_ticks "$AL_PID") P0=$(pg_ticks)
T0=$(date +%s%N)
HB_OUT=$(wrk -t2 -c13 -d"${DUR}s" -s "$W/hb.lua" "$BASE/_auralink/client/v1/mesh/nodes/heartbeat")
T1=$(date +%s%N)
sleep 1.5 # let the last batched flush run inside the window below
C1=$(cpu_ticks "$AL_PID") P1=$(pg_ticks)
T2=$(date +%s%N)
HB_RPS=$(echo "$HB_OUT" | awk '/Requests\/sec/ {print $2}')
HB_NON2XX=$(echo "$HB_OUT" | awk '/Non-2xx/ {print $NF}')
HZ=$(getconf CLK_TCK)
CPU_PCT=$(awk -v c="$((C1 - C0))" -v hz="$HZ" -v ns="$((T2 - T0))" 'BEGIN {printf "%.1f", 100 * (c / hz) / (ns / 1e9)}')
PG_PCT=$(awk -v c="$((P1 - P0))" -v hz="$HZ" -v ns="$((T2 - T0))" 'BEGIN {printf "%.1f", 100 * (c / hz) / (ns / 1e9)}')
stop_server

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); wrk -t2 -c32"
echo "registry start-up: 10,000 nodes ${LOAD10K_MS} ms, $TOTAL nodes ${LOAD100K_MS} ms; RSS with $TOTAL nodes: $((RSS_KB / 1024)) MiB"
COLD_RPS=$(rps cold) WARM_RPS=$(rps warm) BASE_RPS=$(rps base)
printf 'find-optimal cold (new route each: search + store): %8.0f req/s  p99 %s  non-2xx %s (2 s, %s routes stored)\n' \
	"$COLD_RPS" "$(p99 cold)" "$(non2xx cold)" "$ROUTES"
printf '  %s; time in mesh_registry_find (us): %s\n' "$(cat "$W/cold.cpu")" "$COLD_US"
printf 'find-optimal warm (cached route):                   %8.0f req/s  p99 %s  non-2xx %s\n' \
	"$WARM_RPS" "$(p99 warm)" "$(non2xx warm)"
printf '  %s\n' "$(cat "$W/warm.cpu")"
printf 'baseline GET /_matrix/client/versions:              %8.0f req/s  p99 %s\n' "$BASE_RPS" "$(p99 base)"
printf '  %s\n' "$(cat "$W/base.cpu")"
printf 'cold/baseline %.3f, warm/baseline %.3f\n' "$(echo "$COLD_RPS / $BASE_RPS" | bc -l)" \
	"$(echo "$WARM_RPS / $BASE_RPS" | bc -l)"
printf 'heartbeats: %s req/s for %s s (non-2xx: %s), server CPU %s %% of one core (goal <= 30 %% at 3,333/s), postgres %s %%\n' \
	"$HB_RPS" "$DUR" "${HB_NON2XX:-0}" "$CPU_PCT" "$PG_PCT"
echo "sample route: $SAMPLE" | cut -c1-400
