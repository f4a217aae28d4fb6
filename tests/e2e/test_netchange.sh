#!/bin/bash
# SPDX-License-Identifier: MIT
# The network changes under an open tunnel (issue 11, item 2): client → squid → relay, UDP
# blocked. The shim watches rtnetlink and probes connections that carry traffic but bring
# nothing back, instead of waiting for TCP (~30 s) or the keepalive (45 s).
#  1. the path to the proxy is cut silently (nftables drops, no RST) and the client's
#     address changes (10.201.3.1 → 10.201.3.5, as on another Wi-Fi): ping through WireGuard
#     answers again within 2 s of the new address appearing;
#  2. cut silently, the address removed, then restored (the same network again): again within
#     2 s of the address coming back;
#  3. cut silently, no change the shim can see: the connection carries pings out and nothing
#     comes back; the shim declares it dead within 3 + 2 s (a probe, not TCP's timeout), and
#     once the path works again the tunnel follows.
# Each time the shim is the same process on the same local UDP port: WireGuard notices
# nothing but lost packets.
set -eu
. "$(dirname "$0")/lib.sh"
need_root
need_cmd wireguard-go wg nft squid curl ping
need_bins wgws-relay wgws-shim
NEW_ADDR=10.201.3.5

corporate_network
start_relay
start_shim --pin "$PIN" -v
wait_for 15 ping_ok 1 || fail "no ping across the tunnel"
wait_shim_connected 5
port0=$(udp_port_of "$SHIM_PID" "$NS_C")
[ -n "$port0" ] || fail "cannot see the shim's UDP socket"
ok "tunnel up; the shim (pid $SHIM_PID) on $port0"

# cut [ADDR] / uncut: drop, silently, everything between the client and the proxy (or only
# what the client's address ADDR sends and receives: the old network, gone).
cut() {
	local out="ip daddr $P_CLIENT" in="ip saddr $P_CLIENT"
	[ -z "${1:-}" ] || out="ip saddr $1" in="ip daddr $1"
	in_c nft -f - <<EOF
table inet wgws_cut {
	chain out { type filter hook output priority 0; policy accept; $out drop; }
	chain in { type filter hook input priority 0; policy accept; $in drop; }
}
EOF
}
uncut() { in_c nft delete table inet wgws_cut; }
answers() { in_c ping -n -q -c 1 -W 1 "$TUN_G" >/dev/null 2>&1; }
# first_reply_after T0: ms from T0 (ms) to the background ping's first reply sent after T0
# (ping -D stamps each line with its arrival; -i 0.2), empty while there is none.
first_reply_after() {
	awk -v t="$1" '/bytes from/ {
		ts = substr($1, 2, length($1) - 2) * 1000
		if (ts > t) { printf "%d\n", ts - t; exit }
	}' "$BGPING_LOG"
}
# back_within WHAT T0 MAX_MS: ping through WireGuard answers within MAX_MS of T0 (ms).
back_within() {
	local w=0
	while [ -z "$(first_reply_after "$2")" ] && [ "$w" -lt 100 ]; do
		nap 0.1
		w=$((w + 1))
	done
	MS=$(first_reply_after "$2")
	[ -n "$MS" ] || fail "$1: no ping through WireGuard 10 s later"
	[ "$MS" -le "$3" ] || fail "$1: ping answered only $MS ms after (bound $3 ms)"
}
same_shim() {
	alive "$SHIM_PID" || fail "the shim exited"
	[ "$(udp_port_of "$SHIM_PID" "$NS_C")" = "$port0" ] || fail "the shim's UDP port changed"
}
bg_ping_start "$T/bgping.log" # traffic throughout, as a real tunnel has

say "1. cut silently, then a new address"
cut "$C_PNET"
nap 1
in_c ip addr del "$C_PNET/24" dev proxy0
in_c ip addr add "$NEW_ADDR/24" dev proxy0
t0=$(now_ms)
back_within "new address" "$t0" 2000
same_shim
grep -q "the network changed: the connection's address is gone; reconnecting now" "$SHIM_LOG" ||
	fail "the shim did not say why it reconnected"
ok "ping answered $MS ms after $NEW_ADDR appeared; same shim, same port"
uncut

say "2. cut silently, the address removed, then restored"
cut
in_c ip addr del "$NEW_ADDR/24" dev proxy0
nap 2
uncut
in_c ip addr add "$NEW_ADDR/24" dev proxy0
t0=$(now_ms)
back_within "address restored" "$t0" 2000
same_shim
ok "ping answered $MS ms after $NEW_ADDR came back; same shim, same port"

say "3. cut silently, nothing else: a connection that carries traffic and gets nothing back"
n0=$(log_count "$SHIM_LOG" "no answer from the relay within 2000 ms of a ping (traffic out, nothing back for 3 s)")
cut
t0=$(now_ms)
probed() {
	[ "$(log_count "$SHIM_LOG" "no answer from the relay within 2000 ms of a ping (traffic out, nothing back for 3 s)")" -gt "$n0" ]
}
wait_for 10 probed || fail "the shim did not find the connection dead within 10 s"
dead_ms=$(($(now_ms) - t0))
uncut
t1=$(now_ms)
wait_for 15 answers || fail "no ping through WireGuard 15 s after the path came back"
same_shim
ok "declared dead $dead_ms ms after the cut (stall 3 s + probe 2 s); ping again" \
	"$(($(now_ms) - t1)) ms after the path came back (the new connection's SYN retransmitted)"
bg_ping_stop
echo "PASS test_netchange"
