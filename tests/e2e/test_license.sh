#!/bin/bash
# SPDX-License-Identifier: MIT
# The licence: LICENSE holds the MIT text, and every source file (C, headers, shell, Python,
# the Makefile, systemd units, the CI script) names it in an SPDX line within its first
# three lines. Needs no root.
set -eu
. "$(dirname "$0")/lib.sh"
cd "$WGWS_TOP"
[ -f LICENSE ] && grep -q "^MIT License" LICENSE && grep -q "Permission is hereby granted" LICENSE ||
	fail "LICENSE is missing or not the MIT text"
if git rev-parse --git-dir >/dev/null 2>&1; then
	list=$(git ls-files)
else
	list=$(find . -type f -not -path './build/*' -not -path './.git/*' | sed 's|^\./||')
fi
files=$(grep -E '\.(c|h|sh|py|service|socket|conf)$|(^|/)Makefile$|^\.ci/run$' <<<"$list" |
	grep -v '^tests/fuzz/corpus/' || true)
missing=""
n=0
for f in $files; do
	n=$((n + 1))
	head -n 3 "$f" | grep -q 'SPDX-License-Identifier: MIT' || missing="$missing $f"
done
[ -z "$missing" ] || fail "no SPDX line in:$missing"
[ "$n" -gt 100 ] || fail "only $n source files found: the list is wrong"
ok "LICENSE is MIT; all $n source files carry 'SPDX-License-Identifier: MIT'"
echo "PASS test_license"
