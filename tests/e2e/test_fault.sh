#!/bin/bash
# SPDX-License-Identifier: MIT
# The relay dies (kill -9) under traffic and comes back: the shim reconnects by itself, ping
# across WireGuard resumes within 5 s of the restart, and the shim's local UDP port does not
# change (WireGuard never notices beyond lost packets).
set -eu
. "$(dirname "$0")/lib.sh"
need_root
need_cmd wireguard-go wg nft squid curl ping
need_bins

RESUME_MAX_MS=5000 DOWN_S=2
corporate_network
start_relay
start_shim --pin "$PIN"
wait_for 15 ping_ok 1 || fail "no ping across the tunnel"
wait_shim_connected 5
port_before=$(udp_port_of "$SHIM_PID" "$NS_C")
[ -n "$port_before" ] || fail "cannot see the shim's UDP socket in ss -ulpn"
ok "tunnel up; shim UDP socket(s): $port_before"

bg_ping_start "$T/bgping.log"
sleep 2
say "kill -9 relay (pid $RELAY_PID), down for ${DOWN_S} s"
stop_relay KILL
sleep "$DOWN_S"
t_restart=$(now_ms)
start_relay
say "relay restarted (pid $RELAY_PID), /healthz after $(($(now_ms) - t_restart)) ms"
wait_shim_connected 10 2
t_conn=$(now_ms)

# First reply stamped after the restart (ping -D prints [epoch.micros]).
resume_ms() {
	awk -v t="$t_restart" '/bytes from/ {
		ts = substr($1, 2, length($1) - 2) * 1000
		if (ts > t) { printf "%d\n", ts - t; exit }
	}' "$T/bgping.log" | grep .
}
wait_for 10 resume_ms || fail "ping did not resume within 10 s of the relay restart"
resumed=$(resume_ms)
sleep 1
bg_ping_stop
ok "shim reconnected $((t_conn - t_restart)) ms after the restart (within the poll)"
ok "ping resumed ${resumed} ms after the restart (limit ${RESUME_MAX_MS} ms);" \
	"ping overall $PING_RX/$PING_TX"
[ "$resumed" -le "$RESUME_MAX_MS" ] || fail "ping resumed only after $resumed ms"

port_after=$(udp_port_of "$SHIM_PID" "$NS_C")
[ "$port_after" = "$port_before" ] ||
	fail "shim UDP socket changed: before '$port_before', after '$port_after'"
ok "shim UDP socket unchanged: $port_after"
alive "$SHIM_PID" || fail "shim exited"
echo "PASS test_fault"
