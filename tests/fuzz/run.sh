#!/bin/bash
# SPDX-License-Identifier: MIT
# Runs libFuzzer harnesses (make fuzz, tests/e2e/test_fuzz.sh). Each harness first runs once
# over every file of its seed corpus, tests/fuzz/corpus/NAME/ (fuzz_NAME: it must exist and
# not be empty), then fuzzes for SECONDS from the seeds and what earlier runs found in
# $FUZZ_WORK/NAME/ (default $WGWS_BUILD/fuzz/corpus), where new inputs go (the committed seeds
# are never written).
# One line per harness with its executions; a crash, a leak, a sanitizer report, a time-out or
# a missing corpus fails the harness, the input is kept in $WGWS_BUILD/fuzz/artifacts/ and the
# run exits 1 after the others. Logs: $WGWS_BUILD/fuzz/logs/.
#   tests/fuzz/run.sh SECONDS HARNESS...
set -u
cd "$(dirname "$0")/../.."
top=$PWD
build=${WGWS_BUILD:-$top/build}
[ $# -ge 2 ] || { echo "usage: $0 SECONDS HARNESS..." >&2; exit 2; }
secs=$1
shift
mkdir -p "$build/fuzz/logs" "$build/fuzz/artifacts"
failed=()

# stat NAME LOG: a number from libFuzzer's -print_final_stats=1 lines (empty if absent).
stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1; }

for bin in "$@"; do
	name=$(basename "$bin")
	seeds=tests/fuzz/corpus/${name#fuzz_}
	work=${FUZZ_WORK:-$build/fuzz/corpus}/${name#fuzz_}
	log=$build/fuzz/logs/$name.log
	art=$build/fuzz/artifacts/$name-
	if [ ! -d "$seeds" ] || [ -z "$(ls -A "$seeds")" ]; then
		printf 'FAIL  %-16s no seed corpus in %s/\n' "$name" "$seeds"
		failed+=("$name")
		continue
	fi
	mkdir -p "$work"
	# -timeout: one input taking this long is a finding (a shared 2-core machine is slow,
	# not that slow); -rss_limit_mb bounds a harness that leaks per input.
	if ! "$bin" -artifact_prefix="$art" -timeout=20 "$seeds"/* >"$log" 2>&1; then
		printf 'FAIL  %-16s on its seed corpus (log %s)\n' "$name" "$log"
		{ grep '^Running:' "$log" | tail -n 1; grep -E 'ERROR|SUMMARY' "$log"; } |
			tail -n 8 | sed 's/^/      | /'
		failed+=("$name")
		continue
	fi
	if ! "$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=20 -rss_limit_mb=2048 \
		-artifact_prefix="$art" "$work" "$seeds" >>"$log" 2>&1; then
		printf 'FAIL  %-16s found a bug (log %s)\n' "$name" "$log"
		grep -E 'ERROR|SUMMARY|artifact' "$log" | tail -n 8 | sed 's/^/      | /'
		failed+=("$name")
		continue
	fi
	runs=$(stat number_of_executed_units "$log")
	rate=$(stat average_exec_per_sec "$log")
	cov=$(sed -n 's/.*DONE *cov: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
	printf 'ok    %-16s %10s runs in %s s (%s/s), %s edges, %s seeds, %s inputs kept\n' \
		"$name" "${runs:-?}" "$secs" "${rate:-?}" "${cov:-?}" "$(ls "$seeds" | wc -l)" \
		"$(ls "$work" | wc -l)"
done

[ ${#failed[@]} -eq 0 ] || { echo "fuzz: failed: ${failed[*]}"; exit 1; }
echo "fuzz: $# harnesses, no findings"
