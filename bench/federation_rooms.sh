#!/usr/bin/env bash
# bench/federation_rooms.sh - issue 7 figures (rooms and calls over
# federation), each next to a baseline from the same run (bench/federation_rooms.py):
#   - remote join of a room of 100 members (B joins A's rooms) in ms; baseline:
#     a local join of the same room on A
#   - message latency A -> B, PUT /send on A to the event in a long-polling
#     /sync on B, p50/p99; baseline: the same to a long-polling /sync on A
#   - m.call.invite on A -> ringing in GET /_auralink/client/v1/calls on B;
#     baseline: a call between two users of A
#   - PDUs/s sustained A -> B: wrk drives PUT /send on A (several users,
#     unique txnIds) into a room joined by users of B; the PDUs B accepted
#     and stored over a window (rows counted on B), next to A's own accept
#     rate in the same window and GET /versions with the same wrk settings
# Prints figures and the machine; never passes or fails.
#
#   bench/federation_rooms.sh   env: FR_BENCH_PARTS (joins,pdus), FR_BENCH_MEMBERS (100),
#     FR_BENCH_JOINS (5), FR_BENCH_MSGS (100), FR_BENCH_CALLS (20), FR_BENCH_SENDERS (8),
#     FR_BENCH_CONNS (32), FR_BENCH_WINDOW (20 s), FR_BENCH_WARMUP (3 s),
#     FR_BENCH_PERF_DIR (perf record both servers over the window into it)
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
al_install_packages $AL_BUILD_PACKAGES $AL_TEST_PACKAGES wrk
al_build "$AL_ROOT/build"

W=$(mktemp -d /tmp/auralink-frbench.XXXXXX)
chmod 755 "$W"
cleanup() { al_pg_stop "$W"; rm -rf "$W"; }
trap cleanup EXIT

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
AL_PG_FSYNC=off
export AL_PG_FSYNC
SOCK=$(al_pg_start "$W")
export AURALINK_BIN=$AL_ROOT/build/auralinkd AURALINK_PGHOST=$SOCK AURALINK_SQL_DIR=$AL_ROOT/sql
/usr/bin/python3 "$AL_ROOT/bench/federation_rooms.py"
