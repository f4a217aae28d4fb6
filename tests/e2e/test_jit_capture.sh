#!/bin/bash
# SPDX-License-Identifier: MIT
# JIT for plain UDP clients on wireguard-go (issue 4): the provisioner's --capture sees a copy
# of the client's first initiation on the gateway's interface, installs the stored peer with
# the sender as its endpoint and, because wireguard-go (like the kernel) does not initiate on
# an endpoint alone, toggles the persistent keepalive so that it initiates back: the first
# handshake completes within 1 s instead of WireGuard's 5 s retransmit. The kernel's side of
# the same path is test_kernel_jit.sh (QEMU). Also shown, over IPv6: a peer the device lost
# behind the store's back (removed by hand) comes back on its client's next initiation,
# because a live peer that initiates again within seconds is retrying.
set -eu
. "$(dirname "$0")/lib.sh"
need_root
need_cmd wireguard-go wg curl ping
need_bins wgws-provisioner

PROV=$WGWS_BUILD/wgws-provisioner
SOCK=$T/prov.sock
PROV_LOG=""
dump_logs() { [ -z "$PROV_LOG" ] || logtail "$PROV_LOG" 20; }
on_gw() { in_g wg show "$WG_G" peers | grep -qxF -- "$WG_C_PUB"; }
client_shook() {
	[ "$(in_c wg show "$WG_C" latest-handshakes | awk '{ print $2 }')" != 0 ]
}
# first_handshake_ms DEST: ping DEST across WireGuard once (in the background) and print the
# milliseconds until the client's first handshake, polled every 20 ms (9999: none in 4 s).
first_handshake_ms() {
	local t0 now
	t0=$(now_ms)
	spawn_ns "$NS_C" "$T/ping.$t0.log" ping -n -c 1 -W 4 "$1"
	while ! client_shook; do
		now=$(now_ms)
		if [ $((now - t0)) -gt 4000 ]; then echo 9999; return; fi
		sleep 0.02
	done
	echo $(($(now_ms) - t0))
}

say "namespaces, wireguard-go; the gateway without the client's peer; plain UDP"
topology
wg_up
in_g wg set "$WG_G" peer "$WG_C_PUB" remove
PROV_LOG=$T/prov.log
spawn_ns "$NS_G" "$PROV_LOG" "$PROV" serve --interface "$WG_G" --backend uapi --db "$T/p.db" \
	--api "unix:$SOCK" --pool4 10.202.0.0/24 --jit --capture direct0 -v
PROV_PID=$SPAWNED
wait_for 10 prov_healthy || fail "provisioner /healthz did not answer 200 within 10 s"
code=$(curl -s -m 5 -o "$T/body" -w '%{http_code}' --unix-socket "$SOCK" -X POST \
	--data-binary "{\"public_key\":\"$WG_C_PUB\"}" http://prov/v1/peers)
expect "POST /v1/peers" "$code" 201
grep -q '"installed": *false' "$T/body" || fail "created as installed: $(head -c 300 "$T/body")"
on_gw && fail "the peer is in the device before its client initiated"
ok "client key stored (10.202.0.2), not in the device; provisioner --jit --capture direct0"

say "IPv4: the client's first initiation"
ms=$(first_handshake_ms "$TUN_G")
[ "$ms" -lt 1000 ] || fail "first handshake after $ms ms (want < 1000: the gateway initiating back)"
ep=$(in_g wg show "$WG_G" endpoints | awk -v k="$WG_C_PUB" '$1 == k { print $2 }')
expect "the peer's endpoint on the gateway" "$ep" "$C_DIRECT:$WG_C_PORT"
# The kick sets the keepalive and puts it back in two device calls; the handshake it starts
# can complete between them (a loaded machine delays the second): wait for the second.
ka_off() { [ "$(in_g wg show "$WG_G" persistent-keepalive | awk -v k="$WG_C_PUB" '$1 == k { print $2 }')" = off ]; }
wait_for 2 ka_off || fail "the gateway's keepalive for the peer was not put back (off) within 2 s: $(in_g wg show "$WG_G" persistent-keepalive)"
expect "capture initiations" "$(prov_metric 'wgws_provisioner_jit_initiations_total{path="capture"}')" 1
expect "jit installs" "$(prov_metric wgws_provisioner_jit_installs_total)" 1
ping_ok 3 3 || fail "no ping across the tunnel after the handshake"
ok "first handshake $ms ms after the ping; endpoint $ep, keepalive back to off; 1 capture, 1 install"

say "IPv6: the device loses the peer; its client's next initiation brings it back"
# The first IPv6 packet on this fresh path waits about 1 s for neighbour discovery (seen
# without wgws: the same reinstall over IPv4 takes ~65 ms): resolve the neighbours first.
in_c ping -6 -n -c 2 -i 0.2 -W 1 "$G_DIRECT6" >/dev/null || fail "no IPv6 between client and gateway"
in_g wg set "$WG_G" peer "$WG_C_PUB" remove
in_c wg set "$WG_C" peer "$WG_G_PUB" remove
in_c wg set "$WG_C" peer "$WG_G_PUB" allowed-ips "$TUN_G/32" endpoint "[$G_DIRECT6]:$WG_PORT"
ms=$(first_handshake_ms "$TUN_G")
[ "$ms" -lt 1000 ] || fail "handshake over IPv6 after $ms ms (want < 1000)"
ep=$(in_g wg show "$WG_G" endpoints | awk -v k="$WG_C_PUB" '$1 == k { print $2 }')
expect "the peer's endpoint on the gateway" "$ep" "[$C_DIRECT6]:$WG_C_PORT"
expect "jit installs" "$(prov_metric wgws_provisioner_jit_installs_total)" 2
grep -q "again: its client was retrying" "$PROV_LOG" || fail "no 'retrying' reinstall in the log"
ok "reinstalled over IPv6 in $ms ms (endpoint $ep): a live peer retrying is put back"

alive "$PROV_PID" || fail "the provisioner died"
expect "jit errors" "$(prov_metric wgws_provisioner_jit_errors_total)" 0
echo "PASS test_jit_capture"
