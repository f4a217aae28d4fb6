#!/bin/bash
# SPDX-License-Identifier: MIT
# wgws-provisioner crash safety: a client fires creates (and every 10th a delete) one after
# another at a provisioner serving a wireguard-go interface; after ~1.2 s the daemon is
# killed with SIGKILL mid-stream and restarted on the same SQLite file, twice. Then: every
# acknowledged create is there with the same addresses, every acknowledged delete stays
# deleted, no address is held twice nor reused within the hold-down, the device has exactly
# the stored peers with their allowed IPs, the file passes PRAGMA integrity_check and its
# allocator agrees with its rows, and the daemon serves creates again. Tools:
# tests/tools/prov_client.py (python3 stdlib: http.client on the unix socket, sqlite3).
set -eu
. "$(dirname "$0")/lib.sh"

need_root
need_cmd wireguard-go wg ip curl
need_bins wgws-provisioner
"$PY" -c 'import sqlite3' 2>/dev/null || skip "needs python3 with the sqlite3 module"

PROV=$WGWS_BUILD/wgws-provisioner
CLIENT=$TOOLS/prov_client.py
SOCK=$T/prov.sock DB=$T/prov.db
POOL4=10.205.0.0/18 POOL6=fd00:205::/64 # 16,381 addresses: no round can exhaust it
BURST_S=1.2 ROUNDS=2
PROV_LOG="" PROV_PID="" PROV_N=0

dump_logs() { [ -z "$PROV_LOG" ] || logtail "$PROV_LOG" 20; }
reconciled() { grep -q "reconcile: " "$PROV_LOG"; }
# start_prov [nowait]: the provisioner in the gateway namespace on $DB; waits for /healthz
# and (unless nowait) the end of its start-up reconciliation.
start_prov() {
	PROV_N=$((PROV_N + 1))
	PROV_LOG=$T/prov-$PROV_N.log
	spawn_ns "$NS_G" "$PROV_LOG" "$PROV" serve --interface "$WG_G" --db "$DB" \
		--api "unix:$SOCK" --pool4 "$POOL4" --pool6 "$POOL6"
	PROV_PID=$SPAWNED
	wait_for 10 prov_healthy || {
		alive "$PROV_PID" || fail "provisioner exited at start-up (run $PROV_N)"
		fail "provisioner /healthz did not answer 200 within 10 s (run $PROV_N)"
	}
	[ "${1:-}" = nowait ] || wait_for 20 reconciled || fail "no 'reconcile:' line within 20 s (run $PROV_N)"
}
# wg_start: a fresh (empty) wireguard-go gateway interface with the gateway's key.
wg_start() {
	spawn_ns "$NS_G" "$T/wg-gw.log" wireguard-go -f "$WG_G"
	WGG_PID=$SPAWNED
	wait_for 10 test -S "/var/run/wireguard/$WG_G.sock" || fail "wireguard-go did not start"
	in_g wg set "$WG_G" private-key "$T/keys/gw.key" listen-port "$WG_PORT"
	in_g ip link set "$WG_G" up
}
ndev() { in_g wg show "$WG_G" peers | wc -l; }
# check WHAT: the API and device against every record so far, and the file read-only.
check() {
	local out
	in_g wg show "$WG_G" allowed-ips >"$T/device.txt"
	out=$("$PY" "$CLIENT" verify "$SOCK" "$T/device.txt" "$T"/records-*.txt) ||
		fail "$1: $(oneline "$out")"
	ok "$1: $out"
	out=$("$PY" "$CLIENT" db "$DB") || fail "$1: the SQLite file: $(oneline "$out")"
	ok "$1: $out"
}
metric() {
	curl -s -m 5 --unix-socket "$SOCK" http://prov/metrics |
		awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? 0 : v) }'
}

say "a gateway namespace with wireguard-go; the provisioner on it ($POOL4, $POOL6)"
netns_add "$NS_G"
(umask 077 && wg genkey >"$T/keys/gw.key")
wg_start
start_prov

total_acked=0 total_deleted=0
for r in $(seq "$ROUNDS"); do
	say "round $r: creates one after another (a delete every 10th), SIGKILL after $BURST_S s"
	spawn "$T/client-$r.out" "$PY" "$CLIENT" create "$SOCK" "$T/records-$r.txt" 30 1000000 10
	CLIENT_PID=$SPAWNED
	nap "$BURST_S"
	alive "$CLIENT_PID" || fail "the client ended before the kill: $(cat "$T/client-$r.out")"
	stop_pid "$PROV_PID" KILL 5
	expect_rc=$((128 + 9))
	[ "$STOP_RC" = "$expect_rc" ] || fail "the provisioner's exit status is $STOP_RC, not $expect_rc (SIGKILL)"
	wait_for 10 sh -c "! kill -0 $CLIENT_PID 2>/dev/null || grep -q acked $T/client-$r.out" ||
		fail "the client did not notice the daemon was gone"
	stop_pid "$CLIENT_PID" TERM 5
	read -r _ acked _ deleted _ other _ lost <"$T/client-$r.out" ||
		fail "the client printed no summary: $(cat "$T/client-$r.out")"
	[ "$acked" -ge 100 ] || fail "only $acked creates acknowledged in $BURST_S s"
	[ "$other" = 0 ] || fail "$other requests answered other than 201/200 before the kill"
	total_acked=$((total_acked + acked)) total_deleted=$((total_deleted + deleted))
	ok "killed mid-stream: $acked creates and $deleted deletes acknowledged, $lost request(s) in flight"
	start_prov
	stored=$(metric wgws_provisioner_peers_stored)
	ok "restarted on the same file: $(grep -o 'reconcile: .*' "$PROV_LOG"); $stored stored"
	check "after kill $r"
done
say "totals: $total_acked creates and $total_deleted deletes acknowledged over $ROUNDS kills"

say "the restarted daemon serves creates again"
"$PY" "$CLIENT" create "$SOCK" "$T/records-after.txt" 10 50 >"$T/client-after.out"
read -r _ acked _ _ _ other _ _ <"$T/client-after.out"
[ "$acked" = 50 ] && [ "$other" = 0 ] || fail "after the restarts: $(cat "$T/client-after.out")"
ok "50 more creates: 201 each"
check "after the restarts"
[ "$(metric wgws_provisioner_peers_stored)" = "$(wc -l <"$T/device.txt")" ] ||
	fail "peers_stored $(metric wgws_provisioner_peers_stored) != $(wc -l <"$T/device.txt") peers in the device"

say "the device lost too: SIGKILL the provisioner, restart wireguard-go empty"
stored=$(metric wgws_provisioner_peers_stored)
stop_pid "$PROV_PID" KILL 5
stop_pid "$WGG_PID" TERM 5
wg_start
[ "$(ndev)" = 0 ] || fail "the new wireguard-go interface is not empty"
start_prov nowait
# Kill it again mid-way through putting the peers back.
wait_for 10 sh -c "[ \$(ip netns exec $NS_G wg show $WG_G peers | wc -l) -ge 200 ]" ||
	fail "the restarted provisioner does not put the stored peers back into the empty device"
stop_pid "$PROV_PID" KILL 5
n=$(ndev)
if reconciled; then
	say "(the reconciliation had finished before the kill: $n peers in the device)"
else
	ok "SIGKILL during the start-up reconciliation: $n of $stored peers back in the device"
fi
start_prov
line=$(grep -o 'reconcile: .*' "$PROV_LOG")
case "$line" in "reconcile: $((stored - n)) stored peers put back into $WG_G, $n were there, 0 unknown"*) ;;
*) fail "restart after the kill during reconciliation: '$line' (expected $((stored - n)) put back, $n there)" ;; esac
ok "restarted: $line"
check "after losing the device"

say "a clean stop leaves a checkpointed file"
stop_pid "$PROV_PID" TERM 10
[ "$STOP_RC" = 0 ] || fail "exit status $STOP_RC on SIGTERM"
wal=$(stat -c %s "$DB-wal" 2>/dev/null || echo 0)
[ "$wal" = 0 ] || fail "the WAL holds $wal bytes after a clean stop"
out=$("$PY" "$CLIENT" db "$DB") || fail "after SIGTERM: the SQLite file: $(oneline "$out")"
ok "after SIGTERM: WAL empty; $out"
start_prov
check "after a clean restart"
echo "PASS test_provisioner_crash ($total_acked creates, $total_deleted deletes acknowledged; all present)"
