#!/bin/bash
# SPDX-License-Identifier: MIT
# The provisioner's UAPI backend (provisioner/uapi.c) against a real wireguard-go, driven by
# build/wgdev-tool, with `wg show` as the independent witness: device info, install / re-install
# / update / remove of single peers, a 1,000-peer bulk install and removal (rates printed),
# a dump compared field by field with `wg show dump`, and a real handshake between a client
# wireguard-go and the gateway peer installed through the backend. Also checks that AUTO
# picks "uapi" on a host whose kernel has no WireGuard.
set -eu
. "$(dirname "$0")/lib.sh"

need_root
need_cmd wireguard-go wg ip ping awk
need_bins wgdev-tool

WGT=$WGWS_BUILD/wgdev-tool
# tool ARGS...: wgdev-tool with the uapi backend on the gateway's device.
tool() { in_g "$WGT" -b uapi "$WG_G" "$@"; }
# wgdump: `wg show dump` peer lines, as "key endpoint allowed handshake rx tx keepalive".
wgdump() {
	in_g wg show "$WG_G" dump | tail -n +2 |
		awk -F'\t' '{ print $1, $3, $4, $5, $6, $7, ($8 == "off" ? 0 : $8) }'
}
# tooldump: wgdev-tool's dump in the same shape.
tooldump() { tool dump | awk '{ print $1, $5, $7, $2, $3, $4, $6 }'; }
# peer_line KEY: the wgdump line of KEY (empty when absent).
peer_line() { wgdump | awk -v k="$1" '$1 == k'; }
npeers() { in_g wg show "$WG_G" peers | wc -l; }

say "two namespaces, wireguard-go in each"
netns_add "$NS_G"
netns_add "$NS_C"
veth "$NS_C" direct0 "$C_DIRECT" "$C_DIRECT6" "$NS_G" direct0 "$G_DIRECT" "$G_DIRECT6"
(umask 077 && wg genkey >"$T/keys/gw.key" && wg genkey >"$T/keys/client.key" &&
	wg genpsk >"$T/keys/psk")
GW_PUB=$(wg pubkey <"$T/keys/gw.key")
CL_PUB=$(wg pubkey <"$T/keys/client.key")
PSK=$(cat "$T/keys/psk")
spawn_ns "$NS_G" "$T/wg-gw.log" wireguard-go -f "$WG_G"
WGG_PID=$SPAWNED
spawn_ns "$NS_C" "$T/wg-client.log" wireguard-go -f "$WG_C"
WGC_PID=$SPAWNED
wait_for 10 test -S "/var/run/wireguard/$WG_G.sock" || fail "wireguard-go (gateway) did not start"
wait_for 10 test -S "/var/run/wireguard/$WG_C.sock" || fail "wireguard-go (client) did not start"
in_g wg set "$WG_G" private-key "$T/keys/gw.key" listen-port "$WG_PORT"
in_g ip addr add "$TUN_G/24" dev "$WG_G"
in_g ip link set "$WG_G" mtu 1380 up

say "info"
info=$(tool info) || fail "wgdev-tool info failed"
expect "backend" "$(awk '$1 == "backend" { print $2 }' <<<"$info")" uapi
expect "public key" "$(awk '$1 == "public_key" { print $2 }' <<<"$info")" \
	"$(in_g wg show "$WG_G" public-key)"
expect "listen port" "$(awk '$1 == "listen_port" { print $2 }' <<<"$info")" "$WG_PORT"
expect "private key" "$(awk '$1 == "private_key" { print $2 }' <<<"$info")" readable
ok "info: public key $GW_PUB, port $WG_PORT, private key readable"
auto=$(in_g "$WGT" "$WG_G" info | awk '$1 == "backend" { print $2 }')
expect "auto-detected backend" "$auto" uapi
ok "auto-detection picks uapi (no kernel WireGuard here)"
if in_g "$WGT" -b uapi nosuch$$ info >"$T/nodev.out" 2>&1; then
	fail "info on a missing device succeeded"
fi
grep -q "No such device" "$T/nodev.out" || fail "missing device: $(oneline "$(cat "$T/nodev.out")")"
ok "a missing socket is ENODEV"

say "single peers"
K1=$("$WGT" "$WG_G" keys 3 | sed -n 1p)
K2=$("$WGT" "$WG_G" keys 3 | sed -n 2p)
K3=$("$WGT" "$WG_G" keys 3 | sed -n 3p)
tool install "$K1" -p "$PSK" -e 192.0.2.7:4444 -k 25 10.50.0.2/32 fd00:50::2/128
expect "installed peer" "$(peer_line "$K1")" \
	"$K1 192.0.2.7:4444 10.50.0.2/32,fd00:50::2/128 0 0 0 25"
psk=$(in_g wg show "$WG_G" preshared-keys | awk -v k="$K1" '$1 == k { print $2 }')
expect "preshared key" "$psk" "$PSK"
ok "install: v4+v6 allowed IPs, endpoint, keepalive 25, psk as wg show reports"

tool install "$K1" 10.50.1.0/24 fd00:51::/64
expect "re-installed peer" "$(peer_line "$K1")" \
	"$K1 192.0.2.7:4444 10.50.1.0/24,fd00:51::/64 0 0 0 25"
ok "re-install replaces the allowed IPs (endpoint, keepalive kept)"

tool update "$K1" -e '[2001:db8::9]:5555' -k 10
expect "updated peer" "$(peer_line "$K1")" \
	"$K1 [2001:db8::9]:5555 10.50.1.0/24,fd00:51::/64 0 0 0 10"
tool update "$K1" -k 0
expect "keepalive off" "$(peer_line "$K1")" \
	"$K1 [2001:db8::9]:5555 10.50.1.0/24,fd00:51::/64 0 0 0 0"
ok "update changes endpoint (v6) and keepalive, leaves allowed IPs"

tool update "$K2" -e 192.0.2.8:1 -k 5 || fail "update of an absent key failed"
expect "absent key after update" "$(peer_line "$K2")" ""
expect "peer count" "$(npeers)" 1
ok "update of an absent key does not create it"

tool remove "$K1"
expect "removed peer" "$(peer_line "$K1")" ""
expect "peer count" "$(npeers)" 0
tool remove "$K1" || fail "removing an absent key failed"
tool install "$K3" 10.50.3.3/32
tool remove "$K1" "$K2" "$K3" || fail "removing a mix of absent and present keys failed"
expect "peer count" "$(npeers)" 0
ok "remove; remove of absent keys is not an error"

say "1,000 peers"
out=$(tool bulk-install 1000) || fail "bulk-install failed"
expect "peer count after bulk-install" "$(npeers)" 1000
secs=$(awk '{ print $5 }' <<<"$out")
ok "$out ($(awk -v s="$secs" 'BEGIN { printf "%.0f", 1000 / s }') installs/s)"
out=$(tool bulk-remove 1000 1) || fail "bulk-remove failed"
expect "peer count after bulk-remove" "$(npeers)" 0
secs=$(awk '{ print $5 }' <<<"$out")
ok "$out, one per request ($(awk -v s="$secs" 'BEGIN { printf "%.0f", 1000 / s }') removals/s)"
tool bulk-install 1000 >/dev/null || fail "bulk-install (2) failed"
out=$(tool bulk-remove 1000 64) || fail "bulk-remove (batch 64) failed"
expect "peer count after batched bulk-remove" "$(npeers)" 0
secs=$(awk '{ print $5 }' <<<"$out")
ok "$out, 64 per request ($(awk -v s="$secs" 'BEGIN { printf "%.0f", 1000 / s }') removals/s)"

say "dump against wg show dump"
tool bulk-install 1000 10.120.0.0 >/dev/null || fail "bulk-install (3) failed"
# Peers with many allowed IPs and both kinds of endpoint, some with keepalive.
mapfile -t extra < <("$WGT" "$WG_G" keys 1020 | tail -n 20)
for i in "${!extra[@]}"; do
	args=()
	if ((i % 2)); then
		args+=(-e "[fd00:99::$((i + 1))]:$((40000 + i))")
	else
		args+=(-e "198.51.100.$((i + 1)):$((30000 + i))")
	fi
	((i % 3)) || args+=(-k $((i + 1)))
	tool install "${extra[$i]}" "${args[@]}" "10.130.$i.0/24" "10.131.$i.0/24" \
		"10.132.$i.1/32" "10.133.$i.0/28" "fd00:130:$i::/64" "fd00:131:$i::/64" \
		"fd00:132:$i::1/128" "fd00:133::$i:0/112"
done
# One peer with more allowed IPs than the backend keeps (PROV_MAX_ALLOWED = 8): set by wg.
BIG=$(wg genkey | wg pubkey)
in_g wg set "$WG_G" peer "$BIG" allowed-ips \
	"$(for j in $(seq 0 11); do printf '10.140.%d.0/24,' "$j"; done | sed 's/,$//')"
expect "peer count" "$(npeers)" 1021
wgdump | grep -v "^$BIG " | sort >"$T/wg.dump"
tooldump | grep -v "^$BIG " | sort >"$T/tool.dump"
expect "dumped peers" "$(wc -l <"$T/tool.dump")" 1020
diff -u "$T/wg.dump" "$T/tool.dump" >"$T/dump.diff" ||
	fail "dump differs from wg show dump: $(head -c 600 "$T/dump.diff")"
big=$(tooldump | awk -v k="$BIG" '$1 == k { print $3 }')
want=$(peer_line "$BIG" | awk '{ print $3 }' | cut -d, -f1-8)
expect "peer with 12 allowed IPs" "$big" "$want,…"
t0=$(now_ms)
tool dump >/dev/null
ok "dump of 1,021 peers matches wg show dump exactly ($(($(now_ms) - t0)) ms)"
ok "a peer with 12 allowed IPs: the first 8 kept, the rest counted"
out=$(tool bulk-remove 1000 64) || fail "bulk-remove (3) failed"
tool remove "${extra[@]}" "$BIG"
expect "peer count" "$(npeers)" 0

say "handshake through a peer installed by the backend"
tool install "$CL_PUB" -p "$PSK" "$TUN_C/32"
in_c wg set "$WG_C" private-key "$T/keys/client.key" listen-port "$WG_C_PORT" \
	peer "$GW_PUB" preshared-key "$T/keys/psk" allowed-ips "$TUN_G/32" \
	endpoint "$G_DIRECT:$WG_PORT"
in_c ip addr add "$TUN_C/24" dev "$WG_C"
in_c ip link set "$WG_C" mtu 1380 up
ping_ok 5 3 || fail "ping over the tunnel: $PING_RX/$PING_TX replies"
ok "ping client → gateway over WireGuard: $PING_RX/$PING_TX"
line=$(tooldump | awk -v k="$CL_PUB" '$1 == k')
[ -n "$line" ] || fail "the client's peer is missing from the dump"
read -r _ ep _ hs rx tx _ <<<"$line"
wg_hs=$(in_g wg show "$WG_G" latest-handshakes | awk -v k="$CL_PUB" '$1 == k { print $2 }')
[ "$hs" -gt 0 ] || fail "dump reports no handshake"
diff=$((hs - wg_hs))
[ "${diff#-}" -le 1 ] || fail "handshake time $hs, wg show says $wg_hs"
[ "$rx" -gt 0 ] && [ "$tx" -gt 0 ] || fail "no traffic counted (rx $rx, tx $tx)"
expect "client endpoint" "$ep" "$C_DIRECT:$WG_C_PORT"
ok "dump: handshake at $hs (wg show: $wg_hs, now $(date +%s)), rx $rx tx $tx, endpoint $ep"

stop_pid "$WGC_PID"
stop_pid "$WGG_PID"
ok "all UAPI checks passed"
