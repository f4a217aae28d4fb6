# SPDX-License-Identifier: MIT
# Shared helpers for the wgws end-to-end tests; sourced (bash) by every tests/e2e/*.sh after
# `set -eu`. Builds a small corporate network in three network namespaces, runs wireguard-go,
# squid, the relay and the shim inside them, and tears everything down on exit.
#
#   client ──veth (direct, 10.201.1.0/24)──────────────────────── gateway
#   client ──veth (10.201.3.0/24)── proxy ──veth (10.201.2.0/24)── gateway
#
# The proxy namespace does not forward; block_client_udp leaves TCP to squid as the only way
# out of the client namespace. WireGuard tunnel: 10.202.0.1 (gateway) ⟷ 10.202.0.2 (client).
#
# Every process is started through spawn/spawn_ns and remembered by pid; cleanup (trap EXIT)
# stops those pids, then deletes the namespaces (named wgws-$$-*, unique per run) and the temp
# dir ($WGWS_KEEP=1 keeps the temp dir). All program output goes to files in $T.

# --- paths and names ------------------------------------------------------------------
WGWS_TOP=${WGWS_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WGWS_BUILD=${WGWS_BUILD:-$WGWS_TOP/build}
export WGWS_TOP WGWS_BUILD
TOOLS=$WGWS_TOP/tests/tools
PY=${PYTHON:-$(command -v python3 || echo python3)}

NS_C=wgws-$$-client
NS_P=wgws-$$-proxy
NS_G=wgws-$$-gw
# wireguard-go's control sockets live in the host's /var/run/wireguard: unique names per run.
WG_C=wgc$$
WG_G=wgg$$

# Addresses (inside the namespaces only).
C_DIRECT=10.201.1.1 G_DIRECT=10.201.1.2      # client ⟷ gateway (direct path)
C_DIRECT6=fd00:201:1::1 G_DIRECT6=fd00:201:1::2
C_PNET=10.201.3.1 P_CLIENT=10.201.3.2        # client ⟷ proxy
C_PNET6=fd00:201:3::1 P_CLIENT6=fd00:201:3::2
P_GNET=10.201.2.1 G_PROXY=10.201.2.2         # proxy ⟷ gateway
P_GNET6=fd00:201:2::1 G_PROXY6=fd00:201:2::2
TUN_G=10.202.0.1 TUN_C=10.202.0.2            # WireGuard tunnel
WG_PORT=51820 WG_C_PORT=51821 SHIM_PORT=51820 PROXY_PORT=3128
GW_NAME=gw.wgws.test
METRICS=127.0.0.1:9100
IPERF_PORT=5201

PIDS=()              # every pid we started, for cleanup
NAMESPACES=()        # every namespace we created
RELAY_PID="" SHIM_PID="" SQUID_PID="" IPERF_PID="" WGC_PID="" WGG_PID=""
RELAY_LOG="" SHIM_LOG="" SQUID_DIR=""
RELAY_N=0 SHIM_N=0 SQUID_N=0

T=$(mktemp -d /tmp/wgws-e2e.XXXXXX)
chmod 755 "$T"       # squid runs as `proxy` and must reach $T/squid*
mkdir -m 700 "$T/keys"

# --- output ---------------------------------------------------------------------------
# say MSG: a progress line on stdout.
say() { printf '== %s\n' "$*"; }
# ok MSG: a passed check.
ok() { printf 'ok   %s\n' "$*"; }
# logtail FILE [N]: the last N (15) lines of FILE, indented, when it exists.
logtail() {
	[ -s "$1" ] || return 0
	printf -- '--- %s (last %s lines)\n' "${1#"$T"/}" "${2:-15}"
	tail -n "${2:-15}" "$1" | sed 's/^/    /'
}
# dump_logs: the tails of the relay, shim and squid logs (the latest of each).
dump_logs() {
	[ -z "$RELAY_LOG" ] || logtail "$RELAY_LOG"
	[ -z "$SHIM_LOG" ] || logtail "$SHIM_LOG"
	[ -z "$SQUID_DIR" ] || logtail "$SQUID_DIR/cache.log" 8
	[ -z "$SQUID_DIR" ] || logtail "$SQUID_DIR/access.log" 5
}
# oneline TEXT: TEXT with its newlines turned into spaces (for one-line messages).
oneline() { tr '\n' ' ' <<<"$1"; }
# fail MSG: print FAIL MSG and the log tails, exit 1 (cleanup still runs).
fail() {
	printf 'FAIL %s\n' "$*"
	dump_logs
	exit 1
}
# skip MSG: exit 77 with "skipped: MSG" as the last line (tests/run.sh shows it).
skip() {
	printf 'skipped: %s\n' "$*"
	exit 77
}
# need_root: skip (exit 77) unless root.
need_root() { [ "$(id -u)" = 0 ] || skip "needs root"; }
# need_cmd CMD...: skip when a tool is missing.
need_cmd() {
	local c
	for c; do command -v "$c" >/dev/null 2>&1 || skip "needs $c (make deps)"; done
}
# need_bins [PROG...]: fail unless $WGWS_BUILD/PROG exist (wgws-relay and wgws-shim).
need_bins() {
	local b
	[ $# -gt 0 ] || set -- wgws-relay wgws-shim
	for b; do
		[ -x "$WGWS_BUILD/$b" ] || fail "$WGWS_BUILD/$b not built (run make)"
	done
}

# --- processes ------------------------------------------------------------------------
# cpu_ticks PID...: utime + stime of the PIDs together (clock ticks), from /proc/PID/stat
# (the fields after the command, which may hold spaces). A gone PID counts 0.
cpu_ticks() {
	local p sum=0 t
	for p; do
		t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
		sum=$((sum + ${t:-0}))
	done
	echo "$sum"
}
# unreachable_by_nobody PID: fail unless an unprivileged local user (nobody) can neither
# signal PID nor attach to it with ptrace (PTRACE_SEIZE: EPERM). Root only.
unreachable_by_nobody() {
	local as=(setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups) err
	"${as[@]}" true || fail "cannot run a command as nobody (setpriv)"
	err=$("${as[@]}" kill -0 "$1" 2>&1) && fail "nobody can signal pid $1"
	grep -q "Operation not permitted" <<<"$err" || fail "kill -0 $1 as nobody: $err"
	local seize='
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
r = libc.ptrace(0x4206, int(sys.argv[1]), None, None)  # PTRACE_SEIZE
print("attached" if r == 0 else os.strerror(ctypes.get_errno()))'
	err=$("${as[@]}" /usr/bin/python3 -c "$seize" "$1" 2>&1) || fail "ptrace as nobody: $err"
	[ "$err" = "Operation not permitted" ] || fail "nobody's PTRACE_SEIZE on pid $1: $err"
}
# child_of PID: its children's pids, one a line.
child_of() { cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep . || true; }
# alive PID: true while PID runs (a zombie counts as dead).
alive() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
# spawn LOG CMD...: start CMD in the background, output to LOG; pid in $SPAWNED (tracked).
spawn() {
	local log=$1
	shift
	"$@" >"$log" 2>&1 </dev/null &
	SPAWNED=$!
	PIDS+=("$SPAWNED")
}
# spawn_ns NS LOG CMD...: spawn inside namespace NS (ip netns exec execs: the pid is CMD's).
spawn_ns() {
	local ns=$1 log=$2
	shift 2
	spawn "$log" ip netns exec "$ns" "$@"
}
# stop_pid PID [SIGNAL] [SECONDS]: signal PID (TERM), wait up to SECONDS (5), then KILL;
# reaps it and sets $STOP_RC to its exit status (128+n when killed by signal n).
stop_pid() {
	local pid=$1 sig=${2:-TERM} secs=${3:-5} i
	STOP_RC=""
	[ -n "$pid" ] || return 0
	# stderr off while it dies: bash would print "Killed" when it reaps a job mid-loop.
	{
		kill -"$sig" "$pid" || true
		for ((i = 0; i < secs * 20; i++)); do
			alive "$pid" || break
			sleep 0.05
		done
		alive "$pid" && kill -KILL "$pid"
		STOP_RC=0
		wait "$pid" || STOP_RC=$?
	} 2>/dev/null
}
# wait_for SECONDS CMD...: run CMD every 0.1 s until it succeeds; false after SECONDS.
wait_for() {
	local secs=$1 end
	shift
	end=$(($(date +%s%N) + secs * 1000000000))
	while :; do
		"$@" >/dev/null 2>&1 && return 0
		[ "$(date +%s%N)" -lt "$end" ] || return 1
		sleep 0.1
	done
}
# nap SECONDS: sleep that a signal interrupts (bash runs traps only between foreground
# commands; `wait` returns at once), so an interrupted test still cleans up.
nap() {
	sleep "$1" &
	PIDS+=("$!")
	wait "$!"
}
# now_ms: wall clock in milliseconds.
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# at_exit CMD: run CMD (a shell string) when the test ends, after every process and
# namespace is gone: to put back host settings a test changed.
AT_EXIT=()
at_exit() { AT_EXIT+=("$1"); }

cleanup() {
	local rc=$? pid ns left cmd
	trap - EXIT INT TERM
	set +e
	exec 2>/dev/null # no "Killed" job notices from here on
	for pid in "${PIDS[@]}"; do alive "$pid" && kill -TERM "$pid" 2>/dev/null; done
	for ((i = 0; i < 60; i++)); do
		left=0
		for pid in "${PIDS[@]}"; do alive "$pid" && left=1; done
		[ $left = 0 ] && break
		sleep 0.05
	done
	for pid in "${PIDS[@]}"; do
		alive "$pid" && kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	# Anything still inside our namespaces was started by us (helpers, children): by pid.
	for ns in "${NAMESPACES[@]}"; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
	done
	for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
	for cmd in "${AT_EXIT[@]}"; do eval "$cmd"; done
	rm -f "/var/run/wireguard/$WG_C.sock" "/var/run/wireguard/$WG_G.sock" 2>/dev/null
	if [ "${WGWS_KEEP:-0}" = 1 ]; then
		echo "kept $T"
	else
		rm -rf "$T"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- topology -------------------------------------------------------------------------
# in_c / in_p / in_g CMD...: run CMD in the client / proxy / gateway namespace.
in_c() { ip netns exec "$NS_C" "$@"; }
in_p() { ip netns exec "$NS_P" "$@"; }
in_g() { ip netns exec "$NS_G" "$@"; }

netns_add() {
	ip netns add "$1"
	NAMESPACES+=("$1")
	ip -n "$1" link set lo up
}
# veth NS1 IF1 ADDR1 ADDR6_1 NS2 IF2 ADDR2 ADDR6_2: a veth pair between two namespaces, /24 and /64.
veth() {
	ip -n "$1" link add "$2" type veth peer name "$6" netns "$5"
	ip -n "$1" addr add "$3/24" dev "$2"
	ip -n "$1" addr add "$4/64" dev "$2" nodad
	ip -n "$5" addr add "$7/24" dev "$6"
	ip -n "$5" addr add "$8/64" dev "$6" nodad
	ip -n "$1" link set "$2" up
	ip -n "$5" link set "$6" up
}
# topology: the three namespaces and three veths; the proxy does not forward.
topology() {
	netns_add "$NS_C"
	netns_add "$NS_P"
	netns_add "$NS_G"
	veth "$NS_C" direct0 "$C_DIRECT" "$C_DIRECT6" "$NS_G" direct0 "$G_DIRECT" "$G_DIRECT6"
	veth "$NS_C" proxy0 "$C_PNET" "$C_PNET6" "$NS_P" client0 "$P_CLIENT" "$P_CLIENT6"
	veth "$NS_P" gw0 "$P_GNET" "$P_GNET6" "$NS_G" proxy0 "$G_PROXY" "$G_PROXY6"
	in_p sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0
	echo "$G_PROXY $GW_NAME" >"$T/hosts"
}
# block_client_udp: nftables in the client namespace drops UDP leaving the namespace (not on
# lo: WireGuard ⟷ shim) and everything to the gateway's direct addresses.
block_client_udp() {
	in_c nft -f - <<EOF
table inet wgws_block {
	chain out {
		type filter hook output priority 0; policy accept;
		oifname "lo" accept
		meta l4proto udp counter drop
		ip daddr $G_DIRECT counter drop
		ip6 daddr $G_DIRECT6 counter drop
	}
}
EOF
}
# unblock_client_udp: removes block_client_udp's table.
unblock_client_udp() { in_c nft delete table inet wgws_block; }

# corporate_network: the usual set-up of a tunnel test: the three namespaces, wireguard-go on
# both sides (the client's endpoint the shim's port), the client's UDP blocked, the gateway's
# certificate ($CERT, $KEY, $PIN) and squid. The relay and the shim are the test's to start.
corporate_network() {
	topology
	wg_up
	block_client_udp
	wg_endpoint_shim
	certs_make
	start_squid
}

# --- squid ----------------------------------------------------------------------------
# start_squid [READ_TIMEOUT_S] [MODE]: squid in the proxy namespace on $P_CLIENT:3128 allowing
# CONNECT to port 443 only; MODE "ok" (default), "403" (denies all), "407" (wants Basic auth)
# or "auth" (the auth_param and http_access lines in $SQUID_AUTH). $SQUID_EXTRA: more lines
# (another http_port or https_port, say).
start_squid() {
	local rt=${1:-900} mode=${2:-ok} d access
	SQUID_N=$((SQUID_N + 1))
	d=$T/squid$SQUID_N
	SQUID_DIR=$d
	mkdir -p "$d"
	case "$mode" in
	ok) access="http_access allow CONNECT SSL_ports" ;;
	403) access="http_access deny all" ;;
	407)
		: >"$d/passwd"
		access="auth_param basic program /usr/lib/squid/basic_ncsa_auth $d/passwd
auth_param basic children 1 startup=0 idle=1
auth_param basic realm wgws-test
acl authed proxy_auth REQUIRED
http_access deny !authed
http_access allow CONNECT SSL_ports"
		;;
	auth) access=$SQUID_AUTH ;;
	*) fail "start_squid: unknown mode $mode" ;;
	esac
	cat >"$d/squid.conf" <<EOF
http_port $P_CLIENT:$PROXY_PORT
${SQUID_EXTRA:-}
visible_hostname wgws-test-proxy
pid_filename $d/squid.pid
cache_log $d/cache.log
access_log stdio:$d/access.log
cache_store_log none
logfile_rotate 0
coredump_dir $d
cache deny all
cache_mem 4 MB
hosts_file $T/hosts
dns_nameservers 127.0.0.1
pinger_enable off
shutdown_lifetime 1 seconds
read_timeout $rt seconds
cache_effective_user proxy
acl SSL_ports port 443
acl CONNECT method CONNECT
http_access deny !CONNECT
http_access deny CONNECT !SSL_ports
$access
http_access deny all
EOF
	chown -R proxy:proxy "$d"
	# -n: a service name of our own, so shared-memory names never meet another squid's.
	spawn_ns "$NS_P" "$d/stderr.log" squid -N -n "wgws$$s$SQUID_N" -f "$d/squid.conf"
	SQUID_PID=$SPAWNED
	wait_for 10 squid_listens || fail "squid does not listen on $P_CLIENT:$PROXY_PORT"
}
squid_listens() { in_p ss -Hltn "sport = :$PROXY_PORT" | grep -q .; }
# stop_squid: SIGTERM by pid (squid needs 1-3 s).
stop_squid() {
	stop_pid "$SQUID_PID" TERM 5
	SQUID_PID=""
}

# --- WireGuard ------------------------------------------------------------------------
# wg_up: wireguard-go in client and gateway, keys, tunnel addresses, MTU 1380; the client
# peer's endpoint is the gateway's direct address (wg_endpoint_* change it).
wg_up() {
	(umask 077 && wg genkey >"$T/keys/gw.key" && wg genkey >"$T/keys/client.key")
	wg pubkey <"$T/keys/gw.key" >"$T/keys/gw.pub"
	wg pubkey <"$T/keys/client.key" >"$T/keys/client.pub"
	WG_G_PUB=$(cat "$T/keys/gw.pub")
	WG_C_PUB=$(cat "$T/keys/client.pub")
	spawn_ns "$NS_G" "$T/wg-gw.log" wireguard-go -f "$WG_G"
	WGG_PID=$SPAWNED
	spawn_ns "$NS_C" "$T/wg-client.log" wireguard-go -f "$WG_C"
	WGC_PID=$SPAWNED
	wait_for 10 test -S "/var/run/wireguard/$WG_G.sock" || fail "wireguard-go (gateway) did not start"
	wait_for 10 test -S "/var/run/wireguard/$WG_C.sock" || fail "wireguard-go (client) did not start"
	in_g wg set "$WG_G" private-key "$T/keys/gw.key" listen-port "$WG_PORT" \
		peer "$WG_C_PUB" allowed-ips "$TUN_C/32"
	in_g ip addr add "$TUN_G/24" dev "$WG_G"
	in_g ip link set "$WG_G" mtu 1380 up
	in_c wg set "$WG_C" private-key "$T/keys/client.key" listen-port "$WG_C_PORT" \
		peer "$WG_G_PUB" allowed-ips "$TUN_G/32" endpoint "$G_DIRECT:$WG_PORT"
	in_c ip addr add "$TUN_C/24" dev "$WG_C"
	in_c ip link set "$WG_C" mtu 1380 up
}
# wg_endpoint_plain: client peer → the gateway's direct address, port 51820.
wg_endpoint_plain() { in_c wg set "$WG_C" peer "$WG_G_PUB" endpoint "$G_DIRECT:$WG_PORT"; }
# wg_endpoint_shim [PORT]: client peer → the shim on 127.0.0.1:PORT (51820).
wg_endpoint_shim() { in_c wg set "$WG_C" peer "$WG_G_PUB" endpoint "127.0.0.1:${1:-$SHIM_PORT}"; }
# wg_handshake_age: seconds since the client's last handshake (a large number when none).
wg_handshake_age() {
	local t
	t=$(in_c wg show "$WG_C" latest-handshakes | awk '{print $2}')
	if [ -z "$t" ] || [ "$t" = 0 ]; then echo 999999; else echo $(($(date +%s) - t)); fi
}

# --- traffic --------------------------------------------------------------------------
# ping_ok COUNT [MIN]: COUNT pings (0.2 s apart) client → 10.202.0.1 across WireGuard; true
# when at least MIN (1) replies arrived; sets PING_TX, PING_RX, PING_LOSS (%).
ping_ok() {
	local n=$1 min=${2:-1} out
	out=$(in_c ping -n -q -c "$n" -i 0.2 -W 1 "$TUN_G" 2>&1 || true)
	echo "$out" >>"$T/ping.log"
	PING_TX=$(echo "$out" | sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p')
	PING_RX=$(echo "$out" | sed -n 's/.* \([0-9]*\) received.*/\1/p')
	PING_TX=${PING_TX:-0} PING_RX=${PING_RX:-0}
	PING_LOSS=100
	[ "$PING_TX" -gt 0 ] && PING_LOSS=$(((PING_TX - PING_RX) * 100 / PING_TX))
	[ "$PING_RX" -ge "$min" ]
}
# bg_ping_start FILE: background ping -D -O -i 0.2 client → 10.202.0.1 into FILE; pid in BGPING_PID.
bg_ping_start() {
	BGPING_LOG=$1
	spawn_ns "$NS_C" "$1" ping -n -D -O -i 0.2 -W 1 "$TUN_G"
	BGPING_PID=$SPAWNED
}
# bg_ping_stop: SIGINT the background ping (it prints its totals); sets PING_TX/PING_RX/PING_LOSS.
bg_ping_stop() {
	local log=$BGPING_LOG
	stop_pid "$BGPING_PID" INT 3
	PING_TX=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' "$log")
	PING_RX=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$log")
	PING_TX=${PING_TX:-0} PING_RX=${PING_RX:-0}
	PING_LOSS=100
	[ "$PING_TX" -gt 0 ] && PING_LOSS=$(((PING_TX - PING_RX) * 100 / PING_TX))
	return 0
}
# iperf_server: iperf3 server in the gateway namespace on the tunnel address.
iperf_server() {
	spawn_ns "$NS_G" "$T/iperf-server.log" iperf3 -s -B "$TUN_G" -p "$IPERF_PORT"
	IPERF_PID=$SPAWNED
	wait_for 5 sh -c "ip netns exec $NS_G ss -Hltn 'sport = :$IPERF_PORT' | grep -q ." ||
		fail "iperf3 server did not start"
}
# iperf_mbps SECONDS [ARGS...]: TCP client → server across the tunnel (ARGS to iperf3, e.g.
# -R: server → client); prints Mbit/s (received), or nothing (and returns 1) when the run
# failed. JSON kept in $T/iperf-N.json.
iperf_mbps() {
	local secs=$1 j n=1
	shift
	# Called as $(iperf_mbps …): a subshell, so number the files by what exists.
	while [ -e "$T/iperf-$n.json" ]; do n=$((n + 1)); done
	j=$T/iperf-$n.json
	timeout $((secs + 20)) ip netns exec "$NS_C" iperf3 -c "$TUN_G" -p "$IPERF_PORT" \
		-t "$secs" -J "$@" >"$j" 2>&1 || true
	"$PY" - "$j" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    print("%.1f" % (d["end"]["sum_received"]["bits_per_second"] / 1e6))
except Exception as e:
    sys.exit(1)
EOF
}

# --- certificates ---------------------------------------------------------------------
# certs_make: certificate for gw.wgws.test + the gateway's proxy-side IP in $T/certs;
# sets and exports CERT, KEY, PIN (sha256//…).
certs_make() {
	local out
	out=$("$WGWS_TOP/certs/mkcert.sh" "$GW_NAME" "$G_PROXY" "$G_PROXY6" -o "$T/certs" --days 2) ||
		fail "mkcert.sh failed"
	CERT=$T/certs/$GW_NAME.crt
	KEY=$T/certs/$GW_NAME.key
	PIN=$(echo "$out" | sed -n 's/^pin: *//p')
	case "$PIN" in sha256//?*) ;; *) fail "mkcert.sh printed no pin" ;; esac
	chmod 755 "$T/certs"
	export CERT KEY PIN
}

# --- relay and shim -------------------------------------------------------------------
# relay_healthz: true when https://127.0.0.1/healthz answers 200 in the gateway namespace.
relay_healthz() {
	[ "$(in_g curl -sk -m 2 -o /dev/null -w '%{http_code}' https://127.0.0.1/healthz)" = 200 ]
}
# start_relay ARGS...: wgws-relay in the gateway namespace on 0.0.0.0:443 with $CERT/$KEY,
# metrics on 127.0.0.1:9100, extra ARGS appended; waits for /healthz = 200. Log: $RELAY_LOG.
start_relay() {
	RELAY_N=$((RELAY_N + 1))
	RELAY_LOG=$T/relay-$RELAY_N.log
	spawn_ns "$NS_G" "$RELAY_LOG" "$WGWS_BUILD/wgws-relay" --listen 0.0.0.0:443 \
		--cert "$CERT" --key "$KEY" --metrics "$METRICS" "$@"
	RELAY_PID=$SPAWNED
	wait_for 10 relay_healthz || {
		alive "$RELAY_PID" || fail "relay exited at start-up"
		fail "relay /healthz did not answer 200 within 10 s"
	}
}
# stop_relay [SIGNAL]: signal the relay by pid (TERM; KILL for a crash) and reap it.
stop_relay() {
	stop_pid "$RELAY_PID" "${1:-TERM}" 5
	RELAY_RC=$STOP_RC
	RELAY_PID=""
}
# start_shim ARGS...: wgws-shim in the client namespace on 127.0.0.1:51820 towards
# wss://gw.wgws.test/wg through squid; ARGS appended (--pin, --ca, --keepalive...). Log: $SHIM_LOG.
# The shim connects when WireGuard first sends to it: give it traffic (ping) before waiting.
start_shim() {
	SHIM_N=$((SHIM_N + 1))
	SHIM_LOG=$T/shim-$SHIM_N.log
	spawn_ns "$NS_C" "$SHIM_LOG" "$WGWS_BUILD/wgws-shim" --listen "127.0.0.1:$SHIM_PORT" \
		--relay "wss://$GW_NAME/wg" --proxy "http://$P_CLIENT:$PROXY_PORT" "$@"
	SHIM_PID=$SPAWNED
	wait_for 5 shim_bound || {
		alive "$SHIM_PID" || fail "shim exited at start-up"
		fail "shim does not listen on 127.0.0.1:$SHIM_PORT/udp"
	}
}
shim_bound() { in_c ss -Hulpn "sport = :$SHIM_PORT" | grep -q "pid=$SHIM_PID,"; }
# stop_shim [SIGNAL]: signal the shim by pid (TERM) and reap it.
stop_shim() {
	stop_pid "$SHIM_PID" "${1:-TERM}" 5
	SHIM_RC=$STOP_RC
	SHIM_PID=""
}
# log_count FILE PATTERN: how many lines of FILE contain PATTERN (fixed string); 0 if none.
log_count() { grep -cF -- "$2" "$1" 2>/dev/null || true; }
# shim_connected [N]: true once the shim log holds at least N (1) "connected to relay" lines.
shim_connected() { [ "$(log_count "$SHIM_LOG" "connected to relay")" -ge "${1:-1}" ]; }
# wait_shim_connected [SECONDS] [N]: wait_for shim_connected; fail after SECONDS (10).
wait_shim_connected() {
	wait_for "${1:-10}" shim_connected "${2:-1}" ||
		fail "shim did not log 'connected to relay' (x${2:-1}) within ${1:-10} s"
}
# relay_metric NAME: the value of metric line NAME (with labels, exactly as exposed) from
# the relay's /metrics; prints "absent" when the line is missing (so no check passes on a renamed metric), fails when metrics do not answer.
relay_metric() {
	local body
	body=$(in_g curl -s -m 3 "http://$METRICS/metrics") || fail "relay metrics do not answer"
	echo "$body" | awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? "absent" : v) }'
}
# udp_port_of PID NS: the local UDP address:port(s) PID has open in NS (ss -ulpn).
udp_port_of() {
	ip netns exec "$2" ss -Hulpn | grep "pid=$1," | awk '{print $4}' | sort | tr '\n' ' '
}

# key_hits PID: how many times the gateway's private key (raw, hex, base64) occurs in PID's
# readable memory, as "raw hex b64". Mappings over 1 GiB are skipped: a SANITIZE=1 build's
# shadow memory, which never holds data.
key_hits() {
	"$PY" - "$1" "$T/keys/gw.key" <<'EOF'
import base64, re, sys
pid, keyfile = sys.argv[1], sys.argv[2]
b64 = open(keyfile).read().strip().encode()
raw = base64.b64decode(b64)
needles = [raw, raw.hex().encode(), b64]
hits = [0, 0, 0]
CHUNK, OVER = 1 << 20, 64
with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
    for line in maps:
        m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", line)
        lo, hi, perms = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
        if perms[0] != "r" or "[vvar]" in line or hi - lo > 1 << 30:
            continue
        for at in range(lo, hi, CHUNK):
            try:
                mem.seek(at)
                data = mem.read(min(CHUNK + OVER, hi - at))
            except OSError:
                continue
            for i, n in enumerate(needles):
                # count the matches that start in this chunk (the overlap is the next one's)
                k = data.find(n)
                while k != -1 and k < CHUNK:
                    hits[i] += 1
                    k = data.find(n, k + 1)
print(*hits)
EOF
}

# build_plain DIR PROGRAM...: build PROGRAMs (names in the Makefile's build directory) into
# DIR without sanitizers, whatever make test runs with: under `make SANITIZE=1 test` the
# sub-make would inherit SANITIZE=1 through MAKEFLAGS, and a "plain" build was ASan's (CI's
# test_seccomp_plain and test_churn measured sanitized daemons until this). Checks the
# result has no ASan runtime.
build_plain() {
	local dir=$1 p targets=()
	shift
	for p; do targets+=("$dir/$p"); done
	(cd "$WGWS_TOP" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s B="$dir" SANITIZE=0 \
		"${targets[@]}") >"$T/build.log" 2>&1 || fail "build: $(tail -5 "$T/build.log")"
	for p; do
		! nm -D "$dir/$p" 2>/dev/null | grep -q __asan_init ||
			fail "$dir/$p is built with AddressSanitizer: not a plain build"
	done
}

# --- JIT tests: the provisioner with --jit behind the relay ---------------------------------
# jit_test_init: what every JIT test needs, and its paths: PROV, INITGEN, SOCK (the API),
# DB, JSOCK (the JIT socket).
jit_test_init() {
	need_root
	need_cmd wireguard-go wg nft squid curl ping
	need_bins wgws-relay wgws-shim wgws-provisioner jit-initgen
	PROV=$WGWS_BUILD/wgws-provisioner INITGEN=$WGWS_BUILD/jit-initgen
	SOCK=$T/prov.sock DB=$T/prov.db JSOCK=$T/jit.sock
}
# expect WHAT GOT WANT: fail unless GOT is WANT.
expect() { [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"; }
# prov_metric NAME: metric line NAME from the provisioner's API socket ($SOCK); "absent" when
# the line is missing.
prov_metric() {
	curl -s -m 5 --unix-socket "$SOCK" http://prov/metrics |
		awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? "absent" : v) }'
}
# prov_healthy: the provisioner's /healthz answers 200 on $SOCK.
prov_healthy() {
	[ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" http://prov/healthz)" = 200 ]
}
# gc_ran N: the provisioner's garbage collection has run at least N times.
gc_ran() {
	local n
	n=$(prov_metric wgws_provisioner_gc_runs_total)
	[ "$n" != absent ] && [ "$n" -ge "$1" ]
}
# jit_connected: the relay is connected to the provisioner's JIT socket.
jit_connected() { [ "$(relay_metric wgws_relay_jit_connected)" = 1 ]; }
# first_handshake KEY: 4 pings client → gateway (0.25 s apart, in the background); HS_MS is
# the time from just before the ping starts until the gateway reports a handshake with KEY
# (an upper bound of "first initiation → handshake": the poll's own time included), HS_T0
# and HS_AT those two moments (unix ms). Fails after 5 s, or when fewer than 3 pings were
# answered.
first_handshake() {
	local key=$1 pid log rx
	PING_N=$((${PING_N:-0} + 1))
	log=$T/ping-$PING_N.log
	HS_T0=$(now_ms)
	spawn_ns "$NS_C" "$log" ping -n -c 4 -i 0.25 -W 2 "$TUN_G"
	pid=$SPAWNED
	while :; do
		[ "$(gw_handshake "$key")" -gt 0 ] && break
		[ $(($(now_ms) - HS_T0)) -lt 5000 ] || fail "no handshake on the gateway within 5 s of the ping"
		sleep 0.02
	done
	HS_AT=$(now_ms)
	HS_MS=$((HS_AT - HS_T0))
	wait "$pid" || true
	rx=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$log")
	[ "${rx:-0}" -ge 3 ] || fail "ping through the tunnel: ${rx:-0}/4 replies: $(oneline "$(cat "$log")")"
}
# jit_network: jit_test_init's tests' set-up: the namespaces, wireguard-go with the gateway
# not knowing the client's peer, the client's UDP blocked, the handshake counters on the
# gateway (count_handshakes), certificates, squid.
jit_network() {
	topology
	wg_up
	in_g wg set "$WG_G" peer "$WG_C_PUB" remove
	block_client_udp
	count_handshakes
	certs_make
	start_squid
}
# jit_prov_start [OPTION...]: wgws-provisioner serve --jit in the gateway namespace on $WG_G
# (uapi, $DB, API on $SOCK, --pool4 $POOL4, relays on $JSOCK, --jit-user wgws), OPTIONs
# last; log $PROV_LOG (default $T/prov.log), pid $PROV_PID. Waits until it serves both.
jit_prov_start() {
	PROV_LOG=${PROV_LOG:-$T/prov.log}
	spawn_ns "$NS_G" "$PROV_LOG" "$PROV" serve --interface "$WG_G" --backend uapi --db "$DB" \
		--api "unix:$SOCK" --pool4 "$POOL4" --jit --jit-socket "$JSOCK" --jit-user wgws "$@"
	PROV_PID=$SPAWNED
	wait_for 10 prov_healthy || {
		alive "$PROV_PID" || fail "provisioner exited at start-up"
		fail "provisioner /healthz did not answer 200 within 10 s"
	}
	wait_for 5 test -S "$JSOCK" || fail "the provisioner does not listen on $JSOCK"
}
# gw_handshake KEY: the gateway's latest handshake with KEY (unix seconds), 0 when none.
gw_handshake() {
	in_g wg show "$WG_G" latest-handshakes |
		awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }'
}

# --- hostile client -------------------------------------------------------------------
# wsraw_ns NS ARGS...: tests/tools/wsraw.py ARGS inside namespace NS.
wsraw_ns() {
	local ns=$1
	shift
	ip netns exec "$ns" "$PY" "$TOOLS/wsraw.py" "$@"
}
# rec_hex TYPE LEN [MARKER [SENT]]: hex of one record "u16 LEN ‖ datagram" whose datagram starts
# with TYPE, 3 zero bytes, then MARKER (8 hex digits), zero-filled; SENT bytes of it (LEN).
rec_hex() {
	"$PY" - "$@" <<'EOF'
import sys
t, n = int(sys.argv[1]), int(sys.argv[2])
m = bytes.fromhex(sys.argv[3]) if len(sys.argv) > 3 else b""
sent = int(sys.argv[4]) if len(sys.argv) > 4 else n
d = (bytes([t, 0, 0, 0]) + m).ljust(n, b"\0")[:n]
print((n.to_bytes(2, "big") + d)[:2 + sent].hex())
EOF
}

# loopback_sandbox NAME: somewhere to run servers on loopback ports. As root, a private
# namespace wgws-$$-NAME with the usual ports (PORT 8443, MPORT 9100, UPORT 51820); otherwise
# free ports of the host's loopback. Sets NS, PORT, MPORT, UPORT and RUN (the command prefix
# that enters the namespace, empty otherwise); run CMD... runs CMD there.
loopback_sandbox() {
	NS=""
	RUN=()
	if [ "$(id -u)" = 0 ]; then
		NS=wgws-$$-$1
		netns_add "$NS"
		RUN=(ip netns exec "$NS")
		PORT=8443 MPORT=9100 UPORT=51820
	else
		PORT=$(free_port stream) MPORT=$(free_port stream) UPORT=$(free_port dgram)
	fi
}
run() { "${RUN[@]}" "$@"; }
# free_port stream|dgram: a port the kernel just handed out on 127.0.0.1.
free_port() {
	"$PY" -c "import socket; s = socket.socket(type=socket.SOCK_${1^^}); \
s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
}

# --- the provisioner's API ------------------------------------------------------------
# req METHOD PATH [CURL_ARGS...]: one request to the API on $API (default $SOCK); the status
# in $CODE (000 when curl failed), the body in $T/body.
req() {
	local m=$1 p=$2
	shift 2
	CODE=$(curl -s -m 5 -o "$T/body" -w '%{http_code}' --unix-socket "${API:-$SOCK}" \
		-X "$m" "$@" "http://prov$p") || CODE=000
}
# jget EXPR [FILE]: Python EXPR over d = the JSON in FILE ($T/body); "<none>" when it fails.
jget() {
	"$PY" - "$1" "${2:-$T/body}" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[2]))
    r = eval(sys.argv[1])
    print(r if isinstance(r, str) else json.dumps(r))
except Exception:
    print("<none>")
EOF
}

# count_handshakes: in the gateway namespace, kernel counters of the handshake initiations
# arriving at WireGuard's port and of the responses it sends (table inet wgws_jit); read
# them with gw_count initiations|responses. Counted by the kernel, not by our programs.
count_handshakes() {
	in_g nft -f - <<EOF
table inet wgws_jit {
	counter initiations {}
	counter responses {}
	chain in {
		type filter hook input priority 0; policy accept;
		udp dport $WG_PORT udp length 156 @th,64,32 0x01000000 counter name "initiations"
	}
	chain out {
		type filter hook output priority 0; policy accept;
		udp sport $WG_PORT udp length 100 @th,64,32 0x02000000 counter name "responses"
	}
}
EOF
}
gw_count() { in_g nft list counter inet wgws_jit "$1" | awk '$1 == "packets" { print $2 }'; }
