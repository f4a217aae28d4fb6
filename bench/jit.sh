#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/jit.sh [JIT_BENCH_ARGS...]: run jit_bench against a wireguard-go device made for it, in
# a network namespace of its own, and print its table. Root only (wireguard-go, namespaces).
#
# The device gets a fresh private key and nothing else; jit_bench installs and removes its own
# peers. The database is kept in $WGWS_BENCH_CACHE (default $WGWS_BUILD/bench-cache) as
# bench-peers-N.db and reused by the next run with the same number of peers (bench/prov.sh
# uses copies of the same files); the table is also written to
# $WGWS_BUILD/bench/jit-results.txt. Every process started here is stopped by its pid, and
# the namespace, the UAPI socket and the temporary directory are removed, on success, failure
# or interruption alike.
#   WGWS_BUILD=build bench/jit.sh -q        (or: make jit-bench JIT_BENCH_ARGS=-q)
# WGWS_BENCH_WRAP, when set, is put before the binary, e.g. "perf record -g -o /tmp/jit.perf".
set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${WGWS_BUILD:-$TOP/build}
BIN=$BUILD/jit_bench
CACHE=${WGWS_BENCH_CACHE:-$BUILD/bench-cache}
RESULTS=$BUILD/bench/jit-results.txt
NS=wgws-bench-$$
IF=wgb$$
SOCK=/var/run/wireguard/$IF.sock

PIDS=()
NS_MADE=0
T=""

say() { printf 'jit.sh: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}
# wg_die MSG: die with wireguard-go's output.
wg_die() {
	[ ! -s "$T/wireguard-go.log" ] || sed 's/^/  wireguard-go: /' "$T/wireguard-go.log" >&2
	die "$@"
}
alive() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

cleanup() {
	local rc=$? pid i
	trap - EXIT INT TERM
	set +e
	for pid in "${PIDS[@]}"; do alive "$pid" && kill -TERM "$pid" 2>/dev/null; done
	for ((i = 0; i < 100; i++)); do
		left=0
		for pid in "${PIDS[@]}"; do alive "$pid" && left=1; done
		[ $left = 0 ] && break
		sleep 0.05
	done
	for pid in "${PIDS[@]}"; do
		alive "$pid" && kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	if [ "$NS_MADE" = 1 ]; then
		# Whatever still runs in our namespace was started from here: by pid.
		for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
		ip netns del "$NS" 2>/dev/null
	fi
	rm -f "$SOCK"
	[ -z "$T" ] || rm -rf "$T"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$(id -u)" = 0 ] || die "needs root (a namespace and wireguard-go)"
for c in ip wg wireguard-go; do
	command -v "$c" >/dev/null 2>&1 || die "needs $c (make deps)"
done
[ -x "$BIN" ] || die "$BIN is not built (make B=$BUILD $BIN)"
T=$(mktemp -d /tmp/wgws-jit-bench.XXXXXX)
mkdir -p "$CACHE" "$(dirname "$RESULTS")"
# Stores of an older jit_bench (another address pool, which the daemon could not open).
for f in "$CACHE"/jit-bench-*.db; do
	[ -e "$f" ] || continue
	say "removing $f (an older format)"
	rm -f "$f" "$f-wal" "$f-shm"
done

say "namespace $NS, wireguard-go device $IF"
ip netns add "$NS"
NS_MADE=1
ip -n "$NS" link set lo up
ip netns exec "$NS" wireguard-go -f "$IF" >"$T/wireguard-go.log" 2>&1 </dev/null &
PIDS+=("$!")
for ((i = 0; i < 100; i++)); do
	[ -S "$SOCK" ] && break
	alive "${PIDS[0]}" || wg_die "wireguard-go exited"
	sleep 0.1
done
[ -S "$SOCK" ] || wg_die "wireguard-go did not create $SOCK"
(umask 077 && wg genkey >"$T/key")
ip netns exec "$NS" wg set "$IF" private-key "$T/key" listen-port 51820
ip -n "$NS" link set "$IF" up

# In the background and waited for, so that an interrupt reaches the trap at once.
read -ra WRAP <<<"${WGWS_BENCH_WRAP:-}"
ip netns exec "$NS" "${WRAP[@]}" "$BIN" -i "$IF" -d "$CACHE" "$@" >"$T/out" </dev/null &
PIDS+=("$!")
rc=0
wait "${PIDS[1]}" || rc=$?
[ "$rc" = 0 ] || die "jit_bench failed (exit status $rc)"
cp "$T/out" "$RESULTS"
cat "$T/out"
say "table also in $RESULTS"
