#!/usr/bin/env bash
# mesh_sim.sh - build bench/mesh_sim from the mesh sources (optimised, no
# sanitizers, independent of the rest of the tree) and run it.
#   bench/mesh_sim.sh [mesh_sim options: -n NODES -r RELAYS -q QUERIES -k ROUNDS -s SEED -H]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${MESH_SIM_BIN:-/tmp/mesh_sim.$(id -u)}
PKGS="libevent jansson libpq"
cc -std=c11 -O2 -g -D_GNU_SOURCE -Wall -Wextra -I"$ROOT/src" $(pkg-config --cflags $PKGS) \
	-o "$OUT" "$ROOT/bench/mesh_sim.c" "$ROOT"/src/mesh_registry.c "$ROOT"/src/mesh_route.c \
	"$ROOT"/src/mesh_model.c "$ROOT"/src/mesh_reputation.c "$ROOT"/src/mesh_pgarr.c \
	"$ROOT"/src/error.c "$ROOT"/src/log.c "$ROOT"/src/db.c \
	$(pkg-config --libs $PKGS) -lpthread -lm
exec "$OUT" "$@"
