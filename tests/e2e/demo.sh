#!/bin/bash
# SPDX-License-Identifier: MIT
# `make demo`: WireGuard through a network that blocks UDP, shown end to end in three network
# namespaces (client, proxy with squid, gateway with the relay), then torn down.
set -eu
if [ "$(id -u)" != 0 ]; then
	echo "demo: needs root (network namespaces, wireguard-go, nftables): sudo make demo" >&2
	exit 1
fi
. "$(dirname "$0")/lib.sh"
need_cmd wireguard-go wg nft squid iperf3 curl ping
need_bins

step() { printf '\n### %s\n' "$*"; }

step "Setting up: namespaces client, proxy, gateway (run $$)"
topology
wg_up
iperf_server
echo "client $C_DIRECT ⟷ gateway $G_DIRECT (direct path)"
echo "client $C_PNET ⟷ proxy $P_CLIENT (squid :$PROXY_PORT) ⟷ $P_GNET ⟷ gateway $G_PROXY ($GW_NAME)"
echo "WireGuard (wireguard-go, MTU 1380): client $TUN_C ⟷ gateway $TUN_G, gateway listens on :$WG_PORT"

step "1. Plain WireGuard over UDP"
ping_ok 3 && plain="works ($PING_RX/$PING_TX pings)" || plain="FAILS ($PING_RX/$PING_TX pings)"
echo "ping $TUN_G: $plain"

step "2. Block UDP in the client namespace (nftables)"
block_client_udp
in_c nft list table inet wgws_block | sed -n '/oifname\|drop/s/^\s*/    /p'
if ping_ok 3; then blocked="still works?! ($PING_RX/$PING_TX)"; else blocked="fails, $PING_LOSS % loss"; fi
echo "ping $TUN_G over plain WireGuard: $blocked"

step "3. Relay on the gateway, squid in the proxy, shim on the client"
certs_make
echo "certificate: certs/mkcert.sh $GW_NAME $G_PROXY → pin $PIN"
start_squid
echo "squid: CONNECT to port 443 only, on $P_CLIENT:$PROXY_PORT"
start_relay
echo "relay: wgws-relay --listen 0.0.0.0:443 (pid $RELAY_PID) → WireGuard 127.0.0.1:$WG_PORT"
start_shim --pin "$PIN"
echo "shim:  wgws-shim --listen 127.0.0.1:$SHIM_PORT --relay wss://$GW_NAME/wg" \
	"--proxy http://$P_CLIENT:$PROXY_PORT --pin … (pid $SHIM_PID)"
wg_endpoint_shim
echo "WireGuard client endpoint → 127.0.0.1:$SHIM_PORT"
wait_for 15 ping_ok 1 || fail "no ping across the tunnel through the relay"

step "4. Through the tunnel"
ping_ok 5 && tunnel="works ($PING_RX/$PING_TX pings)" || tunnel="FAILS ($PING_RX/$PING_TX)"
rtt=$(tail -n 2 "$T/ping.log" | sed -n 's|.*= [0-9.]*/\([0-9.]*\)/.*|\1|p')
echo "ping $TUN_G: $tunnel, avg ${rtt:-?} ms"
mbps=$(iperf_mbps 3) || mbps="failed"
echo "iperf3 TCP 3 s: $mbps Mbit/s"
grep -m1 "connected to relay" "$SHIM_LOG" | sed 's/^/shim log: /' || true

step "Summary"
cat <<EOF
  plain WireGuard, UDP open       $plain
  plain WireGuard, UDP blocked    $blocked
  WireGuard via shim→squid→relay  $tunnel, ${rtt:-?} ms, $mbps Mbit/s
  relay: $(relay_metric wgws_relay_connections_active) tunnel(s) open, \
$(relay_metric 'wgws_relay_packets_total{dir="ws_to_udp"}') packets client→WireGuard, \
$(relay_metric 'wgws_relay_packets_total{dir="udp_to_ws"}') back
  Removing the namespaces, processes and temporary files now.
EOF
case "$tunnel" in works*) exit 0 ;; *) exit 1 ;; esac
