#!/bin/bash
# SPDX-License-Identifier: MIT
# Behind a load balancer: haproxy on the gateway's port 443 in TCP mode, sending PROXY
# protocol v2 to the relay on [::]:8443 (dual stack: haproxy's 127.0.0.1 arrives as
# ::ffff:127.0.0.1, and --proxy-protocol-from 127.0.0.1 must still trust it). The tunnel
# works through squid and haproxy; the relay logs the real client (squid's address and
# port, not haproxy's 127.0.0.1), and limits by it: with --max-conns-per-ip 1 a second
# tunnel from the same client is refused while one from another address is not (without
# the header every tunnel would be haproxy's). A trusted source without a header is closed
# and counted; one that sends half a header and waits costs the relay no CPU meanwhile.
set -eu
. "$(dirname "$0")/lib.sh"
need_root
need_cmd wireguard-go wg nft squid curl ping haproxy
need_bins wgws-relay wgws-shim

dump_logs() {
	[ -z "$RELAY_LOG" ] || logtail "$RELAY_LOG" 15
	[ -z "$SHIM_LOG" ] || logtail "$SHIM_LOG" 10
	logtail "$T/haproxy.log" 10
}

corporate_network
RELAY_LOG=$T/relay.log
spawn_ns "$NS_G" "$RELAY_LOG" "$WGWS_BUILD/wgws-relay" --listen "[::]:8443" --cert "$CERT" \
	--key "$KEY" --metrics "$METRICS" --proxy-protocol-from 127.0.0.1/32 --max-conns-per-ip 1
RELAY_PID=$SPAWNED
relay_listens() { in_g ss -Hltn "sport = :8443" | grep -q .; }
wait_for 10 relay_listens || fail "the relay does not listen"
cat >"$T/haproxy.cfg" <<EOF
global
	maxconn 200
defaults
	mode tcp
	timeout connect 5s
	timeout client 600s
	timeout server 600s
frontend tls
	bind 0.0.0.0:443
	default_backend relay
backend relay
	server relay 127.0.0.1:8443 send-proxy-v2
EOF
haproxy -c -f "$T/haproxy.cfg" >/dev/null 2>&1 || fail "haproxy rejects its configuration"
spawn_ns "$NS_G" "$T/haproxy.log" haproxy -db -f "$T/haproxy.cfg"
PIDS+=("$SPAWNED")
ha_listens() { in_g ss -Hltn "sport = :443" | grep -q .; }
wait_for 10 ha_listens || fail "haproxy does not listen on 443"

say "a tunnel through squid and haproxy"
start_shim --pin "$PIN"
bg_ping_start "$T/bgping.log"
wait_shim_connected 15
wait_for 15 grep -q "bytes from" "$BGPING_LOG" || fail "no ping through haproxy"
bg_ping_stop
line=$(grep "tunnel .*: open, WireGuard endpoint" "$RELAY_LOG" | tail -1) # the start-up check came first
client=$(sed -n 's/.*tunnel \([^ ]*\): open.*/\1/p' <<<"$line")
case "$client" in "$P_GNET":*) ;; *) fail "the relay names $client, not squid's $P_GNET:PORT" ;; esac
in_p ss -Htn "dport = :443" | grep -q "$client" ||
	fail "no connection from $client at squid: $(in_p ss -Htn "dport = :443")"
ok "the relay logs the real client $client (squid's connection), not haproxy's 127.0.0.1"

say "limits by the real client: --max-conns-per-ip 1"
check_via() { # NS: wgws-shim --check from NS (through squid when NS is the client's)
	local ns=$1
	shift
	ip netns exec "$ns" "$WGWS_BUILD/wgws-shim" --check --relay "wss://$GW_NAME/wg" \
		--pin "$PIN" "$@" >"$T/check.out" 2>&1
}
rc=0
check_via "$NS_C" --proxy "http://$P_CLIENT:$PROXY_PORT" || rc=$?
[ "$rc" = 1 ] && grep -q "503" "$T/check.out" ||
	fail "a second tunnel from squid's address: exit $rc: $(oneline "$(cat "$T/check.out")")"
mkdir -p "/etc/netns/$NS_G"
at_exit "rm -rf '/etc/netns/$NS_G'"
echo "$G_PROXY $GW_NAME" >"/etc/netns/$NS_G/hosts"
check_via "$NS_G" --no-proxy ||
	fail "a tunnel from another address (the gateway's own) was refused: $(oneline "$(cat "$T/check.out")")"
ok "a second tunnel from $P_GNET refused (503), one from $G_PROXY let in"

say "a trusted source without a PROXY header"
before=$(relay_metric 'wgws_relay_connections_rejected_total{reason="proxy_protocol"}')
in_g curl -sk -m 3 -o /dev/null "https://127.0.0.1:8443/healthz" || true
after=$(relay_metric 'wgws_relay_connections_rejected_total{reason="proxy_protocol"}')
[ "$after" -gt "$before" ] || fail "rejected{proxy_protocol} $before -> $after"
grep -q "without a valid PROXY v2 header: closed" "$RELAY_LOG" || fail "not logged"
ok "closed and counted (rejected{proxy_protocol} $before -> $after)"

say "half a header, then silence: the relay waits without spinning"
t0=$(cpu_ticks "$RELAY_PID")
in_g python3 -c "
import socket, time
s = socket.create_connection(('127.0.0.1', 8443))
s.sendall(b'\r\n\r\n\x00\r\nQU')
time.sleep(2)
s.close()"
ticks=$(($(cpu_ticks "$RELAY_PID") - t0))
[ "$ticks" -lt 40 ] || fail "the relay used $ticks ticks in 2 s waiting for the rest of a header"
alive "$RELAY_PID" || fail "the relay died"
ok "$ticks CPU ticks in 2 s (CLK_TCK $(getconf CLK_TCK)) while half a header waited"
echo "PASS test_proxyproto"
