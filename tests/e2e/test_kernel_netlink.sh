#!/bin/bash
# SPDX-License-Identifier: MIT
# The provisioner's netlink backend (provisioner/wgnl.c) against real kernel WireGuard. The
# host has no WireGuard module, so everything runs in one QEMU guest booted by
# tests/kernel/run-guest.sh; tests/kernel/guest_netlink.sh drives build/wgdev-tool there and
# checks each result against `wg show` (info and private key, install, re-install, update
# and update-only on an absent key, remove, 2 x 1,000-peer bulk install/remove with rates,
# and a dump of 2,002 peers spread over many netlink messages, two of them split).
# Passes when the guest's script exits 0, printed no FAIL line and reached its last check.
# Root only (make test runs as root); needs qemu-system-x86 and Debian's apt for the kernel
# (cached in build/kernel/: the first run fetches it), else it is skipped (77).
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${WGWS_BUILD:-$top/build}

if [ "$(id -u)" != 0 ]; then
	echo "skipped: needs root"
	exit 77
fi
if [ ! -x "$build/wgdev-tool" ]; then
	echo "FAIL $build/wgdev-tool not built (run make)"
	exit 1
fi

out=$(mktemp /tmp/wgws-kernel-netlink.XXXXXX)
trap 'rm -f "$out"' EXIT

export WGWS_BUILD=$build WGWS_GUEST_TIMEOUT=${WGWS_GUEST_TIMEOUT:-120}
rc=0
"$top/tests/kernel/run-guest.sh" "$top/tests/kernel/guest_netlink.sh" "$build/wgdev-tool" \
	>"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" = 77 ] && exit 77 # run-guest.sh printed "skipped: ..." last

nok=$(grep -c '^ok ' "$out" || true)
nfail=$(grep -c '^FAIL' "$out" || true)
if [ "$rc" != 0 ] || [ "$nfail" != 0 ] || ! grep -q '^guest: 0 failed$' "$out"; then
	echo "FAIL kernel netlink test: guest exit $rc, $nfail failed checks, $nok passed"
	exit 1
fi
echo "ok   kernel netlink test: $nok checks passed in the guest"
