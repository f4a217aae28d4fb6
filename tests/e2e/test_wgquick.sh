#!/bin/bash
# SPDX-License-Identifier: MIT
# The client path end to end, as the README documents it (issue 11, item 1): the operator
# creates a peer with `wgws-provisioner peer add --config`; the user runs one command on that
# file, `wg-quick up FILE` (wireguard-go: this kernel has no WireGuard module), in a client
# namespace whose UDP is blocked, with a proxy in https_proxy. The file's MTU fits the
# relay's --max-record 1452 (the README's advice for MTU 1420), its PreUp starts wgws-shim
# (--background) with the relay's URL and pin, its PostDown stops it.
#  - the file has MTU = 1420, the PreUp and PostDown lines; wg-quick up exits 0 with the
#    shim running and the interface at MTU 1420;
#  - ping and a short iperf3 through the tunnel; a ping of 2,000 bytes (fragmented inside
#    the tunnel): answered, and no tunnel closed (no 1009);
#  - the PreUp's command run again while its shim runs is refused (the pid file's lock),
#    and the first shim and the tunnel go on;
#  - wg-quick down: no shim left (by pid and in the namespace), no pid file;
#  - a full tunnel (AllowedIPs = 0.0.0.0/0, the proxy reached by the default route): the
#    file has FwMark = 51820 and the shim --fwmark 51820, and it works through the proxy;
#    without the mark the shim says its route goes through the WireGuard interface.
set -eu
. "$(dirname "$0")/lib.sh"
need_root
need_cmd wireguard-go wg wg-quick nft squid curl ping iperf3
need_bins wgws-relay wgws-shim wgws-provisioner
PROV=$WGWS_BUILD/wgws-provisioner SOCK=$T/prov.sock DB=$T/prov.db
IF=wgq$$ # wg-quick names the interface after the file
CONF=$T/$IF.conf PIDFILE=/run/wgws-shim-$IF.pid
at_exit "rm -f '$PIDFILE'"

dump_logs() {
	[ -z "$RELAY_LOG" ] || logtail "$RELAY_LOG" 15
	[ -e "$T/up.log" ] && logtail "$T/up.log" 20
	return 0
}
# shims: pids of wgws-shim processes in the client namespace (zombies excluded).
shims() {
	local p
	for p in $(ip netns pids "$NS_C"); do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = wgws-shim ] &&
			[ "$(awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null)" != Z ] && echo "$p"
	done
	return 0
}

say "gateway: wireguard-go, relay (--max-record 1452), provisioner; client: UDP blocked, squid"
topology
block_client_udp
start_squid
certs_make
(umask 077 && wg genkey >"$T/keys/gw.key")
spawn_ns "$NS_G" "$T/wg-gw.log" wireguard-go -f "$WG_G"
WGG_PID=$SPAWNED
wait_for 10 test -S "/var/run/wireguard/$WG_G.sock" || fail "wireguard-go (gateway) did not start"
in_g wg set "$WG_G" private-key "$T/keys/gw.key" listen-port "$WG_PORT"
in_g ip addr add "$TUN_G/24" dev "$WG_G"
in_g ip link set "$WG_G" up
start_relay --wg "127.0.0.1:$WG_PORT" --max-record 1452
spawn_ns "$NS_G" "$T/prov.log" "$PROV" serve --interface "$WG_G" --backend uapi --db "$DB" \
	--api "unix:$SOCK" --pool4 10.202.0.0/24 --relay-url "wss://$GW_NAME/wg" --relay-pin "$PIN"
PROV_PID=$SPAWNED
wait_for 10 prov_healthy || fail "provisioner /healthz did not answer 200 within 10 s"
ok "relay pid $RELAY_PID, provisioner pid $PROV_PID"

say "the operator: peer add --config; the user: wg-quick up on that file"
(umask 077 && "$PROV" peer add --config --name laptop --api "unix:$SOCK" >"$CONF") ||
	fail "peer add --config failed"
for want in "MTU = 1420" \
	"PreUp = wgws-shim --background /run/wgws-shim-%i.pid --listen 127.0.0.1:51820 --relay wss://$GW_NAME/wg --pin $PIN" \
	"PostDown = wgws-shim --stop /run/wgws-shim-%i.pid" "Endpoint = 127.0.0.1:51820"; do
	grep -qxF -- "$want" "$CONF" || fail "the config lacks the line '$want': $(oneline "$(cat "$CONF")")"
done
ok "the config has MTU = 1420, the PreUp that starts the shim (URL, pin) and the PostDown"
# The documented command, with the shim on PATH (make install puts it in /usr/local/bin).
up() {
	in_c env PATH="$WGWS_BUILD:$PATH" https_proxy="http://$P_CLIENT:$PROXY_PORT" \
		wg-quick up "$CONF" >"$T/up.log" 2>&1
}
up || fail "wg-quick up failed: $(oneline "$(tail -5 "$T/up.log")")"
[ -s "$PIDFILE" ] || fail "no pid file $PIDFILE after wg-quick up"
SHIM=$(cat "$PIDFILE")
[ "$(shims)" = "$SHIM" ] || fail "shims in the client namespace: '$(shims)', pid file says $SHIM"
mtu=$(in_c cat "/sys/class/net/$IF/mtu")
expect "the interface's MTU" "$mtu" 1420
ok "wg-quick up: exit 0, shim pid $SHIM running, $IF at MTU $mtu"

say "traffic through the tunnel"
GW=10.202.0.1
in_c ping -n -q -c 5 -i 0.2 -W 3 "$GW" >"$T/ping.log" 2>&1 ||
	fail "ping $GW through the tunnel: $(oneline "$(cat "$T/ping.log")")"
TUN_G=$GW iperf_server
mbps=$(TUN_G=$GW iperf_mbps 2) || fail "iperf3 through the tunnel failed: $(tail -3 "$T"/iperf-*.json)"
in_c ping -n -q -c 3 -i 0.3 -W 3 -s 2000 "$GW" >"$T/ping2000.log" 2>&1 ||
	fail "a 2,000-byte ping: $(oneline "$(cat "$T/ping2000.log")")"
expect "records over --max-record (closed with 1009)" \
	"$(relay_metric 'wgws_relay_packets_dropped_total{reason="oversize"}')" 0
# Two connections: the shim's start-up check (closed at once), then the tunnel, all along.
expect "connections (the start-up check, then one tunnel all along)" \
	"$(relay_metric wgws_relay_connections_total)" 2
grep -qF "start-up check: wss://$GW_NAME/wg works from here" "$T/up.log" ||
	fail "wg-quick up showed no start-up check"
[ "$(log_count "$RELAY_LOG" ": closed after")" = 1 ] || fail "a tunnel was closed: $(oneline "$(grep "closed after" "$RELAY_LOG")")"
ok "ping, iperf3 $mbps Mbit/s for 2 s, a 2,000-byte ping answered (fragmented inside), no tunnel closed"

say "the PreUp's command again, while its shim runs"
# (A second wg-quick up stops earlier: the interface exists.) The same pid file: refused.
pre=$(sed -n 's/^PreUp = //p' "$CONF" | sed "s/%i/$IF/")
if in_c env PATH="$WGWS_BUILD:$PATH" sh -c "$pre" >"$T/pre2.log" 2>&1; then
	fail "a second shim started on $PIDFILE"
fi
grep -q "another wgws-shim (pid $SHIM) already runs with $PIDFILE" "$T/pre2.log" ||
	fail "the second shim's message: $(oneline "$(cat "$T/pre2.log")")"
[ "$(shims)" = "$SHIM" ] && [ "$(cat "$PIDFILE")" = "$SHIM" ] ||
	fail "after the second start, shims: '$(shims)', pid file: $(cat "$PIDFILE")"
in_c ping -n -q -c 2 -i 0.2 -W 3 "$GW" >/dev/null 2>&1 || fail "the tunnel broke"
ok "refused: $(oneline "$(grep -m1 another "$T/pre2.log")"); shim $SHIM and the tunnel untouched"

say "wg-quick down"
in_c env PATH="$WGWS_BUILD:$PATH" wg-quick down "$CONF" >"$T/down.log" 2>&1 ||
	fail "wg-quick down failed: $(oneline "$(tail -5 "$T/down.log")")"
[ -z "$(shims)" ] || fail "shims left after wg-quick down: $(shims)"
[ ! -e "$PIDFILE" ] || fail "the pid file $PIDFILE is left"
! in_c ip link show "$IF" >/dev/null 2>&1 || fail "$IF is still there"
ok "no shim left, no pid file, no $IF ($(oneline "$(grep -m1 stopped "$T/down.log")"))"

# --- a full tunnel ------------------------------------------------------------------------
say "a full tunnel: AllowedIPs = 0.0.0.0/0, the proxy reached by the default route"
# The client reaches the proxy by its default route, as on most networks (with a route to
# the proxy's own subnet, wg-quick's "suppress_prefixlength 0" rule would hide the problem).
in_c ip addr flush dev proxy0
in_c ip addr add "$C_PNET/32" dev proxy0
in_c ip route add default via "$P_CLIENT" dev proxy0 onlink
in_c ping -n -q -c 1 -W 2 "$P_CLIENT" >/dev/null || fail "the client cannot reach the proxy"
stop_pid "$PROV_PID"
spawn_ns "$NS_G" "$T/prov2.log" "$PROV" serve --interface "$WG_G" --backend uapi --db "$DB" \
	--api "unix:$SOCK" --pool4 10.202.0.0/24 --relay-url "wss://$GW_NAME/wg" --relay-pin "$PIN" \
	--relay-url "wss://$GW_NAME:8443/wg" --client-allowed-ips 0.0.0.0/0
PROV_PID=$SPAWNED
wait_for 10 prov_healthy || fail "provisioner /healthz did not answer 200 within 10 s"
IF=wgf$$ CONF=$T/$IF.conf PIDFILE=/run/wgws-shim-$IF.pid
at_exit "rm -f '$PIDFILE'"
(umask 077 && "$PROV" peer add --config --name full --api "unix:$SOCK" >"$CONF") ||
	fail "peer add --config failed"
for want in "FwMark = 51820" "AllowedIPs = 0.0.0.0/0"; do
	grep -qxF -- "$want" "$CONF" || fail "the config lacks the line '$want': $(oneline "$(cat "$CONF")")"
done
grep -q -- "^PreUp = wgws-shim .* --fwmark 51820$" "$CONF" ||
	fail "the PreUp does not mark: $(grep PreUp "$CONF")"
grep -qF -- "--relay wss://$GW_NAME/wg --relay wss://$GW_NAME:8443/wg --pin" "$CONF" ||
	fail "the PreUp does not name both relays, in order: $(grep PreUp "$CONF")"
ok "the config has FwMark = 51820, the PreUp's shim --fwmark 51820 and both --relay-url, in order"

# Without the mark, the shim's connection to the proxy would go into the tunnel: it says so
# when it connects. Its first connection is made before wg-quick sets the full tunnel's
# routes (PersistentKeepalive sends at once); the route change makes the shim probe it (2 s),
# the probe fails, and the new connection's route check says why.
mkdir -p "$T/nomark"
sed -e 's/ --fwmark 51820$//' "$CONF" >"$T/nomark/$IF.conf"
chmod 600 "$T/nomark/$IF.conf"
in_c env PATH="$WGWS_BUILD:$PATH" https_proxy="http://$P_CLIENT:$PROXY_PORT" \
	wg-quick up "$T/nomark/$IF.conf" >"$T/up-nomark.log" 2>&1 ||
	fail "wg-quick up (no mark) failed: $(oneline "$(tail -5 "$T/up-nomark.log")")"
in_c ping -n -q -c 2 -i 0.3 -W 1 "$GW" >/dev/null 2>&1 || true
said() { grep -q "the route to the proxy at $P_CLIENT:$PROXY_PORT goes out through $IF, a WireGuard interface" "$T/up-nomark.log"; }
wait_for 10 said || fail "no word of the route through $IF: $(oneline "$(grep wgws-shim "$T/up-nomark.log" | tail -3)")"
in_c env PATH="$WGWS_BUILD:$PATH" wg-quick down "$T/nomark/$IF.conf" >/dev/null 2>&1 ||
	fail "wg-quick down (no mark) failed"
[ -z "$(shims)" ] || fail "shims left: $(shims)"
ok "without --fwmark the shim says: $(grep -o 'the route to the proxy.*(a full tunnel?)' "$T/up-nomark.log" | head -1)"

connects0=$(grep -c CONNECT "$SQUID_DIR/access.log" || true)
up || fail "wg-quick up (full tunnel) failed: $(oneline "$(tail -5 "$T/up.log")")"
in_c ping -n -q -c 5 -i 0.2 -W 3 "$GW" >"$T/ping-full.log" 2>&1 ||
	fail "ping $GW through the full tunnel: $(oneline "$(cat "$T/ping-full.log")")"
in_c ip route get "$P_CLIENT" mark 51820 | grep -q "dev proxy0" ||
	fail "marked packets to the proxy do not leave by proxy0: $(in_c ip route get "$P_CLIENT" mark 51820)"
in_c ip route get 192.0.2.1 | grep -q "dev $IF" ||
	fail "the default route is not the tunnel: $(in_c ip route get 192.0.2.1)"
! grep -q "a WireGuard interface" "$T/up.log" || fail "the marked shim still warns: $(grep -m1 'WireGuard interface' "$T/up.log")"
in_c env PATH="$WGWS_BUILD:$PATH" wg-quick down "$CONF" >"$T/down.log" 2>&1 ||
	fail "wg-quick down failed: $(oneline "$(tail -5 "$T/down.log")")"
[ -z "$(shims)" ] && [ ! -e "$PIDFILE" ] || fail "after down: shims '$(shims)', pid file $(ls "$PIDFILE" 2>&1)"
# squid logs a CONNECT when it ends: the shim's, at wg-quick down.
connected() { [ $(($(grep -c CONNECT "$SQUID_DIR/access.log" || true) - connects0)) -ge 1 ]; }
wait_for 5 connected || fail "squid logged no CONNECT for the full tunnel"
connects=$(($(grep -c CONNECT "$SQUID_DIR/access.log" || true) - connects0))
ok "full tunnel through the proxy ($connects CONNECT at squid): ping answered; everything else routes into $IF; down leaves nothing"
echo "PASS test_wgquick"
