#!/bin/bash
# SPDX-License-Identifier: MIT
# JIT peers through the relay (issue 4), end to end with UDP blocked for the client: a
# wireguard-go client → wgws-shim → squid → wgws-relay --jit-socket → wgws-provisioner --jit
# → a wireguard-go gateway that starts without the client's peer. Witnesses independent of
# the programs under test: `wg show` on the gateway, and nftables counters in the gateway
# namespace of the handshake initiations that reach WireGuard's port and of the handshake
# responses it sends.
#  i.   a peer created through the API is stored, not installed: not in `wg show`;
#  ii.  the client's first handshake completes within 1 s of its first initiation (no
#       retransmit: one relay request, one install, one initiation at WireGuard's port);
#  iii. GC removes the idle peer; a restarted client (new session, new shim connection)
#       brings it back the same way;
#  iv.  an unknown key's initiation never reaches WireGuard, is never installed, gets no answer;
#  v.   a recorded initiation replayed after GC removed its peer is refused; a fresh one from
#       the same key installs it again;
#  vi.  a burst of initiations from one client address is rate-limited however it is spread
#       over tunnels, and a tunnel from another address is still answered at once;
#  vii. after a provisioner restart the relay, running as wgws by then, reconnects
#       (--jit-user) and new keys are installed again;
#  viii. over --jit-budget (1/s here), a flood of unknown keys is shed, and a tunnel answered
#       live a moment ago still gets its next handshake through at once.
set -eu
. "$(dirname "$0")/lib.sh"
jit_test_init
POOL4=10.202.0.0/24 # the tunnel's /24: the client gets 10.202.0.2 (TUN_C), the gateway is .1
URL=wss://$GW_NAME/wg
PROV_LOG="" PROV_PID="" LOAD_N=0
# Metric names of the relay's JIT side, as exposed.
R_REQ=wgws_relay_jit_requests_total
R_INSTALLED='wgws_relay_jit_answers_total{verdict="installed"}'
R_UNKNOWN='wgws_relay_jit_answers_total{verdict="unknown"}'
R_REFUSED='wgws_relay_jit_answers_total{verdict="refused"}'
R_TIMEOUTS=wgws_relay_jit_timeouts_total
R_NOT_ASKED=wgws_relay_jit_not_asked_total
R_DROP_UNKNOWN='wgws_relay_packets_dropped_total{reason="jit_unknown"}'
R_DROP_REFUSED='wgws_relay_packets_dropped_total{reason="jit_refused"}'

dump_logs() {
	[ -z "$PROV_LOG" ] || logtail "$PROV_LOG" 20
	[ -z "$RELAY_LOG" ] || logtail "$RELAY_LOG" 20
	[ -z "$SHIM_LOG" ] || logtail "$SHIM_LOG" 8
}

# create KEY NAME: POST /v1/peers for a client's public key; fails unless 201 and stored
# without being installed. Sets ADDR4 (the peer's IPv4 address, no prefix).
create() {
	req POST /v1/peers -H 'Content-Type: application/json' \
		--data-binary "{\"public_key\":\"$1\",\"name\":\"$2\"}"
	[ "$CODE" = 201 ] || fail "POST /v1/peers ($2): HTTP $CODE: $(head -c 300 "$T/body")"
	[ "$(jget 'd["installed"]')" = false ] ||
		fail "POST /v1/peers ($2) in JIT mode answered installed=$(jget 'd["installed"]')"
	ADDR4=$(jget 'd["addresses"][0].split("/")[0]')
}
# gw_count NAME: packets counted by the nftables counter NAME in the gateway namespace.
on_gw() { in_g wg show "$WG_G" peers | grep -qxF -- "$1"; }
not_on_gw() { ! on_gw "$1"; }
# snap: remember the counters the checks compare (S_name).
snap() {
	S_INSTALLS=$(prov_metric wgws_provisioner_jit_installs_total)
	S_UNKNOWN=$(prov_metric wgws_provisioner_jit_unknown_keys_total)
	S_REPLAYS=$(prov_metric wgws_provisioner_jit_replays_refused_total)
	S_RECALLED=$(prov_metric 'wgws_provisioner_jit_replay_cache_hits_total{kind="replay"}')
	S_RATE=$(prov_metric wgws_provisioner_jit_rate_limited_total)
	S_PINIT=$(prov_metric 'wgws_provisioner_jit_initiations_total{path="relay"}')
	S_REQ=$(relay_metric "$R_REQ")
	S_RINST=$(relay_metric "$R_INSTALLED")
	S_RUNK=$(relay_metric "$R_UNKNOWN")
	S_RREF=$(relay_metric "$R_REFUSED")
	S_DUNK=$(relay_metric "$R_DROP_UNKNOWN")
	S_DREF=$(relay_metric "$R_DROP_REFUSED")
	S_GWINIT=$(gw_count initiations)
	S_GWRESP=$(gw_count responses)
}
# delta DESC NOW BEFORE WANT: NOW - BEFORE must be WANT.
delta() { expect "$1 (change)" "$(($2 - $3))" "$4"; }

# load FILE [ARGS...]: tests/tools/jitload.py from the proxy namespace straight to the
# relay (not through squid) with the tunnels in FILE; per-tunnel results in $LOAD_OUT.
load() {
	local f=$1
	shift
	LOAD_N=$((LOAD_N + 1))
	LOAD_OUT=$T/load-$LOAD_N.out
	in_p "$PY" "$TOOLS/jitload.py" --connect-to "$G_PROXY:443" --out "$LOAD_OUT" "$@" "$URL" \
		"$f" >"$T/load-$LOAD_N.log" 2>&1 || fail "jitload: $(oneline "$(cat "$T/load-$LOAD_N.log")")"
}
# load_status LABEL: the result of LABEL's tunnel in the last load.
load_status() { awk -v k="$1" '$1 == k { print $2 }' "$LOAD_OUT"; }
load_latency() { awk -v k="$1" '$1 == k { print $3 }' "$LOAD_OUT"; }
# initgen KEYFILE OUT [ARGS...]: initiations to the gateway for the keys in KEYFILE.
initgen() {
	local k=$1 o=$2
	shift 2
	"$INITGEN" init "$WG_G_PUB" "$@" <"$k" >"$o" || fail "jit-initgen init"
}

# --- set-up ---------------------------------------------------------------------------
say "namespaces, wireguard-go (the gateway without the client's peer), squid, UDP blocked"
jit_network

# The tool against the responder's own decoder first: what it makes must be what the
# gateway's key opens.
"$INITGEN" selftest 50 >/dev/null || fail "jit-initgen selftest"
"$INITGEN" keys 3 >"$T/check.keys"
"$INITGEN" init "$WG_G_PUB" --count 2 <"$T/check.keys" >"$T/check.init"
"$INITGEN" check "$(cat "$T/keys/gw.key")" <"$T/check.init" >"$T/check.out" 2>&1 ||
	fail "jit-initgen's initiations do not open with the gateway's key: $(oneline "$(cat "$T/check.out")")"
ok "jit-initgen: selftest passes; 6 initiations open with the gateway's private key, timestamps increasing"

say "provisioner --jit in the gateway namespace; relay --jit-socket; shim"
# start_prov N [OPTION...]: the provisioner (log prov-N.log), with these options last. The
# relay runs as wgws after binding (start_relay: no --user): that is --jit-user, for when
# it reconnects.
start_prov() {
	PROV_LOG=$T/prov-$1.log
	shift
	jit_prov_start --gc-interval 1 --gc-idle 2 "$@"
}
# handshake_after_ping KEY: first_handshake, then (at once: --gc-idle 2 removes the peer 2-3 s
# after its handshake) the API must say the peer is installed.
handshake_after_ping() {
	first_handshake "$1"
	req GET "/v1/peers/$(tr '+/' '-_' <<<"$1")"
	expect "GET after the handshake: installed" "$(jget 'd["installed"]')" true
}
start_prov 1
start_relay --jit-socket "$JSOCK"
wait_for 10 jit_connected || fail "the relay did not connect to the provisioner (wgws_relay_jit_connected != 1)"
ok "provisioner pid $PROV_PID (--jit, uapi), relay pid $RELAY_PID connected to $JSOCK"

# --- i. stored, not installed ------------------------------------------------------------
say "i. the client's key created through the API: stored, not in the device"
create "$WG_C_PUB" jit-client
if [ "$ADDR4" != "$TUN_C" ]; then
	in_c ip addr flush dev "$WG_C"
	in_c ip addr add "$ADDR4/24" dev "$WG_C"
fi
req GET "/v1/peers/$(tr '+/' '-_' <<<"$WG_C_PUB")"
expect "GET the created peer" "$CODE" 200
expect "GET: installed" "$(jget 'd["installed"]')" false
not_on_gw "$WG_C_PUB" || fail "the JIT peer is in wg show before its client connected"
expect "peers in the gateway device" "$(in_g wg show "$WG_G" peers | wc -l)" 0
ok "201, address $ADDR4, installed=false; wg show $WG_G has no peer"

# --- ii. first handshake ---------------------------------------------------------------
say "ii. the client pings: JIT install and the first handshake through shim → squid → relay"
start_shim --pin "$PIN"
wg_endpoint_shim
snap
handshake_after_ping "$WG_C_PUB"
HS1=$HS_MS
wait_shim_connected 5
[ "$HS1" -lt 1000 ] || fail "the gateway's first handshake came $HS1 ms after the ping started (want < 1000)"
ok "gateway handshake $HS1 ms after the ping started (< 1000: no 5 s retransmit)"
delta "provisioner jit installs" "$(prov_metric wgws_provisioner_jit_installs_total)" "$S_INSTALLS" 1
delta "relay jit requests" "$(relay_metric "$R_REQ")" "$S_REQ" 1
delta "relay answers installed" "$(relay_metric "$R_INSTALLED")" "$S_RINST" 1
delta "initiations at WireGuard's port" "$(gw_count initiations)" "$S_GWINIT" 1
delta "handshake responses from WireGuard" "$(gw_count responses)" "$S_GWRESP" 1
expect "relay jit timeouts" "$(relay_metric "$R_TIMEOUTS")" 0
ok "one initiation: 1 relay request, answered installed, 1 install, 1 initiation and 1 response at the gateway"
# From `wg show` to the client and back: the endpoint WireGuard lists for the peer is the
# relay's UDP socket, which both the relay's line and the provisioner's name, with the
# client's address and port and the peer's key.
ep=$(in_g wg show "$WG_G" endpoints | awk -v k="$WG_C_PUB" '$1 == k { print $2 }')
[ -n "$ep" ] && [ "$ep" != "(none)" ] || fail "wg show lists no endpoint for the client's peer"
rline=$(grep -F "(WireGuard endpoint $ep): peer $WG_C_PUB, installed" "$RELAY_LOG" | tail -1)
[ -n "$rline" ] || fail "no relay line names endpoint $ep and peer $WG_C_PUB"
pline=$(grep -F "jit: peer $WG_C_PUB installed: a relay tunnel from client " "$PROV_LOG" | tail -1)
grep -qF "its WireGuard endpoint $ep" <<<"$pline" || fail "the provisioner's line: '$pline'"
client=$(sed -n 's/.*tunnel \([^ ]*\) (WireGuard endpoint.*/\1/p' <<<"$rline")
grep -qF "from client $client," <<<"$pline" || fail "relay and provisioner name different clients"
ok "wg show endpoint $ep -> relay: client $client, peer $WG_C_PUB; the provisioner says the same"
say "install latency (provisioner histogram): count" \
	"$(prov_metric wgws_provisioner_jit_install_seconds_count), sum $(prov_metric wgws_provisioner_jit_install_seconds_sum) s"

# --- iii. GC, then the next connection ---------------------------------------------------
say "iii. the client goes quiet: GC removes the peer; a restarted client brings it back"
gc0=$(prov_metric wgws_provisioner_gc_removed_total)
wait_for 15 not_on_gw "$WG_C_PUB" || fail "GC did not remove the idle peer within 15 s"
gc1=$(prov_metric wgws_provisioner_gc_removed_total)
[ "$gc1" -gt "$gc0" ] || fail "the peer left wg show but gc_removed_total stayed $gc1"
req GET "/v1/peers/$(tr '+/' '-_' <<<"$WG_C_PUB")"
expect "GET after GC" "$CODE" 200
expect "GET after GC: installed" "$(jget 'd["installed"]')" false
ok "GC removed it from wg show (gc_removed_total $gc0 → $gc1); still stored"
# A client restart: its session (which would otherwise live on for up to 180 s) goes with
# the peer object, and a new shim makes a new tunnel.
in_c wg set "$WG_C" peer "$WG_G_PUB" remove
in_c wg set "$WG_C" peer "$WG_G_PUB" allowed-ips "$TUN_G/32" endpoint "127.0.0.1:$SHIM_PORT"
stop_shim
start_shim --pin "$PIN"
snap
handshake_after_ping "$WG_C_PUB"
HS2=$HS_MS
wait_shim_connected 5
[ "$HS2" -lt 1000 ] || fail "after GC the handshake came $HS2 ms after the ping started (want < 1000)"
expect "provisioner jit installs" "$(prov_metric wgws_provisioner_jit_installs_total)" 2
delta "relay jit requests" "$(relay_metric "$R_REQ")" "$S_REQ" 1
delta "relay answers installed" "$(relay_metric "$R_INSTALLED")" "$S_RINST" 1
delta "initiations at WireGuard's port" "$(gw_count initiations)" "$S_GWINIT" 1
ok "installed again on the first initiation: handshake $HS2 ms after the ping started, installs_total 2"

# --- iv. unknown key -------------------------------------------------------------------
say "iv. an unknown key through the relay"
"$INITGEN" keys 1 >"$T/unknown.keys"
U=$(awk '{ print $2 }' "$T/unknown.keys")
initgen "$T/unknown.keys" "$T/unknown.init"
snap
load "$T/unknown.init" --timeout 3.5
expect "the unknown key's tunnel" "$(load_status "$U")" none
not_on_gw "$U" || fail "the unknown key was installed"
delta "provisioner unknown keys" "$(prov_metric wgws_provisioner_jit_unknown_keys_total)" "$S_UNKNOWN" 1
delta "relay answers unknown" "$(relay_metric "$R_UNKNOWN")" "$S_RUNK" 1
delta "relay jit_unknown drops" "$(relay_metric "$R_DROP_UNKNOWN")" "$S_DUNK" 1
delta "initiations at WireGuard's port" "$(gw_count initiations)" "$S_GWINIT" 0
delta "handshake responses from WireGuard" "$(gw_count responses)" "$S_GWRESP" 0
delta "provisioner jit installs" "$(prov_metric wgws_provisioner_jit_installs_total)" "$S_INSTALLS" 0
ok "unknown key: no answer in 3.5 s (> the relay's 3 s hold), not installed," \
	"1 jit_unknown drop, nothing reached WireGuard's port"

# --- v. replay after GC ----------------------------------------------------------------
say "v. a recorded initiation replayed after GC removed its peer"
"$INITGEN" keys 1 >"$T/k.keys"
K=$(awk '{ print $2 }' "$T/k.keys")
create "$K" replay-key
initgen "$T/k.keys" "$T/k1.init"
snap
load "$T/k1.init" --timeout 3
expect "first initiation of K" "$(load_status "$K")" response
on_gw "$K" || fail "K is not in wg show after its first initiation"
delta "provisioner jit installs" "$(prov_metric wgws_provisioner_jit_installs_total)" "$S_INSTALLS" 1
ok "K's initiation I: installed, WireGuard's response came back through the relay ($(load_latency "$K") ms)"
wait_for 15 not_on_gw "$K" || fail "GC did not remove K within 15 s"
ok "GC removed K"
snap
load "$T/k1.init" --timeout 3.5
expect "replayed I" "$(load_status "$K")" none
not_on_gw "$K" || fail "the replayed initiation put K back into the device"
delta "provisioner replays refused" "$(prov_metric wgws_provisioner_jit_replays_refused_total)" "$S_REPLAYS" 1
# Decided seconds ago: answered from memory, with no X25519 and no store read.
delta "replays answered from the replay cache" \
	"$(prov_metric 'wgws_provisioner_jit_replay_cache_hits_total{kind="replay"}')" "$S_RECALLED" 1
delta "relay answers refused" "$(relay_metric "$R_REFUSED")" "$S_RREF" 1
delta "relay jit_refused drops" "$(relay_metric "$R_DROP_REFUSED")" "$S_DREF" 1
delta "initiations at WireGuard's port" "$(gw_count initiations)" "$S_GWINIT" 0
delta "provisioner jit installs" "$(prov_metric wgws_provisioner_jit_installs_total)" "$S_INSTALLS" 0
ok "the same bytes again: refused from the replay cache (replays_refused +1, relay jit_refused +1)," \
	"K not installed, nothing reached WireGuard"
initgen "$T/k.keys" "$T/k2.init"
snap
load "$T/k2.init" --timeout 3
expect "a fresh initiation of K" "$(load_status "$K")" response
on_gw "$K" || fail "K is not in wg show after a fresh initiation"
delta "provisioner jit installs" "$(prov_metric wgws_provisioner_jit_installs_total)" "$S_INSTALLS" 1
ok "a fresh initiation (newer timestamp) installs K again ($(load_latency "$K") ms)"

# --- vi. rate limit per client address ------------------------------------------------
say "vi. 100 initiations from one address over 10 tunnels, then a tunnel from another address"
"$INITGEN" keys 1 >"$T/burst.keys"
initgen "$T/burst.keys" "$T/burst.init" --count 100
# 10 tunnels of 10: each alone stays well under a burst of 40, so a limit per tunnel would
# let them all through; the limit is per client address (here the proxy namespace's).
awk '{ t = int((NR - 1) / 10); l[t] = l[t] " " $2; k = $1 }
	END { for (i = 0; i < 10; i++) print k "-" i l[i] }' "$T/burst.init" >"$T/burst.tunnels"
"$INITGEN" keys 1 >"$T/next.keys"
N=$(awk '{ print $2 }' "$T/next.keys")
create "$N" after-burst
initgen "$T/next.keys" "$T/next.init"
# Another client address, in the proxy namespace beside $P_GNET.
P_GNET_2=10.201.2.3
in_p ip addr add "$P_GNET_2/24" dev gw0
snap
# 5 ms apart: the relay holds one initiation per tunnel and asks again with the newest when
# an answer comes, so back-to-back records would mostly merge into one request; spaced,
# each is a request: 100 in ~50 ms from one address against --jit-rate's 20/s (burst 40).
load "$T/burst.tunnels" --timeout 1 --gap 5
asked=$(($(prov_metric 'wgws_provisioner_jit_initiations_total{path="relay"}') - S_PINIT))
limited=$(($(prov_metric wgws_provisioner_jit_rate_limited_total) - S_RATE))
say "burst: relay requests +$(($(relay_metric "$R_REQ") - S_REQ)), provisioner decided $asked, rate-limited $limited"
[ "$limited" -gt 0 ] || fail "100 initiations from one address over 10 tunnels: rate_limited_total did not grow"
load "$T/next.init" --timeout 3 --bind "$P_GNET_2"
expect "the tunnel from another address" "$(load_status "$N")" response
lat=$(load_latency "$N")
"$PY" -c "import sys; sys.exit(0 if float('$lat') < 500 else 1)" ||
	fail "the tunnel from another address waited $lat ms for its response (want < 500)"
on_gw "$N" || fail "the key sent from another address is not in wg show"
ok "rate-limited $limited of $asked from one address over 10 tunnels; a tunnel from" \
	"$P_GNET_2 installed and answered in $lat ms"

# --- vii. the channel comes back ----------------------------------------------------------
say "vii. provisioner restart: the relay, now running as wgws, reconnects"
stop_pid "$PROV_PID" TERM 5
wait_for 5 sh -c "! ip netns exec $NS_G curl -s -m 2 http://$METRICS/metrics | grep -qx 'wgws_relay_jit_connected 1'" ||
	fail "the relay still reports the channel up after the provisioner stopped"
# For viii: a budget of one decision a second, no per-address limit in the way of the flood,
# and peers kept long enough for a pass to find its peer in the device.
start_prov 2 --jit-budget 1 --jit-rate 1000 --gc-idle 60
wait_for 10 jit_connected || fail "the relay did not reconnect to the restarted provisioner"
grep -q "relay pid [0-9]* (uid $(id -u wgws)) connected" "$PROV_LOG" ||
	fail "the relay did not reconnect as wgws (uid $(id -u wgws)): $(oneline "$(grep relay "$PROV_LOG")")"
"$INITGEN" keys 1 >"$T/m.keys"
M=$(awk '{ print $2 }' "$T/m.keys")
create "$M" after-restart
initgen "$T/m.keys" "$T/m.init"
load "$T/m.init" --timeout 3
expect "a new key after the restart" "$(load_status "$M")" response
expect "installs of the restarted provisioner" "$(prov_metric wgws_provisioner_jit_installs_total)" 1
ok "reconnected as uid $(id -u wgws) (--jit-user wgws); a new key installed and answered ($(load_latency "$M") ms)"

# --- viii. over the budget --------------------------------------------------------------
say "viii. over --jit-budget 1/s: a flood of unknown keys is shed; a tunnel live lately passes"
# client_rehandshake: the real client drops its session, so that its next packet starts a
# handshake through the same shim tunnel.
client_rehandshake() {
	in_c wg set "$WG_C" peer "$WG_G_PUB" remove
	in_c wg set "$WG_C" peer "$WG_G_PUB" allowed-ips "$TUN_G/32" endpoint "127.0.0.1:$SHIM_PORT"
}
responses_above() { [ "$(gw_count responses)" -gt "$1" ]; }
shed_above() { [ "$(prov_metric wgws_provisioner_jit_budget_shed_total)" -gt "$1" ]; }
# client_handshake: one ping; HS_MS is the time until WireGuard sent its handshake response.
client_handshake() {
	local r0 t0 pid
	r0=$(gw_count responses)
	t0=$(now_ms)
	PING_N=$((${PING_N:-0} + 1))
	spawn_ns "$NS_C" "$T/ping-$PING_N.log" ping -n -c 1 -W 3 "$TUN_G"
	pid=$SPAWNED
	wait_for 4 responses_above "$r0" || fail "no handshake response for the real client within 4 s"
	HS_MS=$(($(now_ms) - t0))
	wait "$pid" || true
}
# M took the budget's one token: a second later there is one again, for the real client.
nap 1.1
I0=$(prov_metric wgws_provisioner_jit_installs_total)
client_rehandshake
client_handshake
delta "installs for the real client" "$(prov_metric wgws_provisioner_jit_installs_total)" "$I0" 1
ok "the real client installed under the budget (handshake $HS_MS ms after its ping)"
# 20 unknown keys, 60 initiations each, 100 ms apart: 200 a second for 6 s against 1.
"$INITGEN" keys 20 >"$T/flood.keys"
initgen "$T/flood.keys" "$T/flood.init" --count 60
awk '{ l[$1] = l[$1] " " $2 } END { for (k in l) print k l[k] }' "$T/flood.init" >"$T/flood.tunnels"
S_SHED=$(prov_metric wgws_provisioner_jit_budget_shed_total)
S_PASSED=$(prov_metric wgws_provisioner_jit_budget_passed_total)
G0=$(gw_count initiations)
spawn_ns "$NS_P" "$T/flood.log" "$PY" "$TOOLS/jitload.py" --connect-to "$G_PROXY:443" \
	--out "$T/flood.out" --timeout 1 --gap 100 "$URL" "$T/flood.tunnels"
FLOOD_PID=$SPAWNED
wait_for 10 shed_above "$S_SHED" || fail "the flood was not shed over --jit-budget"
# A token comes back every second, and the flood takes it within ~5 ms: the real client
# could be that rare one decided in full (then answered live, not passed); try again then.
for attempt in 1 2 3; do
	client_rehandshake
	client_handshake
	[ "$(prov_metric wgws_provisioner_jit_budget_passed_total)" -gt "$S_PASSED" ] && break
done
passed=$(($(prov_metric wgws_provisioner_jit_budget_passed_total) - S_PASSED))
[ "$passed" -gt 0 ] || fail "the real client's initiations were never passed over the budget"
[ "$HS_MS" -lt 1000 ] || fail "over the budget the live client's handshake took $HS_MS ms (want < 1000)"
wait "$FLOOD_PID" || fail "jitload (flood): $(oneline "$(cat "$T/flood.log")")"
shed=$(($(prov_metric wgws_provisioner_jit_budget_shed_total) - S_SHED))
got=$(awk '$2 != "none"' "$T/flood.out" | head -3)
[ -z "$got" ] || fail "flood tunnels with an answer: $(oneline "$got")"
for k in $(awk '{ print $2 }' "$T/flood.keys"); do
	not_on_gw "$k" || fail "a flood key is in wg show"
done
delta "initiations at WireGuard's port during the flood" "$(gw_count initiations)" "$G0" "$attempt"
ok "flood: $shed shed over the budget, none reached WireGuard; the live client passed" \
	"($passed of $attempt, handshake $HS_MS ms after its ping)"

# --- the rest of the bookkeeping -------------------------------------------------------
for m in wgws_provisioner_jit_errors_total wgws_provisioner_jit_mac1_failures_total \
	wgws_provisioner_jit_bad_initiations_total; do
	expect "$m" "$(prov_metric "$m")" 0
done
expect "relay jit timeouts" "$(relay_metric "$R_TIMEOUTS")" 0
expect "relay jit not asked" "$(relay_metric "$R_NOT_ASKED")" 0
alive "$PROV_PID" || fail "the provisioner died"
alive "$RELAY_PID" || fail "the relay died"
ok "no JIT errors, mac1 failures, bad initiations, relay time-outs or unasked initiations"
# After all these decisions (each an X25519 with the device key, asked of the privileged
# half), the key is in the privileged half's memory and nowhere in the engine's.
PRIV_PID=$(child_of "$PROV_PID")
[ -n "$PRIV_PID" ] || fail "no privileged half under the provisioner"
read -r e_raw e_hex e_b64 <<<"$(key_hits "$PROV_PID")"
read -r c_raw c_hex c_b64 <<<"$(key_hits "$PRIV_PID")"
[ "$e_raw$e_hex$e_b64" = 000 ] ||
	fail "the device key is in the engine's memory after JIT: raw $e_raw, hex $e_hex, base64 $e_b64"
[ "$c_raw" -ge 1 ] || fail "the key scan found nothing in the privileged half either: the scan is blind"
ok "the device key: in the privileged half ($c_raw raw), not in the engine, after the JIT decisions"
say "first handshake after the ping started: $HS1 ms; after GC and a client restart: $HS2 ms"
echo "PASS test_jit"
