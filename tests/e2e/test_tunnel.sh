#!/bin/bash
# SPDX-License-Identifier: MIT
# WireGuard through the relay when UDP is blocked: plain WireGuard works, then fails once
# nftables drops the client's UDP; through squid + relay + shim it works again, at no less
# than 25 % of the plain-UDP throughput, both ways (iperf3 and iperf3 -R).
set -eu
. "$(dirname "$0")/lib.sh"
need_root
need_cmd wireguard-go wg nft squid iperf3 curl ping
need_bins

IPERF_S=5
topology
wg_up
iperf_server

say "plain WireGuard over UDP (client → $G_DIRECT:$WG_PORT)"
ping_ok 5 5 || fail "plain WireGuard ping: $PING_RX/$PING_TX replies"
ok "ping over plain WireGuard: $PING_RX/$PING_TX"
base=$(iperf_mbps $IPERF_S) || fail "iperf3 over plain WireGuard failed (see $T/iperf-1.json)"
ok "iperf3 over plain WireGuard, $IPERF_S s: $base Mbit/s"
base_r=$(iperf_mbps $IPERF_S -R) || fail "iperf3 -R over plain WireGuard failed"
ok "iperf3 -R (gateway → client) over plain WireGuard, $IPERF_S s: $base_r Mbit/s"

say "UDP blocked in the client namespace"
block_client_udp
if ping_ok 5; then
	fail "plain WireGuard still answers with UDP blocked ($PING_RX/$PING_TX)"
fi
ok "plain WireGuard with UDP blocked: ping loss $PING_LOSS %"

say "relay + squid + shim"
certs_make
start_squid
start_relay
start_shim --pin "$PIN"
wg_endpoint_shim
wait_for 15 ping_ok 1 || fail "no ping across the tunnel through the relay within 15 s"
wait_shim_connected 5
ping_ok 10 10 || fail "ping through the relay: $PING_RX/$PING_TX replies"
ok "ping through shim → squid → relay: $PING_RX/$PING_TX"
# Full-size packets: 1352 + 28 = 1380 = the tunnel MTU, a 1412-byte WireGuard message (not a
# multiple of 16: padding stops at the MTU).
in_c ping -n -q -c 3 -i 0.2 -W 1 -s 1352 -M "do" "$TUN_G" >>"$T/ping.log" 2>&1 ||
	fail "full-MTU ping (1380-byte packets) does not cross the relay"
ok "full-MTU ping (1380-byte packets) through the relay"
tun=$(iperf_mbps $IPERF_S) || fail "iperf3 through the relay failed (see $T/iperf-3.json)"
ok "iperf3 through the relay, $IPERF_S s: $tun Mbit/s"
# Downloads: full-size datagrams in runs, which the shim hands to WireGuard as UDP GSO batches
tun_r=$(iperf_mbps $IPERF_S -R) || fail "iperf3 -R through the relay failed (see $T/iperf-4.json)"
ok "iperf3 -R (gateway → client) through the relay, $IPERF_S s: $tun_r Mbit/s"

pct=$("$PY" -c "print(round(100 * $tun / $base))")
say "throughput: plain UDP $base Mbit/s, through relay $tun Mbit/s ($pct % of plain)"
[ "$pct" -ge 25 ] || fail "tunnel throughput $tun Mbit/s is below 25 % of plain $base Mbit/s"
pct_r=$("$PY" -c "print(round(100 * $tun_r / $base_r))")
say "gateway → client: plain UDP $base_r Mbit/s, through relay $tun_r Mbit/s ($pct_r % of plain)"
[ "$pct_r" -ge 25 ] || fail "tunnel throughput -R $tun_r Mbit/s is below 25 % of plain $base_r Mbit/s"
ws2udp=$(relay_metric 'wgws_relay_packets_total{dir="ws_to_udp"}')
udp2ws=$(relay_metric 'wgws_relay_packets_total{dir="udp_to_ws"}')
say "relay metrics: packets ws_to_udp=$ws2udp udp_to_ws=$udp2ws"
"$PY" -c "import sys; sys.exit(0 if float('$ws2udp') > 1000 and float('$udp2ws') > 1000 else 1)" ||
	fail "relay packet counters did not move (ws_to_udp=$ws2udp udp_to_ws=$udp2ws)"
ok "relay packet counters moved"
bad=$(relay_metric 'wgws_relay_packets_dropped_total{reason="malformed"}')
[ "$bad" = 0 ] || fail "the relay dropped $bad real WireGuard packets as malformed"
ok "no real WireGuard packet dropped as malformed"
echo "PASS test_tunnel"
