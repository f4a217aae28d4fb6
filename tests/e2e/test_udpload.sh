#!/bin/bash
# SPDX-License-Identifier: MIT
# The benchmark load tool (bench/udpload.c) works, directly over loopback: 1,000 packets at a
# fixed rate arrive exactly (no loss, reordering or duplicate) and were paced, not burst; the
# sink's sequence accounting catches a crafted reordering, a duplicate and three foreign
# datagrams; an echo run over IPv6 (IPv4 without ::1) gives 1,000 RTTs with ordered
# percentiles; --wg-shape datagrams start 04 00 00 00, ping --hist writes a CDF and --trace a
# line per packet; an
# open-loop run reports a positive rate; bad arguments exit 2 with a message,
# an address that cannot be bound exits 1. Root: inside a private namespace; otherwise on the
# host's loopback (the sink binds port 0 and says which port it got).
set -eu
. "$(dirname "$0")/lib.sh"
need_bins udpload
UL=$WGWS_BUILD/udpload

loopback_sandbox udpload

# kv KEY LINE: the value of KEY=… in a result line (empty when absent).
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }
# result_of FILE: the 'result …' line of a udpload output file.
result_of() { grep '^result ' "$1" || true; }
# expect LINE KEY=VALUE...: fail unless every KEY has exactly VALUE in LINE.
expect() {
	local line=$1 kvp k v got
	shift
	for kvp; do
		k=${kvp%%=*} v=${kvp#*=}
		got=$(kv "$k" "$line")
		[ "$got" = "$v" ] || fail "$k=$got, expected $v: $line"
	done
}
# start_sink NAME HOST ARGS...: udpload sink on HOST, port 0, in the sandbox; sets SINK_PID,
# SINK_LOG, SINK_PORT.
start_sink() {
	local name=$1 host=$2
	shift 2
	SINK_LOG=$T/$name.log
	spawn "$SINK_LOG" "${RUN[@]}" "$UL" sink --listen "$host:0" -q "$@"
	SINK_PID=$SPAWNED
	wait_for 5 grep -q "listening on" "$SINK_LOG" || fail "sink did not start: $(cat "$SINK_LOG")"
	SINK_PORT=$(sed -n 's/.*listening on .*:\([0-9][0-9]*\).*/\1/p' "$SINK_LOG")
	[ -n "$SINK_PORT" ] || fail "sink did not say its port: $(cat "$SINK_LOG")"
}
sink_ended() { ! alive "$SINK_PID"; }
# sink_result [SIGNAL]: stop the sink with SIGNAL, or without one wait (5 s) for it to end by
# itself (--idle); fail unless it exited 0 with a result line, which goes into $RES.
sink_result() {
	if [ -n "${1:-}" ]; then
		stop_pid "$SINK_PID" "$1" 5
	else
		wait_for 5 sink_ended || fail "sink did not end after --idle"
		stop_pid "$SINK_PID" TERM 1
	fi
	[ "$STOP_RC" = 0 ] || fail "sink exited $STOP_RC: $(oneline "$(cat "$SINK_LOG")")"
	RES=$(result_of "$SINK_LOG")
	[ -n "$RES" ] || fail "sink printed no result line: $(oneline "$(cat "$SINK_LOG")")"
}

say "1,000 packets at 5,000 packets/s over 127.0.0.1"
start_sink sink1 127.0.0.1 --idle 2
out=$(run "$UL" send --to "127.0.0.1:$SINK_PORT" --size 200 --rate 5000 --count 1000 -q) ||
	fail "send exited $?: $(oneline "$out")"
snd=$(grep '^result ' <<<"$out") || fail "send printed no result line: $(oneline "$out")"
expect "$snd" sent=1000 bytes=200000 refused=0
el=$(kv elapsed_s "$snd")
awk -v e="$el" 'BEGIN { exit !(e >= 0.19 && e < 2) }' ||
	fail "1,000 packets at 5,000/s took $el s, expected ~0.2 s (paced, not burst)"
ok "sent 1,000 x 200 B in $el s ($(kv pps "$snd") pps)"
sink_result
expect "$RES" received=1000 bytes=200000 lost=0 reordered=0 dup=0 late=0 foreign=0 runs=1
ok "sink: received=1000 lost=0 reordered=0 dup=0 foreign=0 ($(kv pps "$RES") pps)"

say "crafted datagrams: sequence 0 1 3 2 2, plus 3 foreign ones"
start_sink sink2 127.0.0.1 --idle 2
run "$PY" - "$SINK_PORT" <<'EOF' || fail "could not send the crafted datagrams"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dst = ("127.0.0.1", int(sys.argv[1]))
hdr = lambda seq, magic=0x55444C31: struct.pack(">IIQQ", magic, 7, seq, 0)
for seq in (0, 1, 3, 2, 2):
    s.sendto(hdr(seq) + bytes(40), dst)
s.sendto(b"short", dst)                     # shorter than the header
s.sendto(hdr(4, 0xDEADBEEF), dst)           # wrong magic
s.sendto(hdr(1 << 60), dst)                 # an impossible sequence number
EOF
sink_result
expect "$RES" received=5 lost=0 reordered=1 dup=1 foreign=3 runs=1
ok "sink: received=5 lost=0 reordered=1 dup=1 foreign=3"

host=127.0.0.1
if run "$PY" -c 'import socket; socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).bind(("::1", 0))' \
	2>/dev/null; then
	host='[::1]'
fi
say "echo: ping --window 8, 1,000 packets, over $host"
start_sink echo "$host" --echo
out=$(run "$UL" ping --to "$host:$SINK_PORT" --size 100 --window 8 --count 1000 -q) ||
	fail "ping exited $?: $(oneline "$out")"
png=$(grep '^result ' <<<"$out") || fail "ping printed no result line: $(oneline "$out")"
expect "$png" sent=1000 received=1000 lost=0 dup=0 foreign=0
awk -v a="$(kv min_us "$png")" -v b="$(kv p50_us "$png")" -v c="$(kv p99_us "$png")" \
	-v d="$(kv p999_us "$png")" -v e="$(kv max_us "$png")" \
	'BEGIN { exit !(a > 0 && a <= b && b <= c && c <= d && d <= e && e < 1000000) }' ||
	fail "RTT percentiles out of order: $png"
ok "1,000 RTTs: p50 $(kv p50_us "$png") us <= p99 $(kv p99_us "$png") us <= max $(kv max_us "$png") us"
sink_result TERM
expect "$RES" received=1000 echoed=1000 echo_errors=0 lost=0
ok "echo sink: received=1000 echoed=1000"

say "--wg-shape: WireGuard data-shaped datagrams; ping --hist writes the RTT CDF"
start_sink wgshape 127.0.0.1 --echo --wg-shape
out=$(run "$UL" ping --to "127.0.0.1:$SINK_PORT" --wg-shape --size 64 --rate 2000 --count 300 \
	--hist "$T/hist.txt" --trace "$T/trace.txt" -q) || fail "ping --wg-shape exited $?: $(oneline "$out")"
png=$(grep '^result ' <<<"$out") || fail "ping printed no result line: $(oneline "$out")"
expect "$png" sent=300 received=300 lost=0 foreign=0
# the CDF: a comment, then "rtt_us fraction count" rising to exactly 1 with 300 samples in all
awk '/^#/ { next } { n++; if ($1 < prev || $2 < pf) bad = 1; prev = $1; pf = $2; c += $3 }
	END { exit !(n >= 2 && !bad && pf == 1 && c == 300) }' "$T/hist.txt" ||
	fail "--hist: not a CDF of 300 samples: $(oneline "$(head -5 "$T/hist.txt")")"
# the trace: one "SENT_NS RTT_NS" line per echo, sent 0.5 ms apart (2,000/s) within 0.15 s
awk 'NF != 2 || $1 !~ /^[0-9]+$/ || $2 !~ /^[0-9]+$/ { bad = 1 } { n++ }
	NR == 1 || $1 < lo { lo = $1 } $1 > hi { hi = $1 }
	END { d = (hi - lo) / 1e6; exit !(n == 300 && !bad && d > 140 && d < 160) }' "$T/trace.txt" ||
	fail "--trace: not 300 'SENT_NS RTT_NS' lines 0.5 ms apart: $(oneline "$(head -3 "$T/trace.txt")")"
# a plain sender's datagrams are foreign to a --wg-shape sink (the magic differs)
run "$UL" send --to "127.0.0.1:$SINK_PORT" --count 5 -q >/dev/null || fail "plain send failed"
sink_result TERM
expect "$RES" received=300 echoed=300 foreign=5
# and the bytes on the wire start 04 00 00 00: a WireGuard data message
run "$PY" - "$WGWS_BUILD/udpload" <<'PYEOF' || fail "--wg-shape datagrams do not start 04 00 00 00"
import socket, subprocess, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(5)
port = s.getsockname()[1]
subprocess.run([sys.argv[1], "send", "--to", "127.0.0.1:%d" % port, "--wg-shape", "--size", "48",
                "--count", "1", "-q"], check=True, stdout=subprocess.DEVNULL)
d = s.recv(100)
sys.exit(0 if len(d) == 48 and d[:4] == b"\x04\x00\x00\x00" else 1)
PYEOF
ok "--wg-shape: 300 echoes, 5 plain datagrams foreign to its sink, 04 00 00 00 on the wire; --hist CDF;" \
	"--trace lines"

say "open loop, 64 B, 0.5 s"
start_sink sink3 127.0.0.1
out=$(run "$UL" send --to "127.0.0.1:$SINK_PORT" --open --duration 0.5 -q) ||
	fail "send --open exited $?: $(oneline "$out")"
snd=$(grep '^result ' <<<"$out") || fail "send printed no result line: $(oneline "$out")"
awk -v p="$(kv pps "$snd")" -v n="$(kv sent "$snd")" 'BEGIN { exit !(p > 0 && n > 0) }' ||
	fail "open loop: no positive rate: $snd"
sink_result TERM
rcv=$(kv received "$RES")
if [ "$rcv" -le 0 ] || [ "$rcv" -gt "$(kv sent "$snd")" ]; then
	fail "open loop: sink received $rcv of $(kv sent "$snd")"
fi
ok "open loop: $(kv sent "$snd") sent at $(kv pps "$snd") pps, $rcv received"

say "bad arguments exit 2 with a message; an unusable address exits 1"
for args in "" "send" "bogus" "send --to 127.0.0.1:0" "send --to 127.0.0.1:9 --size 10" \
	"send --to 127.0.0.1:9 --rate 0" "send --to 127.0.0.1:9 --rate 10 --open" \
	"ping --to 127.0.0.1:9 --window 0" "sink --listen 127.0.0.1:9 --window 2" \
	"send --to localhost:9" "send --to ::1:9" "send --to 127.0.0.1:9 --wg-shape --size 40" \
	"sink --listen 127.0.0.1:9 --hist /tmp/x" "ping --to 127.0.0.1:9 --hist=" \
	"send --to 127.0.0.1:9 --trace /tmp/x" "ping --to 127.0.0.1:9 --trace="; do
	# shellcheck disable=SC2086 # word splitting wanted
	err=$(run "$UL" $args 2>&1 >/dev/null) && rc=0 || rc=$?
	[ "$rc" = 2 ] || fail "udpload $args: exit $rc, expected 2"
	grep -q '^udpload: ' <<<"$err" || fail "udpload $args: no message on stderr: $(oneline "$err")"
done
ok "14 bad command lines: exit 2, each with a message"
err=$(run "$UL" sink --listen 192.0.2.1:9 -q 2>&1) && rc=0 || rc=$?
[ "$rc" = 1 ] || fail "sink on an address that is not ours: exit $rc, expected 1 ($err)"
ok "sink on 192.0.2.1 (not ours): exit 1 ($err)"
echo "PASS test_udpload"
