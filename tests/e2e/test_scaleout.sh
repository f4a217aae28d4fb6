#!/bin/bash
# SPDX-License-Identifier: MIT
# Many gateways, one source of truth (issue 13): a PostgreSQL cluster made with initdb in a
# temporary directory (run as the user postgres) in a namespace of its own, TLS only (the
# gateways connect with sslmode=verify-full), and three gateways
# (namespaces A, B, C: each wireguard-go with the same key, wgws-relay --jit-socket and
# wgws-provisioner --jit --source) on one LAN with it and a client (wireguard-go and
# wgws-shim, which reaches one gateway's relay at a time). Shown:
#  - a peer created through A's API is stored in PostgreSQL, not installed anywhere; its
#    client's first handshake through B and then through C completes within 1 s (one JIT
#    lookup each: no 5 s retry); a peer inserted by plain SQL works the same way through A;
#  - 3 x 1,000 creates at once, 1,000 on each gateway's API: all 201, 3,000 distinct addresses;
#  - a delete through C leaves A's and B's devices within 1 s;
#  - B cut off from PostgreSQL (its packets dropped, the connection not closed) during a
#    delete: the peer stays on B until B reconnects, then leaves within 1 s;
#  - B stopped, a delete, B started with its stale cache: the peer leaves B within 1 s;
#  - PostgreSQL stopped: an installed peer's tunnel keeps working, an unknown key is refused
#    within 100 ms (not held 3 s), a create answers 503; PostgreSQL back: creates and JIT
#    resume without a restart;
#  - an address SQL took is skipped by the next create, an overlapping route is refused (409);
#  - a TTL that runs out deletes the peer in PostgreSQL and takes it off every gateway;
#  - a recorded initiation of a deleted peer, replayed to every gateway, installs it nowhere.
set -eu
. "$(dirname "$0")/lib.sh"
need_root
need_cmd wireguard-go wg nft curl ping
need_bins wgws-relay wgws-shim wgws-provisioner jit-initgen
. "$(dirname "$0")/lib_scaleout.sh"
so_need
SO_GWS="a b c" GWS="a b c"
SO_POOL4=10.202.0.0/20 # room for 3,000 and more
SO_PROV_EXTRA="--gc-interval 1" # expiry is the GC's: every second here
SO_PG_TLS=1 # PostgreSQL takes TLS only (hostssl); the gateways verify it (verify-full)
SHIM_PID="" SHIM_LOG=""
WGC=wgcl$$

dump_logs() {
	for g in $GWS; do
		logtail "${PLOG[$g]:-/dev/null}" 12
		logtail "$T/relay-$g.log" 6
	done
	logtail "$T/pg.log" 10
	[ -z "$SHIM_LOG" ] || logtail "$SHIM_LOG" 6
}

say "a LAN: PostgreSQL, three gateways, a client"
so_lan
say "PostgreSQL: initdb in $T/pg as postgres, listening on $DB_IP"
so_pg_start
in_ns "$NS_DB" "$PGBIN/createdb" -h "$DB_IP" -U wgws wgws || fail "createdb"
out=$(in_ns "$NS_DB" "$PROV" db status --source "$URL" 2>&1 </dev/null || true)
grep -q "no wgws schema here" <<<"$out" || fail "db status before init: $(oneline "$out")"
in_ns "$NS_DB" "$PROV" db init --source "$URL" --pool4 "$SO_POOL4" >"$T/dbinit.out" 2>&1 ||
	fail "db init: $(oneline "$(cat "$T/dbinit.out")")"
out=$(in_ns "$NS_DB" "$PROV" db status --source "$URL" 2>&1)
grep -q "schema version 1" <<<"$out" && grep -q "IPv4 10.202.0.2 - 10.202.15.254" <<<"$out" ||
	fail "db status: $(oneline "$out")"
ok "$(head -1 "$T/dbinit.out"); db status: $(oneline "$out")"

say "three gateways: wireguard-go (one key), relay --jit-socket, provisioner --source"
so_gateways
(umask 077 && wg genkey >"$T/keys/client.key" && wg genkey >"$T/keys/sql.key")
tls=$(psql_db -c "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE application_name = 'wgws-provisioner' AND ssl")
[ "$tls" = 3 ] || fail "provisioners connected over TLS: $tls of 3"
ok "gateways a, b, c: one WireGuard key ($GW_PUB), relays connected to their provisioners; the 3 provisioners on PostgreSQL over TLS (sslmode=verify-full, hostssl only)"

say "the client: wireguard-go and wgws-shim in its namespace"
spawn_ns "$NS_CL" "$T/wg-cl.log" wireguard-go -f "$WGC"
wait_for 10 test -S "/var/run/wireguard/$WGC.sock" || fail "wireguard-go (client)"
in_ns "$NS_CL" ip link set "$WGC" mtu 1380 up
# client_as KEYFILE ADDR: the client's device with this key and address, its session with
# the gateways reset (a new handshake comes with the next packet).
client_as() {
	in_ns "$NS_CL" wg set "$WGC" private-key "$1" listen-port 51821
	in_ns "$NS_CL" ip addr flush dev "$WGC"
	in_ns "$NS_CL" ip addr add "$2/${SO_POOL4#*/}" dev "$WGC"
	in_ns "$NS_CL" wg set "$WGC" peer "$GW_PUB" remove 2>/dev/null || true
	in_ns "$NS_CL" wg set "$WGC" peer "$GW_PUB" allowed-ips "$TUN_GW/32" \
		endpoint 127.0.0.1:51820
}
# via GW: the shim (restarted) toward GW's relay, and a fresh WireGuard session.
via() {
	[ -z "$SHIM_PID" ] || stop_pid "$SHIM_PID"
	SHIM_LOG=$T/shim-$1-$RANDOM.log
	spawn_ns "$NS_CL" "$SHIM_LOG" "$WGWS_BUILD/wgws-shim" --listen 127.0.0.1:51820 \
		--relay "wss://${GW_IP[$1]}/wg" --pin "$PIN"
	SHIM_PID=$SPAWNED
	wait_for 5 grep -q "listening on" "$SHIM_LOG" || fail "the shim did not start"
	in_ns "$NS_CL" wg set "$WGC" peer "$GW_PUB" remove
	in_ns "$NS_CL" wg set "$WGC" peer "$GW_PUB" allowed-ips "$TUN_GW/32" \
		endpoint 127.0.0.1:51820
}
# handshake GW KEY: ping through the tunnel until GW reports a handshake with KEY; HS_MS is
# the time from the first ping; fails after 5 s or when pings go unanswered.
handshake() {
	local g=$1 key=$2 t0 log=$T/ping-$RANDOM.log pid rx
	t0=$(now_ms)
	spawn_ns "$NS_CL" "$log" ping -n -c 4 -i 0.25 -W 2 "$TUN_GW"
	pid=$SPAWNED
	until [ "$(gw_hs "$g" "$key")" -gt 0 ]; do
		[ $(($(now_ms) - t0)) -lt 5000 ] || fail "no handshake on gateway $g within 5 s"
		sleep 0.02
	done
	HS_MS=$(($(now_ms) - t0))
	wait "$pid" || true
	rx=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$log")
	[ "${rx:-0}" -ge 3 ] || fail "ping through gateway $g: ${rx:-0}/4: $(oneline "$(cat "$log")")"
}

# new_client NAME GW [JSON]: a key of its own ($T/keys/NAME.key), created through GW's API
# (with JSON's fields too), the client device as it, the shim toward GW, its first
# handshake there. NEW_PUB is the key.
new_client() {
	local key=$T/keys/$1.key extra=${3:+,$3}
	(umask 077 && wg genkey >"$key")
	NEW_PUB=$(wg pubkey <"$key")
	api "$2" POST /v1/peers -H 'Content-Type: application/json' \
		--data-binary "{\"public_key\":\"$NEW_PUB\"$extra}"
	[ "$CODE" = 201 ] || fail "create on $2: HTTP $CODE: $(head -c 200 "$T/body")"
	client_as "$key" "$(jget 'd["addresses"][0].split("/")[0]')"
	via "$2"
	handshake "$2" "$NEW_PUB"
}

# --- created on A, used through B and C -------------------------------------------------
say "a peer created through A's API: in PostgreSQL, installed nowhere"
CL_PUB=$(wg pubkey <"$T/keys/client.key")
api a POST /v1/peers -H 'Content-Type: application/json' \
	--data-binary "{\"public_key\":\"$CL_PUB\",\"name\":\"roamer\"}"
[ "$CODE" = 201 ] || fail "create on A: HTTP $CODE: $(head -c 300 "$T/body")"
CL_ADDR=$(jget 'd["addresses"][0].split("/")[0]')
expect "in PostgreSQL" "$(psql_db -c "SELECT host(ip4) FROM wgws_peers WHERE pubkey = decode('$(base64 -d <<<"$CL_PUB" | od -An -tx1 | tr -d ' \n')', 'hex')")" "$CL_ADDR"
for g in $GWS; do ! on_gw "$g" "$CL_PUB" || fail "installed on $g before any handshake"; done
ok "201 on A, $CL_ADDR in PostgreSQL; on no device"

say "its first handshake through B, then through C"
client_as "$T/keys/client.key" "$CL_ADDR"
for g in b c; do
	via "$g"
	m0=$(prov_metric_of "$g" 'wgws_provisioner_source_cache_total{result="miss"}')
	handshake "$g" "$CL_PUB"
	[ "$HS_MS" -lt 1000 ] || fail "first handshake through $g after $HS_MS ms (want < 1000)"
	expect "$g's source lookups" $(($(prov_metric_of "$g" 'wgws_provisioner_source_cache_total{result="miss"}') - m0)) 1
	ok "through $g: handshake $HS_MS ms after the first ping, one lookup in PostgreSQL"
done

say "a peer inserted by plain SQL, through A"
SQL_PUB=$(wg pubkey <"$T/keys/sql.key")
SQL_HEX=$(base64 -d <<<"$SQL_PUB" | od -An -tx1 | tr -d ' \n')
SQL_ADDR=$(psql_db -c "INSERT INTO wgws_peers (pubkey, name) VALUES (decode('$SQL_HEX', 'hex'), 'by-sql') RETURNING host(ip4)")
[ -n "$SQL_ADDR" ] || fail "the INSERT returned no address"
client_as "$T/keys/sql.key" "$SQL_ADDR"
via a
handshake a "$SQL_PUB"
[ "$HS_MS" -lt 1000 ] || fail "first handshake of the SQL peer through a after $HS_MS ms"
ok "INSERT … RETURNING host(ip4): $SQL_ADDR; through A: handshake $HS_MS ms after the ping"
m=$(curl -s -m 3 --unix-socket "$T/api-a.sock" http://prov/metrics)
out=$(/usr/bin/python3 "$TOOLS/promcheck.py" wgws-provisioner <<<"$m") || fail "metrics: $out"
for n in source_connected source_cache_total source_change_seq source_sync_age_seconds \
	source_query_seconds_count; do
	grep -q "^wgws_provisioner_$n" <<<"$m" || fail "no wgws_provisioner_$n in A's metrics"
done
expect "A connected" "$(awk '$1 == "wgws_provisioner_source_connected" { print $2 }' <<<"$m")" 1
ok "A's metrics parse (strict), with the source's: $out"

say "what the source refuses or steps around, whoever writes"
next4=$(psql_db -c "SELECT host(ip4_next) FROM wgws_pool")
"$INITGEN" keys 2 | awk '{ print $2 }' >"$T/two.pub"
psql_db -c "INSERT INTO wgws_peers (pubkey, ip4, routes) VALUES (decode('$(sed -n 1p "$T/two.pub" | base64 -d | od -An -tx1 | tr -d ' \n')', 'hex'), '$next4', '{192.168.77.0/24}')" >/dev/null ||
	fail "an INSERT with an address of its own"
api b POST /v1/peers -H 'Content-Type: application/json' --data-binary '{"name":"after-sql"}'
[ "$CODE" = 201 ] || fail "a create after SQL took the pool's next address: HTTP $CODE: $(head -c 200 "$T/body")"
[ "$(jget 'd["addresses"][0].split("/")[0]')" != "$next4" ] || fail "the create got $next4 twice"
api c POST /v1/peers -H 'Content-Type: application/json' \
	--data-binary "{\"public_key\":\"$(sed -n 2p "$T/two.pub")\",\"allowed_ips\":[\"192.168.77.128/25\"]}"
[ "$CODE" = 409 ] && grep -q "overlaps another peer" "$T/body" ||
	fail "a route inside another peer's: HTTP $CODE: $(head -c 200 "$T/body")"
ok "SQL gave a peer the pool's next address ($next4): the next create skips it; a route inside another peer's route: 409"

# --- 3 x 1,000 creates at once ----------------------------------------------------------
say "3 x 1,000 creates at once, one thousand on each gateway's API"
"$PY" - "$T/api-a.sock" "$T/api-b.sock" "$T/api-c.sock" >"$T/burst.out" 2>&1 <<'PYEOF' ||
import base64, json, os, socket, sys, threading
codes, lock = {}, threading.Lock()
def post(path, body):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(path)
    s.sendall(b"POST /v1/peers HTTP/1.1\r\nHost: prov\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    return int(data.split(b" ", 2)[1])
def worker(path, n):
    for _ in range(n):
        k = bytearray(os.urandom(32))
        k[31] &= 0x7f
        body = json.dumps({"public_key": base64.b64encode(bytes(k)).decode(), "name": "burst"}).encode()
        c = post(path, body)
        with lock:
            codes[c] = codes.get(c, 0) + 1
threads = [threading.Thread(target=worker, args=(p, 125)) for p in sys.argv[1:] for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print(" ".join("%d:%d" % kv for kv in sorted(codes.items())))
PYEOF
	fail "the burst: $(oneline "$(cat "$T/burst.out")")"
[ "$(cat "$T/burst.out")" = "201:3000" ] || fail "the burst's answers: $(cat "$T/burst.out")"
got=$(psql_db -c "SELECT count(*) || ' ' || count(DISTINCT ip4) FROM wgws_peers WHERE name = 'burst'")
[ "$got" = "3000 3000" ] || fail "3,000 creates: peers and distinct addresses: $got"
ok "3,000 answered 201 ($(cat "$T/burst.out")); PostgreSQL holds 3,000 peers with 3,000 distinct addresses"

# --- deletes reach every gateway ---------------------------------------------------------
say "a delete through C leaves A's and B's devices within 1 s"
client_as "$T/keys/client.key" "$CL_ADDR"
via a
handshake a "$CL_PUB"
for g in a b; do on_gw "$g" "$CL_PUB" || fail "the client's peer is not on $g"; done
api c DELETE "/v1/peers/$(tr '+/' '-_' <<<"$CL_PUB")"
[ "$CODE" = 200 ] || fail "delete on C: HTTP $CODE: $(head -c 200 "$T/body")"
t0=$(now_ms)
for g in a b; do
	gone_within "$g" "$CL_PUB" $((1000 - ($(now_ms) - t0))) ||
		fail "still on $g $(($(now_ms) - t0)) ms after the delete"
done
ok "gone from A and B $(($(now_ms) - t0)) ms after C answered the delete"

say "B cut off from PostgreSQL (dropped, not closed) during a delete"
new_client k3 b
K3_PUB=$NEW_PUB
connected_b=$(grep -c "source: connected" "${PLOG[b]}")
in_ns "$(gw_ns b)" nft -f - <<NFT
table inet cut {
	chain out { type filter hook output priority 0; ip daddr $DB_IP tcp dport 5432 drop; }
	chain in { type filter hook input priority 0; ip saddr $DB_IP tcp sport 5432 drop; }
}
NFT
api c DELETE "/v1/peers/$(tr '+/' '-_' <<<"$K3_PUB")"
[ "$CODE" = 200 ] || fail "delete on C during the cut: HTTP $CODE"
nap 4 # past B's 3 s answer timeout: it gives the connection up and retries
on_gw b "$K3_PUB" || fail "B removed the peer while it could not hear of the delete"
in_ns "$(gw_ns b)" nft delete table inet cut
wait_for 20 sh -c "[ \$(grep -c 'source: connected' '${PLOG[b]}') -gt $connected_b ]" ||
	fail "B did not reconnect within 20 s of the cut's end"
gone_within b "$K3_PUB" 1000 || fail "still on B 1 s after it reconnected"
ok "on B through the cut (4 s); gone $LEFT_MS ms after B reconnected"

say "B stopped during a delete, started with its stale cache"
new_client k4 b
K4_PUB=$NEW_PUB
stop_pid "${PROV_PID[b]}"
api a DELETE "/v1/peers/$(tr '+/' '-_' <<<"$K4_PUB")"
[ "$CODE" = 200 ] || fail "delete on A: HTTP $CODE"
on_gw b "$K4_PUB" || fail "the peer left B's device with B's provisioner stopped"
t0=$(now_ms)
so_prov_start b
gone_within b "$K4_PUB" 1000 || fail "still on B 1 s after its provisioner connected"
ok "B's provisioner restarted with its cache: the peer gone $(($(now_ms) - t0)) ms after the start"
wait_for 10 so_relay_up b || fail "relay b did not reconnect to its provisioner"

say "expiry: a peer's TTL runs out in PostgreSQL, and it leaves every gateway"
new_client k7 b '"ttl_seconds":3'
K7_PUB=$NEW_PUB
K7_HEX=$(base64 -d <<<"$K7_PUB" | od -An -tx1 | tr -d ' \n')
wait_for 8 sh -c "[ -z \"\$(ip netns exec '$NS_DB' '$PGBIN/psql' -X -q -t -A '$URL' -c \"SELECT 1 FROM wgws_peers WHERE pubkey = decode('$K7_HEX', 'hex')\")\" ]" ||
	fail "the expired peer is still in PostgreSQL"
gone_within b "$K7_PUB" 2000 || fail "the expired peer stays on B"
ok "a 3 s TTL: deleted from PostgreSQL by a gateway's GC, gone from B's device"

# --- PostgreSQL down -------------------------------------------------------------------
say "PostgreSQL stopped: installed tunnels go on, unknown keys are refused at once, creates 503"
new_client k5 a
"$INITGEN" keys 1 >"$T/unknown.keys"
"$INITGEN" init "$GW_PUB" <"$T/unknown.keys" >"$T/unknown.init"
UNK_REC=0094$(awk '{ print $2 }' "$T/unknown.init")
connected_a=$(grep -c "source: connected" "${PLOG[a]}")
so_pg_stop
wait_for 5 sh -c "[ \"\$(curl -s --unix-socket '$T/api-a.sock' http://prov/metrics | awk '\$1 == \"wgws_provisioner_source_connected\" { print \$2 }')\" = 0 ]" ||
	fail "A still says it is connected to PostgreSQL"
in_ns "$NS_CL" ping -n -c 5 -i 0.2 -W 2 "$TUN_GW" >"$T/ping-down.log" 2>&1 ||
	fail "the installed peer's tunnel broke with PostgreSQL down: $(oneline "$(cat "$T/ping-down.log")")"
rm_a() { in_ns "$(gw_ns a)" curl -s -m 3 "http://127.0.0.1:9100/metrics" |
	awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? "absent" : v) }'; }
u0=$(rm_a 'wgws_relay_jit_answers_total{verdict="unknown"}') s0=$(rm_a wgws_relay_jit_answers_stale_total)
to0=$(rm_a wgws_relay_jit_timeouts_total)
in_ns "$NS_CL" "$PY" "$TOOLS/wsraw.py" -q --wait 0.1 "wss://${GW_IP[a]}/wg" "$UNK_REC" >"$T/wsraw.out" 2>&1 || true
grep -qx "status 101" "$T/wsraw.out" || fail "wsraw to A: $(oneline "$(cat "$T/wsraw.out")")"
expect "relay A: unknown answers (change)" $(($(rm_a 'wgws_relay_jit_answers_total{verdict="unknown"}') - u0)) 1
expect "relay A: stale answers (change)" $(($(rm_a wgws_relay_jit_answers_stale_total) - s0)) 0
expect "relay A: held to time-out (change)" $(($(rm_a wgws_relay_jit_timeouts_total) - to0)) 0
api a POST /v1/peers -H 'Content-Type: application/json' --data-binary '{"name":"while-down"}'
[ "$CODE" = 503 ] || fail "a create with PostgreSQL down: HTTP $CODE"
ok "pings through A answered; an unknown key's initiation answered 'unknown' within 100 ms (the tunnel closed 0.1 s after it, no stale answer); create: 503"

say "PostgreSQL back: everything resumes without a restart"
so_pg_start
wait_for 20 sh -c "[ \$(grep -c 'source: connected' '${PLOG[a]}') -gt $connected_a ]" ||
	fail "A did not reconnect to PostgreSQL"
api a POST /v1/peers -H 'Content-Type: application/json' --data-binary '{"name":"after"}'
[ "$CODE" = 201 ] || fail "a create after PostgreSQL came back: HTTP $CODE"
ok "A reconnected; create: 201"

# --- a replayed initiation of a deleted peer -------------------------------------------
say "a recorded initiation of a deleted peer, replayed to every gateway, installs it nowhere"
"$INITGEN" keys 1 >"$T/k6.keys"
"$INITGEN" init "$GW_PUB" <"$T/k6.keys" >"$T/k6.init"
K6_PUB=$(awk '{ print $1 }' "$T/k6.init")
K6_REC=0094$(awk '{ print $2 }' "$T/k6.init")
api c POST /v1/peers -H 'Content-Type: application/json' --data-binary "{\"public_key\":\"$K6_PUB\"}"
[ "$CODE" = 201 ] || fail "create on C: HTTP $CODE"
in_ns "$NS_CL" "$PY" "$TOOLS/wsraw.py" -q --wait 0.5 "wss://${GW_IP[b]}/wg" "$K6_REC" >/dev/null 2>&1 || true
wait_for 3 on_gw b "$K6_PUB" || fail "the recorded initiation did not install its peer on B"
api a DELETE "/v1/peers/$(tr '+/' '-_' <<<"$K6_PUB")"
[ "$CODE" = 200 ] || fail "delete on A: HTTP $CODE"
gone_within b "$K6_PUB" 1000 || fail "the deleted peer stays on B"
for g in $GWS; do
	in_ns "$NS_CL" "$PY" "$TOOLS/wsraw.py" -q --wait 0.5 "wss://${GW_IP[$g]}/wg" "$K6_REC" >/dev/null 2>&1 || true
done
nap 1
for g in $GWS; do ! on_gw "$g" "$K6_PUB" || fail "the replay installed the deleted peer on $g"; done
ok "installed on B by the recording, deleted on A, gone from B; the replay to A, B, C installed nothing"
for g in $GWS; do alive "${PROV_PID[$g]}" && alive "${RELAY_PIDS[$g]}" || fail "gateway $g lost a process"; done
echo "PASS test_scaleout"
