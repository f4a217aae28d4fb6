#!/bin/bash
# SPDX-License-Identifier: MIT
# flyctl's WireGuard-over-WebSocket client, served on the relay's port beside wgws clients:
# tests/tools/flyclient.py behaves as flyctl's wg/ws.go does (wss://IP:443/, path /, no SNI,
# no subprotocol, the preamble 2f ac ed 77 in a message of its own, TEXT messages of u32
# big-endian length ‖ datagram, a zero-length record after a second of silence). A real
# wireguard-go client sends through it, through squid (UDP blocked for the client), to the
# relay, whose JIT (--jit-socket) has the provisioner install the client's peer at its first
# handshake: the gateway's first handshake within 1 s of the first ping (no 5 s retry).
# Then: idle for 3 s, flyclient's keepalives keep the tunnel and pings go on; flyclient in
# flyctl's older mode (length and datagram as two messages) carries pings too; what the
# relay sends back is TEXT only and names no subprotocol (flyclient fails otherwise). A
# stream without the preamble gets 1002, a BINARY message 1003; --flyctl no (SIGHUP) refuses
# such upgrades with 400, and wgws clients are unaffected.
set -eu
. "$(dirname "$0")/lib.sh"
jit_test_init
POOL4=10.202.0.0/24
PROV_LOG="" PROV_PID="" FLY_LOG="" FLY_PID=""

dump_logs() {
	[ -z "$PROV_LOG" ] || logtail "$PROV_LOG" 10
	[ -z "$RELAY_LOG" ] || logtail "$RELAY_LOG" 15
	[ -z "$FLY_LOG" ] || logtail "$FLY_LOG" 10
}

say "gateway without the client's peer, provisioner --jit, relay --jit-socket, squid"
jit_network
jit_prov_start
printf '[Relay]\nFlyctl = yes\n' >"$T/relay.conf"
start_relay -c "$T/relay.conf" --jit-socket "$JSOCK"
wait_for 10 jit_connected || fail "the relay did not connect to the provisioner"
req POST /v1/peers -H 'Content-Type: application/json' \
	--data-binary "{\"public_key\":\"$WG_C_PUB\",\"name\":\"fly\"}"
[ "$CODE" = 201 ] || fail "POST /v1/peers: HTTP $CODE"
addr=$(jget 'd["addresses"][0].split("/")[0]')
if [ "$addr" != "$TUN_C" ]; then
	in_c ip addr flush dev "$WG_C"
	in_c ip addr add "$addr/24" dev "$WG_C"
fi
ok "peer stored, not installed: $(in_g wg show "$WG_G" peers | wc -l) peers on the gateway"

# fly_start ARGS...: flyclient in the client namespace on WireGuard's endpoint (SHIM_PORT),
# through squid to the gateway by address.
fly_start() {
	FLY_N=$((${FLY_N:-0} + 1))
	FLY_LOG=$T/fly-$FLY_N.log
	spawn_ns "$NS_C" "$FLY_LOG" "$PY" "$TOOLS/flyclient.py" "$G_PROXY:443" \
		--listen "127.0.0.1:$SHIM_PORT" --proxy "$P_CLIENT:$PROXY_PORT" "$@"
	FLY_PID=$SPAWNED
	wait_for 10 grep -q "^connected" "$FLY_LOG" ||
		fail "flyclient did not connect: $(oneline "$(cat "$FLY_LOG")")"
}
fly_stop() {
	stop_pid "$FLY_PID"
	grep -q "^error" "$FLY_LOG" && fail "flyclient: $(grep "^error" "$FLY_LOG")"
	[ "$STOP_RC" = 0 ] || fail "flyclient exited $STOP_RC: $(oneline "$(cat "$FLY_LOG")")"
	FLY_STATS=$(grep "^stats" "$FLY_LOG")
}
pings_ok() { # N: N pings through the tunnel, at least N-1 answered
	local log=$T/ping-$RANDOM.log rx
	in_c ping -n -c "$1" -i 0.2 -W 2 "$TUN_G" >"$log" 2>&1 || true
	rx=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$log")
	[ "${rx:-0}" -ge $(($1 - 1)) ] || fail "ping through flyclient: ${rx:-0}/$1: $(oneline "$(cat "$log")")"
	echo "$rx/$1"
}

say "flyctl's framing carries the first handshake, installed just in time"
S_INST=$(relay_metric 'wgws_relay_jit_answers_total{verdict="installed"}')
S_GWINIT=$(gw_count initiations)
fly_start
wg_endpoint_shim
first_handshake "$WG_C_PUB"
[ "$HS_MS" -lt 1000 ] || fail "first handshake $HS_MS ms after the ping (want < 1000)"
expect "relay answers installed (change)" \
	$(($(relay_metric 'wgws_relay_jit_answers_total{verdict="installed"}') - S_INST)) 1
expect "initiations at WireGuard (change)" $(($(gw_count initiations) - S_GWINIT)) 1
expect "flyctl tunnels" "$(relay_metric wgws_relay_connections_flyctl_total)" 1
grep -q "tunnel $P_GNET:[0-9]*: open, WireGuard endpoint .* (flyctl)" "$RELAY_LOG" ||
	fail "no '(flyctl)' open line: $(oneline "$(grep "tunnel" "$RELAY_LOG" | tail -2)")"
grep -q "): peer $WG_C_PUB, installed" "$RELAY_LOG" || fail "the relay does not name the peer"
ok "handshake $HS_MS ms after the first ping; 1 JIT install, 1 initiation at WireGuard; logged (flyctl)"

say "idle 3 s: flyctl's zero-length keepalives keep the tunnel"
nap 3
expect "tunnels open" "$(relay_metric wgws_relay_connections_active)" 1
got=$(pings_ok 5)
fly_stop
ka=$(sed -n 's/.*keepalives \([0-9]*\)$/\1/p' <<<"$FLY_STATS")
[ "${ka:-0}" -ge 2 ] || fail "flyclient sent ${ka:-0} keepalives in 3 s idle: $FLY_STATS"
ok "$got pings after the pause; $FLY_STATS (TEXT only back, no subprotocol named)"

say "flyctl's older clients: length and datagram as two messages"
fly_start --split
got=$(pings_ok 5)
fly_stop
expect "flyctl tunnels" "$(relay_metric wgws_relay_connections_flyctl_total)" 2
ok "$got pings; $FLY_STATS"

say "the same checks as any tunnel: no preamble 1002, a BINARY message 1003"
wsfly() { in_p "$PY" "$TOOLS/wsraw.py" --protocol '' --wait 2 "wss://$G_PROXY/" "$@" 2>&1 || true; }
out=$(wsfly --text deadbeef00000000)
grep -qx "close 1002.*" <<<"$out" || fail "a stream without the preamble: $(oneline "$out")"
out=$(wsfly --text 2faced77 && true)
grep -q "status 101" <<<"$out" || fail "the preamble alone: $(oneline "$out")"
out=$(wsfly 2faced7700000000)
grep -qx "close 1003.*" <<<"$out" || fail "a BINARY message: $(oneline "$out")"
grep -q "flyctl's stream without its preamble, closing (1002)" "$RELAY_LOG" || fail "1002 not logged"
ok "no preamble: 1002; BINARY: 1003; both logged"

say "--flyctl no (SIGHUP): refused with 400; wgws clients go on"
printf '[Relay]\nFlyctl = no\n' >"$T/relay.conf"
chgrp wgws "$KEY" && chmod 640 "$KEY" # the relay reloads as wgws
kill -HUP "$RELAY_PID"
wait_for 5 grep -q "changed now: --flyctl no" "$RELAY_LOG" || fail "the reload does not say --flyctl no"
out=$(wsfly --text 2faced77)
grep -qx "status 400" <<<"$out" || fail "--flyctl no: $(oneline "$out")"
start_shim --pin "$PIN"
got=$(pings_ok 5)
ok "flyctl's upgrade: 400; a wgws tunnel through the shim: $got pings"
alive "$RELAY_PID" || fail "the relay died"
echo "PASS test_flyctl"
