#!/bin/bash
# SPDX-License-Identifier: MIT
# An idle tunnel survives a proxy that cuts idle connections: squid has read_timeout 10 s,
# the shim pings every 5 s (--keepalive 5); after 40 s without any WireGuard traffic the
# tunnel still works on the first connection. Contrast: with --keepalive 0 squid cuts it.
set -eu
. "$(dirname "$0")/lib.sh"
need_root
need_cmd wireguard-go wg nft squid curl ping
need_bins

# The relay's own pings (--keepalive, default 30 s) are slower than squid's cut, so only the
# shim's keepalives can hold the tunnel here.
READ_TIMEOUT=10 IDLE=40
topology
wg_up
block_client_udp
wg_endpoint_shim
certs_make
start_squid "$READ_TIMEOUT"
start_relay

say "squid read_timeout ${READ_TIMEOUT} s, shim --keepalive 5, idle ${IDLE} s"
start_shim --pin "$PIN" --keepalive 5
wait_for 15 ping_ok 1 || fail "no ping across the tunnel"
wait_shim_connected 5
ping_ok 3 3 || fail "ping before idling: $PING_RX/$PING_TX"
ok "ping before idling: $PING_RX/$PING_TX"
nap "$IDLE"
ping_ok 5 4 || fail "ping after ${IDLE} s idle: $PING_RX/$PING_TX"
n=$(log_count "$SHIM_LOG" "connected to relay")
[ "$n" = 1 ] || fail "shim connected $n times (expected 1: keepalives should hold the tunnel)"
[ "$(log_count "$SHIM_LOG" "reconnecting in")" = 0 ] || fail "shim logged a reconnect"
ok "ping after ${IDLE} s idle: $PING_RX/$PING_TX, one connection, no reconnect"
stop_shim

say "contrast: shim --keepalive 0, squid should cut the idle tunnel after ~${READ_TIMEOUT} s"
start_shim --pin "$PIN" --keepalive 0
wait_for 15 ping_ok 1 || fail "no ping across the tunnel (--keepalive 0)"
wait_shim_connected 5
t0=$(now_ms)
# WireGuard's own passive keepalive can follow the last ping by 10 s: allow for it.
if wait_for $((READ_TIMEOUT + 20)) grep -qF "reconnecting in" "$SHIM_LOG"; then
	ok "without keepalives squid cut the idle tunnel; shim noticed after $((($(now_ms) - t0) / 1000)) s"
else
	fail "with --keepalive 0 the shim logged no reconnect within $((READ_TIMEOUT + 20)) s" \
		"(does squid's read_timeout work, or does the shim miss the close?)"
fi
wait_for 15 ping_ok 1 || fail "no ping across the tunnel after the reconnect"
ok "ping works again after the reconnect"
echo "PASS test_idle"
