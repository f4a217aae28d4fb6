# SPDX-License-Identifier: MIT
# Guest side of tests/e2e/test_kernel_jit.sh (run by tests/kernel/run-guest.sh with busybox
# sh, wgws-provisioner on PATH): the JIT capture path (provisioner/capture.c + jit.c)
# against real kernel WireGuard. Two network namespaces joined by a veth: gw holds wg0 (a
# private key and a listen port, no peers) and the provisioner with --jit --capture on its
# veth; cl holds the clients, each a kernel WireGuard interface with the gateway as peer and
# no keepalive. Witnesses: `wg show` on both sides, the provisioner's /metrics and log.
#   i.   baseline, before the provisioner runs: a peer added to wg0 just after the
#        client's first initiation (a copy-only tap that does not set the endpoint) gets
#        its first handshake only when the client retransmits, ~5 s later;
#   ii.  a peer created through the CLI is stored, not installed;
#   iii. its first handshake completes within 1 s of the client's first ping: the capture
#        installs it with the sender as endpoint and the kernel initiates back; the ping
#        gets its answer; one capture initiation, one install;
#   iv.  an initiation from a key that is not stored installs nothing.
# Prints one "ok ..." or "FAIL ..." line per check and exits 1 if anything failed.
set -u
umask 077
fails=0

ok() { echo "ok   $*"; }
bad() {
	echo "FAIL $*"
	fails=$((fails + 1))
}
# expect DESC GOT WANT
expect() {
	if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', expected '$3'"; fi
}
# busybox sh runs its own applets before anything on PATH: its ip has no netns.
ip() { /usr/sbin/ip "$@"; }
gw() { ip netns exec gw "$@"; }
cl() { ip netns exec cl "$@"; }
uptime_cs() { awk '{ printf "%d\n", $1 * 100 }' /proc/uptime; }
cs_to_s() {
	if [ "$1" = none ]; then echo never; else
		awk -v c="$1" 'BEGIN { printf "%.2f s", c / 100 }'; fi
}
PORT=51820
GW_IP=192.168.77.1 CL_IP=192.168.77.2
API=unix:/tmp/api.sock
METRICS=127.0.0.1:9109
PROV_PID=""

cleanup() {
	[ -z "$PROV_PID" ] || kill "$PROV_PID" 2>/dev/null
}
trap cleanup EXIT

# metric NAME: one sample of the provisioner's /metrics (busybox wget, in gw), "" if absent.
# (Debian's busybox 1.35 wget crashes with -q -T.)
metric() {
	gw timeout 5 wget -O - "http://$METRICS/metrics" 2>/dev/null |
		awk -v n="$1" '$1 == n { print $2; exit }'
}
# first_handshake CS_START IF MAX_CS: polls the client's latest handshake on IF every ~50 ms
# (in cl, one shell) until it is set or MAX_CS centiseconds passed since CS_START; prints
# the centiseconds from CS_START (or "none").
first_handshake() {
	cl sh -c '
		start=$1 dev=$2 max=$3
		while :; do
			now=$(awk "{ printf \"%d\n\", \$1 * 100 }" /proc/uptime)
			hs=$(wg show "$dev" latest-handshakes | awk "{ print \$2; exit }")
			if [ "${hs:-0}" != 0 ]; then echo $((now - start)); exit 0; fi
			[ $((now - start)) -gt "$max" ] && { echo none; exit 0; }
			sleep 0.05
		done' sh "$1" "$2" "$3"
}
# client IF LISTEN_PORT ADDR: a kernel WireGuard client in cl, the gateway as its only peer
# (endpoint its veth address, allowed IPs the gateway's tunnel address, no keepalive).
# Prints its public key.
client() {
	wg genkey >"/tmp/$1.key"
	ip -n cl link add "$1" type wireguard || return 1
	cl wg set "$1" private-key "/tmp/$1.key" listen-port "$2" \
		peer "$GW_PUB" endpoint "$GW_IP:$PORT" allowed-ips "${3%.*}.1/32"
	ip -n cl addr add "$3/24" dev "$1"
	ip -n cl link set "$1" up
	wg pubkey <"/tmp/$1.key"
}

# --- the namespaces, the veth, the gateway ---------------------------------------------------
insmod /test/bin/veth.ko || { echo "FAIL insmod veth.ko"; exit 1; }
ip netns add gw && ip netns add cl || { echo "FAIL ip netns add"; exit 1; }
ip -n gw link set lo up
ip -n cl link set lo up
ip link add vgw netns gw type veth peer name vcl netns cl ||
	{ echo "FAIL ip link add veth"; exit 1; }
ip -n gw addr add "$GW_IP/24" dev vgw
ip -n cl addr add "$CL_IP/24" dev vcl
ip -n gw link set vgw up
ip -n cl link set vcl up
# WireGuard's socket lives in the namespace the device was created in: create it there.
wg genkey >/tmp/gw.key
ip -n gw link add wg0 type wireguard || { echo "FAIL ip link add wg0 type wireguard"; exit 1; }
gw wg set wg0 private-key /tmp/gw.key listen-port $PORT
ip -n gw addr add 10.99.0.1/24 dev wg0
ip -n gw addr add 10.97.0.1/24 dev wg0
ip -n gw link set wg0 up
GW_PUB=$(wg pubkey </tmp/gw.key)
if cl ping -c 1 -W 2 "$GW_IP" >/dev/null 2>&1; then ok "veth: cl reaches gw"; else
	bad "veth: cl cannot ping $GW_IP"; fi

# --- i. baseline: installed after the first initiation, without an endpoint -----------------
BASE_PUB=$(client wgb 51829 10.97.0.2) || bad "baseline client: ip link add wgb failed"
start=$(uptime_cs)
cl ping -c 1 -W 8 10.97.0.1 >/dev/null 2>&1 &
ping_b=$!
# Once the client has sent its first initiation (148 bytes out), wg0 has dropped it.
for _ in $(seq 100); do
	tx=$(cl wg show wgb transfer | awk '{ print $3; exit }')
	[ "${tx:-0}" -ge 148 ] && break
	sleep 0.05
done
sleep 0.1
added_cs=$(($(uptime_cs) - start))
gw wg set wg0 peer "$BASE_PUB" allowed-ips 10.97.0.2/32
base_cs=$(first_handshake "$start" wgb 900)
wait $ping_b
echo "     baseline: first handshake $(cs_to_s "$base_cs") after the first ping (peer added" \
	"$(cs_to_s "$added_cs") after it, no endpoint: the client's retransmission does it)"
if [ "$base_cs" != none ] && [ "$base_cs" -ge 450 ]; then
	ok "baseline: without the capture the first handshake waits for the retransmission" \
		"(>= 4.5 s)"
else
	bad "baseline: first handshake after '$base_cs' cs, expected about 5 s"
fi
gw wg set wg0 peer "$BASE_PUB" remove
ip -n cl link del wgb

# --- the provisioner ---------------------------------------------------------------------------
# Its engine drops to the system user wgws, as on a real gateway: the guest gets the two users.
mkdir -p /etc
printf 'root:x:0:0::/:/bin/sh\nwgws:x:999:999::/nonexistent:/bin/false\n' >/etc/passwd
printf 'root:x:0:\nwgws:x:999:\n' >/etc/group
gw wgws-provisioner serve --interface wg0 --db /tmp/p.db --api "$API" --pool4 10.99.0.0/24 \
	--jit --capture vgw --gc-interval 60 --metrics "$METRICS" -v >/tmp/prov.log 2>&1 &
PROV_PID=$!
ready=0
for _ in $(seq 100); do
	if [ -S /tmp/api.sock ] && grep -q "capturing on vgw" /tmp/prov.log; then
		ready=1
		break
	fi
	kill -0 "$PROV_PID" 2>/dev/null || break
	sleep 0.1
done
if [ "$ready" = 1 ]; then ok "provisioner up, capturing on vgw"; else
	bad "provisioner did not start"
	cat /tmp/prov.log
	exit 1
fi

# --- ii. a stored peer, not installed -----------------------------------------------------------
wg genkey >/tmp/wg1.key
CL_PUB=$(wg pubkey </tmp/wg1.key)
if out=$(wgws-provisioner peer add --api "$API" --public-key "$CL_PUB" 2>&1); then
	ok "peer add through the CLI"
else
	bad "peer add: $out"
fi
CL_ADDR=$(echo "$out" | tr -d ' \n' | sed -n 's/.*"addresses":\["\([0-9.]*\)\/32".*/\1/p')
expect "peer add: an address from the pool" "${CL_ADDR%.*}" 10.99.0
expect "peer add: stored, not installed" \
	"$(echo "$out" | tr -d ' \n' | sed -n 's/.*"installed":\([a-z]*\).*/\1/p')" false

# The client: its key was made above, so build wg1 by hand rather than with client().
ip -n cl link add wg1 type wireguard
cl wg set wg1 private-key /tmp/wg1.key listen-port 51821 \
	peer "$GW_PUB" endpoint "$GW_IP:$PORT" allowed-ips 10.99.0.1/32
ip -n cl addr add "$CL_ADDR/24" dev wg1
ip -n cl link set wg1 up
expect "wg0 has no peers" "$(gw wg show wg0 peers)" ""

# --- iii. the first handshake ----------------------------------------------------------------
start=$(uptime_cs)
cl ping -c 1 -W 5 10.99.0.1 >/tmp/ping.out 2>&1 &
ping_c=$!
jit_cs=$(first_handshake "$start" wg1 500)
if wait $ping_c; then ok "the first ping through the tunnel is answered"; else
	bad "the first ping got no answer: $(tail -n 2 /tmp/ping.out | tr '\n' ' ')"; fi
echo "     capture: first handshake $(cs_to_s "$jit_cs") after the first ping"
if [ "$jit_cs" != none ] && [ "$jit_cs" -le 100 ]; then
	ok "capture: the first handshake completes within 1 s"
else
	bad "capture: first handshake after '$jit_cs' cs, expected <= 100"
fi
expect "wg0 has the client's peer" "$(gw wg show wg0 peers)" "$CL_PUB"
expect "wg0: the client's endpoint is its veth address and port" \
	"$(gw wg show wg0 endpoints | awk -v k="$CL_PUB" '$1 == k { print $2 }')" "$CL_IP:51821"
expect "wg0: the peer's allowed IPs are its stored address" \
	"$(gw wg show wg0 allowed-ips | awk -v k="$CL_PUB" '$1 == k { print $2 }')" "$CL_ADDR/32"
expect "wg0: the forced keepalive was put back" \
	"$(gw wg show wg0 persistent-keepalive | awk -v k="$CL_PUB" '$1 == k { print $2 }')" off
expect "metrics: one initiation on the capture path" \
	"$(metric 'wgws_provisioner_jit_initiations_total{path="capture"}')" 1
expect "metrics: one install" "$(metric wgws_provisioner_jit_installs_total)" 1
expect "metrics: no malformed capture" "$(metric wgws_provisioner_jit_capture_malformed_total)" 0
if grep -q "installed: plain UDP from $CL_IP:51821" /tmp/prov.log; then
	ok "log: installed from plain UDP $CL_IP:51821"
else
	bad "log: no 'installed: plain UDP from $CL_IP:51821' line"
fi

# --- iv. an unknown key ----------------------------------------------------------------------
client wg2 51822 10.98.0.2 >/dev/null || bad "unknown client: ip link add wg2 failed"
cl ping -c 1 -W 1 10.98.0.1 >/dev/null 2>&1 &
ping_u=$!
for _ in $(seq 30); do
	[ "$(metric wgws_provisioner_jit_unknown_keys_total)" = 0 ] || break
	sleep 0.1
done
wait $ping_u
expect "unknown key: wg0 still has only the stored peer" "$(gw wg show wg0 peers)" "$CL_PUB"
expect "unknown key: no handshake" "$(cl wg show wg2 latest-handshakes | awk '{ print $2 }')" 0
expect "metrics: the unknown key counted" "$(metric wgws_provisioner_jit_unknown_keys_total)" 1
expect "metrics: two capture initiations" \
	"$(metric 'wgws_provisioner_jit_initiations_total{path="capture"}')" 2
expect "metrics: still one install" "$(metric wgws_provisioner_jit_installs_total)" 1

if ! kill -0 "$PROV_PID" 2>/dev/null; then bad "the provisioner died"; fi
kill "$PROV_PID" 2>/dev/null
wait "$PROV_PID" 2>/dev/null
PROV_PID=""
echo "     provisioner log:"
sed 's/^/     | /' /tmp/prov.log | tail -n 25
echo "     first handshake: capture $(cs_to_s "$jit_cs"), baseline $(cs_to_s "$base_cs")"
echo "guest: $fails failed"
[ "$fails" = 0 ]
