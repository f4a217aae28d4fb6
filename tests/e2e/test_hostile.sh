#!/bin/bash
# SPDX-License-Identifier: MIT
# Hostile WebSocket clients against the relay (--max-record 2048) while a real tunnel runs.
# An nftables counter in the gateway namespace counts datagrams the relay sends to WireGuard
# (127.0.0.1:51820) that carry the marker DE AD BE EF at payload offset 4. A well-formed
# record with the marker must arrive (positive control); oversize, malformed and truncated
# records must not, and each is counted in the relay's drop metric. The real tunnel's ping
# loses nothing throughout.
set -eu
. "$(dirname "$0")/lib.sh"
need_root
need_cmd wireguard-go wg nft squid curl ping
need_bins

MARK=deadbeef
URL=wss://$GW_NAME/wg
corporate_network
start_relay --max-record 2048
start_shim --pin "$PIN"
wait_for 15 ping_ok 1 || fail "no ping across the tunnel"
wait_shim_connected 5
ok "real tunnel up (shim → squid → relay → wireguard-go)"

in_g nft -f - <<EOF
table inet wgws_mark {
	counter marked { }
	chain out {
		type filter hook output priority 0; policy accept;
		ip daddr 127.0.0.1 udp dport $WG_PORT @th,96,32 0x$MARK counter name "marked"
	}
}
EOF
marked() { in_g nft list counter inet wgws_mark marked | sed -n 's/.*packets \([0-9]*\).*/\1/p'; }
marked_is() { [ "$(marked)" = "$1" ]; }
dropped() { relay_metric "wgws_relay_packets_dropped_total{reason=\"$1\"}"; }
# grew NAME BEFORE [MIN]: metric drop reason NAME is at least BEFORE + MIN (1).
grew() { "$PY" -c "import sys; sys.exit(0 if float('$(dropped "$1")') >= float('$2') + ${3:-1} else 1)"; }
# hostile WHAT ARGS...: wsraw from the gateway namespace straight to the relay; output in $OUT.
hostile() {
	local what=$1
	shift
	OUT=$(wsraw_ns "$NS_G" --connect-to 127.0.0.1:443 "$@" 2>&1) || true
	echo "$what: $OUT" | tr '\n' ' ' >>"$T/wsraw.log"
	echo >>"$T/wsraw.log"
	grep -qx "status 101" <<<"$OUT" || fail "$what: no WebSocket upgrade: $OUT"
}
# counter_stays N WHAT: after a short settle, the marker counter is still N.
counter_stays() {
	sleep 0.5
	[ "$(marked)" = "$1" ] || fail "$2: a marked datagram reached WireGuard (counter $1 → $(marked))"
}

bg_ping_start "$T/bgping.log"

say "(a) positive control: a 64-byte type-4 record with the marker"
c0=$(marked)
hostile "control" --close "$URL" "$(rec_hex 4 64 $MARK)"
wait_for 3 marked_is $((c0 + 1)) ||
	fail "(a) the well-formed record did not reach WireGuard (counter $c0 → $(marked)):" \
		"the counter or the relay is broken"
ok "(a) direct: counter $c0 → $(marked)"
c0=$(marked)
OUT=$(wsraw_ns "$NS_C" --proxy "$P_CLIENT:$PROXY_PORT" --close "$URL" "$(rec_hex 4 64 $MARK)" 2>&1) ||
	fail "(a) through squid: $OUT"
wait_for 3 marked_is $((c0 + 1)) ||
	fail "(a) through squid: the record did not reach WireGuard (counter $c0 → $(marked))"
ok "(a) through squid: counter $c0 → $(marked)"

say "(b) a record of 3008 bytes (> --max-record 2048) with the marker"
c0=$(marked) d0=$(dropped oversize)
hostile "oversize" --wait 3 "$URL" "$(rec_hex 4 3008 $MARK)"
grep -qx "close 1009" <<<"$OUT" || fail "(b) expected close 1009, got: $(oneline "$OUT")"
counter_stays "$c0" "(b)"
wait_for 2 grew oversize "$d0" || fail "(b) dropped{reason=\"oversize\"} stayed at $(dropped oversize)"
ok "(b) close 1009, counter unchanged ($c0), oversize drops $d0 → $(dropped oversize)"

say "(c) malformed datagrams with the marker: type 9; type 1 of 100 bytes; type 4 of 33 bytes"
c0=$(marked) d0=$(dropped malformed)
for rec in "9 64" "1 100" "4 33"; do
	# shellcheck disable=SC2086
	hostile "malformed $rec" --close "$URL" "$(rec_hex $rec $MARK)"
done
counter_stays "$c0" "(c)"
wait_for 2 grew malformed "$d0" 3 ||
	fail "(c) dropped{reason=\"malformed\"} went $d0 → $(dropped malformed), expected +3"
ok "(c) counter unchanged ($c0), malformed drops $d0 → $(dropped malformed)"

say "(d) a 148-byte type-1 record cut after 60 bytes, then the TCP connection dropped"
c0=$(marked) d0=$(dropped truncated)
hostile "truncated" --abort "$URL" "$(rec_hex 1 148 $MARK 60)"
counter_stays "$c0" "(d)"
wait_for 3 grew truncated "$d0" || fail "(d) dropped{reason=\"truncated\"} stayed at $(dropped truncated)"
ok "(d) counter unchanged ($c0), truncated drops $d0 → $(dropped truncated)"

sleep 1
bg_ping_stop
lost=$(log_count "$BGPING_LOG" "no answer yet")
say "real tunnel during the attacks: $PING_RX/$PING_TX replies, $lost unanswered"
[ "$PING_TX" -ge 10 ] || fail "background ping sent only $PING_TX packets"
if [ "$lost" != 0 ] || [ "$PING_RX" -lt $((PING_TX - 1)) ]; then
	fail "the real tunnel lost pings during the attacks ($PING_RX/$PING_TX, $lost unanswered)"
fi
ok "real tunnel: no loss"
alive "$RELAY_PID" || fail "relay died"
echo "PASS test_hostile"
