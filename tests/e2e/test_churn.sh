#!/bin/bash
# SPDX-License-Identifier: MIT
# New tunnels must not stall open ones (issue 10 §5). In one namespace: the relay, a udpload
# sink echoing as WireGuard, shim A carrying one busy tunnel (udpload ping, 2,000 packets/s)
# and shim B (--max-sessions 200) through which bursts of 200 new flows arrive: each burst
# opens 200 tunnels (TLS + upgrade) and, by shim B's LRU, closes the previous 200.
#  1. the busy tunnel for 30 s, with a burst every ~3 s (8 bursts) after 1.5 s alone. Its
#     packets are split by when they were sent (udpload ping --trace, tests/tools/rtt_split.py):
#     within 2 s of a burst's start (churn; a burst's work on the loop is over within ~0.3 s)
#     or before the first burst or 2 s or more after the last one began (quiet: the baseline).
#     Nothing lost, the kernel dropped nothing on the relay's UDP sockets, and the churn p99
#     within 3x the quiet p99, the issue's bar, in one of up to five attempts (each prints
#     its figures). Both periods are interleaved in one run, so what else this machine does
#     falls on both alike; it is still a guest on a shared host, and when the hypervisor takes
#     our CPUs (steal time, printed per attempt) every packet waits whatever the relay does:
#     an attempt under heavy steal can miss the bar, hence the retries (a relay that stalls
#     misses it in every attempt). Measured, first attempts: 1.3-2.5x in ten runs (2-92
#     ticks stolen). Each burst's work on the loop: adopting its 200 tunnels (a few per pass,
#     admit.c) and closing the 200 its client dropped, ~30 us each once the session's free
#     was deferred (handshake.c's SSL_free) and the EOF no longer answered with an alert.
#     (Before the handshake thread and the record drain: 100-300x; before SCHED_IDLE and the
#     pre-sized descriptor table: 1.6-16x; before the deferred frees: 1.4-2.7x, 4-8x in a CI
#     run with heavy steal.)
#     Then shim B's tunnels close: the relay's RSS must fall below its peak (malloc_trim).
#  2. 1,000 tunnels, then the relay restarted: how long until all are back (reported), and
#     the busy tunnel loses no more than what was sent while the relay was down.
# Timing under AddressSanitizer says little about the relay: the relay, the shim and udpload
# are built without sanitizers into the test's directory (as test_seccomp_plain.sh does).
# All clients share 127.0.0.1 here: the per-address admission limits are off for this test.
# With 2 CPUs, the relay and the busy tunnel's path (shim A, the echo, the ping) run on CPU 0
# and the churning clients (shim B, flows.py) on CPU 1: what is measured is the relay serving
# open tunnels while it does the bursts' TLS, not the machine running out of CPU for the
# clients' side of 200 handshakes.
set -eu
. "$(dirname "$0")/../e2e/lib.sh"
need_root
need_cmd make nm python3 taskset curl ss
CHURN_BAR=3 CHURN_ATTEMPTS=5 CHURN_DURING=2 CHURN_QUIET_AFTER=2

say "building the relay, the shim and udpload without sanitizers"
PLAIN=$T/plain
build_plain "$PLAIN" wgws-relay wgws-shim udpload
WGWS_BUILD=$PLAIN
UL=$WGWS_BUILD/udpload
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

NS=wgws-$$-churn
netns_add "$NS"
RUN=(ip netns exec "$NS")
run() { "${RUN[@]}" "$@"; }
NCPU=$(nproc)
ON_A=(taskset -c 0) ON_B=(taskset -c $((NCPU > 1 ? 1 : 0)))
run ip link set lo up
run sysctl -qw net.ipv4.ip_local_port_range="1024 65000"
# The busy tunnel's pings all come from 127.0.0.1:40000; the thousands of UDP sockets the
# flows, the shims and the relay bind to port 0 must never be given it (a ping that could not
# bind its port, EADDRINUSE, failed a CI run once).
run sysctl -qw net.ipv4.ip_local_reserved_ports=40000
ulimit -n "$(ulimit -Hn)"
certs_make
METRICS=127.0.0.1:9100
metric() {
	run curl -s -m 3 "http://$METRICS/metrics" |
		awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? "absent" : v) }'
}

relay_up() {
	spawn "$T/relay.$1.log" "${RUN[@]}" "${ON_A[@]}" "$WGWS_BUILD/wgws-relay" --listen 127.0.0.1:8443 \
		--cert "$CERT" --key "$KEY" --wg 127.0.0.1:51820 --metrics "$METRICS" \
		--max-conns 1500 --max-pending-per-ip 256 --rate-per-ip 0 --max-conns-per-ip 0
	RELAY_PID=$SPAWNED
	wait_for 10 sh -c "${RUN[*]} curl -s -m 1 http://$METRICS/healthz | grep -q ok" ||
		fail "relay did not start: $(tail -3 "$T/relay.$1.log")"
}
relay_up 1
# What the relay sets up for bursts (relay/main.c fit_fd_limit, relay/handshake.c): its soft
# open-file limit is what its limits need, not this shell's 'ulimit -Hn' (lws's close scans a
# table of that size), the kernel's descriptor table is already that big (growing it later,
# with two threads, waits for RCU on the loop), and the handshake thread runs under SCHED_IDLE.
# What it needs: 2 per tunnel (--max-conns 1500), 2 per pending slot (256: the slot's and an
# evicted handshake's the thread still holds), 72 spare (relay/main.c's SPARE_FDS).
need=$((2 * 1500 + 2 * 256 + 72)) hard=$(ulimit -Hn)
want=$((need < hard ? need : hard))
soft=$(awk '/^Max open files/ { print $4 }' "/proc/$RELAY_PID/limits")
fdsize=$(awk '/^FDSize:/ { print $2 }' "/proc/$RELAY_PID/status")
[ "$soft" = "$want" ] || fail "the relay's open-file limit is $soft, expected $want (hard $hard)"
[ "$fdsize" -ge "$soft" ] || fail "the relay's descriptor table holds $fdsize, its limit is $soft"
idle=0
for task in /proc/"$RELAY_PID"/task/*; do
	# field 41 of stat is the policy (SCHED_IDLE = 5); the name in field 2 has no spaces
	[ "$(awk '{ print $41 }' "$task/stat")" = 5 ] && idle=$((idle + 1))
done
[ "$idle" = 1 ] || fail "$idle of the relay's threads under SCHED_IDLE, expected 1 (the handshake thread)"
ok "open-file limit $soft (hard $(ulimit -Hn)), descriptor table $fdsize, handshake thread SCHED_IDLE"
spawn "$T/sink.log" "${RUN[@]}" "${ON_A[@]}" "$UL" sink --listen 127.0.0.1:51820 --echo --wg-shape -q
spawn "$T/shim-a.log" "${RUN[@]}" "${ON_A[@]}" "$WGWS_BUILD/wgws-shim" --listen 127.0.0.1:51900 \
	--relay wss://127.0.0.1:8443/wg --pin "$PIN" --no-proxy
spawn "$T/shim-b.log" "${RUN[@]}" "${ON_B[@]}" "$WGWS_BUILD/wgws-shim" --listen 127.0.0.1:51901 \
	--relay wss://127.0.0.1:8443/wg --pin "$PIN" --no-proxy --max-sessions 200
SHIM_B=$SPAWNED
for p in 51900 51901; do
	wait_for 5 sh -c "${RUN[*]} ss -Hulpn 'sport = :$p' | grep -q ." || fail "shim on $p did not bind"
done
# ping SECONDS: 2,000 packets/s through shim A; sets P50 P99 MAX LOST SENT.
ping_result() {
	local out
	out=$(grep '^result ' "$1") || fail "ping: no result: $(cat "$1")"
	P50=$(kv p50_us "$out") P99=$(kv p99_us "$out") MAX=$(kv max_us "$out")
	LOST=$(kv lost "$out") SENT=$(kv sent "$out")
}
ping_start() {
	spawn "$T/ping.$1.log" "${RUN[@]}" "${ON_A[@]}" "$UL" ping --to 127.0.0.1:51900 --from 127.0.0.1:40000 \
		--wg-shape --size 64 --rate 2000 --duration "$2" --timeout 500 -q
	PING_PID=$SPAWNED
}
# Warm up shim A's tunnel first: its own set-up is not what is measured. Every ping sends
# from 127.0.0.1:40000, so all go through that one tunnel (the shim opens one per source).
run "$UL" ping --to 127.0.0.1:51900 --from 127.0.0.1:40000 --wg-shape --count 20 --rate 100 \
	--timeout 2000 -q >/dev/null || fail "no echo through shim A"

# steal: CPU time the hypervisor gave other guests (/proc/stat's 8th figure, in ticks), which
# no program here can influence: printed beside each attempt.
steal() { awk '$1 == "cpu" { print $9 }' /proc/stat; }
# attempt N: the busy tunnel for 30 s with a burst of 200 new tunnels every ~3 s (8 bursts)
# after 1.5 s alone; its packets are split by when they were sent (tests/tools/rtt_split.py):
# within CHURN_DURING s of a burst's start (churn), or before the first burst or at least
# CHURN_QUIET_AFTER s after the last one began (quiet, the baseline). Both are measured in the
# same run, interleaved, so whatever else the machine does falls on both alike. Sets RATIO.
# Whatever the timing, nothing is lost and the kernel drops nothing on the relay's sockets.
attempt() {
	local st0 drops0 opened0 opened drops i split
	st0=$(steal)
	drops0=$(metric wgws_relay_udp_kernel_drops_total)
	opened0=$(metric wgws_relay_connections_total)
	: >"$T/bursts.$1"
	spawn "$T/ping.$1.log" "${RUN[@]}" "${ON_A[@]}" "$UL" ping --to 127.0.0.1:51900 \
		--from 127.0.0.1:40000 --wg-shape --size 64 --rate 2000 --duration 30 --timeout 500 \
		--trace "$T/trace.$1" -q
	PING_PID=$SPAWNED
	nap 1.5
	for i in $(seq 8); do
		spawn "$T/flows.$1.$i.log" "${RUN[@]}" "${ON_B[@]}" python3 "$WGWS_TOP/bench/flows.py" \
			--to 127.0.0.1:51901 --count 200 --every 1
		FLOWS=$SPAWNED
		wait_for 5 grep -q '^start ' "$T/flows.$1.$i.log" || fail "flows.py did not start"
		awk '$1 == "start" { print $2 }' "$T/flows.$1.$i.log" >>"$T/bursts.$1"
		nap 2
		stop_pid "$FLOWS"
		nap 1
	done
	wait "$PING_PID" || fail "ping exited $?"
	ping_result "$T/ping.$1.log"
	opened=$(($(metric wgws_relay_connections_total) - opened0))
	drops=$(($(metric wgws_relay_udp_kernel_drops_total) - drops0))
	[ "$opened" -ge 1400 ] || fail "only $opened tunnels opened by 8 bursts of 200"
	ok "30 s, $opened tunnels opened in 8 bursts: p50 $P50 µs, p99 $P99 µs, max $MAX µs, lost" \
		"$LOST of $SENT; UDP kernel drops $drops"
	[ "$LOST" = 0 ] || fail "the busy tunnel lost $LOST of $SENT"
	[ "$drops" = 0 ] || fail "the kernel dropped $drops datagrams on the relay's UDP sockets"
	split=$("$PY" "$TOOLS/rtt_split.py" "$T/trace.$1" "$T/bursts.$1" --during "$CHURN_DURING" \
		--quiet-after "$CHURN_QUIET_AFTER") || fail "rtt_split: $split"
	RATIO=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^p99_us=/) { sub(/^p99_us=/, "", $i); p[++n] = $i } }
		END { printf "%.1f", p[1] / p[2] }' <<<"$split")
	say "attempt $1: $split"
	say "attempt $1: p99 during the bursts ${RATIO}x the quiet one's; $(($(steal) - st0)) ticks" \
		"of CPU stolen by the hypervisor meanwhile; the relay's longest loop pass $(metric \
		wgws_relay_loop_pass_max_seconds) s"
}

say "1. the busy tunnel with a burst of 200 new tunnels every ~3 s"
r0=$(rss_kb "$RELAY_PID")
ratios= best=
for n in $(seq "$CHURN_ATTEMPTS"); do
	attempt "$n"
	ratios="$ratios ${RATIO}x"
	best=$(awk -v r="$RATIO" -v b="${best:-$RATIO}" 'BEGIN { print (r < b ? r : b) }')
	awk -v r="$RATIO" -v m="$CHURN_BAR" 'BEGIN { exit !(r <= m) }' && break
done
peak=$(rss_kb "$RELAY_PID")
awk -v r="$best" -v m="$CHURN_BAR" 'BEGIN { exit !(r <= m) }' ||
	fail "p99 during the bursts above ${CHURN_BAR}x the quiet one's in $CHURN_ATTEMPTS attempts:$ratios"
ok "p99 during the bursts within ${CHURN_BAR}x the quiet one's (attempts:$ratios)"
# Shim B's 200 tunnels close: past RELAY_TRIM_AFTER (64) closed since the peak, the sweep
# gives the freed heap back (malloc_trim).
stop_pid "$SHIM_B"
down() { [ "$(metric wgws_relay_connections_active)" = 1 ]; }
wait_for 10 down || fail "shim B's tunnels still open: $(metric wgws_relay_connections_active)"
nap 2
rss=$(rss_kb "$RELAY_PID")
[ "$rss" -lt "$peak" ] || fail "relay RSS $rss KiB with one tunnel left, not below its $peak KiB peak"
ok "relay RSS: $r0 KiB before, $peak KiB with shim B's 200 tunnels, $rss KiB once they closed"

say "2. 1,000 tunnels, then the relay restarted"
spawn "$T/shim-c.log" "${RUN[@]}" "${ON_B[@]}" "$WGWS_BUILD/wgws-shim" --listen 127.0.0.1:51902 \
	--relay wss://127.0.0.1:8443/wg --pin "$PIN" --no-proxy --max-sessions 1100
wait_for 5 sh -c "${RUN[*]} ss -Hulpn 'sport = :51902' | grep -q ." || fail "shim C did not bind"
spawn "$T/flows.k.log" "${RUN[@]}" "${ON_B[@]}" python3 "$WGWS_TOP/bench/flows.py" --to 127.0.0.1:51902 \
	--count 1000 --every 1
FLOWS=$SPAWNED
up() { [ "$(metric wgws_relay_connections_active)" -ge "$1" ]; }
wait_for 60 up 1001 || fail "only $(metric wgws_relay_connections_active) of 1,001 tunnels up"
ok "1,001 tunnels up"
ping_start restart 12
nap 2
t_stop=$(now_ms)
stop_pid "$RELAY_PID" TERM 10
t0=$(now_ms)
relay_up 2
wait_for 60 up 1001 || fail "after the restart only $(metric wgws_relay_connections_active) of 1,001 back"
back=$(($(now_ms) - t0))
wait "$PING_PID" || fail "ping exited $?"
ping_result "$T/ping.restart.log"
ok "relay restart: all 1,001 tunnels back $back ms after the new relay started; busy tunnel:" \
	"lost $LOST of $SENT (the restart itself), p50 $P50 µs, p99 $P99 µs, max $MAX µs"
# It may lose what was sent from the stop until every tunnel was back (2,000/s), and the
# ping's 500 ms time-out on either side of that; nothing after.
max_lost=$((2 * (t0 + back - t_stop) + 2000))
[ "$LOST" -le "$max_lost" ] && [ "$LOST" -lt "$SENT" ] ||
	fail "the busy tunnel lost $LOST of $SENT, more than the $max_lost the restart explains"
# And once all are back, it carries everything again (the bound above alone grows with the
# restart's length).
ping_start after 2
wait "$PING_PID" || fail "ping exited $?"
ping_result "$T/ping.after.log"
[ "$LOST" = 0 ] || fail "after the restart the busy tunnel still lost $LOST of $SENT"
ok "after the restart: the busy tunnel lost 0 of $SENT (p99 $P99 µs)"
stop_pid "$FLOWS"
