#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/scale.sh: step 4 of make bench (bench/run.sh), many tunnels through one relay.
#
# For each size N (1,000, then as many as the open-file limit allows, up to 10,000; QUICK:
# 1,000 only) a fresh wgws-relay and enough wgws-shims (4,096 sessions each) start in a private
# namespace; `udpload sink --echo --wg-shape` listens at the relay's --wg address. Then:
#   1. baseline: `udpload ping --rate 10000` through one tunnel, alone (RTT p50/p99/p99.9);
#   2. bench/flows.py opens N UDP flows, each its own tunnel (one 64 B datagram now, one every
#      10 s after), as fast as it can: the set-up rate is N / (time from the first datagram to
#      the relay's wgws_relay_connections_active reaching N + 1), sampled every 0.2 s;
#   3. relay RSS per tunnel = (VmRSS with the N tunnels - VmRSS before them) / N (the shims'
#      too, for information); relay CPU per tunnel set up (utime + stime over the set-up);
#   4. the same ping through one more tunnel while the N others are open and idle.
# The relay needs two descriptors per tunnel (TCP, UDP); root here cannot raise the hard
# RLIMIT_NOFILE (no CAP_SYS_RESOURCE in this VM), so the largest N is what fits under it.
#
# Writes $WGWS_BENCH_OUT/step4.md, goals-4.md, scale-N.dat (t_s tunnels) and scale-setup.png.
# Exit 77 without root; non-zero when a tunnel did not carry traffic.
set -eu
if [ "$(id -u)" != 0 ] || [ "${WGWS_BENCH_USERNS:-0}" = 1 ]; then
	echo "skipped: needs root"
	exit 77
fi
. "$(dirname "$0")/../tests/e2e/lib.sh"
need_bins wgws-relay wgws-shim udpload
UL=$WGWS_BUILD/udpload
OUT=${WGWS_BENCH_OUT:-$WGWS_TOP/bench/results}
QUICK=${QUICK:-0}
T0=${WGWS_BENCH_T0:-$(date +%s)}
S0=$(date +%s)
mkdir -p "$OUT"
progress() { printf 'bench [%3ss] %s\n' "$(($(date +%s) - T0))" "step 4/5: $*" >&2; }
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }
fmt() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<"$1"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

HARD=$(ulimit -Hn)
ulimit -n "$HARD"
PENDING=256 # the relay's default; every flow comes from 127.0.0.1: per-address limits off
# two descriptors per tunnel, the pending ones, the relay's spare 64 (relay/main.c)
MAXN=$(((HARD - PENDING - 64 - 16) / 2 / 100 * 100))
[ "$MAXN" -le 10000 ] || MAXN=10000
if [ "$QUICK" = 1 ]; then
	SIZES=1000 PING_DUR=2
else
	SIZES="1000 $MAXN" PING_DUR=3
fi
[ "$MAXN" -ge 1000 ] || fail "open-file limit $HARD: not even 1,000 tunnels fit"

NS=wgws-$$-scale
netns_add "$NS"
RUN=(ip netns exec "$NS")
run() { "${RUN[@]}" "$@"; }
run ip link set lo up
# 10,000 TCP connections and 20,000 UDP sockets on 127.0.0.1 need the ephemeral ports
run sysctl -qw net.ipv4.ip_local_port_range="1024 65000"
certs_make

RELAY_PORT=8443 WG=51820 METRICS=127.0.0.1:9100
# up N: a fresh relay and ceil((N + 1) / 4000) shims (ports 51900...), and the echo sink.
up() {
	local n=$1 i
	SHIM_PIDS=() SHIM_PORTS=()
	spawn "$T/relay-$n.log" "${RUN[@]}" "$WGWS_BUILD/wgws-relay" --listen "127.0.0.1:$RELAY_PORT" \
		--cert "$CERT" --key "$KEY" --wg "127.0.0.1:$WG" --idle-timeout 0 \
		--max-conns $((n + 10)) --max-pending "$PENDING" --metrics "$METRICS" \
		--max-conns-per-ip 0 --max-pending-per-ip "$PENDING" --rate-per-ip 0
	RELAY_PID=$SPAWNED
	for ((i = 0; i < (n + 4000) / 4000; i++)); do
		spawn "$T/shim-$n-$i.log" "${RUN[@]}" "$WGWS_BUILD/wgws-shim" --max-sessions 4096 \
			--listen "127.0.0.1:$((51900 + i))" --relay "wss://127.0.0.1:$RELAY_PORT/wg" \
			--pin "$PIN" --no-proxy
		SHIM_PIDS+=("$SPAWNED") SHIM_PORTS+=($((51900 + i)))
	done
	spawn "$T/sink-$n.log" "${RUN[@]}" "$UL" sink --listen "127.0.0.1:$WG" --echo --wg-shape -q
	SINK_PID=$SPAWNED
	wait_for 10 sh -c "${RUN[*]} ss -Hltn 'sport = :$RELAY_PORT' | grep -q ." ||
		fail "relay did not listen: $(oneline "$(cat "$T/relay-$n.log")")"
	grep -q "limit" "$T/relay-$n.log" && fail "relay: $(oneline "$(cat "$T/relay-$n.log")")"
	for i in "${SHIM_PORTS[@]}"; do
		wait_for 5 sh -c "${RUN[*]} ss -Hulpn 'sport = :$i' | grep -q ." ||
			fail "shim on $i did not bind"
	done
}
down() {
	local p
	stop_pid "${FLOWS_PID:-}" TERM 5
	FLOWS_PID=""
	for p in "${SHIM_PIDS[@]}"; do stop_pid "$p" TERM 5; done
	stop_pid "$RELAY_PID" TERM 10
	stop_pid "$SINK_PID" TERM 5
}
active() { run curl -s "http://$METRICS/metrics" | awk '$1 == "wgws_relay_connections_active" { print $2 }'; }
# busy LABEL: the ping through a tunnel of its own; sets P_* and appends to $T/ping.
busy() {
	local out
	out=$(run "$UL" ping --to "127.0.0.1:${SHIM_PORTS[0]}" --wg-shape --size 64 --rate 10000 \
		--duration "$PING_DUR" --timeout 200 -q) || fail "ping exited $?: $(oneline "$out")"
	out=$(grep '^result ' <<<"$out")
	P50=$(kv p50_us "$out") P99=$(kv p99_us "$out") P999=$(kv p999_us "$out")
	PLOST=$(kv lost "$out") PSENT=$(kv sent "$out")
	[ "$(kv received "$out")" -gt 0 ] || fail "$1: no echo came back through the tunnel"
	progress "$1: ping 10,000/s p50 $P50 µs, p99 $P99 µs, p99.9 $P999 µs, lost $PLOST of $PSENT"
}

: >"$T/rows"
for n in $SIZES; do
	progress "$n tunnels: relay + $(((n + 4000) / 4000)) shim(s)"
	up "$n"
	busy "alone (baseline, $n-tunnel run)"
	a_p50=$P50 a_p99=$P99 a_p999=$P999 a_lost="$PLOST of $PSENT"
	sleep 0.5
	base_active=$(active)
	r0=$(rss_kb "$RELAY_PID") c0=$(cpu_ticks "$RELAY_PID") s0=0
	for p in "${SHIM_PIDS[@]}"; do s0=$((s0 + $(rss_kb "$p"))); done
	ports=$(IFS=,; echo "${SHIM_PORTS[*]}")
	t_start=$(date +%s%N)
	spawn "$T/flows-$n.log" "${RUN[@]}" python3 "$WGWS_TOP/bench/flows.py" --to "127.0.0.1:$ports" \
		--count "$n"
	FLOWS_PID=$SPAWNED
	want=$((base_active + n))
	: >"$OUT/scale-$n.dat"
	got=0 elapsed=0
	while :; do
		got=$(active)
		elapsed=$(awk -v a="$t_start" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
		echo "$elapsed $((got - base_active))" >>"$OUT/scale-$n.dat"
		[ "$got" -lt "$want" ] || break
		awk -v e="$elapsed" 'BEGIN { exit !(e > 180) }' && break
		alive "$FLOWS_PID" || fail "flows.py died: $(cat "$T/flows-$n.log")"
		sleep 0.2
	done
	[ "$got" -ge "$want" ] || fail "$n tunnels: only $((got - base_active)) up after $elapsed s"
	c1=$(cpu_ticks "$RELAY_PID")
	rate=$(awk -v n="$n" -v e="$elapsed" 'BEGIN { printf "%.0f", n / e }')
	cpu_ms=$(awk -v d=$((c1 - c0)) -v t="$TCK" -v n="$n" 'BEGIN { printf "%.2f", 1000 * d / t / n }')
	progress "$n tunnels up in $elapsed s ($rate/s; relay CPU $cpu_ms ms per tunnel)"
	sleep 2 # let the set-up's garbage settle
	r1=$(rss_kb "$RELAY_PID") s1=0
	for p in "${SHIM_PIDS[@]}"; do s1=$((s1 + $(rss_kb "$p"))); done
	per=$(awk -v a="$r0" -v b="$r1" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }')
	sper=$(awk -v a="$s0" -v b="$s1" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }')
	progress "$n tunnels: relay RSS $((r0 / 1024)) -> $((r1 / 1024)) MiB = $per KiB per tunnel (shims: $sper KiB per session)"
	busy "one busy tunnel, $n idle"
	echo "$n $r0 $r1 $per $sper $elapsed $rate $cpu_ms $a_p50 $a_p99 $a_p999 $P50 $P99 $P999 ${a_lost// /_} ${PLOST}_of_$PSENT" >>"$T/rows"
	down
done

# --- results ------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
{
	echo "## 4. Scale: many tunnels through one relay"
	echo
	echo "| figure | measured | baseline | ratio | command |"
	echo "|---|---|---|---|---|"
	while read -r n r0 r1 per sper el rate cpu ap50 ap99 ap999 p50 p99 p999 alost lost; do
		N=$(fmt "$n")
		echo "| $N tunnels: relay RSS per tunnel (KiB) | $per | 64 (the goal) | $(ratio "$per" 64) | VmRSS $((r0 / 1024)) MiB before, $((r1 / 1024)) MiB with them |"
		echo "| $N tunnels: shim RSS per session (KiB, for information) | $sper | | | the shims' VmRSS |"
		echo "| $N tunnels: set-up rate, TLS + upgrade + first datagram (tunnels/s) | $(fmt "$rate") | | | \`bench/flows.py --count $n\` as fast as it goes; all up in $el s |"
		echo "| $N tunnels: relay CPU per tunnel set up (ms) | $cpu | | | utime + stime over the set-up |"
		echo "| $N tunnels: busy tunnel p50 RTT at 10,000/s (µs) | $p50 | $ap50 (alone) | $(ratio "$p50" "$ap50") | \`udpload ping --wg-shape --rate 10000 --duration $PING_DUR\` |"
		echo "| $N tunnels: busy tunnel p99 RTT (µs) | $p99 | $ap99 (alone) | $(ratio "$p99" "$ap99") | |"
		echo "| $N tunnels: busy tunnel p99.9 RTT (µs) | $p999 | $ap999 (alone) | $(ratio "$p999" "$ap999") | |"
		echo "| $N tunnels: busy tunnel echoes lost | ${lost//_/ } | ${alost//_/ } (alone) | | |"
	done <"$T/rows"
	echo
	echo "Each size starts a fresh relay (\`--max-conns N+10 --max-pending $PENDING --idle-timeout 0\`)"
	echo "and $(((MAXN + 4000) / 4000)) shim(s) at most (\`--max-sessions 4096\` each), in a private namespace; the"
	echo "idle tunnels each got one datagram and one every 10 s after. The open-file hard limit"
	echo "here is $HARD for root (no CAP_SYS_RESOURCE), and the relay holds two descriptors per"
	echo "tunnel: $(fmt "$MAXN") is the most that fits$([ "$MAXN" -lt 10000 ] && echo ", not 10,000")."
	[ "$QUICK" = 1 ] && echo "QUICK: 1,000 tunnels only."
	echo
} >"$OUT/step4.md"
last=$(tail -n 1 "$T/rows")
read -r n _ _ per _ <<<"$last"
v=$(awk -v p="$per" 'BEGIN { if (p < 64) print "met"; else printf "missed by %.1f KiB per tunnel", p - 64 }')
note=""
[ "$n" -lt 10000 ] && note=" ($(fmt "$n") tunnels: 10,000 do not fit under this machine's open-file limit of $HARD)"
echo "| 10,000 tunnels on one relay with < 64 KiB RSS each | $per KiB per tunnel at $(fmt "$n")$note | $v |" >"$OUT/goals-4.md"

if command -v gnuplot >/dev/null; then
	plots=""
	for n in $SIZES; do
		plots="$plots${plots:+, }\"$OUT/scale-$n.dat\" using 1:2 with lines lw 2 title \"$(fmt "$n") tunnels\""
	done
	gnuplot <<EOF || fail "gnuplot failed"
set terminal pngcairo size 900,560 font ",10"
set output "$OUT/scale-setup.png"
set title "Tunnels open on one relay after the flows start (bench/scale.sh)"
set xlabel "seconds since the first datagram"
set ylabel "tunnels open (wgws_relay_connections_active)" noenhanced
set key left top
set grid
plot $plots
EOF
fi
progress "done in $(($(date +%s) - S0)) s"
