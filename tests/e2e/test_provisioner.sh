#!/bin/bash
# SPDX-License-Identifier: MIT
# wgws-provisioner end to end, against a real wireguard-go gateway in a namespace and a
# wireguard-go client in another, with `wg show` as the independent witness:
#  1. API: POST makes a key pair and a wg-quick config; a client brought up from that config
#     pings the gateway across WireGuard; the listing and `peer show` then give its
#     last_handshake (without --jit or --gc-idle: the GC's dump reads it all the same);
#     DELETE removes the peer from the device, and the client's next handshake fails.
#  2. CLI: peer add --config / list / show / del (and del of an unknown key: 404, exit 1).
#  3. Bad input: every malformed or refused request answers the right 4xx with a JSON error
#     and changes nothing (listing, `wg show dump`, metrics); a full /29 pool answers 409 and
#     a deleted address stays held down.
#  4. GC: a peer with ttl_seconds 2 expires from store and device; with --gc-idle 2 a
#     never-handshaken peer leaves the device but stays stored, a peer that keeps shaking
#     hands stays, and leaves once it stops.
#  5. Metrics: counters follow what the test did; histogram counts equal their counters.
#  6. HTTP/1.1 pipelining: a GET and a POST in one write: the GET is answered with
#     "connection: close" (one request per connection; the client retries the rest), never a
#     wrong answer to the POST, and the daemon keeps serving (regression: lws 4.1.6 spun at
#     100% on pipelined requests in a kept-alive connection).
#  7. --api tcp: every request needs the bearer token.
#  8. A user who is not root: `peer list` with no daemon says so; on the 0600 socket it names
#     the permission (not "is it running?"); --api-group GROUP makes the socket root:GROUP
#     0660 and a member lists peers, others are told which group; --api-group with an unknown
#     group or with --api tcp: is a usage error (exit 2), and a socket in a directory others
#     can write is refused.
set -eu
. "$(dirname "$0")/lib.sh"

need_root
need_cmd wireguard-go wg ip ping curl awk
need_bins wgws-provisioner

PROV=$WGWS_BUILD/wgws-provisioner
WG_P=wgp$$                        # the second gateway interface (full-pool test)
SOCK=$T/prov.sock DB=$T/prov.db   # the main provisioner
SOCK2=$T/pool.sock DB2=$T/pool.db # the /29 one
POOL4=10.203.0.0/24 POOL6=fd00:203::/64 GW4=10.203.0.1 GW6=fd00:203::1
PROV_LOG="" PROV2_LOG="" PROV3_LOG="" PROV_N=0 PROV_PID="" PROV2_PID=""
CREATED=0 DELETED=0               # 201s and 200 deletes the test saw from the current daemon

# wireguard-go removes its socket on SIGTERM; this covers a harder end for the extra one.
# (set +e first: under set -e the `(exit $rc)` would end the trap before cleanup runs.)
trap 'rc=$?; set +e; rm -f "/var/run/wireguard/$WG_P.sock"; (exit $rc); cleanup' EXIT
# fail shows the provisioners' logs, not the relay's.
dump_logs() {
	[ -z "$PROV_LOG" ] || logtail "$PROV_LOG" 20
	[ -z "$PROV2_LOG" ] || logtail "$PROV2_LOG" 8
	[ -z "$PROV3_LOG" ] || logtail "$PROV3_LOG" 8
}

# post JSON: POST /v1/peers with JSON as the body; counts the 201s in $CREATED.
post() {
	req POST /v1/peers -H 'Content-Type: application/json' --data-binary "$1"
	if [ "$CODE" = 201 ] && [ -z "${API:-}" ]; then CREATED=$((CREATED + 1)); fi
	return 0
}
# urlkey KEY: the URL-safe form of a standard base64 key.
urlkey() { tr '+/' '-_' <<<"$1"; }
# metrics [SOCK]: the provisioner's /metrics text.
metrics() { curl -s -m 5 --unix-socket "${1:-$SOCK}" http://prov/metrics; }
# metric NAME [SOCK]: one sample's value (0 when absent).
metric() {
	metrics "${2:-$SOCK}" | awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? 0 : v) }'
}
# gw_peers [IF]: the gateway device's peer keys, sorted.
gw_peers() { in_g wg show "${1:-$WG_G}" peers | sort; }
on_gw() { gw_peers "${2:-$WG_G}" | grep -qxF -- "$1"; }
not_on_gw() { ! on_gw "$@"; }
# snapshot [SOCK IF]: everything a refused request must leave alone: the full listing, the
# device dump (without the counters traffic moves) and the store/device metrics.
snapshot() {
	local s=${1:-$SOCK} i=${2:-$WG_G}
	curl -s -m 5 --unix-socket "$s" 'http://prov/v1/peers?limit=1000'
	echo
	# (wireguard-go lists its peers in map order: sorted here)
	in_g wg show "$i" dump | awk -F'\t' 'NR == 1 { print; next } { print $1, $2, $3, $4, $8 }' | sort
	metrics "$s" | grep -E '^wgws_provisioner_(peers_stored|peers_installed|creates_total|deletes_total|installs_total|removals_total|install_errors_total|expired_total) '
}
# bad WANT DESC CMD...: CMD (a req/post) answers WANT with a JSON {"error": "..."} body and
# nothing changes in the provisioner on $API/$SOCK and its device ($IFC/$WG_G).
bad() {
	local want=$1 desc=$2 before after err
	shift 2
	before=$(snapshot "${API:-$SOCK}" "${IFC:-$WG_G}")
	"$@"
	[ "$CODE" = "$want" ] || fail "$desc: HTTP $CODE, expected $want: $(head -c 300 "$T/body")"
	err=$(jget 'd["error"] if list(d) == ["error"] and isinstance(d["error"], str) and d["error"] else None')
	case "$err" in "<none>" | null) fail "$desc: HTTP $CODE without a JSON {\"error\": ...} body:" \
		"$(head -c 300 "$T/body")" ;; esac
	after=$(snapshot "${API:-$SOCK}" "${IFC:-$WG_G}")
	[ "$before" = "$after" ] || fail "$desc: the state changed:" \
		"$(diff <(echo "$before") <(echo "$after") | grep "^[<>]" | cut -c1-200 | head -6 | cat -A)"
	ok "$desc: $CODE \"$err\""
}
healthy() { [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' --unix-socket "$1" http://prov/healthz)" = 200 ]; }
# start_prov ARGS...: the main provisioner in the gateway namespace; waits for /healthz.
start_prov() {
	PROV_N=$((PROV_N + 1))
	PROV_LOG=$T/prov-$PROV_N.log
	spawn_ns "$NS_G" "$PROV_LOG" "$PROV" serve --interface "$WG_G" --db "$DB" \
		--api "unix:$SOCK" --pool4 "$POOL4" --pool6 "$POOL6" \
		--client-endpoint "$G_DIRECT:$WG_PORT" "$@"
	PROV_PID=$SPAWNED
	CREATED=0 DELETED=0
	wait_for 10 healthy "$SOCK" || {
		alive "$PROV_PID" || fail "provisioner exited at start-up"
		fail "provisioner /healthz did not answer 200 within 10 s"
	}
}
# client_up CONFIG: (re)configure the client's wireguard-go from a wg-quick CONFIG: the
# Address lines go to `ip addr`, comments are dropped, the rest goes to `wg setconf`.
client_up() {
	local a
	grep -v -e '^#' -e '^Address' -e '^MTU' -e '^PreUp' -e '^PostDown' "$1" >"$1.wg"
	in_c ip addr flush dev "$WG_C"
	for a in $(sed -n 's/^Address = //p' "$1" | tr ',' ' '); do
		in_c ip addr add "$a" dev "$WG_C"
	done
	in_c wg setconf "$WG_C" "$1.wg"
	in_c ip link set "$WG_C" mtu 1380 up
	in_c ip route replace "$POOL4" dev "$WG_C"
	in_c ip -6 route replace "$POOL6" dev "$WG_C"
}
ping_gw() { in_c ping -n -q -c 1 -W 1 "$GW4" >/dev/null 2>&1; }

# --- set-up ---------------------------------------------------------------------------
say "gateway and client namespaces, wireguard-go in each; the provisioner on the gateway"
netns_add "$NS_G"
netns_add "$NS_C"
veth "$NS_C" direct0 "$C_DIRECT" "$C_DIRECT6" "$NS_G" direct0 "$G_DIRECT" "$G_DIRECT6"
(umask 077 && wg genkey >"$T/keys/gw.key" && wg genkey >"$T/keys/gw2.key")
GW_PUB=$(wg pubkey <"$T/keys/gw.key")
spawn_ns "$NS_G" "$T/wg-gw.log" wireguard-go -f "$WG_G"
WGG_PID=$SPAWNED
spawn_ns "$NS_C" "$T/wg-client.log" wireguard-go -f "$WG_C"
WGC_PID=$SPAWNED
spawn_ns "$NS_G" "$T/wg-pool.log" wireguard-go -f "$WG_P"
WGP_PID=$SPAWNED
for i in "$WG_G" "$WG_C" "$WG_P"; do
	wait_for 10 test -S "/var/run/wireguard/$i.sock" || fail "wireguard-go $i did not start"
done
in_g wg set "$WG_G" private-key "$T/keys/gw.key" listen-port "$WG_PORT"
in_g ip addr add "$GW4/24" dev "$WG_G"
in_g ip addr add "$GW6/64" dev "$WG_G" nodad
in_g ip link set "$WG_G" mtu 1380 up
in_g wg set "$WG_P" private-key "$T/keys/gw2.key" listen-port 51830
in_g ip link set "$WG_P" up
start_prov --gc-interval 1 --metrics 127.0.0.1:9101
[ "$(jget 'd["backend"]' <(curl -s --unix-socket "$SOCK" http://prov/healthz))" = uapi ] ||
	fail "/healthz does not report the uapi backend"
ok "provisioner serves $WG_G (uapi backend), pid $PROV_PID"

# --- 1. API end to end ----------------------------------------------------------------
say "1. API: create → client config → ping across WireGuard → delete → no handshake"
post '{"name":"e2e-client"}'
expect "POST without a key" "$CODE" 201
cp "$T/body" "$T/p1.json"
P1=$(jget 'd["public_key"]' "$T/p1.json")
P1_PRIV=$(jget 'd["private_key"]' "$T/p1.json")
expect "public key of the returned private key" "$(wg pubkey <<<"$P1_PRIV")" "$P1"
expect "addresses" "$(jget '",".join(d["addresses"])' "$T/p1.json" | cut -d, -f1)" 10.203.0.2/32
P1_ADDR6=$(jget 'd["addresses"][1]' "$T/p1.json")
"$PY" -c 'import ipaddress, sys
a = ipaddress.ip_interface(sys.argv[1])
assert a.network.prefixlen == 128 and a.ip in ipaddress.ip_network(sys.argv[2]) and a.ip != ipaddress.ip_network(sys.argv[2])[1]' \
	"$P1_ADDR6" "$POOL6" || fail "IPv6 address $P1_ADDR6 is not a /128 host in $POOL6"
expect "installed" "$(jget 'd["installed"]' "$T/p1.json")" true
expect "name" "$(jget 'd["name"]' "$T/p1.json")" e2e-client
expect "allowed_ips" "$(jget 'd["allowed_ips"] == d["addresses"]' "$T/p1.json")" true
expect "expires_at" "$(jget 'd["expires_at"]' "$T/p1.json")" null
ok "201: key pair (private key matches), 10.203.0.2/32 + $P1_ADDR6, installed, no expiry"
dev=$(in_g wg show "$WG_G" allowed-ips | awk -v k="$P1" '$1 == k { $1 = ""; print substr($0, 2) }')
expect "allowed IPs in the device" "$dev" "10.203.0.2/32 $P1_ADDR6"
ok "wg show on the gateway: the peer with exactly its two addresses"

jget 'd["config"]' "$T/p1.json" >"$T/client1.conf"
for want in "[Interface]" "PrivateKey = $P1_PRIV" "Address = 10.203.0.2/32, $P1_ADDR6" "[Peer]" \
	"PublicKey = $GW_PUB" "AllowedIPs = $POOL4, $POOL6" "Endpoint = $G_DIRECT:$WG_PORT" \
	"PersistentKeepalive = 25" "MTU = 1420"; do
	grep -qxF -- "$want" "$T/client1.conf" || fail "config lacks the line '$want':" \
		"$(oneline "$(cat "$T/client1.conf")")"
done
! grep -q '^PreUp' "$T/client1.conf" || fail "a PreUp line without --relay-url"
ok "config: PrivateKey, Address, MTU 1420, gateway PublicKey, AllowedIPs = the pools, Endpoint," \
	"keepalive 25; no PreUp without --relay-url"

client_up "$T/client1.conf"
wait_for 10 ping_gw || fail "no ping from the client to $GW4 across WireGuard"
in_c ping -n -q -c 3 -i 0.2 -W 1 "$GW4" >/dev/null || fail "ping $GW4 lost packets"
in_c ping -n -q -c 2 -i 0.2 -W 1 "$GW6" >/dev/null || fail "no ping to $GW6 across WireGuard"
hs=$(gw_handshake "$P1")
[ "$hs" -gt 0 ] || fail "the gateway shows no handshake with $P1"
ok "client from the config: ping $GW4 and $GW6 across WireGuard; gateway handshake $(($(date +%s) - hs)) s ago"
# Without --jit and without --gc-idle nothing is collected, yet the GC's dump must still
# bring the device's handshake time into the store: the listing is what an operator reads.
listed_hs() {
	req GET '/v1/peers?limit=1000' && [ "$CODE" = 200 ] &&
		LISTED_HS=$(jget "[p['last_handshake'] for p in d['peers'] if p['public_key'] == '$P1'][0]") &&
		[ "$LISTED_HS" != null ] && [ "$LISTED_HS" != "<none>" ]
}
t0=$(now_ms)
wait_for 5 listed_hs || fail "GET /v1/peers: last_handshake of $P1 is still ${LISTED_HS:-absent}" \
	"5 s after its handshake (--gc-interval 1, no --jit, no --gc-idle)"
ms=$(($(now_ms) - t0))
d=$((LISTED_HS - $(gw_handshake "$P1")))
[ "$d" -ge -1 ] && [ "$d" -le 1 ] ||
	fail "listed last_handshake $LISTED_HS, the device's $(gw_handshake "$P1")"
"$PROV" peer show --api "unix:$SOCK" "$P1" >"$T/show-hs.json" || fail "peer show $P1"
expect "peer show: last_handshake" "$(jget 'd["last_handshake"]' "$T/show-hs.json")" "$LISTED_HS"
on_gw "$P1" || fail "without --gc-idle the GC's dump removed $P1 from the device"
ok "no --jit, no --gc-idle: GET /v1/peers and peer show give last_handshake $LISTED_HS (the" \
	"device's, within 1 s) $ms ms after the ping; the peer stays installed"

req DELETE "/v1/peers/$(urlkey "$P1")"
expect "DELETE" "$CODE" 200
DELETED=$((DELETED + 1))
expect "DELETE answer" "$(jget 'd["deleted"]')" "$P1"
not_on_gw "$P1" || fail "after DELETE the peer is still in wg show"
req GET "/v1/peers/$(urlkey "$P1")"
expect "GET after DELETE" "$CODE" 404
ok "DELETE: 200, gone from wg show, GET → 404"
# A new peer object on the client: no session, so the next packet needs a fresh handshake.
in_c wg set "$WG_C" peer "$GW_PUB" remove
in_c wg setconf "$WG_C" "$T/client1.conf.wg"
if in_c ping -n -q -c 3 -i 0.3 -W 1 "$GW4" >/dev/null 2>&1; then
	fail "after DELETE the client still reaches the gateway"
fi
expect "client handshake after DELETE" "$(in_c wg show "$WG_C" latest-handshakes | awk '{ print $2 }')" 0
not_on_gw "$P1" || fail "the deleted peer came back into the device"
ok "the client's next handshake fails: no ping, no handshake"

# --- 2. CLI ---------------------------------------------------------------------------
say "2. CLI: peer add --config / list / show / del"
cli() { "$PROV" peer "$@" --api "unix:$SOCK"; }
cli add --config --name cli-one --ttl 3600 >"$T/cli1.conf" 2>"$T/cli.err" ||
	fail "peer add --config: $(cat "$T/cli.err")"
CREATED=$((CREATED + 1))
C1_PRIV=$(sed -n 's/^PrivateKey = //p' "$T/cli1.conf")
C1=$(wg pubkey <<<"$C1_PRIV" 2>/dev/null) || fail "peer add --config: no usable PrivateKey"
for want in "Address = 10.203.0.3/32, " "PublicKey = $GW_PUB" "Endpoint = $G_DIRECT:$WG_PORT" \
	"AllowedIPs = $POOL4, $POOL6"; do
	grep -qF -- "$want" "$T/cli1.conf" || fail "peer add --config lacks '$want'"
done
on_gw "$C1" || fail "the CLI-added peer is not in the device"
ok "peer add --config: PrivateKey (of a peer now in wg show), Address 10.203.0.3, gateway key, Endpoint"
client_up "$T/cli1.conf"
wait_for 10 ping_gw || fail "a client from 'peer add --config' cannot ping $GW4"
ok "a client from the CLI's config pings $GW4"

K2=$(wg genkey | wg pubkey)
cli add --public-key "$K2" --name cli-two --allowed-ip 192.168.77.0/24 >"$T/cli2.json" ||
	fail "peer add --public-key"
CREATED=$((CREATED + 1))
expect "add --public-key: key" "$(jget 'd["public_key"]' "$T/cli2.json")" "$K2"
expect "add --public-key: no private key" "$(jget '"private_key" in d' "$T/cli2.json")" false
expect "add --allowed-ip" "$(jget 'd["allowed_ips"][2:]' "$T/cli2.json")" '["192.168.77.0/24"]'
dev=$(in_g wg show "$WG_G" allowed-ips | awk -v k="$K2" '$1 == k { print $2, $4 }')
expect "allowed IPs in the device" "$dev" "10.203.0.4/32 192.168.77.0/24"
ok "peer add --public-key --allowed-ip: JSON without a private key; the route in the device"

cli list >"$T/list.txt" || fail "peer list"
expect "peer list lines" "$(wc -l <"$T/list.txt")" 2
grep -qP "^\Q$C1\E\t10\.203\.0\.3/32,fd00:203:[0-9a-f:]+/128\tinstalled\tcli-one$" "$T/list.txt" ||
	fail "peer list: no line for cli-one: $(oneline "$(cat "$T/list.txt")")"
grep -qP "^\Q$K2\E\t10\.203\.0\.4/32,fd00:203:[0-9a-f:]+/128\tinstalled\tcli-two$" "$T/list.txt" ||
	fail "peer list: no line for cli-two: $(oneline "$(cat "$T/list.txt")")"
cli list --limit 1 >"$T/list1.txt" || fail "peer list --limit 1"
expect "peer list --limit 1" "$(wc -l <"$T/list1.txt")" 1
cli list --after "$(cut -f1 "$T/list1.txt")" >"$T/list2.txt" || fail "peer list --after"
expect "list --limit 1 + --after" "$(cat "$T/list1.txt" "$T/list2.txt")" "$(cat "$T/list.txt")"
ok "peer list: both peers (key, addresses, installed, name); --limit 1 then --after gives the rest"

cli show "$C1" >"$T/show.json" || fail "peer show"
expect "peer show: key" "$(jget 'd["public_key"]' "$T/show.json")" "$C1"
exp=$(jget 'd["expires_at"] - d["created_at"]' "$T/show.json")
expect "peer show: expires_at - created_at" "$exp" 3600
expect "peer show: no private key" "$(jget '"private_key" in d' "$T/show.json")" false
# "--": a URL-safe key may start with '-' (when the standard form starts with '+').
"$PROV" peer show --api "unix:$SOCK" --config -- "$(urlkey "$C1")" >"$T/show.conf" ||
	fail "peer show --config -- $(urlkey "$C1")"
grep -q '^PrivateKey = <' "$T/show.conf" || fail "peer show --config shows a private key"
ok "peer show (standard and URL-safe key): ttl 3600 kept; --config has a placeholder, no private key"

U=$(wg genkey | wg pubkey)
if cli del "$U" >"$T/del.out" 2>&1; then fail "peer del of an unknown key exited 0"; fi
grep -q "404" "$T/del.out" || fail "peer del of an unknown key: $(cat "$T/del.out")"
ok "peer del of an unknown key: exit 1, '$(head -1 "$T/del.out")'"
if cli show nonsense >"$T/del.out" 2>&1; then fail "peer show of a malformed key exited 0"; fi
ok "peer show of a malformed key: exit non-zero, '$(head -1 "$T/del.out")'"

# --- 3. bad input ---------------------------------------------------------------------
say "3. bad input: the right 4xx, a JSON error, nothing changed"
post_raw() { req POST /v1/peers -H 'Content-Type: application/json' -H 'Expect:' "$@"; }
b64() { "$PY" -c 'import base64, os, sys; print(base64.b64encode(os.urandom(int(sys.argv[1]))).decode())' "$1"; }
bad 400 "malformed JSON" post '{"name": "x"'
bad 400 "JSON array" post '[]'
bad 400 "JSON string" post '"x"'
bad 400 "duplicate field" post '{"name":"a","name":"b"}'
bad 400 "key of 31 bytes" post "{\"public_key\":\"$(b64 31)\"}"
bad 400 "key of 33 bytes" post "{\"public_key\":\"$(b64 33)\"}"
bad 400 "key of 32 bytes + extra char" post "{\"public_key\":\"${K2%=}A=\"}"
bad 400 "bad base64 key" post '{"public_key":"!!!!ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm="}'
bad 400 "all-zero key" post '{"public_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}'
# Keys no peer may have, each refused with its reason: points of small order (libsodium's
# X25519 refuses them too), non-canonical encodings, the gateway's own key.
hexkey() { "$PY" -c 'import base64, sys; print(base64.b64encode(bytes.fromhex(sys.argv[1])).decode())' "$1"; }
topbit() { "$PY" -c 'import base64, sys; k = bytearray(base64.b64decode(sys.argv[1])); k[31] |= 0x80; print(base64.b64encode(k).decode())' "$1"; }
while read -r desc why hex; do
	bad 400 "key $desc" post "{\"public_key\":\"$(hexkey "$hex")\"}"
	grep -qF "$why" "$T/body" || fail "key $desc: the error does not say '$why': $(cat "$T/body")"
done <<'KEYS'
u=1 small 0100000000000000000000000000000000000000000000000000000000000000
of_order_8 small e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800
of_order_8 small 5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157
u=p-1 small ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f
u=p+2 canonical efffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f
u=1,top_bit_set canonical 0100000000000000000000000000000000000000000000000000000000000080
KEYS
bad 400 "key with the top bit set" post "{\"public_key\":\"$(topbit "$K2")\"}"
grep -q "top bit" "$T/body" || fail "a key with the top bit set: $(cat "$T/body")"
bad 400 "the gateway's own public key" post "{\"public_key\":\"$GW_PUB\"}"
grep -q "device's own public key" "$T/body" || fail "the gateway's own key: $(cat "$T/body")"
bad 400 "key not a string" post '{"public_key":123}'
bad 400 "unknown field" post '{"nmae":"x"}'
for t in 0 -1 '"10"' 1e12 1000000000000 10.5 null true; do
	bad 400 "ttl_seconds $t" post "{\"ttl_seconds\":$t}"
done
bad 400 "name of 65 characters" post "{\"name\":\"$(printf 'n%.0s' $(seq 65))\"}"
bad 400 "name with a control character" post '{"name":"a\u0001b"}'
bad 400 "name with a newline" post '{"name":"a\nb"}'
bad 400 "name with NUL" post '{"name":"a\u0000b"}'
bad 400 "empty name" post '{"name":""}'
bad 400 "name not a string" post '{"name":5}'
bad 400 "allowed_ips not an array" post '{"allowed_ips":"192.168.9.0/24"}'
bad 400 "allowed_ips element not a string" post '{"allowed_ips":[5]}'
bad 400 "allowed_ips bad CIDR" post '{"allowed_ips":["192.168.9.0/33"]}'
bad 400 "allowed_ips not an address" post '{"allowed_ips":["bogus"]}'
bad 400 "allowed_ips host bits set" post '{"allowed_ips":["192.168.9.1/24"]}'
bad 400 "allowed_ips inside pool4" post '{"allowed_ips":["10.203.0.128/25"]}'
bad 400 "allowed_ips containing pool4" post '{"allowed_ips":["10.0.0.0/8"]}'
bad 400 "allowed_ips inside pool6" post '{"allowed_ips":["fd00:203::1:0/112"]}'
bad 400 "allowed_ips 0.0.0.0/0" post '{"allowed_ips":["0.0.0.0/0"]}'
bad 400 "allowed_ips ::/0" post '{"allowed_ips":["::/0"]}'
bad 400 "allowed_ips one good, one bad" post '{"allowed_ips":["192.168.9.0/24","10.203.0.9/32"]}'
many=$(printf '"192.168.%d.0/24",' $(seq 1 40))
bad 400 "allowed_ips with 40 routes" post "{\"allowed_ips\":[${many%,}]}"
# Another peer's allowed IPs: WireGuard would move them to the new peer without a word.
# (cli-two, K2, has 192.168.77.0/24.)
post '{"name":"routes-v6","allowed_ips":["fd77::/48","192.168.78.0/24"]}'
expect "allowed_ips next to another peer's, and IPv6" "$CODE" 201
R6=$(jget 'd["public_key"]')
in_g wg show "$WG_G" allowed-ips | grep -qF "fd77::/48" || fail "fd77::/48 is not in the device"
while read -r desc route owner theirs; do
	bad 409 "allowed_ips $desc" post "{\"allowed_ips\":[\"172.31.99.0/24\",\"$route\"]}"
	owner_key=$K2
	[ "$owner" = R6 ] && owner_key=$R6
	grep -qF "allowed_ips: $route overlaps $theirs of peer $owner_key" "$T/body" ||
		fail "allowed_ips $desc: the 409 does not name $theirs and its peer: $(cat "$T/body")"
done <<'ROUTES'
equal_to_another_peer's 192.168.77.0/24 K2 192.168.77.0/24
inside_another_peer's 192.168.77.128/25 K2 192.168.77.0/24
a_host_inside_another_peer's 192.168.77.255/32 K2 192.168.77.0/24
containing_two_peers' 192.168.0.0/16 R6 192.168.78.0/24
IPv6_inside_another_peer's fd77:0:0:1::/64 R6 fd77::/48
IPv6_containing_another_peer's fd70::/12 R6 fd77::/48
ROUTES
bad 400 "allowed_ips overlapping each other" post '{"allowed_ips":["192.168.80.0/24","192.168.80.128/25"]}'
grep -qF "allowed_ips[1]: 192.168.80.128/25 overlaps allowed_ips[0] 192.168.80.0/24" "$T/body" ||
	fail "overlapping allowed_ips of one request: $(cat "$T/body")"
head -c 20480 /dev/zero | tr '\0' ' ' >"$T/big.json"
bad 413 "a 20 KiB body" post_raw --data-binary "@$T/big.json"
bad 413 "Content-Length: 18446744073709551615 (2^64 - 1, no body)" post_raw -H 'Content-Length: 18446744073709551615'
# Not a size at all: 400 naming the header, not 413 (nor a wait for a body that never comes).
for cl in -1 0x10 +16 1e3 '16 16' 18446744073709551616 "$(printf '9%.0s' $(seq 40))"; do
	bad 400 "Content-Length: ${cl:0:24}" post_raw -H "Content-Length: $cl"
	grep -q 'Content-Length: not a decimal number' "$T/body" ||
		fail "Content-Length: $cl: the error does not name the header: $(cat "$T/body")"
done
bad 411 "POST without Content-Length (chunked)" post_raw -H 'Transfer-Encoding: chunked' --data-binary '{}'
bad 411 "POST without Content-Length (no body)" req POST /v1/peers
bad 404 "GET an unknown path" req GET /v2/peers
bad 404 "GET /v1/peersx" req GET /v1/peersx
# The error echoes the path: bytes that are not UTF-8 must not turn it into a 500.
bad 404 "GET a path with bytes that are not UTF-8" req GET '/%ff%fe'
bad 400 "GET a key with bytes that are not UTF-8" req GET '/v1/peers/%ff%fe'
bad 405 "DELETE /v1/peers" req DELETE /v1/peers
bad 405 "POST /v1/peers/KEY" req POST "/v1/peers/$(urlkey "$K2")" -H 'Content-Type: application/json' --data-binary '{}'
# PUT: whatever it is, it must be a 4xx with a JSON error and change nothing.
before=$(snapshot)
req PUT /v1/peers -H 'Content-Type: application/json' --data-binary '{}'
PUT_CODE=$CODE PUT_BODY=$(head -c 200 "$T/body")
after=$(snapshot)
[ "$before" = "$after" ] || fail "PUT /v1/peers changed the state"
case "$PUT_CODE" in 4??) ;; *) fail "PUT /v1/peers: HTTP $PUT_CODE ($PUT_BODY)" ;; esac
ok "PUT /v1/peers: $PUT_CODE $PUT_BODY (nothing changed)"
bad 409 "duplicate key" post "{\"public_key\":\"$K2\"}"
bad 409 "duplicate key, URL-safe form" post "{\"public_key\":\"$(urlkey "$K2")\"}"
bad 404 "DELETE of a key not stored" req DELETE "/v1/peers/$(urlkey "$U")"
bad 404 "GET of a key not stored" req GET "/v1/peers/$(urlkey "$U")"
bad 400 "DELETE with a malformed key" req DELETE /v1/peers/not-a-key
bad 400 "DELETE with a 33-byte key" req DELETE "/v1/peers/$(urlkey "$(b64 33)")"
bad 400 "GET with a malformed key" req GET /v1/peers/not-a-key
bad 400 "list with a bad limit" req GET '/v1/peers?limit=0'
bad 400 "list with a bad after" req GET '/v1/peers?after=zzz'
# A cursor the listing cannot use must never restart it from the first key (lws's
# lws_get_urlarg_by_name skipped an argument over 127 bytes as if it were absent).
long=$(printf 'A%.0s' $(seq 200))
bad 400 "list with an after of 200 bytes" req GET "/v1/peers?after=$long"
bad 400 "list with an after behind a 200-byte argument" req GET "/v1/peers?x=$long&after=$(urlkey "$K2")"
bad 400 "list with a misspelled after" req GET "/v1/peers?aftre=$(urlkey "$K2")"
bad 400 "list with after twice" req GET "/v1/peers?after=$(urlkey "$K2")&after=$(urlkey "$K2")"
bad 400 "list with limit twice" req GET '/v1/peers?limit=1&limit=2'
bad 400 "list with an empty after" req GET '/v1/peers?after='
bad 414 "list with a 2 KiB query" req GET "/v1/peers?limit=1&x=$long$long$long$long$long$long$long$long$long$long"
req GET '/v1/peers?limit=1&'
expect "list with a trailing '&'" "$CODE:$(jget 'len(d["peers"])')" 200:1
healthy "$SOCK" || fail "the provisioner stopped answering after the bad input"
ok "still healthy after the bad input"

say "3b. a full pool: --pool4 10.204.0.0/29 (.2-.6 for peers)"
PROV2_LOG=$T/prov-pool.log
spawn_ns "$NS_G" "$PROV2_LOG" "$PROV" serve --interface "$WG_P" --db "$DB2" --api "unix:$SOCK2" \
	--pool4 10.204.0.0/29 --pool6 fd00:204::/64
PROV2_PID=$SPAWNED
wait_for 10 healthy "$SOCK2" || fail "the /29 provisioner did not start"
got=""
for i in 1 2 3 4 5; do
	API=$SOCK2 post '{}'
	expect "create $i in the /29" "$CODE" 201
	got="$got $(jget 'd["addresses"][0]')"
	[ $i = 1 ] && F1=$(jget 'd["public_key"]')
done
expect "addresses handed out" "$got" " 10.204.0.2/32 10.204.0.3/32 10.204.0.4/32 10.204.0.5/32 10.204.0.6/32"
expect "peers in $WG_P" "$(gw_peers "$WG_P" | wc -l)" 5
ok "5 creates: .2 to .6, all in wg show"
API=$SOCK2 IFC=$WG_P bad 409 "6th create (pool exhausted)" post '{}'
grep -q "pool is exhausted" "$T/body" || fail "the 409 does not say 'pool is exhausted': $(cat "$T/body")"
API=$SOCK2 req DELETE "/v1/peers/$(urlkey "$F1")"
expect "DELETE in the /29" "$CODE" 200
API=$SOCK2 IFC=$WG_P bad 409 "create after a delete (address held down 180 s)" post '{}'
stop_pid "$PROV2_PID" TERM 5
expect "exit status of the /29 provisioner on SIGTERM" "$STOP_RC" 0

say "3c. a full disk: the store on a 1 MiB tmpfs, filled up"
FULL=$T/full SOCK3=$T/full.sock
mkdir "$FULL"
mount -t tmpfs -o size=1m wgws-full "$FULL"
at_exit "umount -l '$FULL'"
PROV3_LOG=$T/prov-full.log
spawn_ns "$NS_G" "$PROV3_LOG" "$PROV" serve --interface "$WG_P" --db "$FULL/peers.db" \
	--api "unix:$SOCK3" --pool4 10.205.0.0/24 --pool6 fd00:205::/64
PROV3_PID=$SPAWNED
wait_for 10 healthy "$SOCK3" || fail "the provisioner on the tmpfs did not start"
API=$SOCK3 post '{}'
expect "create before the disk is full" "$CODE" 201
dd if=/dev/zero of="$FULL/fill" bs=4k 2>/dev/null || true # until ENOSPC
# The WAL may still have room where a checkpoint restarted it: create until it needs more.
for i in $(seq 30); do
	API=$SOCK3 post '{}'
	[ "$CODE" = 201 ] || break
done
expect "create once the disk is full (after $i)" "$CODE" 507
API=$SOCK3 IFC=$WG_P bad 507 "create on a full disk" post '{}'
grep -q "out of disk space" "$T/body" || fail "the 507 does not say why: $(cat "$T/body")"
grep -q "store: create failed: No space left on device: database or disk is full (SQLite 13)" \
	"$PROV3_LOG" || fail "the log lacks SQLite's words: $(grep store: "$PROV3_LOG" | tail -n 2)"
ok "the log has SQLite's words: '$(grep -m1 'store: create failed' "$PROV3_LOG")'"
rm -f "$FULL/fill"
API=$SOCK3 post '{}'
expect "create once there is room again" "$CODE" 201
stop_pid "$PROV3_PID" TERM 5
stop_pid "$WGP_PID" TERM 5

# --- 4a. GC: expiry -------------------------------------------------------------------
say "4a. GC: ttl_seconds 2, --gc-interval 1"
ex0=$(metric wgws_provisioner_expired_total)
post '{"ttl_seconds":2,"name":"short-lived"}'
expect "POST ttl 2" "$CODE" 201
t0=$(now_ms)
E1=$(jget 'd["public_key"]')
expect "expires_at - created_at" "$(jget 'd["expires_at"] - d["created_at"]')" 2
on_gw "$E1" || fail "the ttl peer is not in the device"
gone() { ! on_gw "$E1" && [ "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" \
	"http://prov/v1/peers/$(urlkey "$E1")")" = 404 ]; }
wait_for 6 gone || fail "the ttl-2 peer is still there after 6 s"
ms=$(($(now_ms) - t0))
[ "$ms" -ge 900 ] || fail "the ttl-2 peer went after only $ms ms"
DELETED=$((DELETED + 1)) # an expiry is a delete
ex1=$(metric wgws_provisioner_expired_total)
[ "$ex1" -ge $((ex0 + 1)) ] || fail "expired_total $ex0 → $ex1"
ok "expired after $ms ms: GET 404, gone from wg show; expired_total $ex0 → $ex1"

# --- 5. metrics -----------------------------------------------------------------------
say "5. metrics of this daemon"
m=$(metrics)
out=$(/usr/bin/python3 "$TOOLS/promcheck.py" wgws-provisioner <<<"$m") || fail "metrics: $out"
ok "$out"
grep -q '^wgws_provisioner_api_requests_total{method="POST",code="201"} [1-9]' <<<"$m" &&
	grep -q '^wgws_provisioner_api_requests_total{method="GET",code="404"} [1-9]' <<<"$m" ||
	fail "api_requests_total by method and code: $(grep api_requests_total <<<"$m" | tr '\n' ' ')"
grep -q '^wgws_provisioner_build_info{version=' <<<"$m" && grep -q '^process_open_fds ' <<<"$m" ||
	fail "no build_info or process_* in the provisioner's metrics"
ok "API requests by method and code ($(grep -c '^wgws_provisioner_api_requests_total{' <<<"$m") series), build_info, process_*"
mv() { awk -v n="$1" '$1 == n { print $2 }' <<<"$m"; }
n_stored=$(curl -s --unix-socket "$SOCK" 'http://prov/v1/peers?limit=1000' >"$T/all.json" && jget 'len(d["peers"])' "$T/all.json")
expect "creates_total" "$(mv wgws_provisioner_creates_total)" "$CREATED"
expect "deletes_total" "$(mv wgws_provisioner_deletes_total)" "$DELETED"
expect "expired_total" "$(mv wgws_provisioner_expired_total)" 1
expect "peers_stored" "$(mv wgws_provisioner_peers_stored)" "$n_stored"
expect "peers_stored" "$n_stored" $((CREATED - DELETED))
expect "peers_installed" "$(mv wgws_provisioner_peers_installed)" "$(gw_peers | wc -l)"
expect "create_seconds_count" "$(mv wgws_provisioner_create_seconds_count)" "$CREATED"
expect "create_seconds +Inf bucket" "$(mv 'wgws_provisioner_create_seconds_bucket{le="+Inf"}')" "$CREATED"
expect "install_seconds_count" "$(mv wgws_provisioner_install_seconds_count)" \
	"$(mv wgws_provisioner_installs_total)"
expect "installs_total" "$(mv wgws_provisioner_installs_total)" "$CREATED"
expect "removals_total" "$(mv wgws_provisioner_removals_total)" "$DELETED"
awk '/^wgws_provisioner_(create|install)_seconds_bucket/ { split($1, a, "{"); if (a[1] == last && $2 < prev) bad = 1; last = a[1]; prev = $2 }
	END { exit bad }' <<<"$m" || fail "a histogram's buckets are not cumulative"
# The WAL is checkpointed by its own thread after writes, never by the event loop; the
# last one found frames in the WAL and copied them all back.
[ "$(mv wgws_provisioner_checkpoints_total)" -ge 1 ] || fail "no WAL checkpoint after $CREATED creates"
expect "checkpoint_failures_total" "$(mv wgws_provisioner_checkpoint_failures_total)" 0
[ "$(mv wgws_provisioner_checkpoint_wal_frames)" -gt 0 ] ||
	fail "the last checkpoint saw $(mv wgws_provisioner_checkpoint_wal_frames) WAL frames"
expect "checkpoint: frames copied back" "$(mv wgws_provisioner_checkpoint_copied_frames)" \
	"$(mv wgws_provisioner_checkpoint_wal_frames)"
[ "$(mv wgws_provisioner_gc_runs_total)" -ge 3 ] || fail "gc_runs_total $(mv wgws_provisioner_gc_runs_total) after several seconds at --gc-interval 1"
[ "$(in_g curl -s -m 3 http://127.0.0.1:9101/metrics | awk '$1 == "wgws_provisioner_creates_total" { print $2 }')" = "$CREATED" ] ||
	fail "--metrics 127.0.0.1:9101 does not serve the same counters"
expect "--metrics: other path" "$(in_g curl -s -m 3 -o /dev/null -w '%{http_code}' http://127.0.0.1:9101/v1/peers)" 404
ok "creates $CREATED, deletes $DELETED (1 by expiry), stored $n_stored, installed = wg show; histogram counts = counters; --metrics agrees"

# --- 4b. GC: idle peers ---------------------------------------------------------------
say "4b. GC: restart with --gc-idle 2 --gc-interval 1"
# SIGHUP (a reload, a terminal's hangup) never kills it, nor its privileged half.
kill -HUP "$PROV_PID"
wait_for 5 grep -q "SIGHUP: nothing to reload" "$PROV_LOG" || fail "SIGHUP: nothing logged"
healthy "$SOCK" && alive "$PROV_PID" || fail "SIGHUP stopped the provisioner"
pgrep -P "$PROV_PID" >/dev/null || fail "SIGHUP stopped the privileged half"
ok "SIGHUP: logged, the provisioner and its privileged half serve on"
stop_pid "$PROV_PID" TERM 5
expect "exit status on SIGTERM" "$STOP_RC" 0
# A listener it cannot have is fatal, with the reason (lws alone would serve on without it).
# prov_fails WANT ARGS...: serve with ARGS exits non-zero, saying WANT.
prov_fails() {
	local want=$1 rc=0
	shift
	timeout 10 ip netns exec "$NS_G" "$PROV" serve --interface "$WG_G" --db "$DB" \
		--api "unix:$SOCK" --pool4 "$POOL4" --pool6 "$POOL6" "$@" >"$T/bindfail.log" 2>&1 ||
		rc=$?
	[ "$rc" != 0 ] && [ "$rc" != 124 ] && grep -qF -- "$want" "$T/bindfail.log" ||
		fail "$*: exit $rc: $(oneline "$(cat "$T/bindfail.log")")"
	PROV_FAIL_RC=$rc
	ok "$*: exit $rc: $(grep -m1 -F -- "$want" "$T/bindfail.log" | sed 's/^.*fatal: //')"
}
prov_fails "(the address is not on this host)" --metrics 192.0.2.1:9101
in_g python3 -c "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 9101)); s.listen(); time.sleep(20)" &
HOLD=$!
PIDS+=("$HOLD")
wait_for 5 sh -c "ip netns exec $NS_G ss -Hltn 'sport = :9101' | grep -q ." || fail "no port holder"
prov_fails "Address already in use" --metrics 127.0.0.1:9101
stop_pid "$HOLD" KILL 2
prov_fails "unexpected argument 'extra' (see --help)" extra
expect "a usage error's exit status" "$PROV_FAIL_RC" 2
# A peer the store does not know, holding a pool address: the restart must warn about it.
FOREIGN=$(wg genkey | wg pubkey)
in_g wg set "$WG_G" peer "$FOREIGN" allowed-ips 10.203.0.250/32
start_prov --gc-interval 1 --gc-idle 2
wait_for 5 grep -q "peer $FOREIGN, which the store does not know, with 10.203.0.250/32" "$PROV_LOG" ||
	fail "no warning about an unknown device peer holding a pool address"
ok "start-up warns about an unknown device peer that holds a pool address"
in_g wg set "$WG_G" peer "$FOREIGN" remove
IDLE=$(wg genkey | wg pubkey)
post "{\"public_key\":\"$IDLE\",\"name\":\"idle\"}"
expect "POST idle peer" "$CODE" 201
post '{"name":"live"}'
expect "POST live peer" "$CODE" 201
t0=$(now_ms)
LIVE=$(jget 'd["public_key"]')
jget 'd["config"]' >"$T/live.conf"
client_up "$T/live.conf"
# A fresh handshake about every 0.6 s: setconf replaces the client's peer (no session left),
# the ping then needs a new handshake. (wireguard-go alone would rekey only every 2 min.)
spawn_ns "$NS_C" "$T/hsloop.log" sh -c 'while :; do wg setconf "$1" "$2"; ping -n -q -c 1 -W 1 "$3" >/dev/null; sleep 0.5; done' \
	hsloop "$WG_C" "$T/live.conf.wg" "$GW4"
HS_PID=$SPAWNED
idle_removed() {
	not_on_gw "$IDLE" && req GET "/v1/peers/$(urlkey "$IDLE")" && [ "$CODE" = 200 ] &&
		[ "$(jget 'd["installed"]')" = false ]
}
wait_for 8 idle_removed || fail "the never-handshaken peer is still in the device (or not stored) 8 s later"
ms=$(($(now_ms) - t0))
[ "$ms" -ge 1500 ] || fail "the idle peer was removed after only $ms ms (threshold 2 s)"
ok "never-handshaken peer: out of wg show after $ms ms, still stored (GET 200, installed false)"
old=$(jget 'len(d["peers"])' "$T/all.json")
wait_for 5 sh -c "[ \$(ip netns exec $NS_G wg show $WG_G peers | wc -l) -le 1 ]" ||
	fail "the $old peers reinstalled at the restart are not all removed"
nap 3
on_gw "$LIVE" || fail "the peer that keeps shaking hands was removed from the device"
hs=$(gw_handshake "$LIVE")
[ $(($(date +%s) - hs)) -le 2 ] || fail "the live peer's last handshake is $(($(date +%s) - hs)) s old: the handshake loop does not work"
req GET "/v1/peers/$(urlkey "$LIVE")"
expect "live peer installed" "$(jget 'd["installed"]')" true
[ "$(jget 'd["last_handshake"]')" != null ] || fail "the live peer's stored last_handshake is null"
ok "handshaking peer: still installed $((($(now_ms) - t0) / 1000)) s after creation (last handshake $(($(date +%s) - hs)) s ago, stored)"
removed=$(metric wgws_provisioner_gc_removed_total)
[ "$removed" -ge $((old + 1)) ] || fail "gc_removed_total $removed (expected ≥ $((old + 1)))"
ok "gc_removed_total $removed (the idle one and the $old reinstalled at the restart)"
stop_pid "$HS_PID" TERM 3
t0=$(now_ms)
live_removed() { not_on_gw "$LIVE" && req GET "/v1/peers/$(urlkey "$LIVE")" && [ "$CODE" = 200 ] && [ "$(jget 'd["installed"]')" = false ]; }
wait_for 8 live_removed || fail "the live peer is still in the device 8 s after its handshakes stopped"
ok "handshakes stopped: out of the device $(($(now_ms) - t0)) ms later, still stored"
req DELETE "/v1/peers/$(urlkey "$IDLE")"
expect "DELETE of a GC-removed peer" "$CODE" 200
ok "DELETE of a peer the GC took out of the device: 200"
expect "creates_total after the restart" "$(metric wgws_provisioner_creates_total)" "$CREATED"
expect "create_seconds_count after the restart" "$(metric wgws_provisioner_create_seconds_count)" "$CREATED"

# --- 6. pipelining (last: when it fails, the daemon may be wedged) ----------------------
say "6. HTTP/1.1 pipelining: GET /healthz and POST /v1/peers in one write"
out=$("$PY" "$TOOLS/prov_client.py" pipeline "$SOCK") && pipe_ok=1 || pipe_ok=0
if healthy "$SOCK"; then h="the daemon answers /healthz after it"; else h="and then /healthz does not answer within 2 s"; fi
[ $pipe_ok = 1 ] && healthy "$SOCK" ||
	fail "pipelined GET + POST on one connection: $out (expected 200 with connection: close); $h"
ok "pipelined GET + POST: $out; $h"

# --- 7. the TCP API needs the bearer token -------------------------------------------------
say "7. --api tcp: every request needs the bearer token"
stop_pid "$PROV_PID" TERM 5
(umask 077 && head -c 24 /dev/urandom | base64 >"$T/token")
TCP_LOG=$T/prov-tcp.log
spawn_ns "$NS_G" "$TCP_LOG" "$PROV" serve --interface "$WG_G" --db "$DB" --api tcp:127.0.0.1:8090 \
	--token-file "$T/token" --pool4 "$POOL4" --pool6 "$POOL6"
PROV_PID=$SPAWNED
tcp_code() { in_g curl -s -m 3 -o /dev/null -w '%{http_code}' "$@" http://127.0.0.1:8090/v1/peers; }
wait_for 10 sh -c "[ \"\$(ip netns exec $NS_G curl -s -m 2 -o /dev/null -w '%{http_code}' \
	-H 'Authorization: Bearer $(cat "$T/token")' http://127.0.0.1:8090/healthz)\" = 200 ]" ||
	fail "the TCP API did not come up: $(tail -n 3 "$TCP_LOG")"
expect "no token" "$(tcp_code)" 401
expect "wrong token" "$(tcp_code -H 'Authorization: Bearer not-the-token-at-all')" 401
in_g curl -s -m 3 -D - -o /dev/null http://127.0.0.1:8090/v1/peers | grep -qi '^www-authenticate: Bearer' ||
	fail "a 401 without WWW-Authenticate: Bearer"
expect "the right token" "$(tcp_code -H "Authorization: Bearer $(cat "$T/token")")" 200
n=$(in_g "$PROV" peer list --api tcp:127.0.0.1:8090 --token-file "$T/token" | wc -l)
[ "$n" -ge 1 ] || fail "peer list over TCP with --token-file listed nothing"
ok "401 (with WWW-Authenticate) without or with a wrong token; 200 and the CLI ($n peers) with it"

# --- 8. the API socket for a user who is not root -----------------------------------------
say "8. peer list as nobody: the permission is named; --api-group lets a group in"
stop_pid "$PROV_PID" TERM 5
GRP=users # exists on Debian; nobody is not in it
getent group "$GRP" >/dev/null || fail "no group $GRP on this host"
GID=$(getent group "$GRP" | cut -d: -f3)
id -nG nobody | grep -qw "$GRP" && fail "nobody is already in $GRP: the test proves nothing"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
# cli_as WHO OUT ARGS...: `peer list` as WHO (an as_* function), stdout and stderr in OUT;
# its exit status in CLI_RC.
cli_as() {
	local who=$1 out=$2
	shift 2
	CLI_RC=0
	"$who" "$PROV" peer list --api "unix:$SOCK" "$@" >"$out" 2>&1 || CLI_RC=$?
}
# (Not $SOCK: the engine, no longer root, cannot unlink it in root's directory at exit.)
cli_as as_nobody "$T/nobody.out" --api "unix:$T/none.sock"
expect "peer list as nobody with no daemon: exit" "$CLI_RC" 1
grep -qF "is 'wgws-provisioner serve' running?" "$T/nobody.out" &&
	! grep -q "permission" "$T/nobody.out" ||
	fail "peer list with no daemon: $(cat "$T/nobody.out")"
ok "no daemon: '$(sed 's/^.*fatal: //' "$T/nobody.out")'"
prov_fails "--api-group: no group 'wgws-no-such-group'" --api-group wgws-no-such-group
expect "--api-group with an unknown group: exit" "$PROV_FAIL_RC" 2
prov_fails "--api-group is for the unix socket" --api tcp:127.0.0.1:8091 --token-file "$T/token" \
	--api-group "$GRP"
expect "--api-group with --api tcp: exit" "$PROV_FAIL_RC" 2
# Its group and mode are set by path: in a directory others can write, not at all.
mkdir -m 1777 "$T/open"
prov_fails "--api-group: $T/open is not root's alone" --api "unix:$T/open/prov.sock" \
	--api-group "$GRP"

start_prov
expect "the socket without --api-group" "$(stat -c '%U:%G %a' "$SOCK")" "root:root 600"
cli_as as_nobody "$T/nobody.out"
expect "peer list as nobody on a 0600 socket: exit" "$CLI_RC" 1
want="permission denied on $SOCK: it is root's (mode 0600); run as root, or start serve"
want="$want with --api-group GROUP and be in that group"
grep -qF "$want" "$T/nobody.out" ||
	fail "peer list as nobody on a 0600 socket: $(cat "$T/nobody.out")"
! grep -q "running?" "$T/nobody.out" || fail "a permission problem called a daemon not running"
ok "0600 socket, as nobody: exit 1, '$(sed 's/^.*fatal: //' "$T/nobody.out")'"
"$PROV" peer list --api "unix:$SOCK" >"$T/root-list.txt" || fail "peer list as root"
stop_pid "$PROV_PID" TERM 5

start_prov --api-group "$GRP"
expect "the socket with --api-group $GRP" "$(stat -c '%U:%G %a' "$SOCK")" "root:$GRP 660"
grep -q "API socket $SOCK: group $GRP, mode 0660" "$PROV_LOG" || fail "no log line for --api-group"
as_member() { setpriv --reuid=nobody --regid=nogroup --groups="$GID" "$@"; }
cli_as as_member "$T/member.out"
[ "$CLI_RC" = 0 ] || fail "peer list as nobody in $GRP: exit $CLI_RC: $(cat "$T/member.out")"
expect "peer list as a member of $GRP" "$(cat "$T/member.out")" "$(cat "$T/root-list.txt")"
cli_as as_nobody "$T/nobody.out"
expect "peer list as nobody outside $GRP: exit" "$CLI_RC" 1
want="permission denied on $SOCK: it is root's, shared with group $GRP (mode 0660); run as"
want="$want root, or as a member of $GRP"
grep -qF "$want" "$T/nobody.out" || fail "peer list as nobody outside $GRP: $(cat "$T/nobody.out")"
ok "--api-group $GRP: root:$GRP 0660; nobody in $GRP lists the $(wc -l <"$T/root-list.txt")" \
	"peers root does; outside it: '$(sed 's/^.*fatal: //' "$T/nobody.out")'"

echo "PASS test_provisioner"
