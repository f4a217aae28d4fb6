#!/bin/bash
# SPDX-License-Identifier: MIT
# A JIT flood (issue 10 §2): 2,000 handshake initiations a second, valid mac1 (anyone who has
# the gateway's public key can make them), through 100 relay tunnels for 5 s, against a
# provisioner with its default limits (--jit-rate 20 per client address, --jit-budget 5000);
# twice:
#  1. byte-identical: one initiation (an unknown key) repeated 10,000 times;
#  2. fresh random keys: 10,000 initiations, each from a new key nobody stored.
# In each, while the flood runs, a legitimate new client (a peer created through the API just
# before, a real wireguard-go behind a new wgws-shim → squid → relay tunnel) pings, and its
# first handshake must complete within 1 s of the ping (measured as test_jit.sh does); the
# provisioner's CPU time (utime + stime from /proc/PID/stat, around the whole phase) must stay
# under the bound set below; no flood initiation may reach WireGuard (nftables counters at its
# port, as in test_jit.sh: exactly the legitimate client's one initiation and one response),
# none may get an answer, and the relay must neither time out nor forward one unasked. The
# provisioner's shed metrics are printed per phase.
set -eu
. "$(dirname "$0")/lib.sh"
jit_test_init
POOL4=10.202.0.0/24 # the tunnel's /24: the clients get .2, .3 (the gateway is .1)
URL=wss://$GW_NAME/wg
# The flood: TUNNELS tunnels, each sending one initiation every GAP_MS ms (jitload.py --pace
# staggers them evenly over each period) for SECONDS: 100 x 20/s = 2,000/s, 10,000 in all.
TUNNELS=100 GAP_MS=50 FLOOD_S=5
PER_TUNNEL=$((FLOOD_S * 1000 / GAP_MS))
N_FLOOD=$((TUNNELS * PER_TUNNEL))
# Slower than this (a loaded machine) and the flood did not flood: fail rather than pass.
MIN_RATE=1800
HS_MAX_MS=1000
# The provisioner's CPU bound, in % of one core over the 5 s of sending: everything it did
# from just before the flood's tunnels opened until they had all closed (the utime + stime
# of the engine and of its privileged half, which does the X25519s) is charged to those 5 s. With its default limits a flood is cheap before any
# public-key work:
#  - an exact replay is answered from the replay cache: mac1 (one keyed BLAKE2s) and two
#    keyed SipHashes, ~1 µs, besides reading the request from the relay's unix socket and
#    writing the answer (a few µs of syscalls and event loop);
#  - fresh keys from one client address get --jit-rate 20/s (bursts of 40) decisions with
#    public-key work, ~140 in 5 s at ~60 µs (one X25519 and a store read): ~8 ms in all; the
#    other ~9,860 are refused after mac1 and one count-min lookup, as cheap as a replay;
#  - the worst case, a flood from many addresses, is capped by --jit-budget: 5,000/s x ~60 µs
#    = 30 % of a core; deciding all of these 2,000/s in full would cost ~12 % unsanitized.
# Measured on 2 loaded cores with the sanitizer build (ASan + UBSan: our code 2-3x slower,
# libsodium not instrumented): 12-28 ticks of 10 ms in either phase, 2.4-5.6 % of a core
# (12-28 µs a request, of which the checks are ~1 µs: the rest is the socket and the event
# loop, and varies with the machine's load); the same fresh-key flood with --jit-rate out of
# the way (every one decided in full) took 97 ticks, 19 % (the engine's alone: those figures
# predate counting the privileged half). With the privileged half counted, whose X25519s and
# 150 µs polls for the next request (priv_recvmsg) are the flood's too: 19 and 40 ticks,
# 3.8 % and 8.0 %. The bound is half of what the budget allows at worst, 15 %: ~2x the
# highest figure measured, for a slower or busier machine, and under the unlimited one. (The metrics checked below say more exactly
# that the replay cache and the per-address limit did the shedding.)
CPU_MAX_PCT=15
P_GNET_2=10.201.2.3 # a second address of the proxy namespace: the fresh-key flood's
PROV_LOG="" PROV_PID="" PING_N=0

dump_logs() {
	[ -z "$PROV_LOG" ] || logtail "$PROV_LOG" 20
	[ -z "$RELAY_LOG" ] || logtail "$RELAY_LOG" 20
	[ -z "$SHIM_LOG" ] || logtail "$SHIM_LOG" 8
}

# msnap FILE: one scrape of the provisioner's and the relay's JIT metrics (the provisioner's
# once: a scrape is work for it too).
msnap() {
	{
		curl -s -m 5 --unix-socket "$SOCK" http://prov/metrics | grep '^wgws_provisioner_jit_'
		in_g curl -s -m 3 "http://$METRICS/metrics" | grep -E '^wgws_relay_(jit_|packets_dropped_total)'
	} >"$1" || fail "metrics do not answer"
}
# mdelta BEFORE AFTER NAME: NAME's growth between two msnap files.
mdelta() {
	awk -v n="$3" '$1 == n { v[FILENAME] = $2 }
		END { print (ARGV[1] in v && ARGV[2] in v) ? v[ARGV[2]] - v[ARGV[1]] : "absent" }' "$1" "$2"
}
HZ=$(getconf CLK_TCK)

# new_client NAME: a new legitimate client: a key pair, the peer created through the API
# (stored, not installed), the client's wireguard-go switched to that key and address, and a
# new shim (so a new tunnel through squid, opened by the first ping). Sets CKEY.
new_client() {
	(umask 077 && wg genkey >"$T/keys/$1.key")
	CKEY=$(wg pubkey <"$T/keys/$1.key")
	req POST /v1/peers -H 'Content-Type: application/json' \
		--data-binary "{\"public_key\":\"$CKEY\",\"name\":\"$1\"}"
	[ "$CODE" = 201 ] || fail "POST /v1/peers ($1): HTTP $CODE: $(head -c 300 "$T/body")"
	expect "POST /v1/peers ($1): installed" "$(jget 'd["installed"]')" false
	local addr
	addr=$(jget 'd["addresses"][0].split("/")[0]')
	[ -z "$SHIM_PID" ] || stop_shim
	in_c wg set "$WG_C" peer "$WG_G_PUB" remove
	in_c wg set "$WG_C" private-key "$T/keys/$1.key"
	in_c ip addr flush dev "$WG_C"
	in_c ip addr add "$addr/24" dev "$WG_C"
	in_c wg set "$WG_C" peer "$WG_G_PUB" allowed-ips "$TUN_G/32" endpoint "127.0.0.1:$SHIM_PORT"
	start_shim --pin "$PIN"
	[ "$(gw_handshake "$CKEY")" = 0 ] || fail "$1 has a handshake on the gateway before its ping"
}
not_alive() { ! alive "$1"; }
flood_on() { [ $(($(relay_metric wgws_relay_jit_requests_total) - FLOOD_REQ0)) -ge 500 ]; }

# phase N LABEL FILE [JITLOAD_ARGS...]: the flood in FILE (TUNNELS lines) from the proxy
# namespace straight to the relay, the legitimate client's first handshake once it runs,
# and every check. Sets HS (ms), CPU_TICKS, CPU_PCT and D_* (metric deltas), and prints the
# shed metrics.
phase() {
	local n=$1 label=$2 file=$3 before after c0 c1 t0 t1 pid log summary writes span rate late
	local open_at sent_at g0 r0 got
	shift 3
	say "phase $n: $label: new client c$n created, then $N_FLOOD initiations over $TUNNELS tunnels"
	new_client "c$n"
	before=$T/m$n-before after=$T/m$n-after log=$T/flood-$n.log
	msnap "$before"
	g0=$(gw_count initiations) r0=$(gw_count responses)
	FLOOD_REQ0=$(relay_metric wgws_relay_jit_requests_total)
	c0=$(cpu_ticks "$PROV_PID" "$PRIV_PID")
	t0=$(now_ms)
	spawn_ns "$NS_P" "$log" "$PY" "$TOOLS/jitload.py" --connect-to "$G_PROXY:443" --inflight 32 \
		--pace --gap "$GAP_MS" --timeout 1 --out "$T/flood-$n.out" "$@" "$URL" "$file"
	pid=$SPAWNED
	# A quarter of a second's worth through the relay: the flood is on.
	wait_for 10 flood_on || fail "the flood did not start within 10 s: $(oneline "$(cat "$log")")"
	first_handshake "$CKEY"
	HS=$HS_MS
	# It ends by itself, --timeout (1 s) after its last initiation.
	wait_for 20 not_alive "$pid" || fail "jitload did not end within 20 s"
	wait "$pid" || fail "jitload: $(oneline "$(cat "$log")")"
	c1=$(cpu_ticks "$PROV_PID" "$PRIV_PID")
	t1=$(now_ms)
	msnap "$after"
	cat "$log"

	# The flood: every tunnel open, every initiation sent, at the rate, none answered.
	summary=$(tail -n 1 "$log")
	expect "flood tunnels open" "$(sed -n 's/.* open=\([0-9]*\) .*/\1/p' <<<"$summary")" "$TUNNELS"
	read -r writes span late < <(sed -n \
		's/^sent \([0-9]*\) initiations in \([0-9.]*\) s .* at most \([0-9.]*\) ms behind.*/\1 \2 \3/p' "$log")
	expect "flood initiations sent" "$writes" "$N_FLOOD"
	rate=$("$PY" -c "print(int($writes / $span))")
	[ "$rate" -ge "$MIN_RATE" ] || fail "the flood ran at $rate/s (want >= $MIN_RATE)"
	got=$(awk '$2 != "none"' "$T/flood-$n.out" | head -3)
	[ -z "$got" ] || fail "flood tunnels with an answer: $(oneline "$got")"
	ok "flood: $TUNNELS tunnels, $writes initiations in $span s ($rate/s, at most $late ms behind" \
		"schedule); none answered"
	# The legitimate handshake happened while the flood was sending (phases: unix time).
	open_at=$(sed -n 's/.*all open \([0-9.]*\),.*/\1/p' "$log")
	sent_at=$(sed -n 's/.*all sent \([0-9.]*\),.*/\1/p' "$log")
	"$PY" -c "import sys; sys.exit(0 if $open_at * 1000 <= $HS_T0 and $HS_AT <= $sent_at * 1000 else 1)" ||
		fail "the client's handshake ($HS_T0-$HS_AT ms) was not inside the flood ($open_at-$sent_at s)"

	# The legitimate client: installed, within HS_MAX_MS.
	[ "$HS" -lt "$HS_MAX_MS" ] ||
		fail "c$n: first handshake $HS ms after its ping started, during the flood (want < $HS_MAX_MS)"
	req GET "/v1/peers/$(tr '+/' '-_' <<<"$CKEY")"
	expect "c$n installed" "$(jget 'd["installed"]')" true
	expect "c$n: installs" "$(mdelta "$before" "$after" wgws_provisioner_jit_installs_total)" 1
	ok "c$n: first handshake $HS ms after its ping (< $HS_MAX_MS), which started" \
		"$("$PY" -c "print(int($HS_T0 - $open_at * 1000))") ms into the flood; its pings answered"

	# Nothing of the flood reached WireGuard: one initiation at its port (c$n's) and one
	# response; the relay forwarded nothing on a time-out or unasked.
	expect "initiations at WireGuard's port" $(($(gw_count initiations) - g0)) 1
	expect "handshake responses from WireGuard" $(($(gw_count responses) - r0)) 1
	expect "relay answers installed" \
		"$(mdelta "$before" "$after" 'wgws_relay_jit_answers_total{verdict="installed"}')" 1
	expect "relay answers live" "$(mdelta "$before" "$after" 'wgws_relay_jit_answers_total{verdict="live"}')" 0
	expect "relay time-outs" "$(mdelta "$before" "$after" wgws_relay_jit_timeouts_total)" 0
	expect "relay forwarded unasked" "$(mdelta "$before" "$after" wgws_relay_jit_not_asked_total)" 0
	expect "peers in the gateway device" "$(in_g wg show "$WG_G" peers | wc -l)" "$n"
	ok "WireGuard saw 1 initiation and sent 1 response (c$n's); relay: no time-out, nothing unasked"

	# The provisioner's CPU over the phase, all charged to the flood's sending time.
	CPU_TICKS=$((c1 - c0))
	CPU_PCT=$("$PY" -c "print('%.1f' % (100.0 * $CPU_TICKS / $HZ / $span))")
	CPU_WPCT=$("$PY" -c "print('%.1f' % (100.0 * $CPU_TICKS / $HZ / (($t1 - $t0) / 1000.0)))")
	"$PY" -c "import sys; sys.exit(0 if $CPU_PCT <= $CPU_MAX_PCT else 1)" ||
		fail "provisioner CPU: $CPU_TICKS ticks = $CPU_PCT % of a core over the ${span} s flood (want <= $CPU_MAX_PCT %)"
	ok "provisioner CPU: $CPU_TICKS ticks ($HZ/s) = $CPU_PCT % of a core over the ${span} s of" \
		"sending ($CPU_WPCT % over the whole $(((t1 - t0) / 1000)) s phase), bound $CPU_MAX_PCT %"

	# What was shed, and how.
	D_INIT=$(mdelta "$before" "$after" 'wgws_provisioner_jit_initiations_total{path="relay"}')
	D_RECALL=$(mdelta "$before" "$after" 'wgws_provisioner_jit_replay_cache_hits_total{kind="unknown"}')
	D_UNKNOWN=$(mdelta "$before" "$after" wgws_provisioner_jit_unknown_keys_total)
	D_NEG=$(mdelta "$before" "$after" wgws_provisioner_jit_negative_cache_hits_total)
	D_RATE=$(mdelta "$before" "$after" wgws_provisioner_jit_rate_limited_total)
	D_SHED=$(mdelta "$before" "$after" wgws_provisioner_jit_budget_shed_total)
	D_PASSED=$(mdelta "$before" "$after" wgws_provisioner_jit_budget_passed_total)
	D_REQ=$(mdelta "$before" "$after" wgws_relay_jit_requests_total)
	D_RUNK=$(mdelta "$before" "$after" 'wgws_relay_jit_answers_total{verdict="unknown"}')
	D_RREF=$(mdelta "$before" "$after" 'wgws_relay_jit_answers_total{verdict="refused"}')
	D_SUPER=$(mdelta "$before" "$after" 'wgws_relay_packets_dropped_total{reason="jit_superseded"}')
	# Decided with public-key work: the unknown keys not answered from the replay cache,
	# and the client's install.
	D_FULL=$((D_UNKNOWN - D_RECALL + 1))
	say "phase $n shed: relay requests $D_REQ ($((N_FLOOD + 1 - D_REQ)) merged: newest held" \
		"wins; answers unknown $D_RUNK, refused $D_RREF; superseded $D_SUPER); provisioner initiations $D_INIT: replay-cache hits $D_RECALL," \
		"rate-limited $D_RATE, budget shed $D_SHED, budget passed $D_PASSED, negative-cache" \
		"hits $D_NEG, decided with public-key work $D_FULL"
	expect "budget shed" "$D_SHED" 0
	expect "budget passed" "$D_PASSED" 0
	expect "relay answers unknown + refused" $((D_RUNK + D_RREF)) $((D_REQ - 1))
}

# --- set-up ---------------------------------------------------------------------------
say "namespaces, wireguard-go (the gateway without any peer), squid, UDP blocked"
topology
wg_up
in_g wg set "$WG_G" peer "$WG_C_PUB" remove
block_client_udp
count_handshakes
in_p ip addr add "$P_GNET_2/24" dev gw0
# Phase 2's 10,000 fresh keys and initiations (two X25519 each: seconds) while the rest is
# set up.
spawn "$T/initgen.log" sh -c "'$INITGEN' keys $N_FLOOD | '$INITGEN' init '$WG_G_PUB' >'$T/fresh.init'"
INITGEN_PID=$SPAWNED
certs_make
start_squid

# The JIT limits at their defaults (--jit-rate 20, --jit-budget 5000): what the bound is for.
jit_prov_start
PRIV_PID=$(child_of "$PROV_PID")
[ -n "$PRIV_PID" ] || fail "no privileged half under the provisioner (pid $PROV_PID)"
# All 100 flood tunnels come from one address of the proxy namespace: the relay's own
# per-address admission (connections, pending handshakes, rate of new connections) would
# otherwise cut most of them before they carry anything, and the load would never reach the
# provisioner. That admission is test_admission.sh's; here it is off, so that the flood
# meets the provisioner's limits alone.
start_relay --jit-socket "$JSOCK" --max-conns-per-ip 0 --max-pending-per-ip 256 --rate-per-ip 0
wait_for 10 jit_connected || fail "the relay did not connect to the provisioner"
ok "provisioner pid $PROV_PID (its privileged half $PRIV_PID; --jit, default limits), relay" \
	"pid $RELAY_PID connected to it"

# Phase 1's flood: one unknown key's initiation, the same bytes $N_FLOOD times.
"$INITGEN" keys 1 | "$INITGEN" init "$WG_G_PUB" >"$T/one.init"
awk -v t="$TUNNELS" -v k="$PER_TUNNEL" '{ for (i = 0; i < t; i++) { printf "same-%d", i;
	for (j = 0; j < k; j++) printf " %s", $2; printf "\n" } }' "$T/one.init" >"$T/same.tunnels"
wait "$INITGEN_PID" || fail "jit-initgen: $(oneline "$(cat "$T/initgen.log")")"
expect "fresh initiations made" "$(wc -l <"$T/fresh.init")" "$N_FLOOD"
awk -v t="$TUNNELS" '{ i = (NR - 1) % t; l[i] = l[i] " " $2 }
	END { for (i = 0; i < t; i++) print "fresh-" i l[i] }' "$T/fresh.init" >"$T/fresh.tunnels"

# --- 1. byte-identical ------------------------------------------------------------------
# From the proxy's own address, the one squid (and so the legitimate client) uses: exact
# replays are answered from the replay cache before the per-address bucket is consulted, so
# they take none of that address's tokens.
phase 1 "byte-identical replays, from squid's address" "$T/same.tunnels"
HS1=$HS CPU1=$CPU_TICKS PCT1=$CPU_PCT
expect "replays answered from the replay cache" "$D_RECALL" $((D_INIT - 2))
expect "rate-limited" "$D_RATE" 0
ok "all but the first of the flood's $((D_INIT - 1)) answered unknown from the replay cache;" \
	"none rate-limited: the legitimate client behind the same address went through"

# --- 2. fresh random keys ---------------------------------------------------------------
# From another address: fresh keys spend their address's tokens (--jit-rate), so a client
# behind the flooder's own address would be shed with it, as test_jit.sh (vi) shows; the
# legitimate client comes through squid, from its address, as before.
phase 2 "fresh random keys, from $P_GNET_2" "$T/fresh.tunnels" --bind "$P_GNET_2"
HS2=$HS CPU2=$CPU_TICKS PCT2=$CPU_PCT
# The address's bucket: a burst of 40, then 20/s, over the phase (and its tail).
[ "$D_FULL" -le $((40 + 20 * (FLOOD_S + 3) + 1)) ] ||
	fail "$D_FULL decisions with public-key work from one address over --jit-rate 20/s"
# The flood's requests: the client's one aside. (Fewer than N_FLOOD when jitload fell behind
# and caught up: a tunnel's initiations written back to back reach the relay together, and it
# holds only the newest, asking about it when the answer about the one before comes.)
[ "$D_RATE" -ge $((D_INIT - 1 - 40 - 20 * (FLOOD_S + 3))) ] ||
	fail "only $D_RATE of the $((D_INIT - 1)) fresh-key initiations asked about rate-limited"
ok "$D_RATE of the flood's $((D_INIT - 1)) rate-limited before any public-key work;" \
	"$D_FULL decided in full (the client's install included)"

# --- the rest -----------------------------------------------------------------------------
in_g wg show "$WG_G" peers | sort >"$T/gw.peers"
expect "peers in wg show (c1 and c2)" "$(wc -l <"$T/gw.peers")" 2
for m in wgws_provisioner_jit_errors_total wgws_provisioner_jit_mac1_failures_total \
	wgws_provisioner_jit_bad_initiations_total wgws_provisioner_jit_answers_dropped_total; do
	expect "$m" "$(prov_metric "$m")" 0
done
alive "$PROV_PID" || fail "the provisioner died"
alive "$RELAY_PID" || fail "the relay died"
say "provisioner CPU: phase 1 $CPU1 ticks ($PCT1 % of a core), phase 2 $CPU2 ticks ($PCT2 %)," \
	"bound $CPU_MAX_PCT %; legitimate first handshakes $HS1 ms and $HS2 ms"
echo "PASS test_jit_flood"
