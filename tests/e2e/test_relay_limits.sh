#!/bin/bash
# SPDX-License-Identifier: MIT
# The relay's limits and its resilience, without WireGuard (a UDP echo stands in for it):
#  - --max-pending caps connections still in TLS/upgrade (the oldest make room), and the count
#    returns to 0 when the 3 s first-byte deadline cuts silent ones;
#  - --max-conns answers 503 to one tunnel too many;
#  - --idle-timeout closes a tunnel that sends only zero-length keepalive records (1000);
#  - WireGuard not listening (ICMP port unreachable) costs datagrams, never the tunnel: once
#    it is back, the same WebSocket connection carries traffic again (regression: the UDP
#    socket used to be connected, lws closed it on POLLERR, and its fd number was reused);
#  - datagrams the kernel drops on a tunnel's full UDP socket are counted (SO_RXQ_OVFL);
#  - --keepalive pings a tunnel that is busy with data too (and keeps it when it answers).
# Root: in a private namespace; otherwise on free loopback ports.
set -eu
. "$(dirname "$0")/lib.sh"
need_cmd curl
need_bins wgws-relay

loopback_sandbox lim
URL=wss://127.0.0.1:$PORT/wg
metric() {
	run curl -s -m 3 "http://127.0.0.1:$MPORT/metrics" |
		awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? "absent" : v) }'
}
# A well-formed 64-byte WireGuard data record (u16 length + type 4 + marker + zeros).
REC=0040$(printf '04000000deadbeef%0112d' 0)
start_sink() {
	SINK_LOG=$T/udpsink.$1.log
	spawn "$SINK_LOG" "${RUN[@]}" "$PY" "$TOOLS/udpsink.py" "127.0.0.1:$UPORT" --echo
	SINK_PID=$SPAWNED
	wait_for 5 grep -q listening "$SINK_LOG" || fail "udpsink did not start: $(cat "$SINK_LOG")"
}

certs_make
start_sink 1
RELAY_LOG=$T/relay.log
spawn "$RELAY_LOG" "${RUN[@]}" "$WGWS_BUILD/wgws-relay" --listen "127.0.0.1:$PORT" \
	--cert "$CERT" --key "$KEY" --metrics "127.0.0.1:$MPORT" --wg "127.0.0.1:$UPORT" \
	--max-pending 3 --max-conns 2 --header-timeout 2 --idle-timeout 2
RELAY_PID=$SPAWNED
wait_for 10 sh -c "[ \"\$(${RUN[*]} curl -sk -m 2 -o /dev/null -w '%{http_code}' \
	https://127.0.0.1:$PORT/healthz)\" = 200 ]" || fail "relay did not start"
ok "relay up with --max-pending 3 --max-conns 2 --header-timeout 2 --idle-timeout 2"

say "--max-pending: 6 silent TCP connections"
HOLD_LOG=$T/hold.log
spawn "$HOLD_LOG" "${RUN[@]}" "$PY" -c "
import socket, time
s = [socket.create_connection(('127.0.0.1', $PORT)) for i in range(6)]
time.sleep(6)"
HOLD_PID=$SPAWNED
wait_for 5 sh -c "[ \"\$(${RUN[*]} curl -s -m 2 http://127.0.0.1:$MPORT/metrics |
	awk '\$1 == \"wgws_relay_connections_pending\" { print \$2 }')\" = 3 ]" ||
	fail "pending connections: expected 3, got $(metric wgws_relay_connections_pending)"
ev=$(metric 'wgws_relay_connections_evicted_total{reason="full"}')
[ "$ev" -ge 3 ] || fail "expected at least 3 evictions for --max-pending, got $ev"
ok "pending capped at 3, the $ev oldest closed to make room"
wait_for 6 sh -c "[ \"\$(${RUN[*]} curl -s -m 2 http://127.0.0.1:$MPORT/metrics |
	awk '\$1 == \"wgws_relay_connections_pending\" { print \$2 }')\" = 0 ]" ||
	fail "pending did not return to 0 after the first-byte deadline: $(metric wgws_relay_connections_pending)"
ev=$(metric 'wgws_relay_connections_evicted_total{reason="silent"}')
[ "$ev" = 3 ] || fail "expected 3 closed for silence, got $ev"
ok "silent for 3 s: closed, pending back to 0"
stop_pid "$HOLD_PID"

say "--max-conns 2: a third tunnel"
for i in 1 2; do
	spawn "$T/t$i.log" "${RUN[@]}" "$PY" "$TOOLS/wsraw.py" --wait 4 -q "$URL" "$REC"
done
wait_for 5 sh -c "[ \"\$(${RUN[*]} curl -s -m 2 http://127.0.0.1:$MPORT/metrics |
	awk '\$1 == \"wgws_relay_connections_active\" { print \$2 }')\" = 2 ]" ||
	fail "two tunnels did not open: active $(metric wgws_relay_connections_active)"
out=$(run "$PY" "$TOOLS/wsraw.py" --wait 1 "$URL" 2>&1) || true
grep -qx "status 503" <<<"$out" || fail "a third tunnel: expected 503: $(oneline "$out")"
ok "third tunnel refused with 503"

say "--idle-timeout 2: a tunnel that sends only zero-length records"
wait_for 8 sh -c "[ \"\$(${RUN[*]} curl -s -m 2 http://127.0.0.1:$MPORT/metrics |
	awk '\$1 == \"wgws_relay_connections_active\" { print \$2 }')\" = 0 ]" ||
	fail "earlier tunnels still open"
# Keepalives every 0.5 s up to 2 s, idle timeout 2 s, idle sweep every 1 s: if they do not
# count, the close comes 2..3 s after the upgrade; if they reset the clock, after 4 s at least.
IDLE_LOG=$T/idle.log
spawn "$IDLE_LOG" "${RUN[@]}" "$PY" "$TOOLS/wsraw.py" --delay 0.5 --wait 6 "$URL" 0000 0000 0000 0000
wait_for 5 grep -qx "status 101" "$IDLE_LOG" || fail "no upgrade: $(cat "$IDLE_LOG")"
t0=$(now_ms)
wait_for 8 grep -qx "close 1000" "$IDLE_LOG" || fail "keepalive-only tunnel not closed as idle: $(cat "$IDLE_LOG")"
took=$(($(now_ms) - t0))
[ "$took" -lt 3600 ] || fail "idle close took $took ms after the upgrade: keepalive records reset the idle clock"
[ "$(metric 'wgws_relay_connections_closed_total{reason="idle"}')" -ge 1 ] ||
	fail "idle close not counted"
ok "closed with 1000 $took ms after the upgrade: keepalive records do not count as traffic"

say "WireGuard not listening, then back: the same tunnel carries traffic again"
stop_pid "$SINK_PID"
WS_LOG=$T/ws-down.log
# Records at 1 s, 2 s, ... 5 s; WireGuard (the echo) is down for the first two.
spawn "$WS_LOG" "${RUN[@]}" "$PY" "$TOOLS/wsraw.py" --delay 1 --wait 2 "$URL" "$REC" "$REC" \
	"$REC" "$REC" "$REC"
WS_PID=$SPAWNED
nap 2.5
start_sink 2
wait_for 8 sh -c "! kill -0 $WS_PID 2>/dev/null" || fail "wsraw did not finish"
grep -qx "status 101" "$WS_LOG" || fail "no upgrade: $(cat "$WS_LOG")"
if grep -q "^close 1011" "$WS_LOG"; then
	fail "the tunnel was closed (1011) because WireGuard was briefly not listening"
fi
echoes=$(grep -c "^recv binary 66" "$WS_LOG" || true)
[ "$echoes" -ge 2 ] || fail "after WireGuard came back, expected >= 2 echoes on the same connection, got $echoes: $(cat "$WS_LOG")"
ok "tunnel survived; $echoes datagrams echoed once WireGuard was back"
alive "$RELAY_PID" || fail "relay died"

say "the kernel's drops on a tunnel's UDP socket are counted"
# The relay stopped (SIGSTOP) while 3,000 datagrams arrive at its tunnel's UDP socket: what
# does not fit in the socket's buffer the kernel drops, and says so (SO_RXQ_OVFL).
DROP_LOG=$T/ws-drop.log
spawn "$DROP_LOG" "${RUN[@]}" "$PY" "$TOOLS/wsraw.py" --wait 8 -q "$URL" "$REC"
DROP_WS=$SPAWNED
wait_for 5 grep -qx "status 101" "$DROP_LOG" || fail "no upgrade: $(cat "$DROP_LOG")"
uport=$(run ss -Hulnp | awk -v p="pid=$RELAY_PID," 'index($0, p) { split($4, a, ":"); print a[2]; exit }')
[ -n "$uport" ] || fail "no UDP socket of the relay's"
k0=$(metric wgws_relay_udp_kernel_drops_total)
kill -STOP "$RELAY_PID"
run "$PY" -c "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(3000): s.sendto(b'x' * 1000, ('127.0.0.1', $uport))"
kill -CONT "$RELAY_PID"
# The count comes with the next datagram the relay reads on that socket: one more, from
# WireGuard's side (the echo of a record).
run "$PY" -c "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b'x', ('127.0.0.1', $uport))"
wait_for 3 sh -c "[ \"\$(${RUN[*]} curl -s -m 2 http://127.0.0.1:$MPORT/metrics |
	awk '\$1 == \"wgws_relay_udp_kernel_drops_total\" { print \$2 }')\" -gt $k0 ]" ||
	fail "no kernel drop counted: $(metric wgws_relay_udp_kernel_drops_total)"
ok "$(($(metric wgws_relay_udp_kernel_drops_total) - k0)) of 3,000 datagrams dropped by the kernel while the relay was stopped, counted"
stop_pid "$DROP_WS"

say "--keepalive 1: a tunnel busy with datagrams is pinged all the same"
# The relay no longer counts data as proof of life (lws_validity_confirmed re-sorts lws's
# timer list, O(tunnels) per call): every tunnel gets a ping per --keepalive, busy or not.
KPORT=$(free_port stream)
spawn "$T/relay-k.log" "${RUN[@]}" "$WGWS_BUILD/wgws-relay" --listen "127.0.0.1:$KPORT" \
	--cert "$CERT" --key "$KEY" --wg "127.0.0.1:$UPORT" --keepalive 1
RK_PID=$SPAWNED
wait_for 10 sh -c "[ \"\$(${RUN[*]} curl -sk -m 2 -o /dev/null -w '%{http_code}' \
	https://127.0.0.1:$KPORT/healthz)\" = 200 ]" || fail "relay (--keepalive 1) did not start"
# 12 records 0.25 s apart (3 s of traffic), then 1.5 s of reading
run "$PY" "$TOOLS/wsraw.py" --delay 0.25 --wait 1.5 "wss://127.0.0.1:$KPORT/wg" \
	$(for i in $(seq 12); do printf '%s ' "$REC"; done) >"$T/ws-k.log" 2>&1 || true
grep -qx "status 101" "$T/ws-k.log" || fail "no upgrade: $(cat "$T/ws-k.log")"
pings=$(grep -cx ping "$T/ws-k.log" || true)
[ "$pings" -ge 2 ] || fail "--keepalive 1, 4.5 s with traffic: expected >= 2 pings, got $pings: $(oneline "$(cat "$T/ws-k.log")")"
grep -q "^close" "$T/ws-k.log" && fail "the answered tunnel was closed: $(oneline "$(cat "$T/ws-k.log")")"
ok "busy tunnel pinged $pings times in 4.5 s at --keepalive 1, and kept (pongs answered)"
alive "$RK_PID" || fail "relay (--keepalive 1) died"
echo "PASS test_relay_limits"
