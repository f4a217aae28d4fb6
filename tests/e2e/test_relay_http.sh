#!/bin/bash
# SPDX-License-Identifier: MIT
# The relay's HTTP face, without WireGuard: /healthz 200, other paths 404, the upgrade on /wg
# with subprotocol wgws (101) and nowhere else, records forwarded both ways to a UDP stand-in,
# a 127.0.0.1 listener that really is 127.0.0.1 only, metrics, and SIGTERM with an open
# connection (client sees close 1001, relay exits 0). Root: inside a private namespace;
# otherwise on free high ports of the host's loopback.
set -eu
. "$(dirname "$0")/lib.sh"
need_cmd curl ss openssl
need_bins wgws-relay

loopback_sandbox http
base=https://127.0.0.1:$PORT
URL=wss://127.0.0.1:$PORT/wg
http_code() { run curl -sk -m 3 -o /dev/null -w '%{http_code}' "$@" || true; }
metric() {
	run curl -s -m 3 "http://127.0.0.1:$MPORT/metrics" |
		awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? "absent" : v) }'
}

certs_make
SINK_LOG=$T/udpsink.log
spawn "$SINK_LOG" "${RUN[@]}" "$PY" "$TOOLS/udpsink.py" "127.0.0.1:$UPORT" --marker deadbeef --echo \
	--log
SINK_PID=$SPAWNED
wait_for 5 grep -q listening "$SINK_LOG" || fail "udpsink did not start: $(cat "$SINK_LOG")"
RELAY_LOG=$T/relay.log
spawn "$RELAY_LOG" "${RUN[@]}" "$WGWS_BUILD/wgws-relay" --listen "127.0.0.1:$PORT" --cert "$CERT" \
	--key "$KEY" --metrics "127.0.0.1:$MPORT" --wg "127.0.0.1:$UPORT"
RELAY_PID=$SPAWNED
healthz_ok() { [ "$(http_code "$base/healthz")" = 200 ]; }
wait_for 10 healthz_ok || {
	alive "$RELAY_PID" || fail "relay exited at start-up"
	fail "relay /healthz did not answer 200 within 10 s"
}
# ALPN (TLS runs in the relay's handshake thread, not in lws): http/1.1 when offered,
# nothing when only h2 is.
alpn() { run openssl s_client -connect "127.0.0.1:$PORT" -alpn "$1" </dev/null 2>/dev/null |
	sed -n 's/^ALPN protocol: //p; s/^No ALPN negotiated$/none/p'; }
[ "$(alpn h2,http/1.1)" = http/1.1 ] || fail "ALPN for h2,http/1.1: '$(alpn h2,http/1.1)'"
[ "$(alpn h2)" = none ] || fail "ALPN for h2 alone: '$(alpn h2)'"
ok "ALPN: http/1.1 chosen when offered, none for h2 alone"
ok "/healthz → 200 (relay pid $RELAY_PID${NS:+, namespace $NS}, port $PORT)"

if [ "$(id -u)" = 0 ]; then
	user=$(ps -o user= -p "$RELAY_PID" | tr -d ' ')
	[ "$user" = wgws ] || fail "the relay started as root runs as '$user', not wgws"
	unreachable_by_nobody "$RELAY_PID"
	ok "started as root, the relay runs as wgws once its ports are bound; nobody can signal" \
		"or ptrace it"
fi
# Confined whatever it started as: no capabilities, no new privileges, a seccomp filter.
status() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$RELAY_PID/status"; }
st="CapEff $(status CapEff) CapPrm $(status CapPrm) NoNewPrivs $(status NoNewPrivs) Seccomp $(status Seccomp)"
[ "$st" = "CapEff 0000000000000000 CapPrm 0000000000000000 NoNewPrivs 1 Seccomp 2" ] ||
	fail "the relay is not confined: $st"
ok "confined: $st"

# Inside unshare -Urn (make bench without root) uid 0 may not call setgroups: --user root
# there means "stay", and the relay serves; without it, it must refuse to start.
if unshare -Urn true 2>/dev/null; then
	out=$(unshare -Urn sh -c 'ip link set lo up
		"$1" --listen 127.0.0.1:8443 --cert "$2" --key "$3" --user root >"$4" 2>&1 &
		pid=$!
		for i in $(seq 50); do
			code=$(curl -sk -m 1 -o /dev/null -w "%{http_code}" https://127.0.0.1:8443/healthz) &&
				[ "$code" = 200 ] && break
			sleep 0.1
		done
		kill "$pid"; wait "$pid"; echo "healthz $code"' sh "$WGWS_BUILD/wgws-relay" "$CERT" "$KEY" \
		"$T/relay-userns.log" 2>&1) || true
	[ "$out" = "healthz 200" ] || fail "relay --user root in unshare -Urn: $out: $(oneline "$(cat "$T/relay-userns.log")")"
	grep -q "running as root (uid 0), as asked" "$T/relay-userns.log" ||
		fail "relay --user root: $(oneline "$(cat "$T/relay-userns.log")")"
	rc=0
	unshare -Urn sh -c 'ip link set lo up && exec "$1" --listen 127.0.0.1:8443 --cert "$2" \
		--key "$3"' sh "$WGWS_BUILD/wgws-relay" "$CERT" "$KEY" >"$T/relay-userns2.log" 2>&1 ||
		rc=$?
	[ "$rc" != 0 ] && grep -q "cannot drop privileges to wgws" "$T/relay-userns2.log" ||
		fail "relay in unshare -Urn without --user root: exit $rc: $(oneline "$(cat "$T/relay-userns2.log")")"
	ok "in unshare -Urn: --user root stays root and serves; the default (wgws) refuses to start"
fi

for p in / /other /wg; do
	code=$(http_code "$base$p")
	case "$p" in
	/wg) case "$code" in 200 | 101) fail "plain GET $p → $code" ;; esac ;;
	*) [ "$code" = 404 ] || fail "GET $p → $code, expected 404" ;;
	esac
	ok "GET $p (no upgrade) → $code"
done

out=$(run "$PY" "$TOOLS/wsraw.py" --wait 2 "$URL" "$(rec_hex 4 64 deadbeef)" 2>&1) || true
grep -qx "status 101" <<<"$out" || fail "upgrade on /wg with wgws: $(oneline "$out")"
ok "upgrade on /wg with Sec-WebSocket-Protocol: wgws → 101"
grep -qx "recv binary 66" <<<"$out" ||
	fail "the datagram echoed by the UDP peer did not come back as one 66-byte message: $(oneline "$out")"
ok "a 64-byte record went to UDP 127.0.0.1:$UPORT and its echo came back as one message"

# One message of 30 records in runs of one length (the relay sends a run as one UDP GSO
# message): every datagram must arrive alone, whole, in order.
recs="" want=""
i=0
for spec in 10:100 6:64 1:148 7:1412 1:32 5:1412; do
	for ((k = 0; k < ${spec%%:*}; k++)); do
		i=$((i + 1))
		len=${spec#*:}
		type=4
		[ "$len" = 148 ] && type=1
		recs=$recs$(rec_hex "$type" "$len" "$(printf '%08x' $((0xa000 + i)))")
		want="$want$len $(printf '%08x' $((0xa000 + i)))"$'\n'
	done
done
mark=$(grep -c '^dgram ' "$SINK_LOG" || true)
out=$(run "$PY" "$TOOLS/wsraw.py" --wait 2 -q "$URL" "$recs" 2>&1) || true
grep -qx "status 101" <<<"$out" || fail "upgrade for the 30-record message: $(oneline "$out")"
wait_for 3 sh -c "[ \$(grep -c '^dgram ' '$SINK_LOG') -ge $((mark + 30)) ]" ||
	fail "30 records in one message: only $(($(grep -c '^dgram ' "$SINK_LOG") - mark)) datagrams arrived"
got=$(grep '^dgram ' "$SINK_LOG" | tail -n +$((mark + 1)) | head -n 30 | cut -d' ' -f2-)
[ "$got"$'\n' = "$want" ] || fail "30 records: datagrams differ from the records (LEN MARKER): $(diff <(echo "$want") <(echo "$got") | tr '\n' ' ')"
ok "30 records in one message (runs of 100, 64, 148, 1412, 32, 1412 bytes): 30 datagrams, each whole, in order"

out=$(run "$PY" "$TOOLS/wsraw.py" --wait 1 "wss://127.0.0.1:$PORT/other" 2>&1) && rc=0 || rc=$?
[ "$rc" = 3 ] || fail "upgrade on /other was not refused (rc $rc): $(oneline "$out")"
grep -qx "status 404" <<<"$out" || fail "upgrade on /other: expected 404: $(oneline "$out")"
ok "upgrade on /other refused with 404"

out=$(run "$PY" "$TOOLS/wsraw.py" --protocol '' --wait 1 "$URL" 2>&1) && rc=0 || rc=$?
grep -qx "status 400" <<<"$out" || fail "upgrade without subprotocol: expected 400: $(oneline "$out")"
ok "upgrade on /wg without Sec-WebSocket-Protocol: wgws refused with 400"

# Pipelined requests (regression: lws 4.1.6 spun the whole loop at 100% on requests left in a
# kept-alive connection's buffer; now every plain HTTP answer closes its connection).
out=$(run "$PY" - "$PORT" <<'PYEOF' 2>&1
import socket, ssl, sys
port = int(sys.argv[1])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
for payload in (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nPOST /x HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 2\r\n\r\n{}",
                b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello"
                b"\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 50):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=3))
    s.sendall(payload)
    buf = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    print("answers", buf.count(b"HTTP/1.1 "))
PYEOF
) || fail "pipelined requests: $(oneline "$out")"
[ "$(http_code "$base/healthz")" = 200 ] || fail "the relay stopped answering after pipelined requests"
ok "pipelined requests: one answer per connection, then closed; the relay still answers"

# only_loopback PORT WHAT: every TCP listener on PORT is 127.0.0.1:PORT (none on 0.0.0.0/[::]).
only_loopback() {
	local l listeners
	listeners=$(run ss -Hltn "sport = :$1" | awk '{print $4}' | sort -u | tr '\n' ' ')
	case " $listeners " in
	"  ") fail "ss shows no $2 listener on port $1" ;;
	*" 0.0.0.0:"* | *"[::]:"* | *" *:"*) fail "$2 bound to 127.0.0.1 also listens on: $listeners" ;;
	esac
	for l in $listeners; do [ "$l" = "127.0.0.1:$1" ] || fail "unexpected $2 listener $l"; done
	ok "$2 listeners on port $1: $listeners(127.0.0.1 only)"
}
only_loopback "$PORT" relay
only_loopback "$MPORT" metrics

act=$(metric wgws_relay_connections_active)
[ "$act" != absent ] || fail "metrics lack wgws_relay_connections_active"
ok "metrics: wgws_relay_connections_active $act," \
	"ws_to_udp $(metric 'wgws_relay_packets_total{dir="ws_to_udp"}')," \
	"udp_to_ws $(metric 'wgws_relay_packets_total{dir="udp_to_ws"}')"
# A strict parser (Debian's python3-prometheus-client), and HELP and TYPE for every family.
out=$(run curl -s -m 3 "http://127.0.0.1:$MPORT/metrics" | /usr/bin/python3 \
	"$TOOLS/promcheck.py" wgws-relay) || fail "metrics: $out"
ok "$out"
for want in wgws_relay_build_info process_resident_memory_bytes process_open_fds \
	process_cpu_seconds_total process_start_time_seconds process_max_fds; do
	run curl -s -m 3 "http://127.0.0.1:$MPORT/metrics" | grep -q "^$want" ||
		fail "metrics lack $want"
done
ok "build_info and process_* (RSS, fds, CPU seconds, start time) are there"

stop_pid "$SINK_PID" TERM 3
grep -q "marked [1-9]" "$SINK_LOG" || fail "UDP peer saw no marked datagram: $(tail -n 1 "$SINK_LOG")"
ok "UDP peer: $(tail -n 1 "$SINK_LOG")"

say "SIGTERM with an open WebSocket connection"
WS_LOG=$T/ws-term.log
spawn "$WS_LOG" "${RUN[@]}" "$PY" "$TOOLS/wsraw.py" --wait 15 "$URL"
WS_PID=$SPAWNED
wait_for 5 grep -qx "status 101" "$WS_LOG" || fail "no upgrade: $(cat "$WS_LOG")"
one_active() { [ "$(metric wgws_relay_connections_active)" = 1 ]; }
wait_for 3 one_active ||
	fail "connections_active is $(metric wgws_relay_connections_active) with one open connection"
ok "connections_active = 1 with one client"
stop_pid "$RELAY_PID" TERM 5
relay_rc=$STOP_RC
stop_pid "$WS_PID" TERM 5
grep -qx "close 1001" "$WS_LOG" || fail "client did not see close 1001: $(tr '\n' ' ' <"$WS_LOG")"
ok "client saw close 1001"
[ "$relay_rc" = 0 ] || fail "relay exited with status $relay_rc after SIGTERM"
ok "relay exited 0"
echo "PASS test_relay_http"
