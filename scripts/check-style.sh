#!/usr/bin/env bash
# check-style.sh - the house rules a compiler does not check: no unbounded
# string functions in C sources (use snprintf with a checked result or a
# bounded buffer helper). Prints each offending line; exits 1 if any.
#
#   scripts/check-style.sh [dir...]   (default: src federation tests/unit bench)
set -uo pipefail
cd "$(dirname "$0")/.."
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(src federation tests/unit bench)
banned='\b(sprintf|vsprintf|strcpy|strcat|gets|stpcpy|wcscpy|wcscat)[[:space:]]*\('
found=$(grep -rnE --include='*.c' --include='*.h' "$banned" "${dirs[@]}" 2>/dev/null)
if [ -n "$found" ]; then
	echo "unbounded string functions (use snprintf or a bounded helper):"
	echo "$found"
	exit 1
fi
echo "check-style: no unbounded string functions in ${dirs[*]}"
