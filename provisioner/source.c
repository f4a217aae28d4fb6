/* SPDX-License-Identifier: MIT */
/* PostgreSQL as the peers' source of truth (--source; prov.h says the contract).
 *
 * The schema (SCHEMA_V1, docs/SCALEOUT.md) is the interface an operator's own control plane
 * writes to with plain SQL: wgws_peers holds the peers; a BEFORE INSERT trigger hands out
 * the addresses (IPv4 from wgws_pool's range and its free list after a hold-down, IPv6 from
 * the /64 and the key's SHA-256), so two gateways, or a script, never hand out one address
 * twice; an AFTER trigger appends each insert, update and delete to wgws_changes under one
 * transaction-scoped advisory lock, so that the log's seq order is its commit order (a
 * reader that has seen seq N never finds a smaller one committed later), and notifies
 * wgws_changes.
 *
 * In the daemon: one asynchronous connection on the lws loop. A dup of libpq's socket is
 * adopted as a raw descriptor: lws polls and closes its copy, libpq its own. Operations
 * wait in a FIFO and go one at a time (libpq's one-query-at-a-time); an operation's
 * callback runs from the loop, never from the call that queued it. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <libwebsockets.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "prov.h"

enum { SCHEMA_VERSION = 1 };

/* Version 1. Run in one transaction by `db init`; `db migrate` runs what follows a stored
 * version (none yet). */
static const char schema_v1[] =
	"CREATE TABLE wgws_schema (version integer NOT NULL);"
	"INSERT INTO wgws_schema VALUES (1);"
	"CREATE TABLE wgws_pool ("
	" id integer PRIMARY KEY CHECK (id = 1),"
	" ip4_first inet, ip4_last inet, ip4_next inet,"
	" ip6_prefix cidr CHECK (ip6_prefix IS NULL OR"
	"  (family(ip6_prefix) = 6 AND masklen(ip6_prefix) = 64)),"
	" hold_down interval NOT NULL DEFAULT '180 seconds');"
	"CREATE TABLE wgws_free4 (addr inet PRIMARY KEY,"
	" released_at timestamptz NOT NULL DEFAULT clock_timestamp());"
	"CREATE INDEX wgws_free4_released ON wgws_free4 (released_at, addr);"
	"CREATE TABLE wgws_peers ("
	" pubkey bytea PRIMARY KEY CHECK (octet_length(pubkey) = 32),"
	" ip4 inet UNIQUE CHECK (ip4 IS NULL OR (family(ip4) = 4 AND masklen(ip4) = 32)),"
	" ip6 inet UNIQUE CHECK (ip6 IS NULL OR (family(ip6) = 6 AND masklen(ip6) = 128)),"
	" psk bytea CHECK (psk IS NULL OR octet_length(psk) = 32),"
	" keepalive integer NOT NULL DEFAULT 0 CHECK (keepalive BETWEEN 0 AND 65535),"
	" name text NOT NULL DEFAULT '' CHECK (octet_length(name) <= 64),"
	" routes cidr[] NOT NULL DEFAULT '{}' CHECK (cardinality(routes) <= 6),"
	" created_at timestamptz NOT NULL DEFAULT now(),"
	" expires_at timestamptz);"
	"CREATE INDEX wgws_peers_expiry ON wgws_peers (expires_at) WHERE expires_at IS NOT NULL;"
	/* Every peer's allowed IPs (its addresses, its routes): no two peers overlap, whoever
	 * inserts them (WireGuard would give the prefix to whichever was installed last). */
	"CREATE TABLE wgws_nets ("
	" pubkey bytea NOT NULL REFERENCES wgws_peers ON DELETE CASCADE,"
	" net inet NOT NULL,"
	" EXCLUDE USING gist (net inet_ops WITH &&));"
	"CREATE INDEX wgws_nets_pubkey ON wgws_nets (pubkey);"
	"CREATE TABLE wgws_changes ("
	" seq bigserial PRIMARY KEY,"
	" pubkey bytea NOT NULL,"
	" op \"char\" NOT NULL CHECK (op IN ('I', 'U', 'D')),"
	" at timestamptz NOT NULL DEFAULT clock_timestamp());"
	"CREATE FUNCTION wgws_alloc() RETURNS trigger LANGUAGE plpgsql AS $f$"
	" DECLARE p wgws_pool; a inet; h bytea;"
	" BEGIN"
	/* The change log's lock first, as wgws_log takes it: one order for every writer, so a
	 * transaction that deletes then inserts cannot deadlock with a create. It serializes
	 * the writers, the allocation with them. */
	"  PERFORM pg_advisory_xact_lock(5159720);"
	"  SELECT * INTO p FROM wgws_pool WHERE id = 1;"
	"  IF NEW.ip4 IS NULL AND p.ip4_first IS NOT NULL THEN"
	/* An address someone's SQL gave a peer is skipped, wherever it was taken from. */
	"   LOOP"
	"    DELETE FROM wgws_free4 WHERE addr = (SELECT addr FROM wgws_free4"
	"     WHERE released_at <= clock_timestamp() - p.hold_down ORDER BY released_at, addr"
	"     LIMIT 1) RETURNING addr INTO a;"
	"    EXIT WHEN a IS NULL;"
	"    EXIT WHEN NOT EXISTS (SELECT 1 FROM wgws_peers WHERE ip4 = a);"
	"   END LOOP;"
	"   WHILE a IS NULL OR EXISTS (SELECT 1 FROM wgws_peers WHERE ip4 = a) LOOP"
	"    UPDATE wgws_pool SET ip4_next = ip4_next + 1 WHERE id = 1 AND ip4_next <= ip4_last"
	"     RETURNING ip4_next - 1 INTO a;"
	"    EXIT WHEN a IS NULL;"
	"   END LOOP;"
	"   IF a IS NULL THEN"
	"    RAISE EXCEPTION 'wgws: the IPv4 pool is exhausted' USING ERRCODE = 'WG001';"
	"   END IF;"
	"   NEW.ip4 := a;"
	"  END IF;"
	"  IF NEW.ip6 IS NULL AND p.ip6_prefix IS NOT NULL THEN"
	"   FOR i IN 0..15 LOOP"
	"    h := sha256(CASE WHEN i = 0 THEN NEW.pubkey ELSE NEW.pubkey || int4send(i) END);"
	"    a := set_masklen(p.ip6_prefix::inet, 128) +"
	"     (('x' || encode(substr(h, 1, 8), 'hex'))::bit(64)::bigint & 4611686018427387903);"
	"    IF a <> set_masklen(p.ip6_prefix::inet, 128) AND"
	"     NOT EXISTS (SELECT 1 FROM wgws_peers WHERE ip6 = a) THEN"
	"     NEW.ip6 := a; EXIT;"
	"    END IF;"
	"   END LOOP;"
	"   IF NEW.ip6 IS NULL THEN"
	"    RAISE EXCEPTION 'wgws: no free IPv6 address for this key' USING ERRCODE = 'WG001';"
	"   END IF;"
	"  END IF;"
	"  RETURN NEW;"
	" END $f$;"
	"CREATE TRIGGER wgws_peers_alloc BEFORE INSERT ON wgws_peers"
	" FOR EACH ROW EXECUTE FUNCTION wgws_alloc();"
	"CREATE FUNCTION wgws_log() RETURNS trigger LANGUAGE plpgsql AS $f$"
	" DECLARE p wgws_pool;"
	" BEGIN"
	/* Serialized to commit: seq order is commit order (see the top of source.c). */
	"  PERFORM pg_advisory_xact_lock(5159720);"
	"  IF TG_OP = 'DELETE' THEN"
	"   INSERT INTO wgws_changes (pubkey, op) VALUES (OLD.pubkey, 'D');"
	"   SELECT * INTO p FROM wgws_pool WHERE id = 1;"
	"   IF OLD.ip4 IS NOT NULL AND OLD.ip4 BETWEEN p.ip4_first AND p.ip4_last THEN"
	"    INSERT INTO wgws_free4 (addr) VALUES (OLD.ip4) ON CONFLICT DO NOTHING;"
	"   END IF;"
	"  ELSE"
	"   INSERT INTO wgws_changes (pubkey, op) VALUES (NEW.pubkey, left(TG_OP, 1));"
	"   DELETE FROM wgws_nets WHERE pubkey = NEW.pubkey;"
	"   INSERT INTO wgws_nets (pubkey, net)"
	"    SELECT NEW.pubkey, n FROM unnest(array_remove(ARRAY[NEW.ip4, NEW.ip6], NULL)"
	"     || NEW.routes::inet[]) n;"
	"  END IF;"
	"  PERFORM pg_notify('wgws_changes', '');"
	"  RETURN NULL;"
	" END $f$;"
	"CREATE TRIGGER wgws_peers_log AFTER INSERT OR UPDATE OR DELETE ON wgws_peers"
	" FOR EACH ROW EXECUTE FUNCTION wgws_log();";

/* A peer's columns as text, in the order row_to_peer() reads them. */
#define PEER_COLS                                                                          \
	"encode(pubkey, 'hex'), host(ip4), host(ip6), encode(psk, 'hex'), keepalive, name,"  \
	" array_to_string(routes, ','), extract(epoch FROM created_at)::bigint,"            \
	" coalesce(extract(epoch FROM expires_at)::bigint, 0)"

/* Sent once per connection, before anything else (one simple-protocol query string). */
static const char setup_sql[] =
	"SET application_name = 'wgws-provisioner';"
	"LISTEN wgws_changes;"
	"PREPARE wgws_lookup(text) AS SELECT " PEER_COLS " FROM wgws_peers"
	" WHERE pubkey = decode($1, 'hex');"
	"PREPARE wgws_create(text, text, integer, text, text, bigint) AS"
	" INSERT INTO wgws_peers (pubkey, psk, keepalive, name, routes, expires_at)"
	" VALUES (decode($1, 'hex'), decode(nullif($2, ''), 'hex'), $3, $4,"
	"  coalesce(string_to_array(nullif($5, ''), ',')::cidr[], '{}'),"
	"  CASE WHEN $6 = 0 THEN NULL ELSE to_timestamp($6) END)"
	" RETURNING " PEER_COLS ";"
	"PREPARE wgws_delete(text) AS DELETE FROM wgws_peers WHERE pubkey = decode($1, 'hex')"
	" RETURNING 1;"
	"PREPARE wgws_expire AS DELETE FROM wgws_peers WHERE pubkey IN (SELECT pubkey"
	" FROM wgws_peers WHERE expires_at <= now() ORDER BY expires_at LIMIT 256);"
	"PREPARE wgws_changes_after(bigint) AS SELECT seq, encode(pubkey, 'hex'), op"
	" FROM wgws_changes WHERE seq > $1 ORDER BY seq LIMIT 512;"
	"SELECT version FROM wgws_schema;";

enum op_kind { OP_SETUP, OP_LOOKUP, OP_CREATE, OP_DELETE, OP_CHANGES, OP_EXPIRE };

struct source_op {
	struct source_op *next;
	enum op_kind kind;
	source_done_fn *done;
	void *arg;
	bool cancelled;
	int err;               /* decided before the answer (a failed send) */
	bool more;             /* OP_CHANGES: a full page: read on */
	bool have_peer;
	struct store_peer peer; /* the answer's row; a create's request before that */
	uint8_t key[WG_KEY_LEN];
};

enum src_state { SRC_OFF, SRC_DOWN, SRC_CONNECTING, SRC_SETUP, SRC_UP };

static struct {
	char *conninfo;
	enum src_state state;
	PGconn *conn;
	struct lws *wsi;        /* our dup of libpq's socket, while connected or connecting */
	int sock;               /* libpq's descriptor number we dup'ed ... */
	dev_t sock_dev;         /* ... and its socket's identity: libpq may close a socket and */
	ino_t sock_ino;         /* get the same number for the next one (another host) */
	bool reread;            /* a notification came while the log was being read */
	struct source_op *head, **tail, *inflight;
	unsigned queued;
	uint64_t sent_ms;       /* when the operation in flight was sent */
	uint64_t connect_ms;    /* when the connection attempt began */
	unsigned backoff_ms;
	int64_t seq;            /* the last change applied (also in the store) */
	bool changes_queued;
	lws_sorted_usec_list_t kick_sul, tick_sul, retry_sul;
	struct lws_vhost *vhost;
} src = { .sock = -1 };

static uint64_t now_ms(void)
{
	return (uint64_t)(prov_now_s() * 1000.0);
}

/* ---- the rows ---- */

/* A bytea column as encode(x, 'hex') gives it, exactly n bytes. 0 or -EINVAL. */
static int hex_bytes(const char *s, uint8_t *out, size_t n)
{
	size_t got = 0;

	if (sodium_hex2bin(out, n, s, strlen(s), NULL, &got, NULL) < 0 || got != n)
		return -EINVAL;
	return 0;
}

/* Row r of res (PEER_COLS) into p. 0 or -EBADMSG (a row this version cannot take). */
static int row_to_peer(const PGresult *res, int r, struct store_peer *p)
{
	const char *v;
	char routes[512], *save = NULL;

	memset(p, 0, sizeof(*p));
	if (PQnfields(res) != 9 || hex_bytes(PQgetvalue(res, r, 0), p->pubkey, WG_KEY_LEN) < 0)
		return -EBADMSG;
	if (!PQgetisnull(res, r, 1)) {
		struct in_addr a;

		if (inet_pton(AF_INET, PQgetvalue(res, r, 1), &a) != 1)
			return -EBADMSG;
		p->has_ip4 = true;
		p->ip4 = ntohl(a.s_addr);
	}
	if (!PQgetisnull(res, r, 2)) {
		if (inet_pton(AF_INET6, PQgetvalue(res, r, 2), p->ip6) != 1)
			return -EBADMSG;
		p->has_ip6 = true;
	}
	if (!PQgetisnull(res, r, 3)) {
		if (hex_bytes(PQgetvalue(res, r, 3), p->psk, WG_KEY_LEN) < 0)
			return -EBADMSG;
		p->has_psk = true;
	}
	p->keepalive_s = (uint16_t)strtoul(PQgetvalue(res, r, 4), NULL, 10);
	v = PQgetvalue(res, r, 5);
	if (strlen(v) > PROV_NAME_MAX)
		return -EBADMSG;
	strcpy(p->name, v);
	v = PQgetvalue(res, r, 6);
	if (strlen(v) >= sizeof(routes))
		return -EBADMSG;
	strcpy(routes, v);
	for (char *t = strtok_r(routes, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (p->n_routes == sizeof(p->routes) / sizeof(p->routes[0]) ||
		    cidr_parse(t, &p->routes[p->n_routes]) < 0)
			return -EBADMSG;
		p->n_routes++;
	}
	p->created_at = strtoll(PQgetvalue(res, r, 7), NULL, 10);
	p->expires_at = strtoll(PQgetvalue(res, r, 8), NULL, 10);
	return 0;
}

/* ---- the queue ---- */

static void kick(void);

static void op_finish(struct source_op *op, int err, const struct store_peer *p)
{
	if (!op->cancelled && op->done)
		op->done(op->arg, err, p);
	sodium_memzero(op, sizeof(*op)); /* a create's PSK */
	free(op);
}

/* Every waiting operation fails (the connection broke, or is not up). */
static void fail_queue(int err)
{
	while (src.head) {
		struct source_op *op = src.head;

		src.head = op->next;
		src.queued--;
		if (op->kind == OP_CHANGES)
			src.changes_queued = false;
		op_finish(op, err, NULL);
	}
	src.tail = &src.head;
}

static struct source_op *enqueue(enum op_kind kind, source_done_fn *done, void *arg)
{
	struct source_op *op;

	if (src.queued >= SOURCE_QUEUE_MAX)
		return NULL;
	op = calloc(1, sizeof(*op));
	if (!op)
		return NULL;
	op->kind = kind;
	op->done = done;
	op->arg = arg;
	if (src.state != SRC_UP)
		op->err = -EAGAIN; /* answered from the loop, at once */
	*src.tail = op;
	src.tail = &op->next;
	src.queued++;
	kick();
	return op;
}

/* ---- the connection ---- */

static void drop_wsi(void)
{
	if (src.wsi) {
		lws_set_opaque_user_data(src.wsi, NULL);
		lws_set_timeout(src.wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		src.wsi = NULL;
	}
	src.sock = -1;
}

static void retry_cb(lws_sorted_usec_list_t *sul);

/* The connection is gone (or never came): everything waiting fails at once, a new attempt
 * after the back-off. */
static void src_fail(const char *why)
{
	bool was_up = src.state == SRC_UP;

	if (src.state == SRC_OFF)
		return;
	if (was_up || src.backoff_ms >= 8000 || !src.backoff_ms)
		log_warnx("source: %s%s%s", why, src.conn ? ": " : "",
			  src.conn ? PQerrorMessage(src.conn) : "");
	prov.st.source_failures++;
	drop_wsi();
	if (src.conn)
		PQfinish(src.conn);
	src.conn = NULL;
	src.state = SRC_DOWN;
	if (src.inflight) {
		struct source_op *op = src.inflight;

		src.inflight = NULL;
		if (op->kind == OP_CHANGES)
			src.changes_queued = false;
		op_finish(op, -EAGAIN, NULL);
	}
	fail_queue(-EAGAIN);
	src.backoff_ms = !src.backoff_ms ? 250 : src.backoff_ms >= 8000 ? 8000 : src.backoff_ms * 2;
	lws_sul_schedule(prov.ctx, 0, &src.retry_sul, retry_cb,
			 (lws_usec_t)src.backoff_ms * LWS_US_PER_MS);
}

/* Follow libpq's socket: adopt a dup of it when it is new (it may change while connecting). */
static int track_socket(void)
{
	int fd = PQsocket(src.conn), dupfd;
	lws_sock_file_fd_type desc;
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0)
		return -EBADF;
	if (fd == src.sock && src.wsi && st.st_dev == src.sock_dev && st.st_ino == src.sock_ino)
		return 0;
	drop_wsi();
	dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (dupfd < 0)
		return -errno;
	desc.filefd = dupfd;
	src.wsi = lws_adopt_descriptor_vhost(src.vhost, LWS_ADOPT_RAW_FILE_DESC, desc,
					     "wgws-source", NULL);
	if (!src.wsi) {
		close(dupfd);
		return -ENOMEM;
	}
	lws_set_opaque_user_data(src.wsi, &src);
	src.sock = fd;
	src.sock_dev = st.st_dev;
	src.sock_ino = st.st_ino;
	return 0;
}

static void send_next(void);

static void connect_step(void)
{
	PostgresPollingStatusType st = PQconnectPoll(src.conn);

	if (st == PGRES_POLLING_FAILED) {
		src_fail("cannot connect");
		return;
	}
	if (track_socket() < 0) {
		src_fail("cannot watch the connection's socket");
		return;
	}
	if (st == PGRES_POLLING_WRITING) {
		lws_callback_on_writable(src.wsi);
		return;
	}
	if (st != PGRES_POLLING_OK)
		return; /* reading: the next readable event */
	if (PQsetnonblocking(src.conn, 1) < 0) {
		src_fail("cannot make the connection non-blocking");
		return;
	}
	src.state = SRC_SETUP;
	src.inflight = calloc(1, sizeof(*src.inflight));
	if (!src.inflight || !PQsendQuery(src.conn, setup_sql)) {
		free(src.inflight);
		src.inflight = NULL;
		src_fail("cannot send the set-up");
		return;
	}
	src.inflight->kind = OP_SETUP;
	src.sent_ms = now_ms();
	if (PQflush(src.conn) == 1)
		lws_callback_on_writable(src.wsi);
}

static void src_connect(void)
{
	src.conn = PQconnectStart(src.conninfo);
	src.connect_ms = now_ms();
	if (!src.conn || PQstatus(src.conn) == CONNECTION_BAD) {
		src.state = SRC_CONNECTING;
		src_fail("cannot start a connection");
		return;
	}
	src.state = SRC_CONNECTING;
	connect_step();
}

static void retry_cb(lws_sorted_usec_list_t *sul)
{
	if (src.state == SRC_DOWN)
		src_connect();
}

/* ---- answers ---- */

static void queue_changes(void)
{
	struct source_op *op;

	if (src.changes_queued) {
		src.reread = true; /* read again once the read under way is done */
		return;
	}
	if (src.state != SRC_UP)
		return;
	op = enqueue(OP_CHANGES, NULL, NULL);
	if (op)
		src.changes_queued = true;
}

/* A change from the log: a deleted (or changed) peer leaves this gateway's device, whether
 * the cache has it or not (a cache rebuilt, or a row displaced, must not leave a revoked peer
 * installed), and its cache (a changed one comes back, as it is now, at its next handshake);
 * any change ends a negative-cache entry (a key created elsewhere must not stay "unknown"
 * here). 0, or -errno when the device refused: the log is read again from this change. */
static int apply_change(const uint8_t key[static WG_KEY_LEN], char op)
{
	int ret;

	jit_forget(key);
	if (op == 'I')
		return 0;
	ret = wgdev_remove(prov.dev, (const uint8_t(*)[WG_KEY_LEN])key, 1);
	if (ret < 0) {
		log_warnx("source: a %s peer could not leave %s: %s (tried again)",
			  op == 'D' ? "deleted" : "changed", prov.cfg.ifname, strerror(-ret));
		return ret;
	}
	ret = peer_delete(key, NULL);
	if (ret == 0)
		prov.st.source_removed++;
	else if (ret != -ENOENT)
		log_warnx("source: a %s peer could not leave the cache: %s",
			  op == 'D' ? "deleted" : "changed", store_errmsg(prov.store));
	return 0;
}

static int take_changes(const PGresult *res)
{
	int n = PQntuples(res);
	int64_t seq = src.seq;

	for (int r = 0; r < n; r++) {
		uint8_t key[WG_KEY_LEN];
		const char *op = PQgetvalue(res, r, 2);

		if (hex_bytes(PQgetvalue(res, r, 1), key, sizeof(key)) == 0 &&
		    apply_change(key, op[0]) < 0)
			break; /* not past a change not applied: the next read starts here */
		seq = strtoll(PQgetvalue(res, r, 0), NULL, 10);
		prov.st.source_changes++;
	}
	if (seq != src.seq) {
		src.seq = seq;
		if (store_set_source_seq(prov.store, seq) < 0)
			log_warnx("source: cannot record change %lld in the store: %s",
				  (long long)seq, store_errmsg(prov.store));
		prov.writes_since_checkpoint = true;
	}
	prov.st.source_synced_at = prov_wall_s();
	return n;
}

/* One result of the operation in flight. */
static void take_result(struct source_op *op, PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	if (op->err)
		return; /* the first failure is the answer */
	if (st == PGRES_FATAL_ERROR) {
		const char *con = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);

		if (state && !strcmp(state, "23505") && con && !strcmp(con, "wgws_peers_pkey"))
			op->err = -EEXIST;
		else if (state && (!strcmp(state, "23505") || !strcmp(state, "23P01")))
			op->err = -EADDRINUSE; /* an address or route another peer has */
		else if (state && !strcmp(state, "WG001"))
			op->err = -EADDRNOTAVAIL;
		else {
			op->err = -EIO;
			log_warnx("source: %s", PQresultErrorMessage(res));
		}
		return;
	}
	if (st != PGRES_TUPLES_OK)
		return; /* the set-up's SET, LISTEN and PREPAREs */
	switch (op->kind) {
	case OP_SETUP:
		if (PQntuples(res) != 1 || atoi(PQgetvalue(res, 0, 0)) != SCHEMA_VERSION) {
			int v = PQntuples(res) ? atoi(PQgetvalue(res, 0, 0)) : 0;

			op->err = -EPROTO;
			log_warnx("source: its schema is version %d, this program's %d (%s)", v,
				  SCHEMA_VERSION, v > SCHEMA_VERSION ? "upgrade this program" :
				  "run wgws-provisioner db migrate");
		}
		break;
	case OP_LOOKUP:
	case OP_CREATE:
		if (PQntuples(res) == 0) {
			op->err = -ENOENT;
			break;
		}
		if (row_to_peer(res, 0, &op->peer) < 0) {
			op->err = -EIO;
			log_warnx("source: a row this version cannot read");
			break;
		}
		op->have_peer = true;
		break;
	case OP_DELETE:
		if (PQntuples(res) == 0)
			op->err = -ENOENT;
		break;
	case OP_EXPIRE:
		break;
	case OP_CHANGES:
		op->more = take_changes(res) == 512;
		break;
	}
}

/* The operation in flight is complete (its last result read). */
static void op_complete(void)
{
	struct source_op *op = src.inflight;
	double ms = (double)(now_ms() - src.sent_ms);

	src.inflight = NULL;
	hist_observe(&prov.st.source_latency, ms / 1000.0);
	if (op->kind == OP_SETUP) {
		int err = op->err;

		free(op);
		if (err) {
			src_fail("the set-up failed");
			return;
		}
		src.state = SRC_UP;
		src.backoff_ms = 0;
		log_info("source: connected (%s), catching up from change %lld", PQhost(src.conn),
			 (long long)src.seq);
		queue_changes(); /* whatever happened while we were away */
		return;
	}
	if (op->kind == OP_CHANGES) {
		src.changes_queued = false;
		if (op->more || src.reread)
			queue_changes(); /* a full page, or news since: more after it */
		src.reread = false;
	}
	op_finish(op, op->err, op->have_peer ? &op->peer : NULL);
}

static void read_input(void)
{
	PGnotify *n;

	if (!PQconsumeInput(src.conn)) {
		src_fail("the connection broke");
		return;
	}
	while ((n = PQnotifies(src.conn))) {
		prov.st.source_notifications++;
		PQfreemem(n);
		queue_changes();
	}
	while (src.inflight && !PQisBusy(src.conn)) {
		PGresult *res = PQgetResult(src.conn);

		if (!res) {
			op_complete();
			if (src.state != SRC_UP && src.state != SRC_SETUP)
				return;
			continue;
		}
		take_result(src.inflight, res);
		PQclear(res);
	}
	if (PQstatus(src.conn) == CONNECTION_BAD) {
		src_fail("the connection broke");
		return;
	}
	while ((n = PQnotifies(src.conn))) { /* parsed with the results above */
		prov.st.source_notifications++;
		PQfreemem(n);
		queue_changes();
	}
	send_next();
}

static void send_next(void)
{
	struct source_op *op;
	char key[2 * WG_KEY_LEN + 1], psk[2 * WG_KEY_LEN + 1], ka[8], routes[512], exp[24];
	char seq[24];
	const char *v[6];
	int ok = 0;

	if (src.state != SRC_UP || src.inflight || !src.head)
		return;
	op = src.head;
	src.head = op->next;
	if (!src.head)
		src.tail = &src.head;
	src.queued--;
	if (op->cancelled || op->err) {
		/* queued while the connection was not up: answered so, never sent after */
		if (op->kind == OP_CHANGES)
			src.changes_queued = false;
		op_finish(op, op->err, NULL);
		kick();
		return;
	}
	sodium_bin2hex(key, sizeof(key), op->key, WG_KEY_LEN);
	switch (op->kind) {
	case OP_LOOKUP:
		v[0] = key;
		ok = PQsendQueryPrepared(src.conn, "wgws_lookup", 1, v, NULL, NULL, 0);
		break;
	case OP_DELETE:
		v[0] = key;
		ok = PQsendQueryPrepared(src.conn, "wgws_delete", 1, v, NULL, NULL, 0);
		break;
	case OP_CREATE: {
		size_t off = 0;

		sodium_bin2hex(key, sizeof(key), op->peer.pubkey, WG_KEY_LEN);
		if (op->peer.has_psk)
			sodium_bin2hex(psk, sizeof(psk), op->peer.psk, WG_KEY_LEN);
		else
			psk[0] = '\0';
		snprintf(ka, sizeof(ka), "%u", op->peer.keepalive_s);
		routes[0] = '\0';
		for (unsigned i = 0; i < op->peer.n_routes; i++) {
			char c[CIDR_STR];

			off += (size_t)snprintf(routes + off, sizeof(routes) - off, "%s%s",
						i ? "," : "", cidr_format(&op->peer.routes[i], c));
		}
		snprintf(exp, sizeof(exp), "%lld", (long long)op->peer.expires_at);
		v[0] = key, v[1] = psk, v[2] = ka, v[3] = op->peer.name, v[4] = routes, v[5] = exp;
		ok = PQsendQueryPrepared(src.conn, "wgws_create", 6, v, NULL, NULL, 0);
		sodium_memzero(psk, sizeof(psk));
		break;
	}
	case OP_CHANGES:
		snprintf(seq, sizeof(seq), "%lld", (long long)src.seq);
		v[0] = seq;
		ok = PQsendQueryPrepared(src.conn, "wgws_changes_after", 1, v, NULL, NULL, 0);
		break;
	case OP_EXPIRE:
		ok = PQsendQueryPrepared(src.conn, "wgws_expire", 0, NULL, NULL, NULL, 0);
		break;
	case OP_SETUP:
		break;
	}
	src.inflight = op;
	src.sent_ms = now_ms();
	if (!ok) {
		src_fail("cannot send a query");
		return;
	}
	if (PQflush(src.conn) == 1)
		lws_callback_on_writable(src.wsi);
}

/* From the loop: answer what cannot wait (the source is not up), send what can go. */
static void kick_cb(lws_sorted_usec_list_t *sul)
{
	if (src.state != SRC_UP) {
		fail_queue(-EAGAIN);
		return;
	}
	send_next();
}

static void kick(void)
{
	lws_sul_schedule(prov.ctx, 0, &src.kick_sul, kick_cb, 1);
}

/* Every SOURCE_POLL_MS: read the change log (the safety net under NOTIFY), and give up on
 * a connection whose query or connection attempt has hung (a cut, not a close). */
static void tick_cb(lws_sorted_usec_list_t *sul)
{
	uint64_t now = now_ms();

	if ((src.state == SRC_CONNECTING && now - src.connect_ms > SOURCE_TIMEOUT_MS) ||
	    ((src.state == SRC_UP || src.state == SRC_SETUP) && src.inflight &&
	     now - src.sent_ms > SOURCE_TIMEOUT_MS))
		src_fail("no answer within 3 s");
	else if (src.state == SRC_UP)
		queue_changes();
	lws_sul_schedule(prov.ctx, 0, &src.tick_sul, tick_cb,
			 (lws_usec_t)SOURCE_POLL_MS * LWS_US_PER_MS);
}

static int source_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
			   void *in, size_t len)
{
	if (!lws_get_opaque_user_data(wsi))
		return 0; /* a socket we let go of */
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		if (src.state == SRC_CONNECTING)
			connect_step();
		else if (src.conn)
			read_input();
		return 0;
	case LWS_CALLBACK_RAW_WRITEABLE_FILE:
		if (src.state == SRC_CONNECTING)
			connect_step();
		else if (src.conn && PQflush(src.conn) == 1)
			lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		if (wsi == src.wsi) {
			src.wsi = NULL;
			src.sock = -1;
			src_fail("the connection's socket closed");
		}
		return 0;
	default:
		return 0;
	}
}

const struct lws_protocols *source_protocol(void)
{
	static const struct lws_protocols proto = { "wgws-source", source_callback, 0, 0, 0,
						    NULL, 0 };

	return &proto;
}

/* ---- the interface ---- */

int source_init(const char *conninfo, char *err, size_t errlen)
{
	char *msg = NULL;
	PQconninfoOption *o = PQconninfoParse(conninfo, &msg);

	if (!o) {
		snprintf(err, errlen, "--source: %s", msg ? msg : "not a connection string");
		PQfreemem(msg);
		return -EINVAL;
	}
	PQconninfoFree(o);
	free(src.conninfo);
	src.conninfo = strdup(conninfo);
	src.tail = &src.head;
	return src.conninfo ? 0 : -ENOMEM;
}

void source_start(void)
{
	if (!src.conninfo)
		return;
	src.vhost = lws_get_vhost_by_name(prov.ctx, "api");
	if (!src.vhost)
		fatalx("source: no vhost to watch the connection from");
	if (store_source_seq(prov.store, &src.seq) < 0)
		fatalx("source: the store's change position: %s", store_errmsg(prov.store));
	store_set_cache(prov.store);
	src.state = SRC_DOWN;
	src_connect();
	lws_sul_schedule(prov.ctx, 0, &src.tick_sul, tick_cb,
			 (lws_usec_t)SOURCE_POLL_MS * LWS_US_PER_MS);
}

void source_stop(void)
{
	if (src.state == SRC_OFF)
		return;
	lws_sul_cancel(&src.kick_sul);
	lws_sul_cancel(&src.tick_sul);
	lws_sul_cancel(&src.retry_sul);
	src.state = SRC_OFF;
	drop_wsi();
	if (src.conn)
		PQfinish(src.conn);
	src.conn = NULL;
	if (src.inflight)
		op_finish(src.inflight, -EAGAIN, NULL);
	src.inflight = NULL;
	fail_queue(-EAGAIN);
	free(src.conninfo);
	src.conninfo = NULL;
}

bool source_connected(void)
{
	return src.state == SRC_UP;
}

int source_cache_put(const struct store_peer *p)
{
	uint8_t displaced[2][WG_KEY_LEN];
	unsigned n;
	int ret = store_cache_put(prov.store, p, displaced, &n);

	prov.writes_since_checkpoint = true;
	if (ret < 0) {
		log_warnx("source: caching a peer: %s", ret == -ENOSPC ? strerror(-ret) :
			  store_errmsg(prov.store));
		return ret;
	}
	for (unsigned i = 0; i < n; i++)
		if (wgdev_remove(prov.dev, (const uint8_t(*)[WG_KEY_LEN])displaced[i], 1) < 0)
			log_warnx("source: a peer whose address the source gave on stays in %s",
				  prov.cfg.ifname);
	return 0;
}

int64_t source_seq(void)
{
	return src.seq;
}

bool source_configured(void)
{
	return src.conninfo != NULL;
}

struct source_op *source_lookup(const uint8_t key[static WG_KEY_LEN], source_done_fn *done,
				void *arg)
{
	struct source_op *op = enqueue(OP_LOOKUP, done, arg);

	if (op)
		memcpy(op->key, key, WG_KEY_LEN);
	return op;
}

struct source_op *source_create(const struct store_peer *p, source_done_fn *done, void *arg)
{
	struct source_op *op = enqueue(OP_CREATE, done, arg);

	if (op)
		op->peer = *p;
	return op;
}

void source_expire(void)
{
	if (src.state == SRC_UP)
		(void)enqueue(OP_EXPIRE, NULL, NULL);
}

struct source_op *source_delete(const uint8_t key[static WG_KEY_LEN], source_done_fn *done,
				void *arg)
{
	struct source_op *op = enqueue(OP_DELETE, done, arg);

	if (op)
		memcpy(op->key, key, WG_KEY_LEN);
	return op;
}

void source_cancel(struct source_op *op)
{
	if (op)
		op->cancelled = true;
}

/* ---- `wgws-provisioner db` ---- */

static const char db_usage[] =
	"usage: wgws-provisioner db init --source URL [--pool4 CIDR] [--pool6 PREFIX/64]\n"
	"       wgws-provisioner db migrate --source URL\n"
	"       wgws-provisioner db status --source URL\n"
	"\n"
	"The PostgreSQL schema that several gateways share (serve --source URL; docs/SCALEOUT.md).\n"
	"init creates it, with the address pools every gateway hands out from (the same as their\n"
	"--pool4/--pool6: a gateway's own address is the pool's first, peers get the rest);\n"
	"migrate brings an older schema to this version; status prints its version, the pools,\n"
	"the peers and the change log's end. URL: a libpq connection string or URI\n"
	"(postgresql://user@host/db?sslmode=verify-full); libpq's PG* variables apply.\n"
	"\n"
	"Exit status: 0 done, 1 the database refused, 2 usage.\n";

static int db_exec(PGconn *c, const char *sql, int nparams, const char *const *v)
{
	/* Without parameters, the simple protocol: a script of several statements. */
	PGresult *r = nparams ? PQexecParams(c, sql, nparams, NULL, v, NULL, NULL, 0) :
		      PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	int ret = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -EIO;

	if (ret)
		fprintf(stderr, "wgws-provisioner db: %s", PQresultErrorMessage(r));
	PQclear(r);
	return ret;
}

/* The schema's version, 0 when there is none; -EIO when the query fails. */
static int db_version(PGconn *c)
{
	PGresult *r = PQexec(c, "SELECT to_regclass('wgws_schema') IS NOT NULL");
	int v = -EIO;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		v = strcmp(PQgetvalue(r, 0, 0), "t") ? 0 : 1;
	PQclear(r);
	if (v != 1)
		return v;
	r = PQexec(c, "SELECT max(version) FROM wgws_schema");
	v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ?
		atoi(PQgetvalue(r, 0, 0)) : -EIO;
	PQclear(r);
	return v;
}

static int db_init(PGconn *c, const struct cidr *pool4, const struct cidr *pool6)
{
	char first[INET_ADDRSTRLEN] = "", last[INET_ADDRSTRLEN] = "", p6[CIDR_STR] = "";
	const char *v[4];
	int ver = db_version(c);

	if (ver < 0)
		return 1;
	if (ver > 0) {
		printf("the schema is there already (version %d): nothing done\n", ver);
		return 0;
	}
	if (pool4) {
		uint32_t net, size;
		struct in_addr a;

		memcpy(&net, pool4->addr, 4);
		net = ntohl(net);
		size = pool4->bits == 0 ? 0 : 1u << (32 - pool4->bits);
		a.s_addr = htonl(net + 2); /* net + 1 is the gateways' */
		inet_ntop(AF_INET, &a, first, sizeof(first));
		a.s_addr = htonl(net + size - 2);
		inet_ntop(AF_INET, &a, last, sizeof(last));
	}
	if (pool6)
		cidr_format(pool6, p6);
	v[0] = pool4 ? first : NULL;
	v[1] = pool4 ? last : NULL;
	v[2] = pool6 ? p6 : NULL;
	if (db_exec(c, "BEGIN", 0, NULL) || db_exec(c, schema_v1, 0, NULL) ||
	    db_exec(c, "INSERT INTO wgws_pool (id, ip4_first, ip4_last, ip4_next, ip6_prefix)"
		       " VALUES (1, $1::inet, $2::inet, $1::inet, $3::cidr)", 3, v) ||
	    db_exec(c, "COMMIT", 0, NULL)) {
		(void)db_exec(c, "ROLLBACK", 0, NULL);
		return 1;
	}
	printf("schema version %d created; pools: IPv4 %s%s%s, IPv6 %s\n", SCHEMA_VERSION,
	       pool4 ? first : "none", pool4 ? " - " : "", pool4 ? last : "",
	       pool6 ? p6 : "none");
	return 0;
}

static int db_status(PGconn *c)
{
	PGresult *r;
	int ver = db_version(c);

	if (ver <= 0) {
		printf("no wgws schema here (run: wgws-provisioner db init)\n");
		return ver < 0 ? 1 : 0;
	}
	r = PQexec(c, "SELECT coalesce(host(ip4_first) || ' - ' || host(ip4_last), 'none'),"
		   " coalesce(ip6_prefix::text, 'none'), (SELECT count(*) FROM wgws_peers),"
		   " (SELECT coalesce(max(seq), 0) FROM wgws_changes) FROM wgws_pool");
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		fprintf(stderr, "wgws-provisioner db: %s", PQresultErrorMessage(r));
		PQclear(r);
		return 1;
	}
	printf("schema version %d (this program's %d)\npools: IPv4 %s, IPv6 %s\npeers: %s\n"
	       "change log: up to %s\n", ver, SCHEMA_VERSION, PQgetvalue(r, 0, 0),
	       PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3));
	PQclear(r);
	return 0;
}

int source_db_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "source", required_argument, NULL, 's' },
		{ "pool4", required_argument, NULL, '4' },
		{ "pool6", required_argument, NULL, '6' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cidr pool4, pool6;
	bool has4 = false, has6 = false;
	const char *url = NULL, *cmd;
	PGconn *c;
	int ch, ret = 0;

	log_init("wgws-provisioner", 0);
	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 's':
			url = optarg;
			break;
		case '4':
			if (cidr_parse(optarg, &pool4) < 0 || pool4.family != AF_INET ||
			    pool4.bits > 30)
				fatal_usage("--pool4: '%s' is not an IPv4 network of /30 or more", optarg);
			has4 = true;
			break;
		case '6':
			if (cidr_parse(optarg, &pool6) < 0 || pool6.family != AF_INET6 ||
			    pool6.bits != 64)
				fatal_usage("--pool6: '%s' is not an IPv6 /64", optarg);
			has6 = true;
			break;
		case 'h':
			fputs(db_usage, stdout);
			return 0;
		default:
			fputs(db_usage, stderr);
			return 2;
		}
	}
	if (optind != argc - 1)
		fatal_usage("db: one command: init, migrate or status");
	cmd = argv[optind];
	if (strcmp(cmd, "init") && strcmp(cmd, "migrate") && strcmp(cmd, "status"))
		fatal_usage("db: '%s' is not init, migrate or status", cmd);
	if (!url)
		fatal_usage("db %s needs --source URL", cmd);
	if ((has4 || has6) && strcmp(cmd, "init"))
		fatal_usage("--pool4 and --pool6 are for db init");
	c = PQconnectdb(url);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "wgws-provisioner db: cannot connect: %s", PQerrorMessage(c));
		PQfinish(c);
		return 1;
	}
	if (!strcmp(cmd, "init")) {
		ret = db_init(c, has4 ? &pool4 : NULL, has6 ? &pool6 : NULL);
	} else if (!strcmp(cmd, "status")) {
		ret = db_status(c);
	} else {
		int ver = db_version(c);

		if (ver <= 0) {
			fprintf(stderr, "wgws-provisioner db: %s\n", ver < 0 ? "cannot read the "
				"schema's version" : "no wgws schema here: run db init");
			ret = 1;
		} else if (ver > SCHEMA_VERSION) {
			fprintf(stderr, "wgws-provisioner db: the schema is version %d, newer than "
				"this program's %d: upgrade the program\n", ver, SCHEMA_VERSION);
			ret = 1;
		} else {
			printf("schema version %d: up to date\n", ver);
		}
	}
	PQfinish(c);
	return ret;
}

