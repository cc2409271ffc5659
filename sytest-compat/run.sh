#!/usr/bin/env bash
# sytest-compat/run.sh - run SyTest against auralinkd and compare with passing.txt.
#
#   sytest-compat/run.sh [--update-passing] [--exclude-deprecated] SYTEST_DIR [test files...]
#
# Builds auralinkd (build/), starts a private PostgreSQL cluster for the run,
# runs SyTest's run-tests.pl with the Auralink plugin and writes
#   sytest-compat/results/tap.txt      SyTest's TAP output
#   sytest-compat/results/sytest.log   SyTest's progress output (test -> file)
#   sytest-compat/results/results.tsv  status, directory, file, name per test
#   sytest-compat/results/summary.txt  passed/failed/skipped per test directory
# Test files (or directories of them) are relative to SYTEST_DIR
# (tests/10apidoc/04version.pl, tests/12login ...); none means the whole suite.
#
# passing.txt lists the tests that passed when it was last updated. A test
# listed there that ran and did not pass is a REGRESSION: reported, exit 1.
# --update-passing rewrites passing.txt from this run (tests not run keep
# their entry). Expected failures and skips count as not passed.
#
# Environment:
#   SYTEST_SHIMS   extra Perl modules SyTest needs (default SYTEST_DIR/../shims)
#   SYTEST_SHARED  directory with the shared Crypt::Ed25519 module
#                  (default <repo>/../shared/sytest)
#   SYTEST_WORK    SyTest work directory (default sytest-compat/results/work)
#   SYTEST_PORTS   port range for run-tests.pl -p (default 9100:9199)
#   SYTEST_ARGS    extra run-tests.pl arguments (e.g. "-v")
#   TIMEOUT_FACTOR SyTest's timeout multiplier (default 2)
#   AURALINK_BIN   the auralinkd to test (default: build/auralinkd, built here)
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../scripts/lib.sh"

usage() {
	sed -n '2,30s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

update_passing=0
extra=()
while [ $# -gt 0 ]; do
	case $1 in
	--update-passing) update_passing=1; shift ;;
	--exclude-deprecated) extra+=(--exclude-deprecated); shift ;;
	-h|--help) usage ;;
	-*) al_die "unknown option $1" ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] || usage
SYTEST_DIR=$(cd "$1" 2>/dev/null && pwd) || al_die "no such directory: $1"
shift
[ -x "$SYTEST_DIR/run-tests.pl" ] || al_die "$SYTEST_DIR is not a SyTest checkout (no run-tests.pl)"
# A directory stands for the test files under it.
orig_args=("$@")
files=()
for t in "$@"; do
	t=${t%/}
	if [ -d "$SYTEST_DIR/$t" ]; then
		while IFS= read -r f; do files+=("$f"); done < <(cd "$SYTEST_DIR" && find "$t" -name '*.pl' | sort)
	elif [ -f "$SYTEST_DIR/$t" ]; then
		files+=("$t")
	else
		al_die "no such test file or directory in $SYTEST_DIR: $t"
	fi
done
set -- ${files[@]+"${files[@]}"}

SYTEST_SHIMS=${SYTEST_SHIMS:-$SYTEST_DIR/../shims}
SYTEST_SHARED=${SYTEST_SHARED:-$AL_ROOT/../shared/sytest}
[ -d "$SYTEST_SHIMS" ] || al_die "SYTEST_SHIMS=$SYTEST_SHIMS does not exist (see ../shared/sytest/README.md)"
[ -d "$SYTEST_SHARED" ] || al_die "SYTEST_SHARED=$SYTEST_SHARED does not exist (see ../shared/sytest/README.md)"
SYTEST_SHIMS=$(cd "$SYTEST_SHIMS" && pwd)
SYTEST_SHARED=$(cd "$SYTEST_SHARED" && pwd)

RESULTS=$HERE/results
WORK=${SYTEST_WORK:-$RESULTS/work}
mkdir -p "$RESULTS" "$WORK"
WORK=$(cd "$WORK" && pwd)
exec 9>"$RESULTS/.lock"
flock -n 9 || al_die "another sytest-compat/run.sh is running (lock $RESULTS/.lock)"

# What the summary names as the version under test.
version=$(git -C "$AL_ROOT" describe --always --dirty 2>/dev/null || echo unknown)
if [ -z "${AURALINK_BIN:-}" ]; then
	al_build "$AL_ROOT/build"
	AURALINK_BIN=$AL_ROOT/build/auralinkd
else
	version="$AURALINK_BIN (checkout at $version)"
fi
[ -x "$AURALINK_BIN" ] || al_die "AURALINK_BIN=$AURALINK_BIN is not executable"
export AURALINK_BIN AURALINK_ROOT=$AL_ROOT

# run-tests.pl loads $SYTEST_PLUGINS/*/lib: give it a directory holding
# only this plugin.
rm -rf "$WORK/plugins"
mkdir -p "$WORK/plugins"
ln -s "$HERE" "$WORK/plugins/auralink"

# One PostgreSQL cluster for the run; each server gets a database in it.
mkdir -p "$WORK/auralink-pg"
AURALINK_PGHOST=$(al_pg_start "$WORK/auralink-pg") || exit 1
export AURALINK_PGHOST
trap 'al_pg_stop "$WORK/auralink-pg"' EXIT
trap 'exit 130' INT TERM

cmd=(./run-tests.pl -I Auralink -O tap --all --work-directory "$WORK"
	-p "${SYTEST_PORTS:-9100:9199}" "${extra[@]}" ${SYTEST_ARGS:-} "$@")
al_say "SyTest: ${cmd[*]}"
started=$(date +%s)
(
	cd "$SYTEST_DIR" &&
	SYTEST_PLUGINS=$WORK/plugins \
	PERL5LIB=$SYTEST_SHIMS:$SYTEST_SHARED${PERL5LIB:+:$PERL5LIB} \
	TIMEOUT_FACTOR=${TIMEOUT_FACTOR:-2} \
	"${cmd[@]}"
) >"$RESULTS/tap.txt" 2> >(tee "$RESULTS/sytest.log" >&2)
sytest_rc=$?
wait
elapsed=$(( $(date +%s) - started ))

summarize=(perl "$HERE/summarize.pl" --tap "$RESULTS/tap.txt" --log "$RESULTS/sytest.log"
	--sytest "$SYTEST_DIR" --passing "$HERE/passing.txt" --tsv "$RESULTS/results.tsv"
	--command "$(echo sytest-compat/run.sh ${extra[*]} SYTEST_DIR ${orig_args[@]+"${orig_args[@]}"})"
	--commit "$version"
	--sytest-commit "${SYTEST_COMMIT:-$(git -C "$SYTEST_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
	--elapsed "$elapsed" --sytest-exit "$sytest_rc")
[ $update_passing -eq 1 ] && summarize+=(--update-passing)
"${summarize[@]}" >"$RESULTS/summary.txt"
rc=$?
cat "$RESULTS/summary.txt"
exit $rc
