#!/bin/bash
# SPDX-License-Identifier: MIT
# The shim's TLS and proxy failure modes, all through squid: a wrong pin, the right pin, an
# untrusted self-signed certificate without pin or CA, --ca with the certificate, and a proxy
# that refuses CONNECT (407, then 403) — reported with its status and retried, never fatal.
# A proxy with Basic authentication: the password from --proxy-password-file works, a wrong
# one is named 407, one in --proxy on the command line is refused; it is in no argv or log.
set -eu
. "$(dirname "$0")/lib.sh"
need_root
need_cmd wireguard-go wg nft squid curl ping
need_bins

corporate_network
start_relay

# The shim connects when WireGuard first sends: keep a ping running during each case.
# expect_no_connect WHAT PATTERN: the shim logs PATTERN, never connects, and no ping passes.
expect_no_connect() {
	bg_ping_start "$T/bgping-$SHIM_N.log"
	wait_for 15 grep -qF -- "$2" "$SHIM_LOG" || fail "$1: shim never logged '$2'"
	sleep 1
	bg_ping_stop
	[ "$PING_RX" = 0 ] || fail "$1: $PING_RX pings crossed the tunnel"
	[ "$(log_count "$SHIM_LOG" "connected to relay")" = 0 ] || fail "$1: shim connected anyway"
	alive "$SHIM_PID" || fail "$1: shim exited (it should keep retrying)"
	ok "$1: shim logs '$2', no connection, $PING_TX pings all lost"
	stop_shim
}
# expect_connect WHAT: the shim connects and ping crosses the tunnel.
expect_connect() {
	bg_ping_start "$T/bgping-$SHIM_N.log"
	wait_shim_connected 15
	wait_for 15 grep -q "bytes from" "$BGPING_LOG" || fail "$1: connected but no ping across"
	bg_ping_stop
	ping_ok 5 5 || fail "$1: ping $PING_RX/$PING_TX"
	ok "$1: shim connected, ping $PING_RX/$PING_TX"
	stop_shim
}

say "wrong pin"
start_shim --pin "sha256//$(head -c 32 /dev/zero | base64)"
expect_no_connect "wrong pin" "pin mismatch"

say "right pin ($PIN)"
start_shim --pin "$PIN"
expect_connect "right pin"

say "self-signed certificate, neither --pin nor --ca"
start_shim
expect_no_connect "untrusted certificate" "certificate verify failed"

say "--ca with the gateway's certificate"
start_shim --ca "$CERT"
expect_connect "--ca"

# shim_refused PATTERN N: at least N attempts logged with PATTERN.
shim_refused() { [ "$(log_count "$SHIM_LOG" "$1")" -ge "$2" ]; }
PROXY_AT="the proxy at $P_CLIENT:$PROXY_PORT"
declare -A REFUSAL=(
	[407]="$PROXY_AT wants authentication (407 Proxy Authentication Required; it offers Basic)"
	[403]="$PROXY_AT refused CONNECT to $GW_NAME:443: 403 Forbidden"
)

for code in 407 403; do
	say "proxy refuses CONNECT with $code"
	stop_squid
	start_squid 900 "$code"
	start_shim --pin "$PIN"
	bg_ping_start "$T/bgping-$SHIM_N.log"
	pat=${REFUSAL[$code]}
	wait_for 15 shim_refused "$pat" 2 ||
		fail "proxy $code: expected 2 attempts logged as '$pat'" \
			"(got $(log_count "$SHIM_LOG" "$pat"))"
	bg_ping_stop
	alive "$SHIM_PID" || fail "proxy $code: the shim exited"
	[ "$(log_count "$SHIM_LOG" "connected to relay")" = 0 ] || fail "proxy $code: shim connected"
	ok "proxy $code: $(log_count "$SHIM_LOG" "$pat") refused attempts" \
		"logged, shim still running, no connection"
	grep -m1 -F "$pat" "$SHIM_LOG" | sed 's/^/     shim said: /'
	stop_shim
done

say "proxy with Basic authentication: the password from a file, never from argv"
stop_squid
start_squid 900 407
PW=s3cret-pw-$$
printf 'alice:%s\n' "$(openssl passwd -apr1 "$PW")" >"$SQUID_DIR/passwd"
chown proxy:proxy "$SQUID_DIR/passwd"
(umask 077 && printf '%s\n' "$PW" >"$T/proxy.pw" && printf 'wrong\n' >"$T/wrong.pw")
PROXY_URL=http://alice@$P_CLIENT:$PROXY_PORT
out=$(in_c "$WGWS_BUILD/wgws-shim" --relay "wss://$GW_NAME/wg" --pin "$PIN" \
	--proxy "http://alice:$PW@$P_CLIENT:$PROXY_PORT" 2>&1) && fail "a password in --proxy was accepted"
grep -q "a password on the command line is visible to every local user" <<<"$out" ||
	fail "a password in --proxy: $(oneline "$out")"
! grep -q "$PW" <<<"$out" || fail "the refusal shows the password: $(oneline "$out")"
ok "a password in --proxy on the command line is refused (without quoting it)"
start_shim --pin "$PIN" --proxy "$PROXY_URL" --proxy-password-file "$T/wrong.pw"
bg_ping_start "$T/bgping-wrong.log"
pat="$PROXY_AT refused the credentials of user 'alice' (407 Proxy Authentication Required"
wait_for 15 shim_refused "$pat" 1 || fail "a wrong password: no '$pat'"
bg_ping_stop
ok "a wrong password: $(grep -m1 -F "$pat" "$SHIM_LOG" | sed 's/.*: the proxy/the proxy/')"
stop_shim
start_shim --pin "$PIN" --proxy "$PROXY_URL" --proxy-password-file "$T/proxy.pw"
args=$(tr '\0' ' ' <"/proc/$SHIM_PID/cmdline")
! grep -q "$PW" <<<"$args" || fail "the password is in the shim's command line: $args"
expect_connect "Basic authentication (--proxy-password-file)"
grep -q " alice " "$SQUID_DIR/access.log" || fail "squid did not log user alice"
! grep -rq "$PW" "$T"/shim-*.log || fail "a shim log holds the password"
ok "squid logged the CONNECT as alice; the password is in no argv and no shim log"
echo "PASS test_tls"
