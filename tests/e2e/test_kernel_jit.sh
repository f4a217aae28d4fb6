#!/bin/bash
# SPDX-License-Identifier: MIT
# JIT peers for plain UDP clients (provisioner/capture.c and jit.c) against real kernel
# WireGuard, in one QEMU guest booted by tests/kernel/run-guest.sh: two namespaces joined
# by a veth, a kernel wg0 with no peers and wgws-provisioner --jit --capture on the
# gateway side, kernel WireGuard clients on the other (tests/kernel/guest_jit.sh). A peer
# stored through the CLI but not installed gets its first handshake within 1 s of its
# client's first ping (the capture installs it with the sender as endpoint and the kernel
# initiates back), against ~5 s for a peer that appears without an endpoint; an unknown
# key installs nothing. Prints both times.
# Passes when the guest's script exits 0, printed no FAIL line and reached its last check.
# Root only (make test runs as root); needs qemu-system-x86 and Debian's apt for the kernel
# (cached in build/kernel/, veth.ko too: the first run fetches them), else it is skipped (77).
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${WGWS_BUILD:-$top/build}

if [ "$(id -u)" != 0 ]; then
	echo "skipped: needs root"
	exit 77
fi
if [ ! -x "$build/wgws-provisioner" ]; then
	echo "FAIL $build/wgws-provisioner not built (run make)"
	exit 1
fi

out=$(mktemp /tmp/wgws-kernel-jit.XXXXXX)
tmp=$(mktemp -d /tmp/wgws-kernel-jit.XXXXXX)
trap 'rm -rf "$out" "$tmp"' EXIT

command -v qemu-system-x86_64 >/dev/null 2>&1 ||
	{ echo "skipped: needs qemu-system-x86_64 (package qemu-system-x86, make deps)"; exit 77; }

# The guest's initramfs holds only WireGuard's modules; the veth between the namespaces
# needs veth.ko from the same kernel package (cached in build/kernel/veth/KVER/). The
# package is the one run-guest.sh boots, chosen the same way: its cached answer while apt's
# lists have not changed, else apt's, else the kernel cached last.
cache=$build/kernel
pkg=""
if [ -s "$cache/resolved" ] && ! [ /var/lib/apt/lists -nt "$cache/resolved" ]; then
	pkg=$(cat "$cache/resolved")
fi
[ -n "$pkg" ] || pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
	awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
if [ -z "$pkg" ]; then
	pkg=$(ls -t "$cache"/*/package 2>/dev/null | head -n 1 | xargs -r cat)
fi
[ -n "$pkg" ] || { echo "skipped: cannot resolve linux-image-cloud-amd64 (no apt?)"; exit 77; }
kver=${pkg#linux-image-}
kver=${kver%-unsigned}
veth=$cache/veth/$kver/veth.ko
if [ ! -s "$veth" ]; then
	command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
		{ echo "skipped: needs apt-get and dpkg-deb for veth.ko"; exit 77; }
	echo "fetching $pkg for veth.ko"
	if ! (cd "$tmp" && apt-get download -q "$pkg" >apt.log 2>&1); then
		tail -n 3 "$tmp/apt.log"
		echo "skipped: cannot download $pkg (no apt?)"
		exit 77
	fi
	dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp" --wildcards '*/veth.ko*'
	ko=$(find "$tmp" -name 'veth.ko*' | head -n 1)
	[ -n "$ko" ] || { echo "FAIL $pkg has no veth module"; exit 1; }
	mkdir -p "$(dirname "$veth")"
	case "$ko" in
	*.ko) cp "$ko" "$veth.new" ;;
	*.ko.xz) xz -dc "$ko" >"$veth.new" ;;
	*.ko.zst) zstd -qdc "$ko" >"$veth.new" ;;
	*) echo "FAIL unexpected module file $ko"; exit 1 ;;
	esac
	mv "$veth.new" "$veth"
	rm -f "$tmp"/*.deb
fi

export WGWS_BUILD=$build WGWS_GUEST_TIMEOUT=${WGWS_GUEST_TIMEOUT:-120}
rc=0
"$top/tests/kernel/run-guest.sh" "$top/tests/kernel/guest_jit.sh" "$build/wgws-provisioner" \
	"$veth" >"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" = 77 ] && exit 77 # run-guest.sh printed "skipped: ..." last

nok=$(grep -c '^ok ' "$out" || true)
nfail=$(grep -c '^FAIL' "$out" || true)
if [ "$rc" != 0 ] || [ "$nfail" != 0 ] || ! grep -q '^guest: 0 failed$' "$out"; then
	echo "FAIL kernel JIT test: guest exit $rc, $nfail failed checks, $nok passed"
	exit 1
fi
echo "ok   kernel JIT test: $nok checks passed in the guest;" \
	"$(sed -n 's/^ *first handshake: //p' "$out")"
