#!/usr/bin/env bash
# run.sh - build auralinkd and run it in the foreground with everything it
# needs under ./var (or --state DIR): a private PostgreSQL cluster, a signing
# key, a TLS certificate and a commented config. A second run reuses them.
#
#   ./run.sh [--state DIR] [--server-name NAME] [--client-port N]
#            [--federation-port N] [--ca DIR]
#
# Instances started with the same --ca DIR get certificates from one
# development CA and trust each other.
set -euo pipefail
. "$(dirname "$0")/scripts/lib.sh"

STATE=$AL_ROOT/var SERVER_NAME="" CLIENT_PORT=8008 FED_PORT=8448 CA_DIR=""
while [ $# -gt 0 ]; do
	case $1 in
	--state) STATE=$2; shift 2 ;;
	--server-name) SERVER_NAME=$2; shift 2 ;;
	--client-port) CLIENT_PORT=$2; shift 2 ;;
	--federation-port) FED_PORT=$2; shift 2 ;;
	--ca) CA_DIR=$2; shift 2 ;;
	-h|--help) sed -n '2,12p' "$0"; exit 0 ;;
	*) al_die "unknown option $1 (see ./run.sh --help)" ;;
	esac
done
SERVER_NAME=${SERVER_NAME:-localhost:$FED_PORT}

al_install_packages $AL_BUILD_PACKAGES
al_build "$AL_ROOT/build"

mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
CA_FILE=""
if [ -n "$CA_DIR" ]; then
	al_ca_ensure "$CA_DIR"
	CA_DIR=$(cd "$CA_DIR" && pwd)
	CA_FILE=$CA_DIR/ca.crt
fi
al_tls_cert "$STATE" "${SERVER_NAME%:*}" "$CA_DIR"

SOCK=$(al_pg_start "$STATE")
trap 'al_pg_stop "$STATE"' EXIT
al_pg_createdb "$SOCK" auralink

MIGRATIONS=$AL_ROOT/sql
if [ ! -f "$STATE/auralinkd.conf" ]; then
	al_write_config "$STATE/auralinkd.conf"
	al_say "wrote $STATE/auralinkd.conf"
fi
"$AL_ROOT/build/auralinkd" --config "$STATE/auralinkd.conf" --generate-keys >/dev/null

al_say "auralinkd: client http://localhost:$CLIENT_PORT, federation https://localhost:$FED_PORT"
"$AL_ROOT/build/auralinkd" --config "$STATE/auralinkd.conf" &
child=$!
trap 'kill -TERM $child 2>/dev/null' INT TERM
set +e
wait $child
rc=$?
# A signal interrupts the first wait; wait again for the clean shutdown.
kill -0 $child 2>/dev/null && { wait $child; rc=$?; }
exit $rc
