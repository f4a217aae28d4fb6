#!/bin/bash
# SPDX-License-Identifier: MIT
# Runs a shell script inside a QEMU (TCG) guest that has real kernel WireGuard, and exits
# with the script's status.
#
#   tests/kernel/run-guest.sh SCRIPT [FILE...]
#
# The guest is Debian's cloud kernel (the package behind linux-image-cloud-amd64, fetched
# with apt-get download and cached under build/kernel/KERNEL-VERSION/) with a busybox-static
# initramfs holding wireguard.ko and its dependencies, the host's `wg` and `ip`, and every
# FILE given (in /test/bin, on PATH) with the shared libraries ldd lists. /init loads the
# modules, brings up lo, sets WG_COLOR_MODE=never and runs SCRIPT with busybox sh in /tmp
# (a tmpfs); then it prints a marker line with the script's status and powers off. No
# marker means the guest panicked, hung or timed out: that is a failure. The guest has no
# network and no disk; nothing on the host outside build/kernel/ and a temp dir is touched.
#
# Exit: the script's status; 77 with "skipped: ..." as the last line when QEMU or the
# kernel cannot be had (no apt); 1 on a harness failure or a missing marker.
# Environment: WGWS_BUILD (build dir, default ./build), WGWS_GUEST_TIMEOUT (s, default 240),
# WGWS_GUEST_MEM (MiB, default 512), WGWS_KEEP=1 keeps the temp dir.
set -eu

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${WGWS_BUILD:-$top/build}
cache=$build/kernel
guest_timeout=${WGWS_GUEST_TIMEOUT:-240}
guest_mem=${WGWS_GUEST_MEM:-512}
meta=linux-image-cloud-amd64

say() { printf 'run-guest: %s\n' "$*" >&2; }
die() {
	say "$*"
	exit 1
}
skip() {
	printf 'skipped: %s\n' "$*"
	exit 77
}

[ $# -ge 1 ] || die "usage: run-guest.sh SCRIPT [FILE...]"
script=$1
shift
[ -f "$script" ] || die "no such script: $script"
for f in "$@"; do [ -f "$f" ] || die "no such file: $f"; done
for c in qemu-system-x86_64:qemu-system-x86 cpio:cpio depmod:kmod busybox:busybox-static \
	dpkg-deb:dpkg timeout:coreutils flock:util-linux; do
	command -v "${c%%:*}" >/dev/null 2>&1 || skip "needs ${c%%:*} (package ${c#*:}, make deps)"
done
for b in wg ip; do command -v $b >/dev/null 2>&1 || skip "needs $b on the host (make deps)"; done

mkdir -p "$cache"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wgws-guest.XXXXXX")
qpid=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$qpid" ]; then
		kill -TERM "$qpid" 2>/dev/null || true
		wait "$qpid" 2>/dev/null || true
	fi
	if [ "${WGWS_KEEP:-0}" = 1 ]; then say "kept $tmp"; else rm -rf "$tmp"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the kernel ------------------------------------------------------------------------
# The package name that linux-image-cloud-amd64 depends on, e.g. linux-image-6.1.0-56-cloud-amd64.
kernel_pkg() {
	apt-cache depends "$meta" 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

# Concurrent runs share the cache: one builds it, the others wait.
exec 9>"$cache/.lock"
flock 9

# apt-cache takes most of a second: its answer is kept until apt's lists change.
resolved=$cache/resolved
if [ -s "$resolved" ] && ! [ /var/lib/apt/lists -nt "$resolved" ] &&
	[ -e "$cache/$(sed 's/^linux-image-//; s/-unsigned$//' "$resolved")/.done" ]; then
	pkg=$(cat "$resolved")
else
	pkg=$(kernel_pkg)
	[ -z "$pkg" ] || echo "$pkg" >"$resolved"
fi
if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then
	say "no apt lists for $meta: apt-get update"
	apt-get update -qq >/dev/null 2>&1 || true
	pkg=$(kernel_pkg)
	[ -z "$pkg" ] || echo "$pkg" >"$resolved"
fi
if [ -n "$pkg" ]; then
	kver=${pkg#linux-image-}
	kver=${kver%-unsigned}
else
	# No apt: a kernel cached earlier still does.
	kver=$(ls -t "$cache" 2>/dev/null | while read -r d; do
		[ -e "$cache/$d/.done" ] && { echo "$d"; break; }; done)
	[ -n "$kver" ] || skip "cannot resolve $meta with apt-cache and no cached kernel"
fi
kdir=$cache/$kver

if [ ! -e "$kdir/.done" ]; then
	say "fetching $pkg"
	fetch=$tmp/fetch
	mkdir -p "$fetch"
	# apt-get download writes to the current directory; as root it warns that _apt cannot
	# reach it (harmless). A failure here means no network or no apt: skip, not fail.
	(cd "$fetch" && apt-get download -q "$pkg" >apt.log 2>&1) ||
		{ tail -n 3 "$fetch/apt.log" >&2; skip "cannot download $pkg (no apt?)"; }
	dpkg-deb -x "$fetch"/*.deb "$fetch/root"
	depmod -b "$fetch/root" "$kver"
	mods=$fetch/root/lib/modules/$kver
	dep=$(awk -F': *' '$1 ~ /\/wireguard\.ko(\.[a-z]+)?$/ { print $1 ": " $2; exit }' \
		"$mods/modules.dep")
	[ -n "$dep" ] || die "$pkg has no wireguard module"
	rm -rf "$kdir.new"
	mkdir -p "$kdir.new/modules"
	cp "$fetch/root/boot/vmlinuz-$kver" "$kdir.new/vmlinuz"
	# modules.dep lists a module's dependencies so that loading them last-first works.
	read -r -a deps <<<"${dep#*: }"
	order=()
	for ((i = ${#deps[@]} - 1; i >= 0; i--)); do order+=("${deps[i]}"); done
	order+=("${dep%%:*}")
	: >"$kdir.new/modules/order"
	for m in "${order[@]}"; do
		name=$(basename "$m")
		case "$name" in
		*.ko) cp "$mods/$m" "$kdir.new/modules/$name" ;;
		*.ko.xz) xz -dc "$mods/$m" >"$kdir.new/modules/${name%.xz}"; name=${name%.xz} ;;
		*.ko.zst) zstd -qdc "$mods/$m" >"$kdir.new/modules/${name%.zst}"; name=${name%.zst} ;;
		*.ko.gz) gzip -dc "$mods/$m" >"$kdir.new/modules/${name%.gz}"; name=${name%.gz} ;;
		*) die "unexpected module file $m" ;;
		esac
		echo "$name" >>"$kdir.new/modules/order"
	done
	echo "$pkg" >"$kdir.new/package"
	rm -rf "$kdir"
	mv "$kdir.new" "$kdir"
	touch "$kdir/.done"
	rm -rf "$fetch"
	# One kernel is enough: drop those of earlier ABIs.
	for d in "$cache"/*/; do
		d=${d%/}
		[ "$d" = "$kdir" ] || [ ! -e "$d/.done" ] || rm -rf "$d"
	done
fi

# --- the initramfs ---------------------------------------------------------------------
# copy_with_libs STAGE SRC DEST: SRC to STAGE/DEST, and every library ldd lists for it (and
# the dynamic loader) to the same path in STAGE.
copy_with_libs() {
	local stage=$1 src=$2 dest=$3 lib
	mkdir -p "$stage$(dirname "$dest")"
	cp -L "$src" "$stage$dest"
	chmod 755 "$stage$dest"
	# "not a dynamic executable" (static) lists nothing.
	for lib in $(ldd "$src" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 }
						  $1 ~ /^\// { print $1 }'); do
		[ -e "$stage$lib" ] && continue
		mkdir -p "$stage$(dirname "$lib")"
		cp -L "$lib" "$stage$lib"
	done
}

# mkcpio DIR OUT: a newc archive of DIR's contents, owned by root.
mkcpio() {
	(cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$2"
}

# /init runs as pid 1 with busybox sh. Its output and the script's go to the serial console.
write_init() {
	cat >"$1" <<'EOF'
#!/bin/sh
export PATH=/test/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root WG_COLOR_MODE=never TERM=dumb
mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
for m in $(cat /lib/modules/wgws/order); do
	insmod "/lib/modules/wgws/$m" || echo "init: insmod $m failed"
done
ip link set lo up
token=$(cat /test/token)
cd /tmp
echo "wgws-guest-start $token"
sh /test/script.sh
rc=$?
echo "wgws-guest-exit $token $rc"
poweroff -f
sleep 5
EOF
	chmod 755 "$1"
}

# The part that depends only on the kernel and the host's busybox, wg and ip is cached.
sig=$(cat /bin/busybox "$(command -v wg)" "$(command -v ip)" "${BASH_SOURCE[0]}" |
	sha256sum | cut -c1-16)
base=$kdir/base-$sig.cpio
if [ ! -e "$base" ]; then
	stage=$tmp/base
	mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,root,test/bin,lib/modules/wgws,var}
	ln -s ../run "$stage/var/run"
	copy_with_libs "$stage" "$(command -v busybox)" /bin/busybox
	for a in $(/bin/busybox --list); do
		# A link called busybox would replace the binary itself: /init would loop.
		[ "$a" = busybox ] || ln -s busybox "$stage/bin/$a"
	done
	# The host's iproute2 and wireguard-tools win over busybox's applets (PATH order).
	copy_with_libs "$stage" "$(command -v ip)" /usr/sbin/ip
	copy_with_libs "$stage" "$(command -v wg)" /usr/bin/wg
	cp "$kdir"/modules/* "$stage/lib/modules/wgws/"
	write_init "$stage/init"
	rm -f "$kdir"/base-*.cpio
	mkcpio "$stage" "$base.new"
	mv "$base.new" "$base"
	rm -rf "$stage"
fi
flock -u 9
exec 9>&-

# This run's part: the script, the files, their libraries, a token for the marker.
token=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
stage=$tmp/run
mkdir -p "$stage/test/bin"
cp "$script" "$stage/test/script.sh"
echo "$token" >"$stage/test/token"
for f in "$@"; do copy_with_libs "$stage" "$f" "/test/bin/$(basename "$f")"; done
mkcpio "$stage" "$tmp/run.cpio"
# The kernel unpacks concatenated archives one after the other.
cat "$base" "$tmp/run.cpio" >"$tmp/initrd"

# --- boot ------------------------------------------------------------------------------
log=$tmp/console.log
start=$(date +%s%N)
timeout --kill-after=5 "$guest_timeout" qemu-system-x86_64 -accel tcg -cpu qemu64,+rdrand \
	-m "$guest_mem" -nographic -serial stdio -monitor none -nic none -no-reboot \
	-kernel "$kdir/vmlinuz" -initrd "$tmp/initrd" \
	-append "console=ttyS0 panic=-1 quiet" </dev/null >"$log" 2>&1 &
qpid=$!
qrc=0
wait "$qpid" || qrc=$?
qpid=""
secs=$(awk -v ns=$(($(date +%s%N) - start)) 'BEGIN { printf "%.1f", ns / 1e9 }')

tr -d '\r' <"$log" >"$log.txt"
# Markers may share a line with the firmware's escape codes or the script's last output.
marker=$(grep -ao "wgws-guest-exit $token [0-9]*\$" "$log.txt" | tail -n 1 || true)
if [ -n "$marker" ]; then
	# The script's output only: not the firmware's and kernel's noise around it.
	awk -v t="$token" 'index($0, "wgws-guest-start " t) { on = 1; next }
		on && (i = index($0, "wgws-guest-exit " t " ")) {
			if (i > 1) print substr($0, 1, i - 1)
			on = 0
		} on' "$log.txt"
else
	# Everything, to see where it stopped.
	cat "$log.txt"
	[ "$qrc" = 124 ] && say "guest timed out after $guest_timeout s"
	die "guest ended without an exit marker after $secs s (panic, hang or crash; qemu $qrc)"
fi
rc=${marker##* }
say "guest $kver: script exited $rc, $secs s"
exit "$rc"
