# SPDX-License-Identifier: MIT
# Several gateways and one PostgreSQL, for tests/e2e/test_scaleout.sh and bench/scaleout.sh;
# sourced after lib.sh. A LAN (a bridge in a namespace of its own) joins a PostgreSQL
# namespace ($NS_DB, $DB_IP), a client namespace ($NS_CL) and gateway namespaces, each with
# wireguard-go (one shared key, $TUN_GW on it), wgws-relay --jit-socket on 443 (metrics on
# its 127.0.0.1:9100) and wgws-provisioner --jit, with --source "$URL" unless the gateway is
# named in $SQLITE_GWS (a single gateway on SQLite alone, for comparison).
#
# The caller sets SO_GWS ("a b c"), SO_POOL4 (the pool, big enough for what it creates) and
# may set SQLITE_GWS, SO_PROV_EXTRA (more provisioner options) and SO_PG_TLS=1 (PostgreSQL
# takes TLS only, and every client verifies it: sslmode=verify-full); then: so_lan; so_pg_start; so_db_init; so_gateways.

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
PROV=$WGWS_BUILD/wgws-provisioner INITGEN=$WGWS_BUILD/jit-initgen
NS_LAN=wgws-$$-lan NS_DB=wgws-$$-db NS_CL=wgws-$$-cl
DB_IP=10.210.0.10 CL_IP=10.210.0.100
declare -A GW_IP=([a]=10.210.0.1 [b]=10.210.0.2 [c]=10.210.0.3 [s]=10.210.0.4)
TUN_GW=10.202.0.1
URL="postgresql://wgws@$DB_IP:5432/wgws?connect_timeout=2"
declare -A PROV_PID RELAY_PIDS DEV PLOG
PG_PID="" SQLITE_GWS=${SQLITE_GWS:-}

# so_need: skip unless this machine can run PostgreSQL (make deps installs it).
so_need() {
	[ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ] ||
		skip "no PostgreSQL server (make deps installs postgresql)"
	getent passwd postgres >/dev/null || skip "no user postgres (make deps: postgresql)"
}
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
gw_ns() { echo "wgws-$$-gw$1"; }
psql_db() { in_ns "$NS_DB" "$PGBIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 "$URL" "$@"; }

# so_lan: the bridge, and PostgreSQL's, the client's and every gateway's namespace on it.
so_lan() {
	local g
	netns_add "$NS_LAN"
	ip -n "$NS_LAN" link add br0 type bridge
	ip -n "$NS_LAN" link set br0 up
	so_join "$NS_DB" "$DB_IP"
	so_join "$NS_CL" "$CL_IP"
	for g in $SO_GWS $SQLITE_GWS; do
		so_join "$(gw_ns "$g")" "${GW_IP[$g]}"
	done
}
so_join() { # NS ADDR
	local ns=$1 addr=$2 port=p${#NAMESPACES[@]}
	netns_add "$ns"
	ip -n "$NS_LAN" link add "$port" type veth peer name lan0 netns "$ns"
	ip -n "$NS_LAN" link set "$port" master br0 up
	ip -n "$ns" addr add "$addr/24" dev lan0
	ip -n "$ns" link set lan0 up
}

# so_pg_start: a cluster made with initdb in $T/pg (as postgres; trust on the LAN), the
# server in $NS_DB on $DB_IP:5432; so_pg_stop stops it (fast: clients are cut).
so_pg_start() {
	local tls=()
	if [ "${SO_PG_TLS:-0}" = 1 ]; then
		tls=(-c ssl=on -c ssl_cert_file="$T/pg/server.crt" -c ssl_key_file="$T/pg/server.key")
		URL="postgresql://wgws@$DB_IP:5432/wgws?connect_timeout=2&sslmode=verify-full&sslrootcert=$T/pgca/server.crt"
	fi
	if [ ! -d "$T/pg/data" ]; then
		mkdir -m 700 "$T/pg"
		chown postgres:postgres "$T/pg"
		setpriv --reuid=postgres --regid=postgres --init-groups -- "$PGBIN/initdb" \
			-D "$T/pg/data" -U wgws -A trust --no-sync -E UTF8 >"$T/initdb.log" 2>&1 ||
			fail "initdb: $(tail -3 "$T/initdb.log")"
		if [ "${SO_PG_TLS:-0}" = 1 ]; then
			"$WGWS_TOP/certs/mkcert.sh" "$DB_IP" "$DB_IP" -o "$T/pgca" --days 2 \
				>"$T/pgca.out" 2>&1 || fail "mkcert for PostgreSQL: $(cat "$T/pgca.out")"
			chmod 755 "$T/pgca"
			install -o postgres -g postgres -m 600 "$T/pgca/$DB_IP.key" "$T/pg/server.key"
			install -o postgres -g postgres -m 644 "$T/pgca/$DB_IP.crt" "$T/pg/server.crt"
			cp "$T/pgca/$DB_IP.crt" "$T/pgca/server.crt"
			echo "hostssl all all 10.210.0.0/24 trust" >>"$T/pg/data/pg_hba.conf"
		else
			echo "host all all 10.210.0.0/24 trust" >>"$T/pg/data/pg_hba.conf"
		fi
	fi
	spawn_ns "$NS_DB" "$T/pg.log" setpriv --reuid=postgres --regid=postgres --init-groups -- \
		"$PGBIN/postgres" -D "$T/pg/data" -c listen_addresses="$DB_IP" -c port=5432 \
		-c unix_socket_directories="$T/pg" -c fsync=off -c synchronous_commit=off \
		-c full_page_writes=off "${tls[@]}"
	PG_PID=$SPAWNED
	wait_for 20 in_ns "$NS_DB" "$PGBIN/pg_isready" -q -h "$DB_IP" -p 5432 -U wgws ||
		fail "PostgreSQL does not answer: $(tail -3 "$T/pg.log")"
}
so_pg_stop() {
	stop_pid "$PG_PID" INT 20
	PG_PID=""
}
# so_db_init: the database and the schema, with $SO_POOL4.
so_db_init() {
	in_ns "$NS_DB" "$PGBIN/createdb" -h "$DB_IP" -U wgws wgws || fail "createdb"
	in_ns "$NS_DB" "$PROV" db init --source "$URL" --pool4 "$SO_POOL4" >"$T/dbinit.out" 2>&1 ||
		fail "db init: $(oneline "$(cat "$T/dbinit.out")")"
}

# so_prov_start GW: GW's provisioner (again: a new log, the same cache file); waits until it
# serves, and, with --source, until it is connected.
so_prov_start() {
	local g=$1 src=(--source "$URL")
	[[ " $SQLITE_GWS " != *" $g "* ]] || src=()
	PLOG[$g]=$T/prov-$g-$RANDOM.log
	spawn_ns "$(gw_ns "$g")" "${PLOG[$g]}" "$PROV" serve --interface "${DEV[$g]}" \
		--backend uapi --db "$T/cache-$g.db" --api "unix:$T/api-$g.sock" \
		--pool4 "$SO_POOL4" --jit --jit-socket "$T/jit-$g.sock" --jit-user wgws "${src[@]}" \
		${SO_PROV_EXTRA:-}
	PROV_PID[$g]=$SPAWNED
	wait_for 10 test -S "$T/jit-$g.sock" || fail "provisioner $g does not listen"
	[ ${#src[@]} = 0 ] || wait_for 10 grep -q "source: connected" "${PLOG[$g]}" ||
		fail "provisioner $g did not connect to PostgreSQL"
}
so_relay_up() { in_ns "$(gw_ns "$1")" curl -s -m 2 "http://127.0.0.1:9100/metrics" |
	grep -qx "wgws_relay_jit_connected 1"; }
# so_gateways: the shared WireGuard key ($GW_PUB), the relays' certificate ($PIN), and every
# gateway up, its relay connected to its provisioner.
so_gateways() {
	local g ns
	(umask 077 && wg genkey >"$T/keys/gw.key")
	GW_PUB=$(wg pubkey <"$T/keys/gw.key")
	"$WGWS_TOP/certs/mkcert.sh" gw.wgws.test 10.210.0.1 10.210.0.2 10.210.0.3 10.210.0.4 \
		-o "$T/certs" --days 2 >"$T/mkcert.out" || fail "mkcert"
	PIN=$(sed -n 's/^pin: *//p' "$T/mkcert.out")
	chmod 755 "$T/certs"
	chgrp wgws "$T/certs/gw.wgws.test.key" && chmod 640 "$T/certs/gw.wgws.test.key"
	for g in $SO_GWS $SQLITE_GWS; do
		ns=$(gw_ns "$g")
		DEV[$g]=wg$g$$
		spawn_ns "$ns" "$T/wg-$g.log" wireguard-go -f "${DEV[$g]}"
		wait_for 10 test -S "/var/run/wireguard/${DEV[$g]}.sock" || fail "wireguard-go $g"
		in_ns "$ns" wg set "${DEV[$g]}" private-key "$T/keys/gw.key" listen-port 51820
		in_ns "$ns" ip addr add "$TUN_GW/${SO_POOL4#*/}" dev "${DEV[$g]}"
		in_ns "$ns" ip link set "${DEV[$g]}" mtu 1380 up
		so_prov_start "$g"
		spawn_ns "$ns" "$T/relay-$g.log" "$WGWS_BUILD/wgws-relay" --listen 0.0.0.0:443 \
			--cert "$T/certs/gw.wgws.test.crt" --key "$T/certs/gw.wgws.test.key" \
			--metrics 127.0.0.1:9100 --jit-socket "$T/jit-$g.sock" --rate-per-ip 0 \
			--max-pending-per-ip 1000 --max-conns-per-ip 0 --max-pending 2000
		RELAY_PIDS[$g]=$SPAWNED
	done
	for g in $SO_GWS $SQLITE_GWS; do
		wait_for 10 so_relay_up "$g" || fail "relay $g did not connect to its provisioner"
	done
}

# api GW METHOD PATH [CURL ARGS]: GW's API; $CODE, the body in $T/body.
api() {
	local g=$1
	shift
	API=$T/api-$g.sock req "$@"
}
on_gw() { in_ns "$(gw_ns "$1")" wg show "${DEV[$1]}" peers | grep -qxF -- "$2"; }
gw_hs() { in_ns "$(gw_ns "$1")" wg show "${DEV[$1]}" latest-handshakes |
	awk -v k="$2" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }'; }
prov_metric_of() { # GW NAME
	curl -s -m 3 --unix-socket "$T/api-$1.sock" http://prov/metrics |
		awk -v n="$2" '$1 == n { v = $2 } END { print (v == "" ? "absent" : v) }'
}
# gone_within GW KEY MS: KEY leaves GW's device within MS; LEFT_MS says when.
gone_within() {
	local t0
	t0=$(now_ms)
	while on_gw "$1" "$2"; do
		[ $(($(now_ms) - t0)) -lt "$3" ] || return 1
		sleep 0.02
	done
	LEFT_MS=$(($(now_ms) - t0))
}
