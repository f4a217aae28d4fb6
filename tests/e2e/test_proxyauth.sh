#!/bin/bash
# SPDX-License-Identifier: MIT
# Corporate proxies, each a real server started here, the client's UDP blocked: the tunnel
# comes up (the shim connects, a ping crosses WireGuard) through
#   - squid with Digest (digest_file_auth),
#   - squid with NTLM (ntlm_fake_auth: it proves the three-message handshake, any password),
#   - squid with Negotiate (negotiate_kerberos_auth) against a real MIT Kerberos KDC in a
#     namespace of its own, the user's ticket from kinit, no user or password given,
#   - squid as an https:// proxy (https_port, its own CA given with --proxy-ca),
#   - dante as a SOCKS5 proxy, socks5:// (the relay's name resolved by the client) and
#     socks5h:// (resolved by the proxy);
# a wrong Digest password is named with 407 and the scheme, and retried (the right one holds a
# '%41', which libcurl before 8.8 would decode: it is passed escaped); dante also offers
# username authentication, which a shim without a user must not pick; the proxy's name
# resolving to an IPv6 address that drops silently and an IPv4 one that works costs under 1 s
# (Happy Eyeballs, curl's); no password appears in any ps output or any log of the shim.
set -eu
. "$(dirname "$0")/lib.sh"
need_root
need_cmd wireguard-go wg nft squid curl ping danted krb5kdc kdb5_util kadmin.local kinit
need_bins wgws-relay wgws-shim
[ -x /usr/lib/squid/digest_file_auth ] && [ -x /usr/lib/squid/ntlm_fake_auth ] &&
	[ -x /usr/lib/squid/negotiate_kerberos_auth ] || skip "squid's auth helpers are missing"

NS_K=wgws-$$-kdc
C_KNET=10.201.4.1 K_ADDR=10.201.4.2
P6=2001:db8:201:3::2 C6=2001:db8:201:3::1 # the proxy's IPv6 address that drops silently
PNAME=proxy.wgws.test REALM=WGWS.TEST
SOCKS_PORT=1080 HTTPS_PROXY_PORT=3129
DIGEST_PW=digest%41pw-$$ NTLM_PW=ntlm-pw-$$ KRB_PW=krb-pw-$$ WRONG_PW=wrong-pw-$$
DANTE_PID=""

dump_logs() {
	[ -z "$SHIM_LOG" ] || logtail "$SHIM_LOG" 15
	[ -z "$SQUID_DIR" ] || logtail "$SQUID_DIR/cache.log" 10
	[ -z "$SQUID_DIR" ] || logtail "$SQUID_DIR/access.log" 5
	logtail "$T/danted.log" 10
	logtail "$T/krb5kdc.log" 10
	logtail "$T/kinit.log" 25
}

say "network: client, proxy, gateway, and the KDC beside the client; UDP out of the client blocked"
topology
netns_add "$NS_K"
veth "$NS_C" kdc0 "$C_KNET" fd00:201:4::1 "$NS_K" client0 "$K_ADDR" fd00:201:4::2
ip -n "$NS_C" addr add "$C6/64" dev proxy0 nodad
ip -n "$NS_P" addr add "$P6/64" dev client0 nodad
in_p nft -f - <<EOF
table inet wgws_drop6 {
	chain in {
		type filter hook input priority 0; policy accept;
		ip6 daddr $P6 tcp dport { $PROXY_PORT, $HTTPS_PROXY_PORT } counter drop
	}
}
EOF
mkdir -p "/etc/netns/$NS_C" "/etc/netns/$NS_P"
at_exit "rm -rf '/etc/netns/$NS_C' '/etc/netns/$NS_P'"
# The client: the proxy by name (IPv6 first), the KDC; the relay's name for socks5:// (the
# client resolves it, then asks dante for that address). The proxy: the relay for socks5h://.
cat >"/etc/netns/$NS_C/hosts" <<EOF
$P6 $PNAME
$P_CLIENT $PNAME
$K_ADDR kdc.wgws.test
$G_PROXY $GW_NAME
EOF
echo "$G_PROXY $GW_NAME" >"/etc/netns/$NS_P/hosts"
in_c ping -6 -n -q -c 1 -W 3 "$P6" >/dev/null || fail "no IPv6 between client and proxy"
order=$(in_c python3 -c "
import socket
print(' '.join(a[4][0] for a in socket.getaddrinfo('$PNAME', 3128, type=socket.SOCK_STREAM)))")
[ "${order%% *}" = "$P6" ] || fail "the resolver does not put $P6 first: $order"
ok "$PNAME resolves to: $order ($P6 drops TCP to the proxy ports)"
wg_up
block_client_udp
wg_endpoint_shim
certs_make
start_relay

# --- Kerberos: a KDC of our own (TCP only: the client's UDP is blocked) --------------------
K=$T/krb5
mkdir -p "$K"
cat >"$K/krb5.conf" <<EOF
[libdefaults]
	default_realm = $REALM
	dns_lookup_kdc = false
	dns_lookup_realm = false
	dns_canonicalize_hostname = false
	rdns = false
	udp_preference_limit = 1
[realms]
	$REALM = {
		kdc = $K_ADDR:88
	}
[domain_realm]
	.wgws.test = $REALM
EOF
cat >"$K/kdc.conf" <<EOF
[kdcdefaults]
	kdc_listen = $K_ADDR:88
	kdc_tcp_listen = $K_ADDR:88
[realms]
	$REALM = {
		database_name = $K/principal
		key_stash_file = $K/stash
		acl_file = $K/kadm5.acl
	}
[logging]
	kdc = FILE:$T/krb5kdc.log
EOF
: >"$K/kadm5.acl"
export KRB5_CONFIG=$K/krb5.conf KRB5_KDC_PROFILE=$K/kdc.conf KRB5CCNAME=FILE:$K/alice.cc
export KRB5RCACHETYPE=none
kdb5_util create -s -r "$REALM" -P "master-$$" >"$T/kdb5_util.log" 2>&1 ||
	fail "kdb5_util create: $(oneline "$(cat "$T/kdb5_util.log")")"
kadmin.local -r "$REALM" -q "addprinc -pw $KRB_PW alice" >"$T/kadmin.log" 2>&1 &&
	kadmin.local -r "$REALM" -q "addprinc -randkey HTTP/$PNAME" >>"$T/kadmin.log" 2>&1 &&
	kadmin.local -r "$REALM" -q "ktadd -k $K/proxy.keytab HTTP/$PNAME" >>"$T/kadmin.log" 2>&1 ||
	fail "kadmin.local: $(oneline "$(cat "$T/kadmin.log")")"
chown proxy:proxy "$K/proxy.keytab"
spawn_ns "$NS_K" "$T/krb5kdc.out" krb5kdc -n -r "$REALM"
kdc_listens() { ip netns exec "$NS_K" ss -Hltn "sport = :88" | grep -q .; }
wait_for 10 kdc_listens || fail "krb5kdc does not listen on $K_ADDR:88"
in_c env KRB5_TRACE="$T/kinit.log" kinit "alice@$REALM" <<<"$KRB_PW" >>"$T/kinit.log" 2>&1 ||
	fail "kinit alice: $(oneline "$(cat "$T/kinit.log")")"
ok "MIT KDC for $REALM in its own namespace; kinit alice over TCP: $(in_c klist 2>/dev/null |
	grep -c krbtgt) TGT"

# --- the cases ---------------------------------------------------------------------------------
CMDLINES=$T/cmdlines
: >"$CMDLINES"
# tunnel_up WHAT SHIM_ARGS...: a shim with SHIM_ARGS connects and a ping crosses the tunnel;
# its command line is kept for the password check.
tunnel_up() {
	local what=$1
	shift
	start_shim --pin "$PIN" "$@"
	ps -ww -o args= -p "$SHIM_PID" >>"$CMDLINES"
	bg_ping_start "$T/bgping-$SHIM_N.log"
	wait_for 15 shim_connected || {
		bg_ping_stop
		fail "$what: the shim did not connect: $(oneline "$(grep -m2 warning "$SHIM_LOG")")"
	}
	wait_for 15 grep -q "bytes from" "$BGPING_LOG" || fail "$what: connected but no ping across"
	bg_ping_stop
	ping_ok 5 5 || fail "$what: ping $PING_RX/$PING_TX"
	ok "$what: connected, ping $PING_RX/$PING_TX"
}
# squid_user USER: squid's access log has a CONNECT by USER.
squid_user() { grep -q "CONNECT $GW_NAME:443 $1 " "$SQUID_DIR/access.log"; }
restart_squid() {
	[ -z "$SQUID_PID" ] || stop_squid
	start_squid 900 auth
}

say "squid with Digest authentication"
SQUID_AUTH="auth_param digest program /usr/lib/squid/digest_file_auth $T/digest.passwd
auth_param digest children 1 startup=0 idle=1
auth_param digest realm wgws-test
acl authed proxy_auth REQUIRED
http_access deny !authed
http_access allow CONNECT SSL_ports"
echo "alice:$DIGEST_PW" >"$T/digest.passwd"
chown proxy:proxy "$T/digest.passwd"
restart_squid
(umask 077 && echo "$DIGEST_PW" >"$T/digest.pw" && echo "$WRONG_PW" >"$T/wrong.pw" &&
	echo "$NTLM_PW" >"$T/ntlm.pw")
start_shim --pin "$PIN" --proxy "http://alice@$P_CLIENT:$PROXY_PORT" \
	--proxy-password-file "$T/wrong.pw"
ps -ww -o args= -p "$SHIM_PID" >>"$CMDLINES"
bg_ping_start "$T/bgping-wrong.log"
pat="the proxy at $P_CLIENT:$PROXY_PORT refused the credentials of user 'alice' (407 Proxy Authentication Required; it offers Digest)"
wait_for 15 grep -qF "$pat" "$SHIM_LOG" || {
	bg_ping_stop
	fail "a wrong Digest password: no '$pat'"
}
refused_twice() { [ "$(log_count "$SHIM_LOG" "refused the credentials")" -ge 2 ]; }
wait_for 15 refused_twice || fail "a wrong Digest password is not retried"
bg_ping_stop
alive "$SHIM_PID" || fail "a wrong password: the shim exited"
[ "$(log_count "$SHIM_LOG" "connected to relay")" = 0 ] || fail "a wrong password: connected"
ok "a wrong Digest password: $(grep -m1 -F "$pat" "$SHIM_LOG" | sed 's/.*: the proxy/the proxy/')"
stop_shim
tunnel_up "Digest" --proxy "http://alice@$P_CLIENT:$PROXY_PORT" \
	--proxy-password-file "$T/digest.pw"
stop_shim
squid_user alice || fail "Digest: squid logged no CONNECT by alice"
ok "Digest: squid logged the CONNECT as alice"

say "squid with NTLM authentication (ntlm_fake_auth)"
SQUID_AUTH="auth_param ntlm program /usr/lib/squid/ntlm_fake_auth
auth_param ntlm children 1 startup=0 idle=1
acl authed proxy_auth REQUIRED
http_access deny !authed
http_access allow CONNECT SSL_ports"
restart_squid
tunnel_up "NTLM" --proxy "http://WGWS%5Cbob@$P_CLIENT:$PROXY_PORT" \
	--proxy-password-file "$T/ntlm.pw"
stop_shim
# ntlm_fake_auth takes the user from the client's Type 3 message: squid logs it only when
# the three-message handshake ran.
grep -qiE "TCP_TUNNEL/200 .* CONNECT $GW_NAME:443 [^ -]*bob" "$SQUID_DIR/access.log" ||
	fail "NTLM: squid logged no CONNECT by bob: $(oneline "$(tail -3 "$SQUID_DIR/access.log")")"
ok "NTLM: squid logged the CONNECT as $(grep -m1 -oiE "CONNECT $GW_NAME:443 [^ ]*bob" \
	"$SQUID_DIR/access.log" | awk '{print $3}') (Type 1, 2, 3 exchanged)"

say "squid with Negotiate (Kerberos) against the KDC, by name, the ticket from kinit"
SQUID_AUTH="auth_param negotiate program /usr/lib/squid/negotiate_kerberos_auth -k $K/proxy.keytab -s HTTP/$PNAME@$REALM
auth_param negotiate children 1 startup=0 idle=1
acl authed proxy_auth REQUIRED
http_access deny !authed
http_access allow CONNECT SSL_ports"
restart_squid
tunnel_up "Negotiate" --proxy "http://$PNAME:$PROXY_PORT"
stop_shim
squid_user "alice@$REALM" || fail "Negotiate: squid logged no CONNECT by alice@$REALM"
in_c klist 2>/dev/null | grep -q "HTTP/$PNAME@$REALM" ||
	fail "Negotiate: no service ticket for HTTP/$PNAME in the cache"
ok "Negotiate: squid logged the CONNECT as alice@$REALM; the cache holds HTTP/$PNAME's ticket"

say "Happy Eyeballs for the proxy: $PNAME's IPv6 address drops, its IPv4 one works"
# The Negotiate squid still runs; the time from the first datagram to the open tunnel.
drops6() { in_p nft list table inet wgws_drop6 | awk '/counter/ { print $(NF-3) }'; }
before=$(drops6)
SHIM_N=$((SHIM_N + 1))
SHIM_LOG=$T/shim-$SHIM_N.log
spawn_ns "$NS_C" "$SHIM_LOG" "$WGWS_BUILD/wgws-shim" --listen "127.0.0.1:$SHIM_PORT" \
	--relay "wss://$GW_NAME/wg" --proxy "http://$PNAME:$PROXY_PORT" --pin "$PIN" -v
SHIM_PID=$SPAWNED
wait_for 5 shim_bound || fail "shim does not listen"
t0=$(now_ms)
bg_ping_start "$T/bgping-he.log"
wait_for 10 shim_connected || fail "Happy Eyeballs: the shim did not connect"
ms=$(($(now_ms) - t0))
bg_ping_stop
drops=$(($(drops6) - before))
[ "$drops" -gt 0 ] || fail "Happy Eyeballs: nothing was tried (or dropped) on $P6"
[ "$ms" -lt 1000 ] || fail "Happy Eyeballs: the tunnel took $ms ms (1000 allowed)"
ok "Happy Eyeballs: connected $ms ms after the first datagram; $drops packets to $P6 dropped"
stop_shim

say "squid as an https:// proxy, its certificate from its own CA (--proxy-ca)"
"$WGWS_TOP/certs/mkcert.sh" "$PNAME" "$P_CLIENT" -o "$T/pcerts" --days 2 >/dev/null ||
	fail "mkcert.sh for the proxy failed"
chown -R proxy:proxy "$T/pcerts"
SQUID_EXTRA="https_port $P_CLIENT:$HTTPS_PROXY_PORT tls-cert=$T/pcerts/$PNAME.crt tls-key=$T/pcerts/$PNAME.key"
SQUID_AUTH="http_access allow CONNECT SSL_ports"
restart_squid
https_port_up() { in_p ss -Hltn "sport = :$HTTPS_PROXY_PORT" | grep -q .; }
wait_for 10 https_port_up || fail "squid does not listen on $HTTPS_PROXY_PORT"
tunnel_up "https:// proxy" --proxy "https://$PNAME:$HTTPS_PROXY_PORT" \
	--proxy-ca "$T/pcerts/$PNAME.crt"
stop_shim
start_shim --pin "$PIN" --proxy "https://$PNAME:$HTTPS_PROXY_PORT"
bg_ping_start "$T/bgping-httpsca.log"
wait_for 15 grep -q "the proxy at $PNAME:$HTTPS_PROXY_PORT" "$SHIM_LOG" ||
	fail "https:// proxy without its CA: no message naming it"
bg_ping_stop
[ "$(log_count "$SHIM_LOG" "connected to relay")" = 0 ] || fail "an unverified proxy was used"
grep -qF "the proxy at $PNAME:$HTTPS_PROXY_PORT ($P_CLIENT) is not trusted" "$SHIM_LOG" ||
	fail "https:// proxy without its CA: $(oneline "$(grep -m1 "the proxy at" "$SHIM_LOG")")"
ok "https:// proxy without --proxy-ca: $(grep -m1 "the proxy at" "$SHIM_LOG" |
	sed 's/.*: the proxy/the proxy/')"
stop_shim
stop_squid
SQUID_EXTRA=""

say "dante as a SOCKS5 proxy"
cat >"$T/danted.conf" <<EOF
logoutput: $T/danted.log
internal: $P_CLIENT port = $SOCKS_PORT
external: $P_GNET
socksmethod: username none
clientmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {
	from: 0.0.0.0/0 to: 0.0.0.0/0
}
socks pass {
	from: 0.0.0.0/0 to: $G_PROXY/32 port = 443
	command: connect
	log: connect error
}
socks block {
	from: 0.0.0.0/0 to: 0.0.0.0/0
	log: connect error
}
EOF
spawn_ns "$NS_P" "$T/danted.out" danted -f "$T/danted.conf" -p "$T/danted.pid" -N 1
DANTE_PID=$SPAWNED
dante_listens() { in_p ss -Hltn "sport = :$SOCKS_PORT" | grep -q .; }
wait_for 10 dante_listens || fail "danted does not listen on $P_CLIENT:$SOCKS_PORT"
tunnel_up "socks5:// (the client resolves $GW_NAME)" --proxy "socks5://$P_CLIENT:$SOCKS_PORT"
stop_shim
# socks5h: only the proxy knows the relay's name.
sed -i "/ $GW_NAME\$/d" "/etc/netns/$NS_C/hosts"
! in_c getent hosts "$GW_NAME" >/dev/null || fail "the client still resolves $GW_NAME"
tunnel_up "socks5h:// (only dante resolves $GW_NAME)" --proxy "socks5h://$P_CLIENT:$SOCKS_PORT"
stop_shim
n=$(grep -c "pass.*$G_PROXY.443" "$T/danted.log" || true)
[ "$n" -ge 2 ] || fail "dante logged $n connections to $G_PROXY:443, expected 2"
ok "dante logged $n SOCKS5 connections to $G_PROXY:443"
stop_pid "$DANTE_PID" TERM 5

say "no password in any ps output or shim log"
for pw in "$DIGEST_PW" "$NTLM_PW" "$KRB_PW" "$WRONG_PW"; do
	! grep -qF "$pw" "$CMDLINES" || fail "a password is in a shim's command line"
	! grep -qF "$pw" "$T"/shim-*.log || fail "a password is in a shim log"
done
ok "$(wc -l <"$CMDLINES") shim command lines and $(ls "$T"/shim-*.log | wc -l) shim logs hold" \
	"none of the 4 passwords"
echo "PASS test_proxyauth"
