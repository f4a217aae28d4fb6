#!/bin/bash
# SPDX-License-Identifier: MIT
# Runs the test suite: every unit test binary given on the command line, then every
# tests/e2e/test_*.sh. An e2e script exits 0 (pass), 77 (skipped; its last output line
# says why) or anything else (fail). Logs go to build/test-logs/. Ends with one line
# "N passed, N failed, N skipped" and exits non-zero when anything failed.
#   tests/run.sh [--unit-only | --e2e-only] [UNIT_BIN...]
set -u
cd "$(dirname "$0")/.."
mode=all
case "${1:-}" in --unit-only | --e2e-only) mode=${1#--}; mode=${mode%-only}; shift ;; esac

export WGWS_TOP=$PWD WGWS_BUILD=${WGWS_BUILD:-$PWD/build}
logs=$WGWS_BUILD/test-logs
mkdir -p "$logs"
pass=0 fail=0 skip=0 failed=()

report() { # name status log
	case "$2" in
	0) pass=$((pass + 1)); printf 'PASS  %s\n' "$1" ;;
	77) skip=$((skip + 1)); printf 'SKIP  %s: %s\n' "$1" "$(tail -n 1 "$3")" ;;
	*) fail=$((fail + 1)); failed+=("$1"); printf 'FAIL  %s (exit %s, log %s)\n' "$1" "$2" "$3"
	   tail -n 25 "$3" | sed 's/^/      | /' ;;
	esac
}

if [ "$mode" != e2e ]; then
	for t in "$@"; do
		name=unit/$(basename "$t")
		log=$logs/$(basename "$t").log
		"$t" >"$log" 2>&1
		report "$name" $? "$log"
	done
fi

if [ "$mode" != unit ]; then
	for t in tests/e2e/test_*.sh; do
		[ -e "$t" ] || continue
		name=e2e/$(basename "$t" .sh)
		log=$logs/$(basename "$t" .sh).log
		start=$(date +%s)
		timeout --kill-after=10 600 bash "$t" >"$log" 2>&1
		rc=$?
		[ $rc = 124 ] && echo "timed out after 600 s" >>"$log"
		report "$name ($(($(date +%s) - start)) s)" $rc "$log"
	done
fi

echo
[ ${#failed[@]} -gt 0 ] && printf 'failed: %s\n' "${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
