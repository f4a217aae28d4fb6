#!/bin/bash
# SPDX-License-Identifier: MIT
# The relay's side of JIT (--jit-socket, issue 4), without WireGuard or a real provisioner:
# tests/tools/fakeprov.py answers each request with what the initiation's sender index asks
# for (verdict, delay, silence, garbage) and logs what it got; udpsink.py stands in for
# WireGuard. Shown, in order:
#  - no provisioner at start: initiations forwarded at once, "cannot connect" logged once;
#    the relay connects when it appears (from the config file's JitSocket, as --user);
#  - installed / live / error forwarded; unknown / refused never reach WireGuard (counted);
#  - the source address in the request is the one WireGuard sees the datagram come from;
#  - newest wins: two initiations before the answer, only the second arrives, once;
#  - data records (even in the same message, behind a held initiation) are not held; a
#    silent provisioner costs 3 s, then the datagram goes; the late answer is ignored; a
#    closed tunnel's hold is discarded;
#  - the provisioner killed while holding: held ones forwarded at once; reconnect; asking
#    resumes;
#  - initiations replaced faster than answered for 3 s: dropped (jit_superseded), not forwarded;
#  - garbage answers close the channel (held ones forwarded), it reconnects, tunnels live on.
# Root: in a private namespace (the relay drops to wgws); otherwise on free loopback ports.
set -eu
. "$(dirname "$0")/lib.sh"
need_cmd curl
need_bins wgws-relay

loopback_sandbox jit
URL=wss://127.0.0.1:$PORT/wg
JSOCK=$T/jit.sock

# metric NAME: its value from /metrics ("absent" when the line is missing).
metric() {
	run curl -s -m 3 "http://127.0.0.1:$MPORT/metrics" |
		awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? "absent" : v) }'
}
m_is() { [ "$(metric "$1")" = "$2" ]; }
# delta NAME BEFORE WANT: NAME grew by exactly WANT since BEFORE.
delta() { expect "$1 (grew by)" $(($(metric "$1") - $2)) "$3"; }
# init_hex VERDICT DELAY KIND UNIQ (one hex byte each): a 148-byte initiation record whose
# sender index tells fakeprov what to do (see fakeprov.py); init_mark: the same 8 bytes.
init_hex() { rec_hex 1 148 "$1$2$3$4"; }
init_mark() { echo "01000000$1$2$3$4"; }
data_hex() { rec_hex 4 64 "d0d0d0$1"; }

start_prov() {
	PROV_N=$((${PROV_N:-0} + 1))
	PROV_LOG=$T/fakeprov.$PROV_N.log
	spawn "$PROV_LOG" "${RUN[@]}" "$PY" "$TOOLS/fakeprov.py" "$JSOCK"
	PROV_PID=$SPAWNED
	wait_for 5 grep -q listening "$PROV_LOG" || fail "fakeprov did not start: $(cat "$PROV_LOG")"
}
sink_start() { # MARKER
	SINK_N=$((${SINK_N:-0} + 1))
	SINK_LOG=$T/udpsink.$SINK_N.log
	spawn "$SINK_LOG" "${RUN[@]}" "$PY" "$TOOLS/udpsink.py" "127.0.0.1:$UPORT" --marker "$1"
	SINK_PID=$SPAWNED
	wait_for 5 grep -q listening "$SINK_LOG" || fail "udpsink did not start: $(cat "$SINK_LOG")"
}
# sink_stop WHAT DATAGRAMS MARKED: stop the sink; it must have seen exactly that many.
sink_stop() {
	local got
	stop_pid "$SINK_PID"
	got=$(sed -n 's/^datagrams \([0-9]*\) bytes [0-9]* marked \([0-9]*\)$/\1 \2/p' "$SINK_LOG")
	expect "$1: datagrams and marked ones at WireGuard" "$got" "$2 $3"
}
# tunnel LOG ARGS...: a wsraw client in the background; pid in $TUN_PID.
tunnel() {
	local log=$1
	shift
	spawn "$log" "${RUN[@]}" "$PY" "$TOOLS/wsraw.py" -q "$@"
	TUN_PID=$SPAWNED
}
fds() { ls "/proc/$RELAY_PID/fd" | wc -l; }
sanitizer_clean() {
	! grep -qE "AddressSanitizer|LeakSanitizer|runtime error" "$RELAY_LOG" ||
		fail "sanitizer report in the relay log"
}

certs_make
cat >"$T/relay.conf" <<EOF
[Relay]
Listen = 127.0.0.1:$PORT
Cert = $CERT
Key = $KEY
Metrics = 127.0.0.1:$MPORT
Wg = 127.0.0.1:$UPORT
JitSocket = $JSOCK
EOF
printf '[Relay]\nJitSocket = jit.sock\n' >"$T/bad.conf"
out=$("$WGWS_BUILD/wgws-relay" -c "$T/bad.conf" --check-config 2>&1) && fail "a relative JitSocket was accepted"
grep -q "bad.conf:2: --jit-socket: 'jit.sock' is not an absolute path" <<<"$out" ||
	fail "JitSocket error: $(oneline "$out")"
ok "JitSocket in [Relay] maps to --jit-socket (and a relative path is refused at its line)"

say "no provisioner at start"
RELAY_LOG=$T/relay.log
spawn "$RELAY_LOG" "${RUN[@]}" "$WGWS_BUILD/wgws-relay" -c "$T/relay.conf"
RELAY_PID=$SPAWNED
wait_for 10 sh -c "[ \"\$(${RUN[*]} curl -sk -m 2 -o /dev/null -w '%{http_code}' \
	https://127.0.0.1:$PORT/healthz)\" = 200 ]" || fail "relay did not start"
expect "jit_connected with no provisioner" "$(metric wgws_relay_jit_connected)" 0
sink_start "$(init_mark 01 00 00 e1)"
out=$(run "$PY" "$TOOLS/wsraw.py" --wait 0.3 "$URL" "$(init_hex 01 00 00 e1)" 2>&1) || true
grep -qx "status 101" <<<"$out" || fail "no upgrade: $(oneline "$out")"
sink_stop "no provisioner" 1 1
expect "not asked" "$(metric wgws_relay_jit_not_asked_total)" 1
expect "requests" "$(metric wgws_relay_jit_requests_total)" 0
nap 1.2 # more connect attempts: still one line
expect "'cannot connect' lines after several attempts" "$(log_count "$RELAY_LOG" "cannot connect")" 1
ok "forwarded at once (not asked), 'cannot connect' logged once"
if [ "$(id -u)" = 0 ]; then
	# Someone else serving the socket (here nobody): the relay does not ask it.
	IMP_LOG=$T/impostor.log
	spawn "$IMP_LOG" "${RUN[@]}" "$PY" "$TOOLS/fakeprov.py" "$JSOCK" --listen-as nobody
	IMP_PID=$SPAWNED
	wait_for 5 grep -q listening "$IMP_LOG" || fail "fakeprov as nobody: $(cat "$IMP_LOG")"
	wait_for 5 grep -q "is served by uid $(id -u nobody)" "$RELAY_LOG" ||
		fail "no refusal of a socket served by nobody: $(tail -3 "$RELAY_LOG")"
	expect "jit_connected to an impostor" "$(metric wgws_relay_jit_connected)" 0
	stop_pid "$IMP_PID"
	ok "a JIT socket served by nobody: refused (SO_PEERCRED), not connected"
else
	say "skipped: serving the socket as another user needs root"
fi
start_prov
wait_for 3 m_is wgws_relay_jit_connected 1 || fail "the relay did not connect to the provisioner"
accept=$(grep -m1 '^accept' "$PROV_LOG")
[ "$(id -u)" != 0 ] || grep -q "uid=$(id -u wgws) " <<<"$accept" ||
	fail "expected the reconnect as wgws: $accept"
ok "connected within 3 s of the provisioner appearing ($accept)"
FDS0=$(fds)

say "verdicts"
# One tunnel each, at once. Byte 6 of the sender index is f0 for those that must reach
# WireGuard (the sink counts the marker "f00d"), dd for those that must not.
r0=$(metric wgws_relay_jit_requests_total)
p0=$(metric 'wgws_relay_packets_total{dir="ws_to_udp"}')
sink_start f00d
pids=()
declare -A a0
for v in installed:01:f0 live:02:f0 error:05:f0 unknown:03:dd refused:04:dd; do
	IFS=: read -r name code fwd <<<"$v"
	a0[$name]=$(metric "wgws_relay_jit_answers_total{verdict=\"$name\"}")
	tunnel "$T/verdict.$name.log" --wait 1 "$URL" "$(init_hex "$code" 00 "$fwd" 0d)"
	pids+=("$TUN_PID")
done
wait_for 3 m_is wgws_relay_jit_requests_total $((r0 + 5)) || fail "not every tunnel asked"
wait_for 2 m_is wgws_relay_jit_held 0 || fail "still held"
wait_for 2 m_is 'wgws_relay_packets_total{dir="ws_to_udp"}' $((p0 + 3)) ||
	fail "$(($(metric 'wgws_relay_packets_total{dir="ws_to_udp"}') - p0)) of 3 forwarded"
for pid in "${pids[@]}"; do stop_pid "$pid"; done
sink_stop "verdicts" 3 3
for v in installed:01:f0 live:02:f0 error:05:f0 unknown:03:dd refused:04:dd; do
	IFS=: read -r name code fwd <<<"$v"
	delta "wgws_relay_jit_answers_total{verdict=\"$name\"}" "${a0[$name]}" 1
	grep -q "sender=${code}00${fwd}0d" "$PROV_LOG" || fail "$name: the provisioner was not asked"
done
expect "jit_unknown drops" "$(metric 'wgws_relay_packets_dropped_total{reason="jit_unknown"}')" 1
expect "jit_refused drops" "$(metric 'wgws_relay_packets_dropped_total{reason="jit_refused"}')" 1
expect "timeouts" "$(metric wgws_relay_jit_timeouts_total)" 0
ok "installed, live, error forwarded; unknown, refused never reached WireGuard and were counted"

say "the source address in the request"
SRC_LOG=$T/srcsink.log
spawn "$SRC_LOG" "${RUN[@]}" "$PY" -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
print("listening", flush=True)
d, src = s.recvfrom(65536)
print("from %s:%d sender=%s" % (src[0], src[1], d[4:8].hex()), flush=True)' "$UPORT"
SRC_PID=$SPAWNED
wait_for 5 grep -q listening "$SRC_LOG" || fail "source sink did not start"
run "$PY" "$TOOLS/wsraw.py" --wait 0.3 "$URL" "$(init_hex 01 00 00 5c)" >/dev/null 2>&1 || true
wait_for 3 grep -q '^from' "$SRC_LOG" || fail "nothing reached WireGuard"
seen=$(sed -n 's/^from \([^ ]*\) sender=0100005c$/\1/p' "$SRC_LOG")
told=$(sed -n 's/^request id=[0-9]* source=\([^ ]*\) client=\([^ ]*\) sender=0100005c$/\1/p' "$PROV_LOG")
client=$(sed -n 's/^request .* client=\([^ ]*\) sender=0100005c$/\1/p' "$PROV_LOG")
[ -n "$seen" ] && [ "$seen" = "$told" ] ||
	fail "WireGuard saw the datagram from '$seen', the provisioner was told '$told'"
case "$client" in 127.0.0.1:0 | "") fail "client address: '$client'" ;; 127.0.0.1:*) ;;
*) fail "client address: '$client'" ;; esac
stop_pid "$SRC_PID"
ok "told source $told = where WireGuard saw it from (client $client)"
# From `wg show` to a client and back: the relay's line names the client (address and port),
# the endpoint WireGuard sees and the peer's key the provisioner answered with.
key=$(sed -n 's/^answer id=[0-9]* verdict=installed key=\([^ ]*\)$/\1/p' "$PROV_LOG" | tail -1)
line="tunnel $client (WireGuard endpoint $told): peer $key, installed"
wait_for 3 grep -qF "$line" "$RELAY_LOG" || fail "the relay does not log '$line'"
grep -qF "tunnel $client: open, WireGuard endpoint $told" "$RELAY_LOG" ||
	fail "the open line lacks the client's port or the endpoint"
ok "the relay logs: $line"

say "newest wins"
r0=$(metric wgws_relay_jit_requests_total)
sink_start "$(init_mark 01 00 00 b2)"
# The first one's answer comes after 0.6 s; the second arrives 0.2 s after the first.
tunnel "$T/newest.log" --delay 0.2 --wait 4 "$URL" "$(init_hex 01 06 00 b1)" "$(init_hex 01 00 00 b2)"
wait_for 3 grep -q "sender=010000b2" "$PROV_LOG" || fail "the second initiation was never asked about"
wait_for 2 m_is wgws_relay_jit_held 0 || fail "still held"
stop_pid "$TUN_PID"
sink_stop "newest wins" 1 1
delta wgws_relay_jit_requests_total "$r0" 2
expect "requests about the second" "$(grep -c "sender=010000b2" "$PROV_LOG")" 1
ok "only the second initiation reached WireGuard, once (asked about after the first's answer)"

say "data not held; silent provisioner: 3 s, then forwarded; late answer ignored; close discards"
t0=$(metric wgws_relay_jit_timeouts_total)
s0=$(metric wgws_relay_jit_answers_stale_total)
u0=$(metric 'wgws_relay_packets_dropped_total{reason="jit_unknown"}')
p0=$(metric 'wgws_relay_packets_total{dir="ws_to_udp"}')
sink_start "$(init_mark 03 21 00 c1)"
# Both at once (their clients start in parallel, so both are held within a moment even on a
# loaded machine). c2: never answered, and its tunnel goes 2 s after its initiation (RST):
# its hold must vanish, untimed (its 3 s are not up). c1: unknown, answered after 3.3 s (too
# late), with a data record behind it in one message.
tunnel "$T/closes.log" --abort --linger 2 "$URL" "$(init_hex 00 00 00 c2)"
tunnel "$T/timeout.log" --wait 5 "$URL" "$(init_hex 03 21 00 c1)$(data_hex c1)"
TO_PID=$TUN_PID
wait_for 3 m_is wgws_relay_jit_held 2 || fail "c1 and c2 not held: $(metric wgws_relay_jit_held)"
held_ms=$(now_ms)
wait_for 1 m_is 'wgws_relay_packets_total{dir="ws_to_udp"}' $((p0 + 1)) ||
	fail "the data record behind a held initiation did not go at once"
expect "held while the data record went" "$(metric wgws_relay_jit_held)" 2
wait_for 3 m_is wgws_relay_jit_held 1 || fail "the closed tunnel's hold was not discarded"
wait_for 4 m_is wgws_relay_jit_held 0 || fail "no time-out"
took=$(($(now_ms) - held_ms))
[ "$took" -ge 2500 ] && [ "$took" -le 3800 ] || fail "held for $took ms, expected about 3000"
wait_for 2 m_is wgws_relay_jit_answers_stale_total $((s0 + 1)) || fail "the late answer was not seen"
delta wgws_relay_jit_timeouts_total "$t0" 1
delta 'wgws_relay_packets_dropped_total{reason="jit_unknown"}' "$u0" 0
stop_pid "$TO_PID"
sink_stop "time-out" 2 1
ok "data went at once; forwarded after $took ms; late 'unknown' ignored; closed tunnel's hold discarded"

say "the provisioner killed while holding"
t0=$(metric wgws_relay_jit_timeouts_total)
n0=$(metric wgws_relay_jit_not_asked_total)
sink_start "$(init_mark 00 00 00 f1)"
tunnel "$T/kill1.log" --wait 8 "$URL" "$(init_hex 00 00 00 f1)"
K1=$TUN_PID
tunnel "$T/kill2.log" --wait 8 "$URL" "$(init_hex 00 00 00 f2)"
K2=$TUN_PID
wait_for 3 m_is wgws_relay_jit_held 2 || fail "not held: $(metric wgws_relay_jit_held)"
k_ms=$(now_ms)
stop_pid "$PROV_PID" KILL
wait_for 1 m_is wgws_relay_jit_held 0 || fail "held ones not forwarded when the provisioner died"
took=$(($(now_ms) - k_ms))
expect "jit_connected after the kill" "$(metric wgws_relay_jit_connected)" 0
delta wgws_relay_jit_not_asked_total "$n0" 2
delta wgws_relay_jit_timeouts_total "$t0" 0
sink_stop "provisioner killed" 2 1
ok "both held initiations forwarded $took ms after the kill"
start_prov
wait_for 3 m_is wgws_relay_jit_connected 1 || fail "no reconnect"
r0=$(metric wgws_relay_jit_requests_total)
sink_start "$(init_mark 01 00 00 f3)"
run "$PY" "$TOOLS/wsraw.py" --wait 0.3 "$URL" "$(init_hex 01 00 00 f3)" >/dev/null 2>&1 || true
wait_for 2 grep -q "answer id=.* verdict=installed" "$PROV_LOG" || fail "not asked after the reconnect"
sink_stop "after the reconnect" 1 1
delta wgws_relay_jit_requests_total "$r0" 1
stop_pid "$K1"
stop_pid "$K2"
ok "reconnected; asking resumed"

say "superseded faster than answered: never forwarded unchecked"
# 40 unknown-key initiations 0.1 s apart on one tunnel, each answered "unknown" after 0.2 s:
# every answer finds a newer one held, so none is ever answered for itself. At 3 s the relay
# must drop the last one (the provisioner was answering), not forward it as if it were stuck.
sink_start 0302ee
su0=$(metric 'wgws_relay_packets_dropped_total{reason="jit_superseded"}')
t0=$(metric wgws_relay_jit_timeouts_total)
args=()
for i in $(seq 1 40); do args+=("$(init_hex 03 02 ee "$(printf %02x "$i")")"); done
run "$PY" "$TOOLS/wsraw.py" -q --delay 0.1 --wait 1 "$URL" "${args[@]}" >"$T/supersede.log" 2>&1 || true
nap 0.3
sink_stop "superseded" 0 0
[ "$(metric 'wgws_relay_packets_dropped_total{reason="jit_superseded"}')" -gt "$su0" ] ||
	fail "no jit_superseded drop after 4 s of replaced initiations"
delta wgws_relay_jit_timeouts_total "$t0" 0
ok "none reached WireGuard; dropped as jit_superseded, not forwarded as a time-out"

say "garbage answers"
tunnel "$T/bystander.log" --wait 30 "$URL"
BY_PID=$TUN_PID
wait_for 3 grep -qx "status 101" "$T/bystander.log" || fail "bystander tunnel did not open"
r0=$(metric wgws_relay_jit_requests_total)
n0=$(metric wgws_relay_jit_not_asked_total)
# Marker: the garbage initiations (verdict ff), not the data records behind them.
sink_start 01000000ff00
pids=()
for kind in 00:short 01:long 02:magic 03:verdict; do
	IFS=: read -r k what <<<"$kind"
	wait_for 3 m_is wgws_relay_jit_connected 1 || fail "$what: no reconnect"
	bad0=$(log_count "$RELAY_LOG" "malformed answer")
	# The initiation, then a data record through the same tunnel once the channel is gone.
	tunnel "$T/garbage.$k.log" --delay 0.2 --wait 0.3 "$URL" "$(init_hex ff 00 "$k" 9${k:1})" \
		"$(data_hex 9${k:1})"
	pids+=("$TUN_PID")
	wait_for 3 sh -c "[ \$(grep -c 'malformed answer' '$RELAY_LOG') -gt $bad0 ]" ||
		fail "$what: the relay did not see garbage"
done
for pid in "${pids[@]}"; do
	wait_for 3 sh -c "! kill -0 $pid 2>/dev/null" || fail "wsraw did not finish"
done
for kind in 00:short 01:long 02:magic 03:verdict; do
	IFS=: read -r k what <<<"$kind"
	if grep -q "^close" "$T/garbage.$k.log"; then
		fail "$what: the tunnel was closed: $(oneline "$(cat "$T/garbage.$k.log")")"
	fi
done
sink_stop "garbage answers" 8 4
delta wgws_relay_jit_requests_total "$r0" 4
delta wgws_relay_jit_not_asked_total "$n0" 4
expect "'malformed answer' lines" "$(log_count "$RELAY_LOG" "malformed answer")" 4
wait_for 3 m_is wgws_relay_jit_connected 1 || fail "no reconnect after the garbage"
expect "tunnels open (the bystander)" "$(metric wgws_relay_connections_active)" 1
if grep -q "^close" "$T/bystander.log"; then fail "the bystander tunnel was closed"; fi
stop_pid "$BY_PID"
wait_for 3 m_is wgws_relay_connections_active 0 || fail "tunnels left open"
expect "the relay's open descriptors after 5 reconnects" "$(fds)" "$FDS0"
ok "each kind of garbage closed the channel once (its initiation forwarded), reconnected; tunnels untouched"

alive "$RELAY_PID" || fail "relay died"
stop_pid "$RELAY_PID"
expect "the relay's exit status on SIGTERM" "$STOP_RC" 0
sanitizer_clean
echo "PASS test_relay_jit"
