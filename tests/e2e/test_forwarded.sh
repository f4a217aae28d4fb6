#!/bin/bash
# SPDX-License-Identifier: MIT
# Behind a reverse proxy that ends TLS: nginx on the gateway's port 443 (the certificate is
# nginx's), proxying WebSockets to the relay's plain listener, a unix socket (--listen-ws
# unix:PATH, no --listen and no certificate at all), with X-Forwarded-For believed from it
# (--forwarded-from unix). nginx's workers run as nobody with the group wgws, which is what
# lets them into the socket (0660, the relay's user and group). The tunnel works through
# squid and nginx; the relay logs the real client (squid's address) and limits by it
# (--max-conns-per-ip 1: a second tunnel from squid's address is refused, one from another
# address is not). A trusted source without X-Forwarded-For, or with a malformed right end,
# gets 400 and is counted. A second relay on loopback TCP (--listen-ws 127.0.0.1:8081) behind
# a second nginx server: with --forwarded-from not naming nginx's address, X-Forwarded-For
# is ignored (the client is nginx's 127.0.0.1:PORT); SIGHUP with nginx trusted, and the
# client is the real one. Refused set-ups exit 2.
set -eu
. "$(dirname "$0")/lib.sh"
need_root
need_cmd wireguard-go wg nft squid curl ping nginx
need_bins wgws-relay wgws-shim
getent group wgws >/dev/null || skip "no group wgws (make deps creates the user wgws)"

dump_logs() {
	[ -z "$RELAY_LOG" ] || logtail "$RELAY_LOG" 15
	[ -z "$SHIM_LOG" ] || logtail "$SHIM_LOG" 10
	logtail "$T/relay2.log" 10
	logtail "$T/nginx-error.log" 10
}

say "refused set-ups"
rc=0
"$WGWS_BUILD/wgws-relay" --listen-ws 10.0.0.1:8081 >"$T/out" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "neither a loopback address" "$T/out" ||
	fail "--listen-ws on a non-loopback address: exit $rc: $(oneline "$(cat "$T/out")")"
rc=0
"$WGWS_BUILD/wgws-relay" --listen-ws unix:/run/x.sock --cert /x --key /x >"$T/out" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "cert and --key are for --listen" "$T/out" ||
	fail "--cert without --listen: exit $rc: $(oneline "$(cat "$T/out")")"
rc=0
"$WGWS_BUILD/wgws-relay" --listen-ws 127.0.0.1:8081 --forwarded-from unix >"$T/out" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "forwarded-from: unix, but --listen-ws is TCP" "$T/out" ||
	fail "--forwarded-from unix with TCP: exit $rc: $(oneline "$(cat "$T/out")")"
ok "--listen-ws off loopback, --cert without --listen, unix trust on TCP: exit 2, named"

corporate_network
mkdir -m 755 "$T/run" "$T/nginx-tmp"
SOCK=$T/run/relay.sock
RELAY_LOG=$T/relay.log
spawn_ns "$NS_G" "$RELAY_LOG" "$WGWS_BUILD/wgws-relay" --listen-ws "unix:$SOCK" \
	--forwarded-from unix --metrics "$METRICS" --max-conns-per-ip 1
RELAY_PID=$SPAWNED
wait_for 10 test -S "$SOCK" || fail "the relay made no socket at $SOCK"
perm=$(stat -c '%a %U:%G' "$SOCK")
[ "$perm" = "660 wgws:wgws" ] || fail "the socket is $perm, not 660 wgws:wgws"
rc=0
in_g "$WGWS_BUILD/wgws-relay" --listen-ws "unix:$SOCK" >"$T/out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "a process listens on that socket" "$T/out" ||
	fail "a second relay on the live socket: exit $rc: $(oneline "$(cat "$T/out")")"
touch "$T/run/file"
rc=0
in_g "$WGWS_BUILD/wgws-relay" --listen-ws "unix:$T/run/file" >"$T/out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "a file that is not a socket is there" "$T/out" && [ -f "$T/run/file" ] ||
	fail "a regular file at the path: exit $rc: $(oneline "$(cat "$T/out")")"
ok "unix socket $SOCK: $perm; a second relay on it and a regular file at a path refused"

cat >"$T/relay2.conf" <<EOF
[Relay]
ListenWs = 127.0.0.1:8081
ForwardedFrom = 127.0.0.2
Metrics = 127.0.0.1:9101
EOF
spawn_ns "$NS_G" "$T/relay2.log" "$WGWS_BUILD/wgws-relay" -c "$T/relay2.conf"
RELAY2_PID=$SPAWNED
relay2_listens() { in_g ss -Hltn "sport = :8081" | grep -q .; }
wait_for 10 relay2_listens || fail "the second relay does not listen on 127.0.0.1:8081"

proxy_block() { # the location every server shares
	cat <<EOF
		location / {
			proxy_pass $1;
			proxy_http_version 1.1;
			proxy_set_header Upgrade \$http_upgrade;
			proxy_set_header Connection \$connection_upgrade;
			proxy_set_header Host \$host;
			proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
			proxy_read_timeout 600s;
			proxy_send_timeout 600s;
			proxy_buffering off;
		}
EOF
}
cat >"$T/nginx.conf" <<EOF
user nobody wgws;
worker_processes 1;
daemon off;
pid $T/nginx.pid;
error_log $T/nginx-error.log info;
events { worker_connections 256; }
http {
	access_log $T/nginx-access.log;
	client_body_temp_path $T/nginx-tmp/body;
	proxy_temp_path $T/nginx-tmp/proxy;
	fastcgi_temp_path $T/nginx-tmp/fastcgi;
	uwsgi_temp_path $T/nginx-tmp/uwsgi;
	scgi_temp_path $T/nginx-tmp/scgi;
	map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
	ssl_certificate $CERT;
	ssl_certificate_key $KEY;
	server {
		listen 443 ssl;
$(proxy_block "http://unix:$SOCK")
	}
	server {
		listen 8443 ssl;
$(proxy_block "http://127.0.0.1:8081")
	}
}
EOF
in_g nginx -t -q -e "$T/nginx-error.log" -c "$T/nginx.conf" ||
	fail "nginx rejects its configuration: $(oneline "$(tail -3 "$T/nginx-error.log")")"
spawn_ns "$NS_G" "$T/nginx.out" nginx -e "$T/nginx-error.log" -c "$T/nginx.conf"
PIDS+=("$SPAWNED")
wait_for 10 relay_healthz || fail "https://127.0.0.1/healthz through nginx does not answer 200"
ok "nginx ends TLS on 443 and 8443; /healthz answers through the unix socket"

say "a tunnel through squid, nginx and the unix socket"
start_shim --pin "$PIN"
bg_ping_start "$T/bgping.log"
wait_shim_connected 15
wait_for 15 grep -q "bytes from" "$BGPING_LOG" || fail "no ping through nginx"
bg_ping_stop
line=$(grep "tunnel .*: open, WireGuard endpoint" "$RELAY_LOG" | tail -1)
client=$(sed -n 's/.*tunnel \([^ ]*\): open.*/\1/p' <<<"$line")
[ "$client" = "$P_GNET" ] || fail "the relay names '$client', not squid's $P_GNET: $line"
ok "the relay logs the real client $client (X-Forwarded-For from nginx), not the socket's peer"

say "limits by the real client: --max-conns-per-ip 1"
check_via() { # NS PORT ARGS...: wgws-shim --check from NS to gw:PORT
	local ns=$1 port=$2
	shift 2
	ip netns exec "$ns" "$WGWS_BUILD/wgws-shim" --check --relay "wss://$GW_NAME:$port/wg" \
		--pin "$PIN" "$@" >"$T/check.out" 2>&1
}
rc=0
check_via "$NS_C" 443 --proxy "http://$P_CLIENT:$PROXY_PORT" || rc=$?
[ "$rc" = 1 ] && grep -q "503" "$T/check.out" ||
	fail "a second tunnel from squid's address: exit $rc: $(oneline "$(cat "$T/check.out")")"
mkdir -p "/etc/netns/$NS_G"
at_exit "rm -rf '/etc/netns/$NS_G'"
echo "$G_PROXY $GW_NAME" >"/etc/netns/$NS_G/hosts"
check_via "$NS_G" 443 --no-proxy ||
	fail "a tunnel from another address was refused: $(oneline "$(cat "$T/check.out")")"
ok "a second tunnel from $P_GNET refused (503), one from $G_PROXY let in"

say "a trusted source without a valid X-Forwarded-For: 400"
upgrade() { # extra curl args: an upgrade straight into the unix socket
	in_g curl -s -m 3 -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" \
		-H "Connection: Upgrade" -H "Upgrade: websocket" -H "Sec-WebSocket-Version: 13" \
		-H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" -H "Sec-WebSocket-Protocol: wgws" \
		"$@" http://relay/wg || true
}
before=$(relay_metric 'wgws_relay_connections_rejected_total{reason="forwarded"}')
code=$(upgrade)
[ "$code" = 400 ] || fail "no X-Forwarded-For: HTTP $code"
code=$(upgrade -H "X-Forwarded-For: 203.0.113.7, not-an-address")
[ "$code" = 400 ] || fail "a malformed right end: HTTP $code"
after=$(relay_metric 'wgws_relay_connections_rejected_total{reason="forwarded"}')
[ "$after" = $((before + 2)) ] || fail "rejected{forwarded} $before -> $after"
grep -q "no X-Forwarded-For: refusing a tunnel (400)" "$RELAY_LOG" || fail "not logged"
ok "both refused (400), counted (rejected{forwarded} $before -> $after) and logged"

say "loopback TCP: X-Forwarded-For from an untrusted source is ignored, then trusted after SIGHUP"
check_via "$NS_G" 8443 --no-proxy ||
	fail "through nginx:8443 to 127.0.0.1:8081: $(oneline "$(cat "$T/check.out")")"
line=$(grep "tunnel .*: open, WireGuard endpoint" "$T/relay2.log" | tail -1)
case "$line" in *"tunnel 127.0.0.1:"*) ;; *) fail "untrusted nginx: the relay logs: $line" ;; esac
grep -q "X-Forwarded-For from 127.0.0.1:[0-9]* ignored: not a --forwarded-from source" \
	"$T/relay2.log" || fail "the ignored X-Forwarded-For is not said"
ok "nginx (127.0.0.1) not in --forwarded-from 127.0.0.2: the client is nginx's own"
sed -i 's/^ForwardedFrom = .*/ForwardedFrom = 127.0.0.0\/8/' "$T/relay2.conf"
kill -HUP "$RELAY2_PID"
wait_for 5 grep -q "forwarded-from 1 -> 1 networks" "$T/relay2.log" ||
	fail "the reload does not name --forwarded-from: $(oneline "$(tail -2 "$T/relay2.log")")"
check_via "$NS_G" 8443 --no-proxy ||
	fail "after SIGHUP: $(oneline "$(cat "$T/check.out")")"
line=$(grep "tunnel .*: open, WireGuard endpoint" "$T/relay2.log" | tail -1)
case "$line" in *"tunnel $G_PROXY: open"*) ;; *) fail "trusted nginx: the relay logs: $line" ;; esac
ok "after SIGHUP (--forwarded-from 127.0.0.0/8) the client is $G_PROXY"
alive "$RELAY_PID" && alive "$RELAY2_PID" || fail "a relay died"
echo "PASS test_forwarded"
