#!/bin/bash
# SPDX-License-Identifier: MIT
# Every libFuzzer harness of tests/fuzz/ builds (make fuzz-build: clang, ASan, UBSan) and
# survives a short run: once over each file of its committed seed corpus, then FUZZ_SECONDS
# (3) of fuzzing from a fresh scratch corpus (tests/fuzz/run.sh). Fails when a harness does
# not build, has no seed corpus, or finds anything (the input is kept in build/fuzz/artifacts/).
# Skipped (77) without clang or without its libFuzzer and sanitizer runtimes. On a shared,
# busy 2-core machine: 55 s with the harnesses built, 90 s from a clean tree; make fuzz runs
# the same harnesses for longer.
set -eu
. "$(dirname "$0")/lib.sh"
FUZZ_SECONDS=${FUZZ_SECONDS:-3}

command -v clang >/dev/null || skip "clang is not installed (make deps: clang libclang-rt-14-dev)"
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\n%s\n' \
	'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }' \
	>"$T/probe.c"
clang -fsanitize=fuzzer,address,undefined -o "$T/probe" "$T/probe.c" >"$T/probe.log" 2>&1 ||
	skip "clang cannot link libFuzzer with ASan and UBSan (make deps: libclang-rt-14-dev)"

say "make fuzz-build"
harnesses=()
for src in "$WGWS_TOP"/tests/fuzz/fuzz_*.c; do
	harnesses+=("$WGWS_BUILD/fuzz/$(basename "$src" .c)")
done
[ ${#harnesses[@]} -gt 0 ] || fail "no harness in tests/fuzz/"
# The outer make's variables (WERROR=1, SANITIZE=1) come along in MAKEFLAGS.
make -C "$WGWS_TOP" -j2 B="$WGWS_BUILD" fuzz-build >"$T/build.log" 2>&1 ||
	fail "make fuzz-build: $(grep -E 'error|warning' "$T/build.log" | head -n 5)"
# Compiler warnings (file:line:col: warning:), not make's own about its jobserver.
if grep -qE '^[^ ]+:[0-9]+:[0-9]+: warning:' "$T/build.log"; then
	fail "the fuzz build has warnings: $(grep -E ': warning:' "$T/build.log" | head -n 3)"
fi
ok "${#harnesses[@]} harnesses built without warnings"

say "each harness over its seeds, then ${FUZZ_SECONDS} s"
FUZZ_WORK=$T/corpus "$WGWS_TOP/tests/fuzz/run.sh" "$FUZZ_SECONDS" "${harnesses[@]}" ||
	fail "a harness failed (above; logs in $WGWS_BUILD/fuzz/logs/)"
ok "no findings"
