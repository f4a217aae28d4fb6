#!/bin/bash
# SPDX-License-Identifier: MIT
# Happy Eyeballs (RFC 8305) for the relay's name (issue 11, item 2): the name resolves to an
# IPv6 address that silently drops (as on many hotel and office networks) and an IPv4
# address that works. The client namespace's /etc/hosts (ip netns exec mounts
# /etc/netns/NS/hosts over it) gives both; 2001:db8:: is not a ULA, so the resolver puts IPv6
# first (RFC 6724). The gateway drops every TCP segment to its IPv6 address's port 443.
#  - the first ping through WireGuard (its handshake through the shim included) is answered
#    within 1 s; the shim tried IPv6 first and connected over IPv4;
#  - with -4 the shim never tries IPv6;
#  - two relays (--relay twice) and the first killed during traffic: pings through WireGuard
#    go through the second within 2 s.
# Direct, no proxy: the client's UDP is blocked, TCP to the gateway is not.
set -eu
. "$(dirname "$0")/lib.sh"
need_root
need_cmd wireguard-go wg nft curl ping
need_bins wgws-relay wgws-shim
G6=2001:db8:201:1::2 C6=2001:db8:201:1::1

dump_logs() {
	[ -z "$RELAY_LOG" ] || logtail "$RELAY_LOG" 10
	[ -z "$SHIM_LOG" ] || logtail "$SHIM_LOG" 15
}

say "client and gateway, IPv4 and IPv6 between them; IPv6 to port 443 dropped silently"
netns_add "$NS_C"
netns_add "$NS_G"
veth "$NS_C" direct0 "$C_DIRECT" "$C6" "$NS_G" direct0 "$G_DIRECT" "$G6"
in_g nft -f - <<EOF
table inet wgws_drop6 {
	chain in {
		type filter hook input priority 0; policy accept;
		ip6 daddr $G6 tcp dport 443 counter drop
	}
}
EOF
in_c nft -f - <<EOF
table inet wgws_block {
	chain out {
		type filter hook output priority 0; policy accept;
		oifname "lo" accept
		meta l4proto udp counter drop
	}
}
EOF
# IPv6 itself works (and its neighbour is known, so the SYN leaves at once): only 443 drops.
in_c ping -6 -n -q -c 1 -W 3 "$G6" >/dev/null || fail "no IPv6 between client and gateway"
mkdir -p "/etc/netns/$NS_C"
at_exit "rm -rf '/etc/netns/$NS_C'"
printf '%s %s\n%s %s\n' "$G6" "$GW_NAME" "$G_DIRECT" "$GW_NAME" >"/etc/netns/$NS_C/hosts"
order=$(in_c getent ahostsv6 "$GW_NAME" >/dev/null; in_c python3 -c "
import socket
print(' '.join(a[4][0] for a in socket.getaddrinfo('$GW_NAME', 443, type=socket.SOCK_STREAM)))")
[ "${order%% *}" = "$G6" ] || fail "the resolver does not put $G6 first: $order"
ok "$GW_NAME resolves to: $order"

certs_make
wg_up
RELAY_LOG=$T/relay.log
spawn_ns "$NS_G" "$RELAY_LOG" "$WGWS_BUILD/wgws-relay" --listen "[::]:443" --cert "$CERT" \
	--key "$KEY" --metrics "$METRICS"
RELAY_PID=$SPAWNED
wait_for 10 relay_healthz || fail "relay /healthz did not answer 200 within 10 s"
wg_endpoint_shim

# first_ping ARGS...: a shim with ARGS, then one ping through WireGuard; sets RTT_MS (the
# first ping's round trip, WireGuard's handshake through the shim included).
first_ping() {
	SHIM_N=$((SHIM_N + 1))
	SHIM_LOG=$T/shim-$SHIM_N.log
	spawn_ns "$NS_C" "$SHIM_LOG" "$WGWS_BUILD/wgws-shim" --listen "127.0.0.1:$SHIM_PORT" \
		--relay "wss://$GW_NAME/wg" --pin "$PIN" --no-proxy -v "$@"
	SHIM_PID=$SPAWNED
	wait_for 5 shim_bound || fail "shim does not listen on 127.0.0.1:$SHIM_PORT/udp"
	# A new session on the client: no handshake left from the previous shim.
	in_c wg set "$WG_C" peer "$WG_G_PUB" remove
	in_c wg set "$WG_C" peer "$WG_G_PUB" allowed-ips "$TUN_G/32" endpoint "127.0.0.1:$SHIM_PORT"
	in_c ping -n -c 1 -W 3 "$TUN_G" >"$T/ping-$SHIM_N.log" 2>&1 ||
		fail "no answer to the first ping: $(oneline "$(cat "$T/ping-$SHIM_N.log")")"
	RTT_MS=$(sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' "$T/ping-$SHIM_N.log")
	[ -n "$RTT_MS" ] || fail "no time in: $(cat "$T/ping-$SHIM_N.log")"
}

say "both families: Happy Eyeballs"
first_ping
awk -v t="$RTT_MS" 'BEGIN { exit !(t < 1000) }' ||
	fail "the first ping took $RTT_MS ms (the IPv6 attempt held the IPv4 one back?)"
grep -q "connecting to \[$G6\]:443" "$SHIM_LOG" || fail "the shim did not try $G6 first"
grep -q "connected to $G_DIRECT:443" "$SHIM_LOG" || fail "the shim did not connect to $G_DIRECT"
dropped=$(in_g nft list table inet wgws_drop6 | sed -n 's/.*packets \([0-9]*\).*/\1/p')
[ "${dropped:-0}" -ge 1 ] || fail "nothing was dropped on the IPv6 address: not tested"
ok "first ping through WireGuard answered in $RTT_MS ms: [$G6]:443 tried first (its SYN dropped," \
	"$dropped packets), $G_DIRECT:443 250 ms later, connected"
stop_pid "$SHIM_PID"

say "-4: IPv4 only"
first_ping -4
! grep -q "connecting to \[" "$SHIM_LOG" || fail "with -4 the shim tried IPv6: $(grep -m1 'connecting to \[' "$SHIM_LOG")"
grep -q "connected to $G_DIRECT:443" "$SHIM_LOG" || fail "with -4 the shim did not connect to $G_DIRECT"
ok "with -4: no IPv6 attempt, connected to $G_DIRECT:443, first ping in $RTT_MS ms"
stop_pid "$SHIM_PID"

say "two relays (--relay twice), the first killed during traffic"
spawn_ns "$NS_G" "$T/relay-b.log" "$WGWS_BUILD/wgws-relay" --listen "[::]:8443" --cert "$CERT" \
	--key "$KEY" --metrics 127.0.0.1:9101
RELAY_B=$SPAWNED
wait_for 10 sh -c "ip netns exec $NS_G ss -Hltn 'sport = :8443' | grep -q ." ||
	fail "the second relay does not listen on 8443"
first_ping -4 --relay "wss://$GW_NAME:8443/wg"
grep -q "connected to relay wss://$GW_NAME/wg " "$SHIM_LOG" || fail "the shim did not start on the first relay"
t0=$(now_ms)
stop_pid "$RELAY_PID" KILL 5
RELAY_PID=""
up_again() { in_c ping -n -q -c 1 -W 1 "$TUN_G" >/dev/null 2>&1; }
wait_for 5 up_again || fail "no ping through WireGuard 5 s after the first relay was killed"
ms=$(($(now_ms) - t0))
[ "$ms" -lt 2000 ] || fail "traffic moved to the second relay only after $ms ms"
grep -q "connected to relay wss://$GW_NAME:8443/wg " "$SHIM_LOG" ||
	fail "the shim is not on the second relay: $(oneline "$(grep -E 'connected|trying' "$SHIM_LOG")")"
ok "ping through WireGuard again $ms ms after the first relay was killed:" \
	"$(grep -o 'trying relay [^ ]*' "$SHIM_LOG" | head -1), connected there"
echo "PASS test_eyeballs"
