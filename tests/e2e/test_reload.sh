#!/bin/bash
# SPDX-License-Identifier: MIT
# SIGHUP reloads the relay without dropping a tunnel: a ping flood through WireGuard, the
# shim through squid, while the certificate and key are replaced and the relay gets SIGHUP:
# at most two pings lost, the tunnel never reconnects, new connections present the new
# certificate (wgws-shim --check prints its pin), the expiry gauge and reloads_total follow.
# A broken replacement (a key that does not match) keeps the old certificate and says why;
# a changed setting that needs a restart is named. SIGHUP kills neither the relay nor the
# shim; a renewal with mkcert.sh --reuse-key keeps the pin. Socket activation: the relay as
# wgws with no capability serves 443 from systemd-socket-activate and sends READY=1. Start-up honesty: a listener that cannot bind (an address not on the host, a port
# in use, 443 without CAP_NET_BIND_SERVICE) and a key that does not match the certificate
# (also under --check-config) exit non-zero with the reason.
set -eu
. "$(dirname "$0")/lib.sh"
need_root
need_cmd wireguard-go wg nft squid curl ping openssl setpriv
need_bins wgws-relay wgws-shim

dump_logs() {
	[ -z "$RELAY_LOG" ] || logtail "$RELAY_LOG" 15
	[ -z "$SHIM_LOG" ] || logtail "$SHIM_LOG" 10
	logtail "$T/flood.log" 5
}

topology
wg_up
block_client_udp
wg_endpoint_shim
certs_make
PIN_A=$PIN
mkcert() { "$WGWS_TOP/certs/mkcert.sh" "$GW_NAME" "$G_PROXY" -o "$T/$1" --days "$2" |
	sed -n 's/^pin: *//p'; }
PIN_B=$(mkcert certB 20)
PIN_C=$(mkcert certC 400)
chmod 755 "$T/certB" "$T/certC"

say "start-up: listeners that cannot bind, a key that does not match"
# relay_fails WHAT PATTERN ARGS...: the relay with ARGS exits non-zero within 5 s, saying PATTERN.
relay_fails() {
	local what=$1 pat=$2 rc=0
	shift 2
	timeout 5 ip netns exec "$NS_G" "$WGWS_BUILD/wgws-relay" --cert "$CERT" --key "$KEY" \
		"$@" >"$T/fail.log" 2>&1 || rc=$?
	[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "$what: exit $rc: $(oneline "$(cat "$T/fail.log")")"
	grep -qF -- "$pat" "$T/fail.log" || fail "$what: no '$pat': $(oneline "$(cat "$T/fail.log")")"
	ok "$what: exit $rc: $(grep -m1 -F -- "$pat" "$T/fail.log" | sed 's/^.*fatal: //')"
}
relay_fails "an address not on the host" "(the address is not on this host)" \
	--listen 192.0.2.1:8443 --user root
relay_fails "--metrics on an address not on the host" "--metrics 192.0.2.1:9100" \
	--listen 127.0.0.1:8443 --metrics 192.0.2.1:9100 --user root
in_g python3 -c "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 8443)); s.listen(); time.sleep(30)" &
HOLD=$!
PIDS+=("$HOLD")
wait_for 5 sh -c "ip netns exec $NS_G ss -Hltn 'sport = :8443' | grep -q ." || fail "no port holder"
relay_fails "a port in use" "Address already in use" --listen 127.0.0.1:8443 --user root
stop_pid "$HOLD" KILL 2
# 443 as a user without CAP_NET_BIND_SERVICE (nobody, every capability dropped), for real.
cp "$KEY" "$T/nobody.key" && chown nobody "$T/nobody.key"
rc=0
timeout 5 ip netns exec "$NS_G" setpriv --reuid=nobody --regid=nogroup --clear-groups \
	--inh-caps=-all --bounding-set=-all -- "$WGWS_BUILD/wgws-relay" --listen 127.0.0.1:443 \
	--cert "$CERT" --key "$T/nobody.key" >"$T/fail.log" 2>&1 || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] && grep -q "needs root or CAP_NET_BIND_SERVICE" "$T/fail.log" ||
	fail "443 without the capability: exit $rc: $(oneline "$(cat "$T/fail.log")")"
ok "443 as nobody without capabilities: exit $rc: $(grep -m1 CAP_NET "$T/fail.log" | sed 's/^.*fatal: //')"
out=$(in_g "$WGWS_BUILD/wgws-relay" --listen 0.0.0.0:443 --cert "$T/certB/$GW_NAME.crt" \
	--key "$KEY" --check-config 2>&1) && fail "--check-config accepted a key that does not match"
grep -q "do not match" <<<"$out" || fail "--check-config, mismatched key: $(oneline "$out")"
ok "--check-config, a key that does not match: $(oneline "$out" | sed 's/^.*fatal: //')"
out=$(in_g "$WGWS_BUILD/wgws-relay" --listen 0.0.0.0:443 --cert "$T/certB/$GW_NAME.crt" \
	--key "$T/certB/$GW_NAME.key" --check-config 2>&1) || fail "--check-config: $(oneline "$out")"
grep -qE "expires in (19|20) day\(s\)" <<<"$out" && grep -q "configuration ok" <<<"$out" ||
	fail "--check-config, 20 days left: no warning: $(oneline "$out")"
ok "--check-config, a certificate valid 20 days: ok, with a warning: $(grep -oE "expires in [0-9]+ day\(s\)" <<<"$out")"

say "a ping flood through the tunnel while the relay reloads"
# The relay reloads as its user (wgws), no longer root: the key must be readable by it, as
# the deployment guide says (group wgws, mode 640). First without: the reload says so.
start_squid
start_relay
start_shim --pin "$PIN_A" --pin "$PIN_B" --pin "$PIN_C"
ping_ok 3 3 || fail "no tunnel before the reload"
wait_shim_connected 10
before=$(relay_metric wgws_relay_certificate_expiry_timestamp_seconds)
[ "$before" -gt "$(date +%s)" ] || fail "expiry gauge: $before"
in_c ping -n -i 0.01 -c 600 -W 1 "$TUN_G" >"$T/flood.log" 2>&1 &
FLOOD=$!
PIDS+=("$FLOOD")
sleep 1
cp "$T/certB/$GW_NAME.crt" "$CERT.new" && mv "$CERT.new" "$CERT"
cp "$T/certB/$GW_NAME.key" "$KEY.new" && mv "$KEY.new" "$KEY"
kill -HUP "$RELAY_PID"
wait_for 5 grep -q "not readable by uid" "$RELAY_LOG" || fail "an unreadable key: no reason logged"
ok "an unreadable key: $(grep -m1 "not readable by uid" "$RELAY_LOG" | sed 's/^.*nothing changed//')"
chgrp wgws "$KEY" "$T/certB/$GW_NAME.key" "$T/certC/$GW_NAME.key"
chmod 640 "$KEY" "$T/certB/$GW_NAME.key" "$T/certC/$GW_NAME.key"
kill -HUP "$RELAY_PID"
wait_for 5 grep -q "reloaded: new connections get the certificate" "$RELAY_LOG" ||
	fail "the relay did not log a reload"
grep -qE "expires in (19|20) day\(s\)" "$RELAY_LOG" || fail "the reload did not warn of the near expiry"
wait "$FLOOD" || true
sent=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' "$T/flood.log")
got=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$T/flood.log")
[ -n "$sent" ] && [ $((sent - got)) -le 2 ] || fail "ping flood across the reload: $got of $sent"
[ "$(log_count "$SHIM_LOG" "connected to relay")" = 1 ] || fail "the tunnel reconnected"
alive "$RELAY_PID" || fail "SIGHUP stopped the relay"
ok "SIGHUP during a flood: $got of $sent pings answered, the tunnel never reconnected"
check_pin() {
	in_c "$WGWS_BUILD/wgws-shim" --check --relay "wss://$GW_NAME/wg" \
		--proxy "http://$P_CLIENT:$PROXY_PORT" --pin "$1" >"$T/check.out" 2>&1
}
check_pin "$PIN_B" || fail "a new connection does not present the new certificate: $(oneline "$(cat "$T/check.out")")"
! check_pin "$PIN_A" || fail "a new connection still presents the old certificate"
grep -qF "server has $PIN_B" "$T/check.out" || fail "--check with the old pin: $(oneline "$(cat "$T/check.out")")"
after=$(relay_metric wgws_relay_certificate_expiry_timestamp_seconds)
want=$(date -d "$(openssl x509 -enddate -noout -in "$T/certB/$GW_NAME.crt" | cut -d= -f2)" +%s)
[ "$after" = "$want" ] || fail "expiry gauge did not follow: $before -> $after, want $want"
expect "reloads_total{ok}" "$(relay_metric 'wgws_relay_reloads_total{result="ok"}')" 1
ok "new connections present $PIN_B; expiry gauge $before -> $after"

say "a broken replacement keeps the old certificate"
cp "$T/certC/$GW_NAME.crt" "$CERT" # the key stays B's: they do not match
kill -HUP "$RELAY_PID"
wait_for 5 grep -q "reload failed, nothing changed" "$RELAY_LOG" || fail "no failed reload logged"
grep -q "do not match" "$RELAY_LOG" || fail "the failed reload does not say why"
check_pin "$PIN_B" || fail "after a failed reload, the old certificate is gone"
expect "reloads_total{failed}" "$(relay_metric 'wgws_relay_reloads_total{result="failed"}')" 2
ping_ok 3 3 || fail "the tunnel after a failed reload"
ok "$(grep "reload failed" "$RELAY_LOG" | tail -1 | sed "s/^.*warning: //")"

say "settings: one applied at once, one that needs a restart"
cp "$T/certC/$GW_NAME.key" "$KEY"
cat >"$T/relay.conf" <<EOF
[Relay]
rate-per-ip = 50
max-conns = 99
EOF
stop_shim
stop_relay
start_relay -c "$T/relay.conf"
start_shim --pin "$PIN_A" --pin "$PIN_B" --pin "$PIN_C"
ping_ok 3 3 || fail "no tunnel after the restart"
printf '[Relay]\nrate-per-ip = 20\nmax-conns = 100\n' >"$T/relay.conf"
kill -HUP "$RELAY_PID"
wait_for 5 grep -q "changed now: --rate-per-ip 50 -> 20" "$RELAY_LOG" ||
	fail "the live change is not logged"
grep -q "only a restart applies it: --max-conns" "$RELAY_LOG" || fail "the restart-only change is not named"
check_pin "$PIN_C" || fail "the third certificate is not served"
ok "--rate-per-ip applied at once, --max-conns named as needing a restart; certificate C served"

say "a renewal with the same key (mkcert.sh --reuse-key): the pin stays"
old_exp=$(relay_metric wgws_relay_certificate_expiry_timestamp_seconds)
out=$("$WGWS_TOP/certs/mkcert.sh" "$GW_NAME" "$G_PROXY" -o "$T/certC" --days 800 --reuse-key)
grep -qF "pin:         $PIN_C" <<<"$out" || fail "--reuse-key changed the pin: $(oneline "$out")"
cp "$T/certC/$GW_NAME.crt" "$CERT"
kill -HUP "$RELAY_PID"
renewed() { [ "$(relay_metric wgws_relay_certificate_expiry_timestamp_seconds)" != "$old_exp" ]; }
wait_for 5 renewed || fail "the renewed certificate was not loaded"
check_pin "$PIN_C" || fail "after a --reuse-key renewal the pin does not match"
ok "renewed for 800 days with the same key: $PIN_C still matches"

say "socket activation: port 443 from systemd, the relay as wgws with no capability"
stop_relay
# systemd-socket-activate binds 443 as root and execs setpriv, which execs the relay as wgws
# (the same pid: LISTEN_PID holds); NOTIFY_SOCKET is a datagram socket of ours (Type=notify).
in_g /usr/bin/python3 -c "
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('$T/notify.sock')
s.settimeout(20)
open('$T/notify.ready', 'w').close()
print(s.recv(4096).decode(), flush=True)" >"$T/notify.out" 2>&1 &
NOTIFY=$!
PIDS+=("$NOTIFY")
wait_for 5 [ -e "$T/notify.ready" ] || fail "no notify socket"
chmod 777 "$T/notify.sock"
RELAY_N=$((RELAY_N + 1))
RELAY_LOG=$T/relay-$RELAY_N.log
spawn_ns "$NS_G" "$RELAY_LOG" systemd-socket-activate -E NOTIFY_SOCKET="$T/notify.sock" \
	-l 0.0.0.0:443 setpriv --reuid=wgws --regid=wgws --init-groups --inh-caps=-all \
	--bounding-set=-all -- "$WGWS_BUILD/wgws-relay" --cert "$CERT" --key "$KEY" \
	--metrics "$METRICS"
RELAY_PID=$SPAWNED
wait_for 10 relay_healthz || fail "the socket-activated relay does not answer: $(oneline "$(cat "$RELAY_LOG")")"
grep -q "listening on 0.0.0.0:443 (a socket from systemd)" "$RELAY_LOG" ||
	fail "the relay does not say its socket came from systemd"
wait "$NOTIFY" || true
grep -q "^READY=1" "$T/notify.out" || fail "no READY=1 on NOTIFY_SOCKET: $(oneline "$(cat "$T/notify.out")")"
rpid=$(in_g ss -Hltnp "sport = :443" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
st=$(cat "/proc/$rpid/status")
grep -q "^Uid:[[:space:]]*$(id -u wgws)[[:space:]]" <<<"$st" && grep -q "^CapEff:[[:space:]]*0*$" <<<"$st" ||
	fail "the relay on 443 is not wgws without capabilities: $(grep -E '^(Uid|CapEff)' <<<"$st" | tr '\n' ' ')"
check_pin "$PIN_C" || fail "a tunnel through the socket-activated relay: $(oneline "$(cat "$T/check.out")")"
kill -HUP "$RELAY_PID" # no --listen: the socket is systemd's, and stays TLS on reload
wait_for 5 grep -q "reloaded: new connections get the certificate" "$RELAY_LOG" ||
	fail "SIGHUP under socket activation: $(oneline "$(grep -i reload "$RELAY_LOG")")"
ok "443 from systemd-socket-activate, the relay as uid $(id -u wgws) with CapEff 0, READY=1 sent; --check passes; SIGHUP reloads"

say "SIGHUP never kills the shim"
kill -HUP "$SHIM_PID"
wait_for 5 grep -q "SIGHUP: nothing to reload" "$SHIM_LOG" || fail "the shim did not log SIGHUP"
alive "$SHIM_PID" || fail "SIGHUP stopped the shim"
ping_ok 3 3 || fail "the tunnel after the shim's SIGHUP"
ok "the shim logs SIGHUP and serves on"
echo "PASS test_reload"
