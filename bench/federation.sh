#!/usr/bin/env bash
# bench/federation.sh - issue 4 figures, each next to a baseline from the
# same run:
#   - cross-domain AuraID resolve on loopback: first (key fetches), cold and
#     warm p99 through the client endpoint (bench/federation.py; baseline:
#     the same endpoint for a handle hosted on A)
#   - sender throughput A -> B in EDUs/s (baseline: the outbox INSERT rate)
#   - verifying an inbound transaction of 50 signed PDUs (bench/fed_verify.c;
#     baselines: canonical JSON of the PDUs, 50 raw ed25519 verifications)
# Prints figures and the machine; never passes or fails.
#
#   bench/federation.sh        env: FED_BENCH_COLD, FED_BENCH_WARM, FED_BENCH_EDUS
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
al_install_packages $AL_BUILD_PACKAGES $AL_TEST_PACKAGES
al_build "$AL_ROOT/build"

W=$(mktemp -d /tmp/auralink-fedbench.XXXXXX)
chmod 755 "$W"
cleanup() { al_pg_stop "$W"; rm -rf "$W"; }
trap cleanup EXIT

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"

PKGS="libsodium jansson"
cc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -I"$AL_ROOT/src" -I"$AL_ROOT/federation" $(pkg-config --cflags $PKGS) \
	-o "$W/fed_verify" "$AL_ROOT/bench/fed_verify.c" "$AL_ROOT/src/cjson.c" "$AL_ROOT/src/sign.c" \
	"$AL_ROOT/src/b64.c" "$AL_ROOT/src/error.c" "$AL_ROOT/federation/xmatrix.c" $(pkg-config --libs $PKGS)
echo "== inbound transaction verification"
"$W/fed_verify" 300

echo "== AuraID resolve and sender"
AL_PG_FSYNC=off
export AL_PG_FSYNC
SOCK=$(al_pg_start "$W")
export AURALINK_BIN=$AL_ROOT/build/auralinkd AURALINK_PGHOST=$SOCK AURALINK_SQL_DIR=$AL_ROOT/sql
/usr/bin/python3 "$AL_ROOT/bench/federation.py"
