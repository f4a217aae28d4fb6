#!/bin/bash
# SPDX-License-Identifier: MIT
# The provisioner's privilege separation (provisioner/priv.c), against a wireguard-go gateway in
# a namespace:
#  1. `serve` is two processes: the engine and the privileged child it forks at start-up;
#     peers created, listed and deleted through the API reach the device through the child.
#  2. The device's private key (raw, hex, base64) is nowhere in the engine's readable memory,
#     after installs, a dump and a delete; the same scan finds it in the child's (so the scan
#     can see a key where there is one).
#  3. SIGTERM to the engine: it exits 0 and its child is gone with it (reaped, no orphan).
#  4. The child killed: the engine notices within its 1 s timer, with no request pending, and
#     exits non-zero with "priv: the privileged process is gone" in its log.
#  5. Privileges, read from /proc while it serves: the engine runs as wgws (not root) with no
#     capabilities, NoNewPrivs 1 and a seccomp filter (Seccomp 2); the privileged child is uid
#     0 with CAP_NET_ADMIN alone (effective, permitted and bounding) and NoNewPrivs 1.
#  6. A system call outside the engine's list kills it (SIGSYS): WGWS_TEST_SECCOMP=1 makes
#     SIGUSR2 open a raw packet socket; the privileged child follows it out.
set -eu
. "$(dirname "$0")/lib.sh"

need_root
need_cmd wireguard-go wg ip curl
need_bins wgws-provisioner

PROV=$WGWS_BUILD/wgws-provisioner
SOCK=$T/prov.sock DB=$T/prov.db
PROV_LOG="" PROV_PID="" PROV_N=0

dump_logs() { [ -z "$PROV_LOG" ] || logtail "$PROV_LOG" 20; }

start_prov() {
	PROV_N=$((PROV_N + 1))
	PROV_LOG=$T/prov-$PROV_N.log
	spawn_ns "$NS_G" "$PROV_LOG" env ${PROV_ENV:-} "$PROV" serve --interface "$WG_G" \
		--db "$DB" --api "unix:$SOCK" --pool4 10.203.0.0/24 --gc-interval 1 -v
	PROV_PID=$SPAWNED
	wait_for 10 prov_healthy || fail "provisioner did not answer /healthz within 10 s"
}

say "a wireguard-go gateway with a key; the provisioner on it"
netns_add "$NS_G"
(umask 077 && wg genkey >"$T/keys/gw.key")
spawn_ns "$NS_G" "$T/wg-gw.log" wireguard-go -f "$WG_G"
WGG_PID=$SPAWNED
wait_for 10 test -S "/var/run/wireguard/$WG_G.sock" || fail "wireguard-go did not start"
in_g wg set "$WG_G" private-key "$T/keys/gw.key" listen-port "$WG_PORT"
in_g ip link set "$WG_G" up
start_prov

say "1. two processes; the API reaches the device through the child"
PRIV_PID=$(child_of "$PROV_PID")
[ "$(wc -w <<<"$PRIV_PID")" = 1 ] || fail "expected one child of the engine, got '$PRIV_PID'"
grep -q "privileged process $PRIV_PID keeps $WG_G (uapi)" "$PROV_LOG" ||
	fail "no start-up line naming the privileged process $PRIV_PID"
for i in 1 2 3; do
	req POST /v1/peers -H 'Content-Type: application/json' --data-binary '{}'
	[ "$CODE" = 201 ] || fail "create $i: HTTP $CODE: $(head -c 200 "$T/body")"
done
KEY=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["public_key"])' "$T/body")
[ "$(in_g wg show "$WG_G" peers | wc -l)" = 3 ] || fail "the device does not have the 3 peers"
req DELETE "/v1/peers/$(tr '+/' '-_' <<<"$KEY")"
[ "$CODE" = 200 ] || fail "delete: HTTP $CODE"
[ "$(in_g wg show "$WG_G" peers | wc -l)" = 2 ] || fail "the device still has the deleted peer"
req GET /healthz
grep -q uapi "$T/body" || fail "/healthz does not name the uapi backend: $(head -c 200 "$T/body")"

wait_for 5 gc_ran 2 || fail "GC did not run twice (runs: $(prov_metric wgws_provisioner_gc_runs_total))"
ok "engine $PROV_PID, privileged child $PRIV_PID; 3 creates installed, a delete removed, GC dumps"

say "2. the private key: not in the engine's memory, in the child's"
read -r e_raw e_hex e_b64 <<<"$(key_hits "$PROV_PID")"
read -r c_raw c_hex c_b64 <<<"$(key_hits "$PRIV_PID")"
[ "$c_raw" -ge 1 ] ||
	fail "the scan did not find the key in the privileged child ($c_raw $c_hex $c_b64)"
[ "$e_raw $e_hex $e_b64" = "0 0 0" ] ||
	fail "the engine's memory holds the private key: raw $e_raw, hex $e_hex, base64 $e_b64"
ok "engine: raw 0, hex 0, base64 0; privileged child: raw $c_raw, hex $c_hex, base64 $c_b64"

say "5. privileges, from /proc"
status() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
uid_of() { awk '$1 == "Uid:" { print $2 }' "/proc/$1/status"; }
e="Uid $(uid_of "$PROV_PID") CapEff $(status "$PROV_PID" CapEff) CapPrm $(status "$PROV_PID" CapPrm)"
e="$e NoNewPrivs $(status "$PROV_PID" NoNewPrivs) Seccomp $(status "$PROV_PID" Seccomp)"
[ "$e" = "Uid $(id -u wgws) CapEff 0000000000000000 CapPrm 0000000000000000 NoNewPrivs 1 Seccomp 2" ] ||
	fail "engine: $e"
ok "engine: $e"
# Every thread of it (the WAL checkpoint thread started before the drop): capabilities are
# per thread.
for t in /proc/"$PROV_PID"/task/*; do
	tt="$(awk '$1 == "Uid:" { print $2 }' "$t/status") $(awk '$1 == "CapEff:" { print $2 }' "$t/status")"
	tt="$tt $(awk '$1 == "CapPrm:" { print $2 }' "$t/status") $(awk '$1 == "Seccomp:" { print $2 }' "$t/status")"
	[ "$tt" = "$(id -u wgws) 0000000000000000 0000000000000000 2" ] ||
		fail "engine thread ${t##*/}: Uid CapEff CapPrm Seccomp = $tt"
done
ok "all $(ls /proc/"$PROV_PID"/task | wc -l) threads of the engine: the same"
c="Uid $(uid_of "$PRIV_PID") CapEff $(status "$PRIV_PID" CapEff) CapPrm $(status "$PRIV_PID" CapPrm)"
c="$c CapBnd $(status "$PRIV_PID" CapBnd) NoNewPrivs $(status "$PRIV_PID" NoNewPrivs)"
# CAP_NET_ADMIN is capability 12: 0x1000.
[ "$c" = "Uid 0 CapEff 0000000000001000 CapPrm 0000000000001000 CapBnd 0000000000001000 NoNewPrivs 1" ] ||
	fail "privileged child: $c"
ok "privileged child: $c"
unreachable_by_nobody "$PROV_PID"
unreachable_by_nobody "$PRIV_PID"
ok "another local user (nobody) can neither signal nor ptrace the engine or the child"
[ "$(stat -c %a "$SOCK")" = 600 ] || fail "the API socket is $(stat -c %a "$SOCK"), not 600"
ok "the API socket is 0600"

say "3. SIGTERM to the engine: both processes end"
stop_pid "$PROV_PID" TERM 5
[ "$STOP_RC" = 0 ] || fail "the engine exited $STOP_RC on SIGTERM"
wait_for 2 eval '! alive "$PRIV_PID"' || fail "the privileged child $PRIV_PID outlived the engine"
ok "engine exited 0; privileged child $PRIV_PID gone"

say "4. the privileged child killed: the engine ends too, unasked"
start_prov
PRIV_PID=$(child_of "$PROV_PID")
[ -n "$PRIV_PID" ] || fail "no privileged child"
t0=$(now_ms)
kill -KILL "$PRIV_PID"
wait_for 3 eval '! alive "$PROV_PID"' || fail "the engine survived the loss of its privileged half"
gone_ms=$(($(now_ms) - t0))
STOP_RC=0
wait "$PROV_PID" 2>/dev/null || STOP_RC=$?
[ "$STOP_RC" != 0 ] || fail "the engine exited 0 without its privileged half"
grep -q 'fatal: priv: the privileged process is gone' "$PROV_LOG" || fail "no fatal line about it"
ok "engine exited $STOP_RC $gone_ms ms later: $(grep -m1 'fatal: priv:' "$PROV_LOG" | cut -c1-100)"

say "6. a system call outside the engine's list kills it"
PROV_ENV=WGWS_TEST_SECCOMP=1 start_prov
PRIV_PID=$(child_of "$PROV_PID")
[ -n "$PRIV_PID" ] || fail "no privileged child"
kill -USR2 "$PROV_PID"
wait_for 3 eval '! alive "$PROV_PID"' || fail "the engine survived a forbidden system call"
STOP_RC=0
wait "$PROV_PID" 2>/dev/null || STOP_RC=$?
[ "$STOP_RC" = $((128 + 31)) ] || fail "the engine exited $STOP_RC, not by SIGSYS (159)"
wait_for 3 eval '! alive "$PRIV_PID"' || fail "the privileged child outlived the engine"
ok "killed by SIGSYS (exit $STOP_RC); the privileged child $PRIV_PID gone with it"
echo "PASS test_privsep"
