#!/bin/bash
# SPDX-License-Identifier: MIT
# Who may use the relay: --tokens FILE (names and SHA-256 hashes, not tokens). Through squid,
# the client's UDP blocked: no token, a wrong token, and a token revoked by SIGHUP are
# refused (401; the revoked token's open tunnel closed with 1008) and counted; the right
# token (--token-file) carries a ping; a token's tunnel limit holds; the token is in no
# command line, no shim log and no relay log, and the relay's file holds only its hash.
set -eu
. "$(dirname "$0")/lib.sh"
need_root
need_cmd wireguard-go wg nft squid curl ping sha256sum
need_bins wgws-relay wgws-shim

corporate_network
ALICE=alice-$(head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 24)
BOB=bob-$(head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 24)
hash() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
TOK=$T/tokens
printf '# name hash max-tunnels\nalice %s 1\nbob %s\n' "$(hash "$ALICE")" "$(hash "$BOB")" >"$TOK"
# SIGHUP reloads run as wgws: the tokens file and the key readable by it (DEPLOY.md)
chgrp wgws "$TOK" "$KEY" && chmod 640 "$TOK" "$KEY"
(umask 077 && echo "$ALICE" >"$T/alice.tok" && echo "$BOB" >"$T/bob.tok" &&
	echo "wrong-token-$$-0123456789" >"$T/wrong.tok")
start_relay --tokens "$TOK"
rejected() { relay_metric 'wgws_relay_connections_rejected_total{reason="token"}'; }

# refused NAME PATTERN SHIM-ARGS...: a shim with SHIM-ARGS never connects and logs PATTERN.
refused() {
	local name=$1 pat=$2 before
	shift 2
	before=$(rejected)
	start_shim --pin "$PIN" "$@"
	bg_ping_start "$T/bgping-$SHIM_N.log"
	wait_for 10 grep -qF "$pat" "$SHIM_LOG" || { bg_ping_stop; fail "$name: no '$pat'"; }
	bg_ping_stop
	[ "$(log_count "$SHIM_LOG" "connected to relay")" = 0 ] || fail "$name: connected"
	[ "$(rejected)" -gt "$before" ] || fail "$name: rejected{token} did not grow"
	ok "$name: $(grep -m1 -F "$pat" "$SHIM_LOG" | sed 's/^.*warning: //'); rejected{token} $before -> $(rejected)"
	stop_shim
}

say "no token, a wrong token"
refused "no token" "the relay wants a token: give it with --token-file (401"
refused "a wrong token" "the relay refused the token of --token-file (401" \
	--token-file "$T/wrong.tok"

say "the right token, through squid"
start_shim --pin "$PIN" --token-file "$T/alice.tok"
ps -ww -o args= -p "$SHIM_PID" >"$T/cmdline"
bg_ping_start "$T/bgping-alice.log"
wait_shim_connected 15
wait_for 15 grep -q "bytes from" "$BGPING_LOG" || fail "no ping through alice's tunnel"
bg_ping_stop
grep -q "tunnel .*: open, WireGuard endpoint .*, token alice$" "$RELAY_LOG" ||
	fail "the relay does not log the tunnel's token name"
expect "token_connections{alice}" "$(relay_metric 'wgws_relay_token_connections{token="alice"}')" 1
ALICE_SHIM=$SHIM_PID ALICE_LOG=$SHIM_LOG
ok "alice's token: ping through the tunnel; the relay logs 'token alice'"

say "alice's limit is 1 tunnel: a second one is refused"
rc=0
out=$(in_c "$WGWS_BUILD/wgws-shim" --check --relay "wss://$GW_NAME/wg" \
	--proxy "http://$P_CLIENT:$PROXY_PORT" --pin "$PIN" --token-file "$T/alice.tok" 2>&1) || rc=$?
[ "$rc" = 1 ] && grep -q "503" <<<"$out" || fail "a second tunnel with alice's token: exit $rc: $(oneline "$out")"
expect "rejected{token_limit}" "$(relay_metric 'wgws_relay_connections_rejected_total{reason="token_limit"}')" 1
out=$(in_c "$WGWS_BUILD/wgws-shim" --check --relay "wss://$GW_NAME/wg" \
	--proxy "http://$P_CLIENT:$PROXY_PORT" --pin "$PIN" --token-file "$T/bob.tok" 2>&1) ||
	fail "bob's token: $(oneline "$out")"
ok "alice's second tunnel refused (503, token_limit); bob's token works beside it"

say "alice revoked: SIGHUP closes her tunnel with 1008, and she is refused from then on"
printf 'bob %s\n' "$(hash "$BOB")" >"$TOK"
before=$(rejected)
kill -HUP "$RELAY_PID"
wait_for 5 grep -q "reloaded: .*tokens 2 -> 1" "$RELAY_LOG" || fail "no reload of the tokens logged"
wait_for 5 grep -q "relay closed the WebSocket (code 1008)" "$ALICE_LOG" ||
	fail "alice's open tunnel was not closed with 1008"
expect "token_revoked_total" "$(relay_metric wgws_relay_token_revoked_total)" 1
bg_ping_start "$T/bgping-revoked.log"
wait_for 10 grep -qF "the relay refused the token of --token-file (401" "$ALICE_LOG" ||
	{ bg_ping_stop; fail "alice reconnected after her token was revoked"; }
bg_ping_stop
[ "$(rejected)" -gt "$before" ] || fail "the revoked token's reconnection was not counted"
alive "$ALICE_SHIM" || fail "the shim exited"
ok "closed with 1008, then refused (401), counted: revoked 1, rejected{token} $before -> $(rejected)"
stop_shim

say "4,096 tokens: a slow scraper still gets the whole metrics body"
"$PY" - "$T/many" <<'PYEOF'
import hashlib, sys
with open(sys.argv[1], "w") as f:
    for i in range(4096):
        f.write("token%04d %s 2\n" % (i, hashlib.sha256(b"t%d-secret-0123456789" % i).hexdigest()))
PYEOF
cp "$TOK" "$T/tokens.saved"
cat "$T/many" >"$TOK"
kill -HUP "$RELAY_PID"
wait_for 5 grep -q "reloaded: .*tokens 1 -> 4096" "$RELAY_LOG" || fail "4,096 tokens not reloaded"
# Small send buffers in the gateway's namespace (new sockets only): the relay's one send
# cannot take the whole body, whatever loopback's autotuning would otherwise allow.
wmem=$(in_g sysctl -n net.ipv4.tcp_wmem)
in_g sysctl -qw net.ipv4.tcp_wmem="4096 4096 4096"
got=$(in_g "$PY" - "$METRICS" <<'PYEOF'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow scraper: a small window
s.connect((host, int(port)))
s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
time.sleep(1.5)  # the relay's send finds the window full long before the end
data = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    data += d
head, body = data.split(b"\r\n\r\n", 1)
clen = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
last = body.rstrip(b"\n").split(b"\n")[-1].decode()
print(clen, len(body), last)
PYEOF
)
in_g sysctl -qw net.ipv4.tcp_wmem="$wmem"
read -r clen blen last <<<"$got"
[ "$clen" = "$blen" ] && [ "$clen" -gt 200000 ] || fail "metrics body: content-length $clen, got $blen"
[ "$last" = 'wgws_relay_token_connections{token="token4095"} 0' ] || fail "the last line: $last"
cp "$T/tokens.saved" "$TOK"
kill -HUP "$RELAY_PID"
wait_for 5 grep -q "reloaded: .*tokens 4096 -> 1" "$RELAY_LOG" || fail "tokens not restored"
ok "$blen bytes of $clen through 4 KiB buffers, ending with token4095's line"

say "the token is in no command line and no log; the relay's file holds only hashes"
for t in "$ALICE" "$BOB"; do
	! grep -qF "$t" "$T/cmdline" || fail "a token in the shim's command line"
	! grep -qF "$t" "$T"/shim-*.log "$RELAY_LOG" || fail "a token in a log"
	! grep -qF "$t" "$TOK" || fail "a token in the relay's file"
done
ok "no token in argv, the shims' logs, the relay's log or its tokens file"
echo "PASS test_tokens"
