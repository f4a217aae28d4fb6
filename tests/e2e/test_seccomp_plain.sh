#!/bin/bash
# SPDX-License-Identifier: MIT
# The daemons' seccomp lists, as a build without sanitizers runs them. make test runs
# SANITIZE=1 in CI, whose runtime needs calls of its own (LeakSanitizer's exit: wait4, clone,
# open...) and makes others vanish (ASan's mlock does nothing): a call missing from a list
# can hide there and kill the build operators run. So this builds wgws-relay and
# wgws-provisioner without sanitizers (into the test's directory) and takes each through a
# life: the provisioner serves an API create, a delete and a GC dump against wireguard-go,
# then SIGTERM; the relay carries a tunnel's record, serves metrics, then SIGTERM. Both must
# exit 0 (a forbidden call exits 159, SIGSYS).
set -eu
. "$(dirname "$0")/lib.sh"
need_root
need_cmd wireguard-go wg curl make nm
need_bins wgws-relay

say "building the daemons without sanitizers"
PLAIN=$T/plain
build_plain "$PLAIN" wgws-relay wgws-provisioner
ok "built in $PLAIN"

say "the provisioner: create, delete, GC, SIGTERM"
SOCK=$T/prov.sock
netns_add "$NS_G"
(umask 077 && wg genkey >"$T/gw.key")
spawn_ns "$NS_G" "$T/wg.log" wireguard-go -f "$WG_G"
wait_for 10 test -S "/var/run/wireguard/$WG_G.sock" || fail "wireguard-go did not start"
in_g wg set "$WG_G" private-key "$T/gw.key" listen-port "$WG_PORT"
PROV_LOG=$T/prov.log
spawn_ns "$NS_G" "$PROV_LOG" "$PLAIN/wgws-provisioner" serve --interface "$WG_G" \
	--db "$T/prov.db" --api "unix:$SOCK" --pool4 10.203.0.0/24 --gc-interval 1 --gc-idle 1
PROV_PID=$SPAWNED
healthy() { req GET /healthz && [ "$CODE" = 200 ]; }
wait_for 10 healthy || fail "the provisioner did not answer: $(tail -3 "$PROV_LOG")"
req POST /v1/peers -H 'Content-Type: application/json' --data-binary '{}'
[ "$CODE" = 201 ] || fail "create: HTTP $CODE"
PEER=$(jget 'd["public_key"]' | tr '+/' '-_')
req POST /v1/peers -H 'Content-Type: application/json' --data-binary '{}'
[ "$CODE" = 201 ] || fail "second create: HTTP $CODE"
req DELETE "/v1/peers/$PEER"
[ "$CODE" = 200 ] || fail "delete: HTTP $CODE"
wait_for 5 gc_ran 2 || fail "GC did not run twice (runs: $(prov_metric wgws_provisioner_gc_runs_total))"
stop_pid "$PROV_PID" TERM 10
[ "$STOP_RC" = 0 ] || fail "the provisioner exited $STOP_RC ($(tail -2 "$PROV_LOG"))"
ok "the provisioner served and exited 0"

say "the relay: a tunnel, metrics, SIGTERM"
loopback_sandbox plain
certs_make
spawn "$T/sink.log" "${RUN[@]}" "$PY" "$TOOLS/udpsink.py" "127.0.0.1:$UPORT" --echo
wait_for 5 grep -q listening "$T/sink.log" || fail "udpsink did not start"
RELAY_LOG=$T/relay.log
spawn "$RELAY_LOG" "${RUN[@]}" "$PLAIN/wgws-relay" --listen "127.0.0.1:$PORT" --cert "$CERT" \
	--key "$KEY" --metrics "127.0.0.1:$MPORT" --wg "127.0.0.1:$UPORT"
RELAY_PID=$SPAWNED
wait_for 10 sh -c "${RUN[*]} curl -s -m 1 http://127.0.0.1:$MPORT/healthz | grep -q ok" ||
	fail "the relay did not start: $(tail -3 "$RELAY_LOG")"
REC=0040$(printf '04000000deadbeef%0112d' 0)
out=$(run "$PY" "$TOOLS/wsraw.py" --wait 1.5 "wss://127.0.0.1:$PORT/wg" "$REC" 2>&1) || true
grep -q "^recv binary 66" <<<"$out" || fail "no echo through the relay: $(oneline "$out")"
run curl -s -m 2 "http://127.0.0.1:$MPORT/metrics" | grep -q wgws_relay_connections_total ||
	fail "no metrics"
stop_pid "$RELAY_PID" TERM 10
[ "$STOP_RC" = 0 ] || fail "the relay exited $STOP_RC ($(tail -2 "$RELAY_LOG"))"
ok "the relay carried a record, served metrics and exited 0"
