# SPDX-License-Identifier: MIT
# Guest side of tests/e2e/test_kernel_netlink.sh (run by tests/kernel/run-guest.sh with
# busybox sh, wgdev-tool on PATH): drives the provisioner's netlink backend against the
# real kernel WireGuard and checks every result with `wg show` as an independent witness.
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
# run DESC CMD...: CMD must succeed (its output goes to $out).
run() {
	local desc=$1
	shift
	if out=$("$@" 2>&1); then ok "$desc"; else bad "$desc: $out"; fi
}
t() { wgdev-tool -b netlink wg0 "$@"; }
npeers() { wg show wg0 peers | wc -l | tr -d ' '; }
# wg_line KEY: key psk endpoint allowed-ips keepalive of KEY from `wg show wg0 dump`.
wg_line() { wg show wg0 dump | awk -v k="$1" '$1 == k { print $1, $2, $3, $4, $8 }'; }
# Dumps as "key endpoint keepalive cidrs", sorted, cidrs cut to the first 8 plus ",…" as
# wgdev-tool prints them (its fixed-size peer keeps PROV_MAX_ALLOWED).
norm_wg() {
	wg show wg0 dump | awk 'NR > 1 {
		n = split($4, a, ","); s = a[1]
		for (i = 2; i <= n && i <= 8; i++) s = s "," a[i]
		if (n > 8) s = s ",…"
		print $1, $3, $8, s }' | sort
}
norm_tool() {
	t dump | awk '{ print $1, $5, ($6 == 0 ? "off" : $6), $7 }' | sort
}
# compare_dumps DESC: wgdev-tool's dump and wg's list the same peers, endpoints, keepalives
# and allowed IPs.
compare_dumps() {
	norm_wg >/tmp/wg.dump
	if ! norm_tool >/tmp/tool.dump; then
		bad "$1: wgdev-tool dump failed"
		return
	fi
	if cmp -s /tmp/wg.dump /tmp/tool.dump; then
		ok "$1 ($(wc -l </tmp/tool.dump | tr -d ' ') peers, same as wg show)"
	else
		bad "$1: wgdev-tool dump differs from wg show dump"
		diff /tmp/wg.dump /tmp/tool.dump | head -n 10
	fi
}
uptime_cs() { awk '{ printf "%d\n", $1 * 100 }' /proc/uptime; }
# rate N LINE: "LINE (N/s)" from wgdev-tool's "... N peers in S s".
rate() { echo "$2" | awk -v n="$1" '{ s = $(NF - 1); printf "%s (%.0f/s)\n", $0, (s > 0 ? n / s : 0) }'; }

# --- the device ---------------------------------------------------------------------------
wg genkey >/tmp/priv
ip link add wg0 type wireguard || { echo "FAIL ip link add wg0 type wireguard"; exit 1; }
wg set wg0 private-key /tmp/priv listen-port 51820
ip link set wg0 up
PUB=$(wg show wg0 public-key)
K1=$(wg genkey | wg pubkey)
K2=$(wg genkey | wg pubkey)
K3=$(wg genkey | wg pubkey)
PSK=$(wg genpsk)

# --- info ---------------------------------------------------------------------------------
run "info" t info
expect "info: netlink backend" "$(echo "$out" | awk '$1 == "backend" { print $2 }')" netlink
expect "info: public key is wg's" "$(echo "$out" | awk '$1 == "public_key" { print $2 }')" "$PUB"
expect "info: listen port" "$(echo "$out" | awk '$1 == "listen_port" { print $2 }')" 51820
expect "info: private key readable" "$(echo "$out" | awk '$1 == "private_key" { print $2 }')" \
	readable

# --- install, re-install, update -----------------------------------------------------------
run "install K1 (v4+v6, endpoint, keepalive)" \
	t install "$K1" -e 192.0.2.1:51820 -k 25 10.0.0.2/32 fd00::2/128
expect "install: one peer" "$(npeers)" 1
expect "install: wg shows exactly it" "$(wg_line "$K1")" \
	"$K1 (none) 192.0.2.1:51820 10.0.0.2/32,fd00::2/128 25"

run "re-install K1 with other allowed IPs" t install "$K1" 10.0.0.3/32 fd00::3/128
expect "re-install: still one peer" "$(npeers)" 1
expect "re-install: allowed IPs replaced, endpoint and keepalive kept" "$(wg_line "$K1")" \
	"$K1 (none) 192.0.2.1:51820 10.0.0.3/32,fd00::3/128 25"

run "update K1 (v6 endpoint, keepalive off)" t update "$K1" -e "[2001:db8::1]:40000" -k 0
expect "update: endpoint and keepalive changed, allowed IPs kept" "$(wg_line "$K1")" \
	"$K1 (none) [2001:db8::1]:40000 10.0.0.3/32,fd00::3/128 off"

run "update of an absent key succeeds" t update "$K2" -e 192.0.2.2:51820 -k 5
expect "update of an absent key does not create it" "$(npeers)" 1
expect "update of an absent key: not listed" "$(wg_line "$K2")" ""

run "install K2 (v6 only, psk, v4 endpoint)" t install "$K2" -p "$PSK" -e 192.0.2.2:1234 fd00::4/128
expect "install K2: psk, endpoint, allowed IPs" "$(wg_line "$K2")" \
	"$K2 $PSK 192.0.2.2:1234 fd00::4/128 off"
run "install K3 (no allowed IPs)" t install "$K3"
expect "install K3: listed without allowed IPs" "$(wg_line "$K3")" "$K3 (none) (none) (none) off"
expect "three peers" "$(npeers)" 3
compare_dumps "dump of 3 peers"
expect "dump: never-handshaken peers report 0" "$(t dump | awk '$2 != 0' | wc -l | tr -d ' ')" 0

# --- a real handshake with a second device on loopback. Kernel 6.1 does not initiate when
# a peer is merely installed with an endpoint (set_peer() only flushes staged packets);
# a persistent keepalive going 0 -> N does (it stages a keepalive, which needs a session).
wg genkey >/tmp/priv1
ip link add wg1 type wireguard
wg set wg1 private-key /tmp/priv1 listen-port 51821 \
	peer "$PUB" endpoint 127.0.0.1:51820 allowed-ips 10.9.0.1/32
ip link set wg1 up
P1=$(wg show wg1 public-key)
hs_of() { wg show wg0 latest-handshakes | awk -v k="$1" '$1 == k { print $2 }'; }
run "install a peer that answers (wg1 on loopback)" t install "$P1" -e 127.0.0.1:51821 10.9.0.2/32
sleep 1
echo "     note: 1 s after a plain install with an endpoint, last handshake = $(hs_of "$P1")"
run "update its keepalive 0 -> 25" t update "$P1" -k 25
hs=0
for _ in $(seq 50); do
	hs=$(hs_of "$P1")
	[ "${hs:-0}" != 0 ] && break
	sleep 0.1
done
if [ "${hs:-0}" != 0 ]; then ok "update keepalive 0 -> 25: the kernel initiated a handshake"; else
	bad "update keepalive 0 -> 25: no handshake with wg1 within 5 s"; fi
run "update its keepalive back to 0" t update "$P1" -k 0
sleep 0.5 # let the confirming keepalive land: then nothing moves any more
expect "dump: handshake time and transfer as wg shows them" \
	"$(t dump | awk -v k="$P1" '$1 == k { print $2, $3, $4 }')" \
	"$(wg show wg0 latest-handshakes | awk -v k="$P1" '$1 == k { print $2 }') $(
		wg show wg0 transfer | awk -v k="$P1" '$1 == k { print $2, $3 }')"
expect "dump: handshake time is recent wall-clock time" \
	"$(t dump | awk -v k="$P1" -v now="$(date +%s)" '$1 == k { print ($2 > now - 60 && $2 <= now) }')" 1
run "remove the wg1 peer" t remove "$P1"
ip link del wg1

# --- remove -------------------------------------------------------------------------------
run "remove K1" t remove "$K1"
expect "remove: K1 gone" "$(wg_line "$K1")" ""
expect "remove: two left" "$(npeers)" 2
run "remove of an absent key succeeds" t remove "$K1"
run "remove K2 and K3 in one message" t remove "$K2" "$K3"
expect "remove: none left" "$(npeers)" 0

# --- bulk ---------------------------------------------------------------------------------
# With the device up, every new peer also makes the kernel build a handshake initiation
# (and retry it every 5 s): round 1 measures that, round 2 runs with the device down.
round() { # NAME BATCH
	run "$1: bulk-install 1000" t bulk-install 1000
	echo "     $(rate 1000 "$out")"
	expect "$1: 1000 peers after bulk-install" "$(npeers)" 1000
	run "$1: bulk-remove 1000, $2 per message" t bulk-remove 1000 "$2"
	echo "     $(rate 1000 "$out")"
	expect "$1: 0 peers after bulk-remove" "$(npeers)" 0
}
round "round 1 (up)" 1
ip link set wg0 down
round "round 2 (down)" 32

# --- a dump of many netlink messages --------------------------------------------------------
# 2,000 peers of ~150 bytes fill a dozen 32 KiB batches; two peers with 1,500 allowed IPs
# each (~45 KiB) cannot fit one batch, so each is split across messages and must come
# back as one peer.
run "bulk-install 2000" t bulk-install 2000
echo "     $(rate 2000 "$out")"
for k in "$K1" "$K2"; do
	base=$([ "$k" = "$K1" ] && echo 10.201 || echo 10.202)
	ips=$(awk -v b="$base" 'BEGIN { for (i = 0; i < 1500; i++)
		printf "%s%s.%d.%d/32", i ? "," : "", b, i / 256, i % 256 }')
	wg set wg0 peer "$k" allowed-ips "$ips" endpoint 192.0.2.9:9 persistent-keepalive 7
done
expect "2,002 peers" "$(npeers)" 2002
expect "split peer K1 has 1,500 allowed IPs in wg" \
	"$(wg show wg0 allowed-ips | awk -v k="$K1" '$1 == k { print NF - 1 }')" 1500
start=$(uptime_cs)
compare_dumps "dump of 2,002 peers, two split across messages"
echo "     wg show wg0 dump: $(wg show wg0 dump | wc -c | tr -d ' ') bytes;" \
	"wgdev-tool dump + compare took $(($(uptime_cs) - start))0 ms"
expect "split peers listed once each" \
	"$(t dump | awk -v a="$K1" -v b="$K2" '$1 == a || $1 == b' | wc -l | tr -d ' ')" 2

# A dump while peers are being removed: the kernel may flag it NLM_F_DUMP_INTR; it must
# still end (no retry loop), and list no peer twice.
t bulk-remove 2000 1 >/dev/null 2>&1 &
churn=$!
sleep 0.3 # until the removals run (they take ~1 s)
if t dump >/tmp/churn.dump 2>/tmp/churn.err; then
	ok "dump during removals completes ($(wc -l </tmp/churn.dump | tr -d ' ') peers seen)"
else
	bad "dump during removals: $(cat /tmp/churn.err)"
fi
wait $churn || bad "bulk-remove during the dump failed"
expect "dump during removals: no peer twice" "$(awk '{ print $1 }' /tmp/churn.dump | sort | uniq -d)" ""
expect "after the churn: K1 and K2 left" "$(npeers)" 2

echo "guest: $fails failed"
[ "$fails" = 0 ]
