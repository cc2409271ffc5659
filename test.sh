#!/usr/bin/env bash
# test.sh - build with sanitizers and -Werror, run every suite (unit tests
# under ASan/UBSan, integration tests against real servers on a private
# PostgreSQL cluster), and end with one line "N passed, N failed".
#
#   ./test.sh [pytest arguments...]   e.g. ./test.sh -k keys
set -uo pipefail
. "$(dirname "$0")/scripts/lib.sh"
set -e

al_install_packages $AL_BUILD_PACKAGES $AL_TEST_PACKAGES
BUILD=$AL_ROOT/build-test
al_build "$BUILD" --enable-sanitizers --enable-werror
set +e

export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

unit_passed=0 unit_failed=0
al_say "unit tests"
make -s -C "$BUILD" check >/dev/null 2>&1
for prog in "$BUILD"/tests/unit/test_*; do
	[ -x "$prog" ] && [ -f "$prog" ] || continue
	log=$prog.log
	summary=$(grep -Eo 'Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" 2>/dev/null | tail -n 1)
	if [ -z "$summary" ]; then
		al_say "$(basename "$prog"): no summary (crashed?)"
		sed -n '1,40p' "$log" >&2 2>/dev/null
		unit_failed=$((unit_failed + 1))
		continue
	fi
	read -r checks failures errors < <(echo "$summary" | grep -Eo '[0-9]+' | tr '\n' ' ')
	bad=$((failures + errors))
	unit_passed=$((unit_passed + checks - bad))
	unit_failed=$((unit_failed + bad))
	[ $bad -eq 0 ] || grep -E ':[EF]:' "$log" >&2
	echo "  $(basename "$prog"): $summary"
done

al_say "style (scripts/check-style.sh)"
if "$AL_ROOT/scripts/check-style.sh"; then
	unit_passed=$((unit_passed + 1))
else
	unit_failed=$((unit_failed + 1))
fi

al_say "integration tests"
TMPSTATE=$(mktemp -d /tmp/auralink-test.XXXXXX)
chmod 755 "$TMPSTATE"
cleanup() { al_pg_stop "$TMPSTATE"; rm -rf "$TMPSTATE"; }
trap cleanup EXIT
AL_PG_FSYNC=off
export AL_PG_FSYNC
SOCK=$(al_pg_start "$TMPSTATE")
export AURALINK_BIN=$BUILD/auralinkd AURALINK_PGHOST=$SOCK AURALINK_SQL_DIR=$AL_ROOT/sql
export AURALINK_TMP=$TMPSTATE
cd "$AL_ROOT"
/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration "$@" 2>&1 | tee "$TMPSTATE/pytest.out"
line=$(grep -E '^(=+ )?[0-9]+ (passed|failed)|no tests ran' "$TMPSTATE/pytest.out" | tail -n 1)
int_passed=$(echo "$line" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
int_failed=$(echo "$line" | grep -Eo '[0-9]+ (failed|errors?)' | awk '{s+=$1} END {print s+0}')
[ -n "$line" ] || int_failed=$((int_failed + 1))

passed=$((unit_passed + int_passed))
failed=$((unit_failed + int_failed))
echo "unit: $unit_passed passed, $unit_failed failed; integration: $int_passed passed, $int_failed failed"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
