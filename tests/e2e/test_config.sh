#!/bin/bash
# SPDX-License-Identifier: MIT
# The three programs' configuration: -c FILE with the long option names as keys, flags
# given together with it, --check-config, and errors that name the file, the line and the key;
# and mkcert.sh's errors. No root, no network: --check-config validates and exits before
# opening anything.
set -eu
. "$(dirname "$0")/lib.sh"
need_bins wgws-relay wgws-shim wgws-provisioner

certs_make
expect_ok() { # WHAT CMD...
	local what=$1 out
	shift
	out=$("$@" 2>&1) || fail "$what: exit $?: $(oneline "$out")"
	grep -qx "configuration ok" <<<"$out" || fail "$what: no 'configuration ok': $(oneline "$out")"
	ok "$what"
}
expect_err() { # WHAT PATTERN CMD...
	local what=$1 pat=$2 out rc=0
	shift 2
	out=$("$@" 2>&1) || rc=$?
	[ "$rc" != 0 ] || fail "$what: accepted: $(oneline "$out")"
	grep -q -- "$pat" <<<"$out" || fail "$what: expected '$pat', got: $(oneline "$out")"
	ok "$what → $(head -n 1 <<<"$out")"
}

R=$WGWS_BUILD/wgws-relay S=$WGWS_BUILD/wgws-shim P=$WGWS_BUILD/wgws-provisioner
cat >"$T/relay.conf" <<CONF
# a comment
[Relay]
Listen = 127.0.0.1:8443
Cert = $CERT
Key = $KEY
MaxConns = 10   # after a blank: a comment
max_record = 2048
CONF
expect_ok "relay: -c with CamelCase and snake_case keys" "$R" -c "$T/relay.conf" --check-config
expect_ok "relay: flags accepted together with -c" "$R" -c "$T/relay.conf" --max-conns 20 --check-config
# Notepad's UTF-8: a byte-order mark before the first line, CRLF line ends.
printf '\357\273\277[Relay]\r\nListen = 127.0.0.1:8443\r\nCert = %s\r\nKey = %s\r\n' \
	"$CERT" "$KEY" >"$T/bom.conf"
expect_ok "relay: a file that starts with a UTF-8 byte-order mark" \
	"$R" -c "$T/bom.conf" --check-config
cat "$T/bom.conf" "$T/bom.conf" >"$T/bom2.conf"
expect_err "relay: a byte-order mark on a later line" "bom2.conf:5: a byte-order mark" \
	"$R" -c "$T/bom2.conf" --check-config
# An option is given once in a file, however its key is spelled; the repeatable ones add up.
printf 'max_conns = 5\n' | cat "$T/relay.conf" - >"$T/dup.conf"
expect_err "relay: MaxConns, then max_conns" "dup.conf:8: 'max_conns' was already given on line 6" \
	"$R" -c "$T/dup.conf" --check-config
printf 'ProxyProtocolFrom = 10.0.0.0/8\nproxy-protocol-from = 192.0.2.1\n' |
	cat "$T/relay.conf" - >"$T/ppf.conf"
expect_ok "relay: ProxyProtocolFrom twice" "$R" -c "$T/ppf.conf" --check-config
printf '[Relay]\nListen = 127.0.0.1:8443\nLsten = 1\n' >"$T/bad1.conf"
expect_err "relay: unknown key" "bad1.conf:3: unknown key 'Lsten'" "$R" -c "$T/bad1.conf" --check-config
printf '[Relay]\nMaxConns = lots\n' >"$T/bad2.conf"
expect_err "relay: bad value" "bad2.conf:2: --max-conns: 'lots'" "$R" -c "$T/bad2.conf" --check-config
printf '[Shim]\nRelay = wss://gw.example/wg\n' >"$T/bad3.conf"
expect_err "relay: wrong section" "bad3.conf:1: unknown section \[Shim\]" "$R" -c "$T/bad3.conf" --check-config
expect_err "relay: missing --cert" "cert FILE and --key FILE are required" "$R" --listen 127.0.0.1:8443 --check-config
expect_err "relay: bad --listen" "not a numeric IPv4:PORT" "$R" --listen localhost:443 --cert "$CERT" --key "$KEY"
# --path may not take the relay's own names (/healthz on the tunnel port, /metrics on
# --metrics): a usage error, exit 2, that says why.
for p in /healthz /metrics; do
	rc=0
	out=$("$R" -c "$T/relay.conf" --path "$p" --check-config 2>&1) || rc=$?
	[ "$rc" = 2 ] || fail "relay: --path $p: exit $rc, expected 2: $(oneline "$out")"
	grep -q -- "--path: '$p' is the relay's own" <<<"$out" ||
		fail "relay: --path $p: $(oneline "$out")"
done
ok "relay: --path /healthz and --path /metrics refused, exit 2"
printf 'Path = /healthz\n' | cat "$T/relay.conf" - >"$T/path.conf"
expect_err "relay: Path = /healthz in a file" \
	"path.conf:8: --path: '/healthz' is the relay's own health check" \
	"$R" -c "$T/path.conf" --check-config
expect_ok "relay: --path /healthz/tunnel (only the exact names are the relay's)" \
	"$R" -c "$T/relay.conf" --path /healthz/tunnel --check-config

cat >"$T/shim.conf" <<CONF
[Shim]
Listen = 127.0.0.1:51820
Relay = wss://gw.example.com/wg
Keepalive = 10
NoProxy = yes
CONF
expect_ok "shim: -c" "$S" -c "$T/shim.conf" --check-config
printf 'Relay = wss://gw2.example.com/wg\nPin = %s\npin = sha256//%s\n' "$PIN" \
	"$(printf '%032d' 0 | base64)" | cat "$T/shim.conf" - >"$T/shim-relays.conf"
expect_ok "shim: Relay and Pin twice" "$S" -c "$T/shim-relays.conf" --check-config
printf 'Keepalive = 20\n' | cat "$T/shim.conf" - >"$T/shim-dup.conf"
expect_err "shim: Keepalive twice" "shim-dup.conf:6: 'Keepalive' was already given on line 4" \
	"$S" -c "$T/shim-dup.conf" --check-config
printf 'no_proxy = no\n' | cat "$T/shim.conf" - >"$T/shim-dup2.conf"
expect_err "shim: NoProxy, then no_proxy" \
	"shim-dup2.conf:6: 'no_proxy' was already given on line 5" \
	"$S" -c "$T/shim-dup2.conf" --check-config
expect_err "shim: ws:// refused" "wss" "$S" --relay ws://gw.example.com/wg --check-config
expect_err "shim: --pin with --insecure" "insecure" "$S" --relay wss://gw.example.com/wg --insecure \
	--pin "sha256//$(printf '%032d' 0 | base64)" --check-config

cat >"$T/prov.conf" <<CONF
[Provisioner]
Interface = wg0
Db = $T/peers.db
Pool4 = 10.64.0.0/16
Pool6 = fd00:64::/64
GcIdle = 900
CONF
expect_ok "provisioner: -c" "$P" serve -c "$T/prov.conf" --check-config
printf 'RelayUrl = wss://a.example.com/wg\nRelayUrl = wss://b.example.com/wg\n' >"$T/relays"
printf 'RelayPin = %s\nrelay_pin = %s\n' "$PIN" "$PIN" >>"$T/relays"
cat "$T/prov.conf" "$T/relays" >"$T/prov-relays.conf"
expect_ok "provisioner: RelayUrl and RelayPin twice" \
	"$P" serve -c "$T/prov-relays.conf" --check-config
printf 'pool4 = 10.65.0.0/16\n' | cat "$T/prov.conf" - >"$T/prov-dup.conf"
expect_err "provisioner: Pool4, then pool4" "prov-dup.conf:7: 'pool4' was already given on line 4" \
	"$P" serve -c "$T/prov-dup.conf" --check-config
expect_err "provisioner: host bits in --pool4" "is not an IPv4 network" "$P" serve -c "$T/prov.conf" \
	--pool4 10.64.0.1/16 --check-config
expect_err "provisioner: tcp API without a token" "needs --token-file" "$P" serve -c "$T/prov.conf" \
	--api tcp:127.0.0.1:8080 --check-config
expect_err "provisioner: no pool" "give --pool4" "$P" serve --interface wg0 --db "$T/x.db" --check-config
printf '[Provisioner]\nJit = yes\nJitSocket = /run/wgws/jit.sock\nCapture = eth0\n' >"$T/jit.conf"
expect_ok "provisioner: Jit = yes with JitSocket and Capture" "$P" serve -c "$T/prov.conf" -c "$T/jit.conf" \
	--check-config
expect_ok "provisioner: --jit=no on the command line" "$P" serve -c "$T/prov.conf" --jit=no --check-config
printf '[Provisioner]\nJit = maybe\n' >"$T/jit2.conf"
expect_err "provisioner: Jit = maybe" "jit2.conf:2: --jit: expected yes or no, got 'maybe'" "$P" serve \
	-c "$T/prov.conf" -c "$T/jit2.conf" --check-config
expect_err "provisioner: --jit alone" "needs --jit-socket PATH" "$P" serve -c "$T/prov.conf" --jit \
	--check-config
expect_err "provisioner: --capture without --jit" "need --jit" "$P" serve -c "$T/prov.conf" \
	--capture eth0 --check-config
expect_err "provisioner: relative --jit-socket" "not an absolute path" "$P" serve -c "$T/prov.conf" --jit \
	--jit-socket jit.sock --check-config
expect_err "provisioner: unknown --jit-user" "no user 'no-such-user-wgws'" "$P" serve -c "$T/prov.conf" \
	--jit --jit-socket /tmp/j.sock --jit-user no-such-user-wgws --check-config
printf '[Provisioner]\nJitRate = 50\nJitBudget = 2000\n' >"$T/jit3.conf"
expect_ok "provisioner: JitRate and JitBudget" "$P" serve -c "$T/prov.conf" -c "$T/jit.conf" \
	-c "$T/jit3.conf" --check-config
printf '[Provisioner]\nJitBudget = 0\n' >"$T/jit4.conf"
expect_err "provisioner: JitBudget = 0" "jit4.conf:2: --jit-budget: '0' is not a number from 1 to 1000000" \
	"$P" serve -c "$T/prov.conf" -c "$T/jit4.conf" --check-config
# What generated client configs say (peer.c): the relay URL goes into a PreUp line that
# wg-quick runs with bash, so nothing but a host, a port and a path.
expect_ok "provisioner: --relay-url, two --relay-pin, --client-mtu" "$P" serve -c "$T/prov.conf" \
	--relay-url "wss://gw.example.com:8443/wg" --relay-pin "$PIN" \
	--relay-pin "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" --client-mtu 1380 --check-config
expect_err "provisioner: nine --relay-url" "--relay-url: at most 8" "$P" serve -c "$T/prov.conf" \
	$(for i in 1 2 3 4 5 6 7 8 9; do printf -- '--relay-url wss://gw%s.example.com/wg ' "$i"; done) \
	--check-config
expect_err "provisioner: a shell character in --relay-url" "is not wss://HOST\[:PORT\]/PATH" \
	"$P" serve -c "$T/prov.conf" --relay-url 'wss://gw.example.com/wg$(id)' --check-config
expect_err "provisioner: --relay-url without a host" "is not wss://HOST" \
	"$P" serve -c "$T/prov.conf" --relay-url 'wss:///wg' --check-config
expect_err "provisioner: a short --relay-pin" "is not sha256// followed by the base64 of a SHA-256" \
	"$P" serve -c "$T/prov.conf" --relay-pin sha256//AAAA --check-config
expect_err "provisioner: --client-mtu 1000" "--client-mtu: '1000' is not a number from 1280 to 65503" \
	"$P" serve -c "$T/prov.conf" --client-mtu 1000 --check-config

expect_ok "shim: FwMark = 0xca6c in the file" sh -c "printf 'FwMark = 0xca6c\n' | cat '$T/shim.conf' - >'$T/shim-mark.conf' && '$S' -c '$T/shim-mark.conf' --check-config"
expect_err "shim: --fwmark 0" "--fwmark: '0' is not a mark from 1 to 4294967295" \
	"$S" -c "$T/shim.conf" --fwmark 0 --check-config
expect_err "shim: --fwmark 2^32" "--fwmark: '4294967296' is not a mark" \
	"$S" -c "$T/shim.conf" --fwmark 4294967296 --check-config

expect_err "shim: -4 and -6" "--ipv4 and --ipv6 exclude each other" "$S" -c "$T/shim.conf" -4 -6 \
	--check-config
expect_err "shim: -4 with an IPv6 relay" "--ipv4: the relay's address ::1 is not IPv4" \
	"$S" --relay "wss://[::1]/wg" --no-proxy -4 --check-config
expect_ok "shim: Ipv6 = yes in the file, -6 again" sh -c "printf 'Ipv6 = yes\n' | cat '$T/shim.conf' - >'$T/shim6.conf' && '$S' -c '$T/shim6.conf' -6 --check-config"

# The shim's exit status: 2 for a usage or configuration error, 1 when it cannot run.
shim_rc() { # WANT ARGS...
	local want=$1 rc=0
	shift
	"$S" "$@" >/dev/null 2>&1 || rc=$?
	[ "$rc" = "$want" ] || fail "wgws-shim $*: exit $rc, expected $want"
}
shim_rc 2 --no-such-option
shim_rc 2 --relay ws://gw.example.com/wg --check-config
shim_rc 2 -c "$T/shim.conf" --fwmark 0 --check-config
shim_rc 2 --stop "$T/x.pid" --relay wss://gw.example.com/wg
shim_rc 1 -c "$T/shim.conf" --ca "$T/no-such-ca.pem" --check-config
ok "shim exit status: 2 for usage and configuration errors (an unknown option, a bad value," \
	"--stop with others), 1 for a CA file that cannot be read"

# wgws-shim --background / --stop (wg-quick's PreUp / PostDown; the run itself: test_wgquick).
expect_err "shim: --stop with another option" "--stop PIDFILE takes no other option" \
	"$S" --stop "$T/x.pid" --relay wss://gw.example.com/wg
expect_err "shim: --background into a missing directory" "cannot open the pid file $T/no/x.pid" \
	"$S" -c "$T/shim.conf" --background "$T/no/x.pid"
out=$("$S" --stop "$T/none.pid") || fail "shim --stop without a pid file: exit $?"
expect "shim --stop without a pid file" "$out" "wgws-shim: not running (no $T/none.pid)"
: >"$T/stale.pid"
out=$("$S" --stop "$T/stale.pid") || fail "shim --stop on a stale pid file: exit $?"
expect "shim --stop on a file nobody holds" "$out" "wgws-shim: not running (removed the stale $T/stale.pid)"
[ ! -e "$T/stale.pid" ] || fail "shim --stop left the stale pid file"
ok "shim --stop: success when none runs, with no file or a stale one (removed)"

# mkcert.sh: when openssl fails, its own reason follows ours. 999.1.1.1 passes mkcert's
# character check for an IP; openssl refuses it. Nothing is left behind, not even the file
# that held openssl's messages.
mkdir "$T/mkcert-tmp"
out=$(TMPDIR=$T/mkcert-tmp "$WGWS_TOP/certs/mkcert.sh" bad.wgws.test 999.1.1.1 \
	-o "$T/badcert" 2>&1) && fail "mkcert.sh made a certificate for the IP 999.1.1.1"
grep -q "openssl req failed" <<<"$out" ||
	fail "mkcert.sh: no 'openssl req failed': $(oneline "$out")"
grep -q "bad ip address.*999\.1\.1\.1" <<<"$out" ||
	fail "mkcert.sh hid openssl's reason: $(oneline "$out")"
left=$(ls -A "$T/badcert" "$T/mkcert-tmp")
[ -z "$(ls -A "$T/badcert")" ] && [ -z "$(ls -A "$T/mkcert-tmp")" ] ||
	fail "mkcert.sh left files behind: $(oneline "$left")"
ok "mkcert.sh: openssl's own reason (bad ip address) after ours, nothing left behind"

# The units (all of them) are verified by test_install.sh, on an installed tree.
echo "PASS test_config"
