#!/bin/bash
# SPDX-License-Identifier: MIT
# wgws-shim --check, one case per failure, each with its plain-words verdict and a non-zero
# exit: a relay name that does not resolve, a proxy name that does not resolve, the proxy
# down, the proxy answering 403, the proxy wanting 407, a TLS-inspecting proxy (squid-openssl
# with ssl-bump and a CA of its own) under --pin and under --ca, a wrong pin, a wrong path
# (404), the relay down (behind the proxy, and direct); the healthy path prints every step
# and the relay's pin and exits 0, with two relays too. A shim that serves checks its first
# relay once at start and logs the result, before WireGuard sends anything. Day two: its log
# lines start with the time, or with the syslog priority when stderr is the journal's stream;
# SIGUSR1 logs one status line per session.
set -eu
. "$(dirname "$0")/lib.sh"
need_root
need_cmd squid curl openssl
need_bins wgws-relay wgws-shim
[ -x /usr/lib/squid/security_file_certgen ] || skip "squid without ssl-bump (security_file_certgen)"

dump_logs() {
	[ -z "$RELAY_LOG" ] || logtail "$RELAY_LOG" 10
	[ -z "$SHIM_LOG" ] || logtail "$SHIM_LOG" 10
	[ -z "$SQUID_DIR" ] || logtail "$SQUID_DIR/cache.log" 10
	logtail "$T/check.out" 20
}

# No WireGuard here: only the shim's way to the relay. The client reaches the gateway both
# directly and through squid.
topology
certs_make
start_squid
start_relay
PROXY=http://$P_CLIENT:$PROXY_PORT
RELAY=wss://$GW_NAME/wg
mkdir -p "/etc/netns/$NS_C"
at_exit "rm -rf '/etc/netns/$NS_C'"
echo "$G_DIRECT $GW_NAME" >"/etc/netns/$NS_C/hosts" # the direct cases; squid has its own

# check NAME WANT_RC PATTERN ARGS...: wgws-shim --check ARGS in the client namespace exits
# WANT_RC and prints PATTERN (fixed string) on stdout; within 15 s.
check() {
	local name=$1 want=$2 pat=$3 rc=0
	shift 3
	timeout 15 ip netns exec "$NS_C" "$WGWS_BUILD/wgws-shim" --check "$@" >"$T/check.out" \
		2>"$T/check.err" || rc=$?
	[ "$rc" = "$want" ] || fail "$name: exit $rc, expected $want: $(oneline "$(cat "$T/check.out")")"
	grep -qF -- "$pat" "$T/check.out" ||
		fail "$name: no '$pat' in: $(oneline "$(cat "$T/check.out")")"
	if [ "$want" != 0 ]; then
		grep -q "^  FAIL  " "$T/check.out" || fail "$name: no FAIL line"
		ok "$name: exit $rc: $(grep -m1 '^  FAIL  ' "$T/check.out" | sed 's/^  FAIL  //')"
	else
		ok "$name: exit 0"
	fi
}

say "the healthy path through the proxy"
check "healthy" 0 "verdict: the relay works from here" --relay "$RELAY" --proxy "$PROXY" \
	--pin "$PIN"
sed 's/^/     /' "$T/check.out"
grep -qF "pin $PIN, trusted by its pin" "$T/check.out" || fail "healthy: the pin is not printed"
grep -qF "opened a tunnel to $RELAY: 200" "$T/check.out" || fail "healthy: no proxy step"
grep -q "round trip through the relay: a ping answered in" "$T/check.out" ||
	fail "healthy: no round trip"
! ip netns exec "$NS_C" ss -Hulpn | grep -q wgws-shim || fail "--check bound a UDP port"
ok "healthy: proxy, TLS (the pin), upgrade and a round trip reported; no UDP port taken"
check "healthy, direct, two relays" 0 "verdict: every relay works from here" \
	--relay "$RELAY" --relay "wss://$G_DIRECT/wg" --no-proxy --pin "$PIN"
[ "$(grep -c "round trip through the relay" "$T/check.out")" = 2 ] ||
	fail "two relays: not both checked"
grep -qF "resolved $GW_NAME: $G_DIRECT" "$T/check.out" || fail "direct: no resolve step"

say "one failure at a time"
check "relay name does not resolve" 1 "cannot resolve nowhere.wgws.test" \
	--relay wss://nowhere.wgws.test/wg --no-proxy --pin "$PIN"
check "proxy name does not resolve" 1 "cannot resolve the proxy's name noproxy.wgws.test" \
	--relay "$RELAY" --proxy http://noproxy.wgws.test:3128 --pin "$PIN"
check "proxy down" 1 "cannot connect to the proxy at $P_CLIENT:3999: Connection refused" \
	--relay "$RELAY" --proxy "http://$P_CLIENT:3999" --pin "$PIN"
check "wrong pin" 1 "relay certificate pin mismatch (server has $PIN)" \
	--relay "$RELAY" --proxy "$PROXY" --pin "sha256//$(head -c 32 /dev/zero | base64)"
check "wrong path" 1 "the relay has no WebSocket endpoint at path /nope (404 Not Found)" \
	--relay "wss://$GW_NAME/nope" --proxy "$PROXY" --pin "$PIN"
check "relay not trusted" 1 "relay certificate verify failed: self-signed certificate; the certificate is '$GW_NAME', issued by '$GW_NAME'" \
	--relay "$RELAY" --no-proxy
for code in 403 407; do
	stop_squid
	start_squid 900 "$code"
	case $code in
	403) pat="the proxy at $P_CLIENT:$PROXY_PORT refused CONNECT to $GW_NAME:443: 403 Forbidden" ;;
	407) pat="the proxy at $P_CLIENT:$PROXY_PORT wants authentication (407 Proxy Authentication Required; it offers Basic)" ;;
	esac
	check "proxy $code" 1 "$pat" --relay "$RELAY" --proxy "$PROXY" --pin "$PIN"
done

say "a TLS-inspecting proxy: squid-openssl bumps with its own CA"
stop_squid
d=$T/bump
mkdir -p "$d"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Corp Inspection CA" \
	-keyout "$d/ca.key" -out "$d/ca.crt" >/dev/null 2>&1 || fail "openssl: no inspection CA"
/usr/lib/squid/security_file_certgen -c -s "$d/ssl_db" -M 4MB >/dev/null ||
	fail "security_file_certgen -c failed"
chown -R proxy:proxy "$d"
SQUID_EXTRA="http_port $P_CLIENT:3129 ssl-bump tls-cert=$d/ca.crt tls-key=$d/ca.key generate-host-certificates=on
sslcrtd_program /usr/lib/squid/security_file_certgen -s $d/ssl_db -M 4MB
sslcrtd_children 1 startup=1 idle=1
tls_outgoing_options flags=DONT_VERIFY_PEER
ssl_bump bump all"
start_squid
SQUID_EXTRA=""
bump_listens() { in_p ss -Hltn "sport = :3129" | grep -q .; }
wait_for 10 bump_listens || fail "squid does not listen on 3129 (ssl-bump)"
story="the certificate ('$GW_NAME') was issued by 'Corp Inspection CA', not by the relay: a TLS-inspecting proxy is in the way"
check "TLS inspection, --pin" 1 "$story" --relay "$RELAY" --proxy "http://$P_CLIENT:3129" \
	--pin "$PIN"
check "TLS inspection, --ca" 1 "$story" --relay "$RELAY" --proxy "http://$P_CLIENT:3129" \
	--ca "$CERT"

say "the relay down"
stop_relay
check "relay down, behind the proxy" 1 "could not reach the relay $GW_NAME:443: 503 Service Unavailable" \
	--relay "$RELAY" --proxy "$PROXY" --pin "$PIN"
check "relay down, direct" 1 "cannot connect to the relay at $GW_NAME:443: Connection refused" \
	--relay "$RELAY" --no-proxy --pin "$PIN"
check "two relays, both down" 1 "verdict: 2 of 2 relays do not work from here" \
	--relay "$RELAY" --relay "wss://$G_DIRECT/wg" --no-proxy --pin "$PIN"
start_relay

say "the start-up check of a shim that serves"
start_shim --pin "$PIN"
wait_for 10 grep -qF "start-up check: $RELAY works from here (via proxy $P_CLIENT:$PROXY_PORT" \
	"$SHIM_LOG" || fail "the serving shim logged no successful start-up check"
[ "$(log_count "$SHIM_LOG" "connected to relay")" = 0 ] ||
	fail "the start-up check counts as a connection"
ok "start-up check: $(grep -m1 "start-up check:" "$SHIM_LOG" | sed 's/.*start-up check: //')"
stop_shim
start_shim --pin "sha256//$(head -c 32 /dev/zero | base64)"
wait_for 10 grep -qF "start-up check: $RELAY does not work from here: relay certificate pin mismatch" \
	"$SHIM_LOG" || fail "a wrong pin: no failed start-up check logged"
alive "$SHIM_PID" || fail "a failed start-up check stopped the shim"
ok "start-up check, wrong pin: logged at once, the shim serves on"
stop_shim

say "day two: timestamps, the journal's priorities, SIGUSR1"
start_shim --pin "$PIN"
wait_for 10 grep -qF "start-up check: $RELAY works" "$SHIM_LOG" || fail "no start-up check"
stamp='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z wgws-shim: (info|warning|debug): '
bad=$(grep -cvE "$stamp" "$SHIM_LOG" || true)
[ "$bad" = 0 ] || fail "$bad log lines without a timestamp: $(grep -m1 -vE "$stamp" "$SHIM_LOG")"
ok "every line starts with the time: $(head -c 60 "$SHIM_LOG")..."
# A datagram from a local port makes a session, which connects.
in_c python3 -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x' * 148, ('127.0.0.1', $SHIM_PORT))"
wait_shim_connected 10
kill -USR1 "$SHIM_PID"
status_logged() { grep -q "status: 127.0.0.1:[0-9]*: open for [0-9]* s to $RELAY" "$SHIM_LOG"; }
wait_for 5 status_logged || fail "SIGUSR1: no status line for the open session"
grep -qF "status: 1 session (1 open, at most 64)" "$SHIM_LOG" || fail "SIGUSR1: no summary line"
alive "$SHIM_PID" || fail "SIGUSR1 stopped the shim"
ok "SIGUSR1: $(grep -m1 "status: 127.0.0.1" "$SHIM_LOG" | sed 's/.*status: //')"
# Reconnecting through the proxy from a back-off, with WireGuard quiet: curl's transfer is
# started by the loop's timer alone (a lost timer once left it for the 10 s deadline).
stop_relay
wait_for 10 grep -q "reconnecting in" "$SHIM_LOG" || fail "the relay's end was not noticed"
start_relay
t0=$(now_ms)
wait_for 9 shim_connected 2 || fail "no reconnection through the proxy within 9 s, no traffic"
ok "reconnected through the proxy $(($(now_ms) - t0)) ms after the relay came back, no traffic"
stop_shim
# The journal's stream: stderr whose device and inode JOURNAL_STREAM names (as systemd sets it).
: >"$T/journal.log"
JOURNAL_STREAM=$(stat -c '%d:%i' "$T/journal.log") spawn_ns "$NS_C" "$T/journal.log" \
	"$WGWS_BUILD/wgws-shim" --listen "127.0.0.1:$SHIM_PORT" --relay "$RELAY" --pin "sha256//$(head -c 32 /dev/zero | base64)" --no-proxy
SHIM_PID=$SPAWNED
journal_warned() { grep -q '^<4>wgws-shim: warning: start-up check' "$T/journal.log"; }
wait_for 10 journal_warned || fail "journal: no '<4>' warning: $(head -3 "$T/journal.log")"
grep -q '^<6>wgws-shim: info: ' "$T/journal.log" || fail "journal: no '<6>' info line"
! grep -qE '^[0-9]{4}-' "$T/journal.log" || fail "journal: a line with a timestamp"
ok "into the journal: priorities, no timestamps: $(head -c 50 "$T/journal.log")..."
stop_shim
echo "PASS test_check"
