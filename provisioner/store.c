/* SPDX-License-Identifier: MIT */
/* The peer store: one SQLite file in WAL mode, written only by the provisioner's event loop.
 *
 * It owns the peer table (keyed by the raw 32-byte public key, WITHOUT ROWID), the IPv4
 * allocator (a high-water mark plus a free list with a hold-down) and the IPv6 host part
 * derived from the key. Every statement is prepared once at open; nothing on the create path
 * costs more than an index seek, whatever the number of peers. Counts are kept by triggers in
 * the one-row alloc table, so they follow commits and rollbacks and cost one seek to read.
 *
 * It must never hand out an IPv4 address before its hold-down has passed, never trust what it
 * reads back (a row that does not fit struct store_peer is -EBADMSG, never an overflow), and
 * never log: errors are -errno, with an err text at open only.
 *
 * No two peers' allowed IPs overlap (WireGuard would silently give the shared addresses to
 * the newest peer). The route table indexes every peer's extra prefixes by their first and
 * last address; stored prefixes never overlap each other, so sorted by first address they are
 * sorted by last address too, and the one prefix that could overlap a new one is the last to
 * start at or before the new one's end: one index seek per prefix (route_overlap). The
 * addresses handed out need no table of their own: a new prefix containing one is one seek
 * on the ip4/ip6 UNIQUE index (address_overlap), and the address a create gets is checked
 * against the route table like a /32 or /128. A store from before schema 2 gets its route
 * table built at open; overlaps it already holds are reported at every open (err, as a
 * warning) and left alone, and while it holds them the check takes a slower path that does
 * not need the prefixes disjoint (up to 129 seeks per prefix).
 *
 * Transactions: store_create/store_delete run in BEGIN IMMEDIATE ... COMMIT of their own, or,
 * inside a caller's store_begin(), in a SAVEPOINT, so a failed create inside a GC batch undoes
 * only itself; the batch becomes durable at store_commit(). store_begin() does not nest. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "prov.h"

enum {
	STORE_SCHEMA_VERSION = 2,    /* 2: the route table; a 1 is brought up to 2 at open */
	STORE_HOLD_DOWN_MIN_S = 180, /* REJECT_AFTER_TIME: the kernel may still use the address */
	STORE_BUSY_TIMEOUT_MS = 100,
	STORE_BATCH = 32,            /* rows copied out per query by the list functions */
	STORE_IP6_TRIES = 16,
	STORE_MAX_ROUTES = PROV_MAX_ALLOWED - 2,
	STORE_ROUTES_STR = STORE_MAX_ROUTES * CIDR_STR, /* "a/n,b/m,..." and a NUL */
	STORE_ERRMSG = 256,
	STORE_MIN_SQLITE = 3037000,  /* STRICT tables; RETURNING is 3.35 */
	ROUTE_KEY_MAX = 17,          /* family tag (4 or 6) and a 4- or 16-byte address */
};

#define PEER_COLS \
	"pubkey, ip4, ip6, psk, keepalive, name, routes, created_at, expires_at, last_seen, " \
	"last_ts, installed_at"

enum peer_col {
	C_PUBKEY, C_IP4, C_IP6, C_PSK, C_KEEPALIVE, C_NAME, C_ROUTES, C_CREATED, C_EXPIRES,
	C_LAST_SEEN, C_LAST_TS, C_INSTALLED,
};

static const char schema_sql[] =
	"CREATE TABLE meta ("
	" id INTEGER PRIMARY KEY CHECK (id = 1),"
	" version INTEGER NOT NULL,"
	" has_ip4 INTEGER NOT NULL, ip4_first INTEGER NOT NULL, ip4_last INTEGER NOT NULL,"
	" has_ip6 INTEGER NOT NULL, ip6_prefix BLOB NOT NULL CHECK (length(ip6_prefix) = 8)"
	") STRICT;"
	"CREATE TABLE peer ("
	" pubkey BLOB NOT NULL PRIMARY KEY CHECK (length(pubkey) = 32),"
	" ip4 INTEGER UNIQUE CHECK (ip4 IS NULL OR ip4 BETWEEN 0 AND 4294967295),"
	" ip6 BLOB UNIQUE CHECK (ip6 IS NULL OR length(ip6) = 16),"
	" psk BLOB CHECK (psk IS NULL OR length(psk) = 32),"
	" keepalive INTEGER NOT NULL DEFAULT 0 CHECK (keepalive BETWEEN 0 AND 65535),"
	" name TEXT NOT NULL DEFAULT '' CHECK (length(CAST(name AS BLOB)) <= 64),"
	" routes TEXT NOT NULL DEFAULT '',"
	" created_at INTEGER NOT NULL,"
	" expires_at INTEGER,"
	" last_seen INTEGER,"
	" last_ts BLOB CHECK (last_ts IS NULL OR length(last_ts) = 12),"
	" installed_at INTEGER"
	") WITHOUT ROWID, STRICT;"
	"CREATE INDEX peer_installed ON peer(installed_at) WHERE installed_at IS NOT NULL;"
	"CREATE INDEX peer_expiry ON peer(expires_at) WHERE expires_at IS NOT NULL;"
	"CREATE TABLE ip4_free (ip INTEGER PRIMARY KEY, free_after INTEGER NOT NULL) STRICT;"
	"CREATE INDEX ip4_free_after ON ip4_free(free_after);"
	/* One row: the IPv4 high-water mark and the peer counts, so a create writes one page
	 * for both (a separate counts table costs a fifth WAL frame per commit). */
	"CREATE TABLE alloc ("
	" id INTEGER PRIMARY KEY CHECK (id = 1),"
	" next_ip4 INTEGER NOT NULL, last_ip4 INTEGER NOT NULL,"
	" stored INTEGER NOT NULL DEFAULT 0, installed INTEGER NOT NULL DEFAULT 0"
	") STRICT;"
	"CREATE TRIGGER peer_count_ins AFTER INSERT ON peer BEGIN"
	" UPDATE alloc SET stored = stored + 1,"
	"  installed = installed + (new.installed_at IS NOT NULL) WHERE id = 1; END;"
	"CREATE TRIGGER peer_count_del AFTER DELETE ON peer BEGIN"
	" UPDATE alloc SET stored = stored - 1,"
	"  installed = installed - (old.installed_at IS NOT NULL) WHERE id = 1; END;"
	"CREATE TRIGGER peer_count_inst AFTER UPDATE OF installed_at ON peer"
	" WHEN (old.installed_at IS NULL) <> (new.installed_at IS NULL) BEGIN"
	" UPDATE alloc SET installed = installed + (CASE WHEN new.installed_at IS NULL"
	"  THEN -1 ELSE 1 END) WHERE id = 1; END;";

/* Schema 2: every peer's routes (its extra allowed IPs) as index keys, see route_keys(). The
 * peer row's routes text stays what is read back; this table is only for the overlap check. */
static const char route_sql[] =
	"CREATE TABLE route ("
	" lo BLOB NOT NULL, hi BLOB NOT NULL,"
	" bits INTEGER NOT NULL CHECK (bits BETWEEN 0 AND 128),"
	" pubkey BLOB NOT NULL CHECK (length(pubkey) = 32),"
	" PRIMARY KEY (lo, pubkey)"
	") WITHOUT ROWID, STRICT;"
	"CREATE INDEX route_peer ON route(pubkey);"
	"CREATE TRIGGER peer_route_del AFTER DELETE ON peer BEGIN"
	" DELETE FROM route WHERE pubkey = old.pubkey; END;";

/* The replay guard outlives the peer: a deleted key's last accepted timestamp is kept, and
 * given back if the same key is created again, so an initiation recorded before the delete
 * cannot install the new peer (JIT). Run at every open: stores made before it get it too.
 * One row per deleted key that ever shook hands (44 bytes); the create path pays one seek. */
static const char tombstone_sql[] =
	"CREATE TABLE IF NOT EXISTS ts_tomb ("
	" pubkey BLOB NOT NULL PRIMARY KEY CHECK (length(pubkey) = 32),"
	" last_ts BLOB NOT NULL CHECK (length(last_ts) = 12)"
	") WITHOUT ROWID, STRICT;"
	"CREATE TRIGGER IF NOT EXISTS peer_tomb_del AFTER DELETE ON peer"
	" WHEN old.last_ts IS NOT NULL BEGIN"
	" INSERT OR REPLACE INTO ts_tomb (pubkey, last_ts) VALUES (old.pubkey, old.last_ts); END;"
	"CREATE TRIGGER IF NOT EXISTS peer_tomb_ins AFTER INSERT ON peer"
	" WHEN EXISTS (SELECT 1 FROM ts_tomb WHERE pubkey = new.pubkey) BEGIN"
	" UPDATE peer SET last_ts = (SELECT last_ts FROM ts_tomb WHERE pubkey = new.pubkey)"
	"  WHERE pubkey = new.pubkey;"
	" DELETE FROM ts_tomb WHERE pubkey = new.pubkey; END;";

/* --source (source.c): the last change of the source's log this cache has applied. Run at
 * every open, as the tombstones are. */
static const char source_sql[] =
	"CREATE TABLE IF NOT EXISTS source_state ("
	" id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL"
	") STRICT;";

enum stmt_id {
	S_BEGIN, S_COMMIT, S_ROLLBACK, S_SAVEPOINT, S_RELEASE, S_ROLLBACK_TO,
	S_GET, S_EXISTS, S_IP6_USED, S_POP_FREE, S_BUMP, S_INSERT, S_DELETE, S_FREE_IP4,
	S_LIST, S_EXPIRED, S_INSTALLED, S_SET_INSTALLED, S_SET_LAST_SEEN, S_ACCEPT_TS, S_COUNTS,
	S_ROUTE_NEAR, S_ROUTE_INSIDE, S_ROUTE_AT, S_ROUTE_ADD, S_IP4_IN, S_IP6_IN,
	S_CACHE_DROP, S_CACHE_KEEP, S_SEQ_GET, S_SEQ_SET, S_CACHE_HOLDERS,
	S_MAX
};

static const char *const stmt_sql[S_MAX] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_SAVEPOINT] = "SAVEPOINT store_op",
	[S_RELEASE] = "RELEASE store_op",
	[S_ROLLBACK_TO] = "ROLLBACK TO store_op",
	[S_GET] = "SELECT " PEER_COLS " FROM peer WHERE pubkey = ?1",
	[S_EXISTS] = "SELECT 1 FROM peer WHERE pubkey = ?1",
	[S_IP6_USED] = "SELECT 1 FROM peer WHERE ip6 = ?1",
	/* Oldest release first; ties by address, which the free_after index carries anyway. */
	[S_POP_FREE] = "DELETE FROM ip4_free WHERE ip = (SELECT ip FROM ip4_free"
		       " WHERE free_after <= ?1 ORDER BY free_after, ip LIMIT 1) RETURNING ip",
	[S_BUMP] = "UPDATE alloc SET next_ip4 = next_ip4 + 1 WHERE id = 1 AND next_ip4 <= last_ip4"
		   " RETURNING next_ip4 - 1",
	[S_INSERT] = "INSERT INTO peer (pubkey, ip4, ip6, psk, keepalive, name, routes, created_at,"
		     " expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[S_DELETE] = "DELETE FROM peer WHERE pubkey = ?1 RETURNING ip4",
	[S_FREE_IP4] = "INSERT INTO ip4_free (ip, free_after) VALUES (?1, ?2)",
	[S_LIST] = "SELECT " PEER_COLS " FROM peer WHERE pubkey > ?1 ORDER BY pubkey LIMIT ?2",
	/* (t, pubkey) is the cursor; the partial indexes hold exactly that order. */
	[S_EXPIRED] = "SELECT " PEER_COLS " FROM peer WHERE expires_at IS NOT NULL"
		      " AND expires_at <= ?1 AND (expires_at, pubkey) > (?2, ?3)"
		      " ORDER BY expires_at, pubkey LIMIT ?4",
	[S_INSTALLED] = "SELECT " PEER_COLS " FROM peer WHERE installed_at IS NOT NULL"
			" AND (installed_at, pubkey) > (?1, ?2)"
			" ORDER BY installed_at, pubkey LIMIT ?3",
	[S_SET_INSTALLED] = "UPDATE peer SET installed_at = ?2 WHERE pubkey = ?1",
	[S_SET_LAST_SEEN] = "UPDATE peer SET last_seen = ?2 WHERE pubkey = ?1",
	/* BLOB order is memcmp order, which is time order for big-endian TAI64N. */
	[S_ACCEPT_TS] = "UPDATE peer SET last_ts = ?2 WHERE pubkey = ?1"
			" AND (last_ts IS NULL OR last_ts < ?2)",
	[S_COUNTS] = "SELECT stored, installed FROM alloc WHERE id = 1",
	/* The last stored prefix to start at or before ?1 (a new prefix's last address). */
	[S_ROUTE_NEAR] = "SELECT lo, hi, bits, pubkey FROM route WHERE lo <= ?1"
			 " ORDER BY lo DESC LIMIT 1",
	/* Only when stored prefixes may nest (route_overlap): one starting inside [?1, ?2], one
	 * starting at ?1 that reaches ?2. */
	[S_ROUTE_INSIDE] = "SELECT lo, hi, bits, pubkey FROM route WHERE lo BETWEEN ?1 AND ?2"
			   " LIMIT 1",
	[S_ROUTE_AT] = "SELECT lo, hi, bits, pubkey FROM route WHERE lo = ?1 AND hi >= ?2 LIMIT 1",
	[S_ROUTE_ADD] = "INSERT INTO route (lo, hi, bits, pubkey) VALUES (?1, ?2, ?3, ?4)",
	/* A peer's own address inside [?1, ?2]. */
	[S_IP4_IN] = "SELECT ip4, pubkey FROM peer WHERE ip4 BETWEEN ?1 AND ?2 LIMIT 1",
	[S_IP6_IN] = "SELECT ip6, pubkey FROM peer WHERE ip6 BETWEEN ?1 AND ?2 LIMIT 1",
	/* Cache mode: the row a put replaces, and stale rows holding one of its addresses. */
	[S_CACHE_DROP] = "DELETE FROM peer WHERE pubkey = ?1 OR ip4 = ?2 OR ip6 = ?3",
	[S_CACHE_KEEP] = "UPDATE peer SET installed_at = ?2, last_seen = ?3 WHERE pubkey = ?1",
	[S_CACHE_HOLDERS] = "SELECT pubkey FROM peer WHERE pubkey <> ?1 AND (ip4 = ?2 OR ip6 = ?3)",
	[S_SEQ_GET] = "SELECT seq FROM source_state WHERE id = 1",
	[S_SEQ_SET] = "INSERT INTO source_state (id, seq) VALUES (1, ?1)"
		      " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq",
};

struct store {
	sqlite3 *db;
	struct store_pool pool;
	sqlite3_stmt *stmt[S_MAX];
	char errmsg[STORE_ERRMSG]; /* SQLite's text for the last failure (store_errmsg) */
	struct store_conflict conflict; /* the last create's -EADDRINUSE (store_last_conflict) */
	bool nested;               /* routes overlapped at open: route_overlap's slow path */
	bool cache;                /* --source: addresses come from the source, none freed here */
};

static void seterr(char *err, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!err || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

/* A full disk (or a file at its size limit) is -ENOSPC; an exhausted pool is -EADDRNOTAVAIL. */
static int sql_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EBADMSG;
	case SQLITE_CONSTRAINT:
		return -EINVAL;
	default:
		return -EIO;
	}
}

/* Keep SQLite's own words for store_errmsg(): its message for the connection, the result
 * code's text when that says more, and the errno of the system call that failed (SQLite
 * keeps none for ENOSPC: SQLITE_FULL says it). */
static int sql_err(struct store *st, int rc)
{
	const char *msg = sqlite3_errmsg(st->db), *str = sqlite3_errstr(rc);
	int sys = sqlite3_system_errno(st->db), n;
	size_t len;

	n = snprintf(st->errmsg, sizeof(st->errmsg), "%s%s%s (SQLite %d)", msg,
		     strcmp(msg, str) ? ": " : "", strcmp(msg, str) ? str : "", rc);
	len = n < 0 ? 0 : (size_t)n < sizeof(st->errmsg) ? (size_t)n : sizeof(st->errmsg) - 1;
	switch (rc & 0xff) {
	case SQLITE_IOERR:
	case SQLITE_FULL:
	case SQLITE_CANTOPEN:
	case SQLITE_READONLY:
	case SQLITE_PERM:
		if (sys > 0)
			snprintf(st->errmsg + len, sizeof(st->errmsg) - len, ", errno %d: %s", sys,
				 strerror(sys));
		break;
	}
	return sql_errno(rc);
}

/* Each exported operation starts with no SQLite message: store_errmsg() is "" after a failure
 * that did not come from SQLite (-ENOENT, a damaged row, a full pool). */
static void err_clear(struct store *st)
{
	st->errmsg[0] = '\0';
}

const char *store_errmsg(const struct store *st)
{
	return st->errmsg;
}

const struct store_conflict *store_last_conflict(const struct store *st)
{
	return &st->conflict;
}

/* Run a statement to its first row or end, then reset it. */
static int run(struct store *st, enum stmt_id id)
{
	sqlite3_stmt *s = st->stmt[id];
	int rc = sqlite3_step(s);
	int ret = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : sql_err(st, rc);

	sqlite3_reset(s);
	return ret;
}

static int bind_key(sqlite3_stmt *s, int i, const uint8_t *key)
{
	return sqlite3_bind_blob(s, i, key, WG_KEY_LEN, SQLITE_STATIC);
}

/* 0 binds NULL: "never", "not installed", "not seen". */
static int bind_time(sqlite3_stmt *s, int i, int64_t t)
{
	return t ? sqlite3_bind_int64(s, i, t) : sqlite3_bind_null(s, i);
}

/* ---- transactions ---- */

static int txn_enter(struct store *st, bool *outer)
{
	*outer = sqlite3_get_autocommit(st->db);
	return run(st, *outer ? S_BEGIN : S_SAVEPOINT);
}

/* Commit (ret == 0) or undo everything since txn_enter(); returns the first error. */
static int txn_leave(struct store *st, bool outer, int ret)
{
	char msg[STORE_ERRMSG];

	if (ret == 0) {
		ret = run(st, outer ? S_COMMIT : S_RELEASE);
		if (ret == 0)
			return 0;
	}
	memcpy(msg, st->errmsg, sizeof(msg)); /* the rollback must not hide the cause */
	if (outer) {
		if (!sqlite3_get_autocommit(st->db))
			(void)run(st, S_ROLLBACK);
	} else if (run(st, S_ROLLBACK_TO) == 0) {
		(void)run(st, S_RELEASE);
	}
	memcpy(st->errmsg, msg, sizeof(msg));
	return ret;
}

int store_begin(struct store *st)
{
	err_clear(st);
	if (!sqlite3_get_autocommit(st->db))
		return -EBUSY; /* no nesting: a GC batch is one flat transaction */
	return run(st, S_BEGIN);
}

/* A failed COMMIT rolls the batch back: prov.h has no store_rollback(), and a transaction
 * left open would silently swallow every later write. */
int store_commit(struct store *st)
{
	err_clear(st);
	if (sqlite3_get_autocommit(st->db))
		return -EINVAL;
	return txn_leave(st, true, 0);
}

/* ---- reading rows back, trusting nothing ---- */

static int col_int(sqlite3_stmt *s, int i, int64_t min, int64_t max, bool null_ok, int64_t *out)
{
	int64_t v;

	switch (sqlite3_column_type(s, i)) {
	case SQLITE_NULL:
		if (!null_ok)
			return -EBADMSG;
		*out = 0;
		return 0;
	case SQLITE_INTEGER:
		v = sqlite3_column_int64(s, i);
		if (v < min || v > max)
			return -EBADMSG;
		*out = v;
		return 0;
	default:
		return -EBADMSG;
	}
}

static int col_blob(sqlite3_stmt *s, int i, void *dst, size_t len, bool *has)
{
	const void *b;

	switch (sqlite3_column_type(s, i)) {
	case SQLITE_NULL:
		if (!has)
			return -EBADMSG;
		*has = false;
		return 0;
	case SQLITE_BLOB:
		b = sqlite3_column_blob(s, i);
		if (!b || (size_t)sqlite3_column_bytes(s, i) != len)
			return -EBADMSG;
		memcpy(dst, b, len);
		if (has)
			*has = true;
		return 0;
	default:
		return -EBADMSG;
	}
}

/* Text of at most max bytes without an embedded NUL, copied with a NUL into dst. */
static int col_text(sqlite3_stmt *s, int i, char *dst, size_t max)
{
	const unsigned char *t;
	int n;

	if (sqlite3_column_type(s, i) != SQLITE_TEXT)
		return -EBADMSG;
	t = sqlite3_column_text(s, i);
	n = sqlite3_column_bytes(s, i);
	if (!t || n < 0 || (size_t)n > max || memchr(t, '\0', (size_t)n))
		return -EBADMSG;
	memcpy(dst, t, (size_t)n);
	dst[n] = '\0';
	return 0;
}

/* "" or "cidr[,cidr]..." exactly as check_new_peer() wrote it. */
static int routes_parse(char *text, struct store_peer *p)
{
	char *comma;

	if (!*text)
		return 0;
	for (char *tok = text;; tok = comma + 1) {
		comma = strchr(tok, ',');
		if (comma)
			*comma = '\0';
		if (p->n_routes == STORE_MAX_ROUTES || cidr_parse(tok, &p->routes[p->n_routes]))
			return -EBADMSG;
		p->n_routes++;
		if (!comma)
			return 0;
	}
}

static int row_to_peer(sqlite3_stmt *s, struct store_peer *p)
{
	char routes[STORE_ROUTES_STR];
	int64_t v;
	int ret;

	memset(p, 0, sizeof(*p));
	if ((ret = col_blob(s, C_PUBKEY, p->pubkey, WG_KEY_LEN, NULL)) ||
	    (ret = col_blob(s, C_IP6, p->ip6, sizeof(p->ip6), &p->has_ip6)) ||
	    (ret = col_blob(s, C_PSK, p->psk, WG_KEY_LEN, &p->has_psk)) ||
	    (ret = col_blob(s, C_LAST_TS, p->last_ts, WG_TAI64N_LEN, &p->has_last_ts)) ||
	    (ret = col_text(s, C_NAME, p->name, PROV_NAME_MAX)) ||
	    (ret = col_text(s, C_ROUTES, routes, sizeof(routes) - 1)) ||
	    (ret = routes_parse(routes, p)) ||
	    (ret = col_int(s, C_CREATED, 0, INT64_MAX, false, &p->created_at)) ||
	    (ret = col_int(s, C_EXPIRES, 0, INT64_MAX, true, &p->expires_at)) ||
	    (ret = col_int(s, C_LAST_SEEN, 0, INT64_MAX, true, &p->last_seen)) ||
	    (ret = col_int(s, C_INSTALLED, 0, INT64_MAX, true, &p->installed_at)))
		goto fail;
	if ((ret = col_int(s, C_KEEPALIVE, 0, UINT16_MAX, false, &v)))
		goto fail;
	p->keepalive_s = (uint16_t)v;
	p->has_ip4 = sqlite3_column_type(s, C_IP4) != SQLITE_NULL;
	if ((ret = col_int(s, C_IP4, 0, UINT32_MAX, true, &v)))
		goto fail;
	p->ip4 = (uint32_t)v;
	return 0;
fail:
	sodium_memzero(p, sizeof(*p));
	return ret;
}

/* ---- create ---- */

/* Validate what the caller sets and render the routes as they will be parsed back. */
static int check_new_peer(const struct store_peer *p, int64_t now,
			  char routes[static STORE_ROUTES_STR])
{
	char buf[CIDR_STR];
	struct cidr back;
	size_t off = 0;

	if (now < 0 || p->expires_at < 0 || memchr(p->name, '\0', sizeof(p->name)) == NULL ||
	    p->n_routes > STORE_MAX_ROUTES)
		return -EINVAL;
	routes[0] = '\0';
	for (unsigned i = 0; i < p->n_routes; i++) {
		const struct cidr *c = &p->routes[i];

		/* Only what cidr_parse() will give back is stored (no host bits, sane length). */
		cidr_format(c, buf);
		if (cidr_parse(buf, &back) || back.family != c->family || back.bits != c->bits ||
		    memcmp(back.addr, c->addr, c->family == AF_INET ? 4 : 16))
			return -EINVAL;
		off += (size_t)snprintf(routes + off, STORE_ROUTES_STR - off, "%s%s",
					i ? "," : "", buf);
		/* The route table's check needs its prefixes disjoint, the peer's own too. */
		for (unsigned j = 0; j < i; j++)
			if (cidr_overlaps(c, &p->routes[j]))
				return -EINVAL;
	}
	return 0;
}

static int alloc_ip4(struct store *st, int64_t now, uint32_t *ip)
{
	sqlite3_stmt *s = st->stmt[S_POP_FREE];
	int64_t v = -1;
	int rc;

	sqlite3_bind_int64(s, 1, now);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sql_err(st, rc);
	if (rc == SQLITE_DONE) {
		s = st->stmt[S_BUMP];
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW)
			v = sqlite3_column_int64(s, 0);
		sqlite3_reset(s);
		if (rc == SQLITE_DONE)
			return -EADDRNOTAVAIL;
		if (rc != SQLITE_ROW)
			return sql_err(st, rc);
	}
	/* A free-list entry or high-water mark outside the pool is a damaged file. */
	if (v < st->pool.ip4_first || v > st->pool.ip4_last)
		return -EBADMSG;
	*ip = (uint32_t)v;
	return 0;
}

static void ip6_derive(const uint8_t prefix[static 8], const uint8_t key[static WG_KEY_LEN],
		       uint32_t counter, uint8_t out[static 16])
{
	uint8_t h[crypto_generichash_BYTES];
	uint8_t ctr[4] = { (uint8_t)counter, (uint8_t)(counter >> 8), (uint8_t)(counter >> 16),
			   (uint8_t)(counter >> 24) };
	crypto_generichash_state gs;

	crypto_generichash_init(&gs, NULL, 0, sizeof(h));
	crypto_generichash_update(&gs, key, WG_KEY_LEN);
	if (counter) /* counter 0 is plain BLAKE2b(pubkey): derivable by anyone holding the key */
		crypto_generichash_update(&gs, ctr, sizeof(ctr));
	crypto_generichash_final(&gs, h, sizeof(h));
	memcpy(out, prefix, 8);
	memcpy(out + 8, h, 8);
}

static int alloc_ip6(struct store *st, const uint8_t key[static WG_KEY_LEN], uint8_t ip6[static 16])
{
	static const uint8_t zero[8];
	sqlite3_stmt *s = st->stmt[S_IP6_USED];
	int rc;

	for (uint32_t ctr = 0; ctr < STORE_IP6_TRIES; ctr++) {
		ip6_derive(st->pool.ip6_prefix, key, ctr, ip6);
		if (!memcmp(ip6 + 8, zero, sizeof(zero)))
			continue; /* ::0 is the subnet-router anycast address */
		sqlite3_bind_blob(s, 1, ip6, 16, SQLITE_STATIC);
		rc = sqlite3_step(s);
		sqlite3_reset(s);
		if (rc == SQLITE_DONE)
			return 0;
		if (rc != SQLITE_ROW)
			return sql_err(st, rc);
	}
	return -EADDRNOTAVAIL; /* 16 derived addresses taken: only a crafted key set does that */
}

static int peer_exists(struct store *st, const uint8_t key[static WG_KEY_LEN])
{
	sqlite3_stmt *s = st->stmt[S_EXISTS];
	int rc;

	bind_key(s, 1, key);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : sql_err(st, rc);
}

/* A prefix as two index keys: family tag and first address, family tag and last address.
 * BLOB order is memcmp order: one family's prefixes sort together, by address. Returns the
 * keys' length (5 or 17). */
static int route_keys(const struct cidr *c, uint8_t lo[static ROUTE_KEY_MAX],
		      uint8_t hi[static ROUTE_KEY_MAX])
{
	unsigned n = c->family == AF_INET ? 4 : 16;

	lo[0] = hi[0] = c->family == AF_INET ? 4 : 6;
	for (unsigned i = 0; i < n; i++) {
		unsigned in = c->bits > 8 * i ? c->bits - 8 * i : 0; /* prefix bits in byte i */
		uint8_t mask = in >= 8 ? 0xff : (uint8_t)(0xff00u >> in);

		lo[1 + i] = c->addr[i] & mask;
		hi[1 + i] = c->addr[i] | (uint8_t)~mask;
	}
	return (int)n + 1;
}

/* A host route for a peer's own address. */
static void host_cidr(int family, const void *addr, struct cidr *c)
{
	memset(c, 0, sizeof(*c));
	c->family = (uint8_t)family;
	c->bits = family == AF_INET ? 32 : 128;
	memcpy(c->addr, addr, family == AF_INET ? 4 : 16);
}

/* Step s, a route query, and judge its row: 1 with out->theirs and out->pubkey when it is a
 * prefix of c's family (keys of n bytes) whose last address is at or after lo (c's first),
 * 0 when not or when there is no row, or -errno. Resets s. */
static int route_row(struct store *st, sqlite3_stmt *s, const uint8_t *lo, int n,
		     struct store_conflict *out)
{
	const uint8_t *their_lo, *their_hi, *key;
	int rc = sqlite3_step(s), ret = 0;
	int64_t bits;

	if (rc != SQLITE_ROW) {
		ret = rc == SQLITE_DONE ? 0 : sql_err(st, rc);
		goto out;
	}
	their_lo = sqlite3_column_blob(s, 0);
	their_hi = sqlite3_column_blob(s, 1);
	key = sqlite3_column_blob(s, 3);
	if (sqlite3_column_bytes(s, 0) != sqlite3_column_bytes(s, 1) ||
	    sqlite3_column_bytes(s, 3) != WG_KEY_LEN || !their_lo || !their_hi || !key ||
	    col_int(s, 2, 0, 128, false, &bits)) {
		ret = -EBADMSG;
		goto out;
	}
	/* Another family's key differs in its first byte; the same family's has n bytes. */
	if (their_hi[0] != lo[0] || memcmp(their_hi, lo, (size_t)n) < 0)
		goto out;
	if (sqlite3_column_bytes(s, 0) != n || bits > (n - 1) * 8) {
		ret = -EBADMSG;
		goto out;
	}
	memset(&out->theirs, 0, sizeof(out->theirs));
	out->theirs.family = lo[0] == 4 ? AF_INET : AF_INET6;
	out->theirs.bits = (uint8_t)bits;
	memcpy(out->theirs.addr, their_lo + 1, (size_t)n - 1);
	memcpy(out->pubkey, key, WG_KEY_LEN);
	ret = 1;
out:
	sqlite3_reset(s);
	return ret;
}

/* The stored prefix (another peer's route) that overlaps c: 1 with out->theirs and
 * out->pubkey set, 0 when there is none, or -errno. One seek, because stored prefixes are
 * disjoint (see the top of this file): of those starting at or before c's last address,
 * only the last to start can reach c's first address.
 * A store that held overlaps when it was opened (st->nested) may hold prefixes nested in
 * others, which that one seek can miss (it may find the inner one); then: a prefix starting
 * inside c (one range seek), or one containing c, which starts at c's address cut to a
 * shorter length (one seek per length, at most 32 or 128). */
static int route_overlap(struct store *st, const struct cidr *c, struct store_conflict *out)
{
	uint8_t lo[ROUTE_KEY_MAX], hi[ROUTE_KEY_MAX], cut_lo[ROUTE_KEY_MAX], cut_hi[ROUTE_KEY_MAX];
	int n = route_keys(c, lo, hi), ret;
	struct cidr cut = *c;
	sqlite3_stmt *s;

	s = st->stmt[S_ROUTE_NEAR];
	sqlite3_bind_blob(s, 1, hi, n, SQLITE_STATIC);
	ret = route_row(st, s, lo, n, out);
	if (ret || !st->nested)
		return ret;
	s = st->stmt[S_ROUTE_INSIDE];
	sqlite3_bind_blob(s, 1, lo, n, SQLITE_STATIC);
	sqlite3_bind_blob(s, 2, hi, n, SQLITE_STATIC);
	ret = route_row(st, s, lo, n, out);
	while (ret == 0 && cut.bits-- > 0) {
		route_keys(&cut, cut_lo, cut_hi);
		s = st->stmt[S_ROUTE_AT];
		sqlite3_bind_blob(s, 1, cut_lo, n, SQLITE_STATIC);
		sqlite3_bind_blob(s, 2, lo, n, SQLITE_STATIC);
		ret = route_row(st, s, lo, n, out);
	}
	return ret;
}

/* A stored peer's own address inside c: 1 with out->theirs (a host route) and out->pubkey,
 * 0, or -errno. One seek on the ip4 or ip6 UNIQUE index. */
static int address_overlap(struct store *st, const struct cidr *c,
			   struct store_conflict *out)
{
	uint8_t lo[ROUTE_KEY_MAX], hi[ROUTE_KEY_MAX], a6[16];
	sqlite3_stmt *s;
	const uint8_t *key;
	int rc, ret = 0;
	int64_t v;

	route_keys(c, lo, hi);
	if (c->family == AF_INET) {
		s = st->stmt[S_IP4_IN];
		sqlite3_bind_int64(s, 1, (int64_t)lo[1] << 24 | lo[2] << 16 | lo[3] << 8 | lo[4]);
		sqlite3_bind_int64(s, 2, (int64_t)hi[1] << 24 | hi[2] << 16 | hi[3] << 8 | hi[4]);
	} else {
		s = st->stmt[S_IP6_IN];
		sqlite3_bind_blob(s, 1, lo + 1, 16, SQLITE_TRANSIENT);
		sqlite3_bind_blob(s, 2, hi + 1, 16, SQLITE_TRANSIENT);
	}
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		ret = rc == SQLITE_DONE ? 0 : sql_err(st, rc);
		goto out;
	}
	key = sqlite3_column_blob(s, 1);
	if (!key || sqlite3_column_bytes(s, 1) != WG_KEY_LEN) {
		ret = -EBADMSG;
		goto out;
	}
	if (c->family == AF_INET) {
		uint32_t ip;

		if ((ret = col_int(s, 0, 0, UINT32_MAX, false, &v)))
			goto out;
		ip = htonl((uint32_t)v);
		host_cidr(AF_INET, &ip, &out->theirs);
	} else {
		if ((ret = col_blob(s, 0, a6, sizeof(a6), NULL)))
			goto out;
		host_cidr(AF_INET6, a6, &out->theirs);
	}
	memcpy(out->pubkey, key, WG_KEY_LEN);
	ret = 1;
out:
	sqlite3_reset(s);
	return ret;
}

/* Does anything of p's (its new addresses, its routes) overlap another peer's allowed IPs?
 * 0, -EADDRINUSE with st->conflict set, or -errno. */
static int check_overlaps(struct store *st, const struct store_peer *p, const uint32_t *ip4,
			  const uint8_t *ip6)
{
	struct store_conflict *cf = &st->conflict;
	uint32_t ip4_be;
	int ret = 0;

	memset(cf, 0, sizeof(*cf));
	cf->mine_is_address = true;
	if (ip4) {
		ip4_be = htonl(*ip4);
		host_cidr(AF_INET, &ip4_be, &cf->mine);
		ret = route_overlap(st, &cf->mine, cf);
	}
	if (ret == 0 && ip6) {
		host_cidr(AF_INET6, ip6, &cf->mine);
		ret = route_overlap(st, &cf->mine, cf);
	}
	cf->mine_is_address = ret != 0;
	for (unsigned i = 0; ret == 0 && i < p->n_routes; i++) {
		cf->mine = p->routes[i];
		ret = route_overlap(st, &cf->mine, cf);
		if (ret == 0)
			ret = address_overlap(st, &cf->mine, cf);
	}
	if (ret == 1)
		return -EADDRINUSE;
	memset(cf, 0, sizeof(*cf));
	return ret;
}

static int insert_routes(struct store *st, const struct store_peer *p)
{
	sqlite3_stmt *s = st->stmt[S_ROUTE_ADD];
	uint8_t lo[ROUTE_KEY_MAX], hi[ROUTE_KEY_MAX];
	int ret = 0;

	for (unsigned i = 0; ret == 0 && i < p->n_routes; i++) {
		int n = route_keys(&p->routes[i], lo, hi);

		sqlite3_bind_blob(s, 1, lo, n, SQLITE_STATIC);
		sqlite3_bind_blob(s, 2, hi, n, SQLITE_STATIC);
		sqlite3_bind_int(s, 3, p->routes[i].bits);
		bind_key(s, 4, p->pubkey);
		ret = run(st, S_ROUTE_ADD);
	}
	return ret;
}

static int insert_peer(struct store *st, const struct store_peer *p, const uint32_t *ip4,
		       const uint8_t *ip6, const char *routes, int64_t now)
{
	sqlite3_stmt *s = st->stmt[S_INSERT];
	int rc, ret;

	bind_key(s, 1, p->pubkey);
	if (ip4)
		sqlite3_bind_int64(s, 2, *ip4);
	else
		sqlite3_bind_null(s, 2);
	if (ip6)
		sqlite3_bind_blob(s, 3, ip6, 16, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 3);
	if (p->has_psk)
		sqlite3_bind_blob(s, 4, p->psk, WG_KEY_LEN, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 4);
	sqlite3_bind_int(s, 5, p->keepalive_s);
	sqlite3_bind_text(s, 6, p->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 7, routes, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 8, now);
	bind_time(s, 9, p->expires_at);
	rc = sqlite3_step(s);
	ret = rc == SQLITE_DONE ? 0 : sql_err(st, rc);
	if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
		ret = -EEXIST;
	else if (rc == SQLITE_CONSTRAINT_UNIQUE)
		ret = -EBADMSG; /* an allocated address is taken: allocator state damaged */
	sqlite3_reset(s);
	return ret;
}

int store_create(struct store *st, struct store_peer *p, int64_t now)
{
	char routes[STORE_ROUTES_STR];
	uint8_t ip6[16];
	uint32_t ip4 = 0;
	bool outer;
	int ret;

	err_clear(st);
	memset(&st->conflict, 0, sizeof(st->conflict));
	if ((ret = check_new_peer(p, now, routes)))
		return ret;
	if ((ret = txn_enter(st, &outer)))
		return ret;
	/* A stored key fails the INSERT's primary key (-EEXIST) and the transaction rolls the
	 * allocation back: no separate lookup on the create path. */
	if (st->pool.has_ip4)
		ret = alloc_ip4(st, now, &ip4);
	if (ret == 0 && st->pool.has_ip6)
		ret = alloc_ip6(st, p->pubkey, ip6);
	if (ret == 0)
		ret = check_overlaps(st, p, st->pool.has_ip4 ? &ip4 : NULL,
				     st->pool.has_ip6 ? ip6 : NULL);
	if (ret == 0)
		ret = insert_peer(st, p, st->pool.has_ip4 ? &ip4 : NULL,
				  st->pool.has_ip6 ? ip6 : NULL, routes, now);
	if (ret == 0)
		ret = insert_routes(st, p);
	ret = txn_leave(st, outer, ret);
	if (ret)
		return ret;
	p->has_ip4 = st->pool.has_ip4;
	p->ip4 = ip4;
	p->has_ip6 = st->pool.has_ip6;
	if (p->has_ip6)
		memcpy(p->ip6, ip6, sizeof(ip6));
	else
		memset(p->ip6, 0, sizeof(p->ip6));
	p->created_at = now;
	p->last_seen = 0;
	p->installed_at = 0;
	p->has_last_ts = false;
	memset(p->last_ts, 0, sizeof(p->last_ts));
	return 0;
}

/* ---- cache mode (--source) ---- */

void store_set_cache(struct store *st)
{
	st->cache = true;
}

/* Bind p's key and addresses as ?1, ?2, ?3 (NULL for an address it lacks). */
static void bind_cache_keys(sqlite3_stmt *s, const struct store_peer *p)
{
	bind_key(s, 1, p->pubkey);
	if (p->has_ip4)
		sqlite3_bind_int64(s, 2, p->ip4);
	else
		sqlite3_bind_null(s, 2);
	if (p->has_ip6)
		sqlite3_bind_blob(s, 3, p->ip6, 16, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 3);
}

int store_cache_put(struct store *st, const struct store_peer *p,
		    uint8_t displaced[static 2][WG_KEY_LEN], unsigned *n_displaced)
{
	char routes[STORE_ROUTES_STR];
	struct store_peer old;
	sqlite3_stmt *s;
	bool outer, had;
	int rc, ret;

	err_clear(st);
	*n_displaced = 0;
	if ((ret = check_new_peer(p, p->created_at, routes)))
		return ret;
	if ((ret = txn_enter(st, &outer)))
		return ret;
	ret = store_get(st, p->pubkey, &old);
	had = ret == 0;
	if (ret == -ENOENT)
		ret = 0;
	if (ret == 0) {
		/* Other keys holding its addresses are stale here: the caller takes them out
		 * of the device too (the source moved the address on; their delete may come
		 * later in the change log, when the cache no longer knows them). */
		s = st->stmt[S_CACHE_HOLDERS];
		bind_cache_keys(s, p);
		while ((rc = sqlite3_step(s)) == SQLITE_ROW && *n_displaced < 2)
			memcpy(displaced[(*n_displaced)++], sqlite3_column_blob(s, 0), WG_KEY_LEN);
		ret = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_err(st, rc);
		sqlite3_reset(s);
	}
	if (ret == 0) {
		/* The delete trigger keeps a replayed initiation's guard (ts_tomb), the insert
		 * trigger gives it back: the same key keeps its replay guard. */
		s = st->stmt[S_CACHE_DROP];
		bind_cache_keys(s, p);
		ret = run(st, S_CACHE_DROP);
	}
	if (ret == 0)
		ret = insert_peer(st, p, p->has_ip4 ? &p->ip4 : NULL, p->has_ip6 ? p->ip6 : NULL,
				  routes, p->created_at);
	if (ret == 0)
		ret = insert_routes(st, p);
	if (ret == 0 && had && (old.installed_at || old.last_seen)) {
		s = st->stmt[S_CACHE_KEEP];
		bind_key(s, 1, p->pubkey);
		bind_time(s, 2, old.installed_at);
		bind_time(s, 3, old.last_seen);
		ret = run(st, S_CACHE_KEEP);
	}
	return txn_leave(st, outer, ret);
}

int store_source_seq(struct store *st, int64_t *seq)
{
	sqlite3_stmt *s = st->stmt[S_SEQ_GET];
	int rc;

	err_clear(st);
	rc = sqlite3_step(s);
	*seq = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	sqlite3_reset(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_err(st, rc);
}

int store_set_source_seq(struct store *st, int64_t seq)
{
	sqlite3_stmt *s = st->stmt[S_SEQ_SET];

	err_clear(st);
	sqlite3_bind_int64(s, 1, seq);
	return run(st, S_SEQ_SET);
}

/* ---- single-peer operations ---- */

int store_get(struct store *st, const uint8_t key[static WG_KEY_LEN], struct store_peer *out)
{
	sqlite3_stmt *s = st->stmt[S_GET];
	int rc, ret;

	err_clear(st);
	bind_key(s, 1, key);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		ret = row_to_peer(s, out);
	else
		ret = rc == SQLITE_DONE ? -ENOENT : sql_err(st, rc);
	sqlite3_reset(s);
	return ret;
}

int store_delete(struct store *st, const uint8_t key[static WG_KEY_LEN], int64_t now)
{
	sqlite3_stmt *s = st->stmt[S_DELETE];
	bool outer, has_ip4 = false;
	int64_t ip4 = 0;
	int rc, ret;

	err_clear(st);
	if (now < 0 || now > INT64_MAX - st->pool.hold_down_s)
		return -EINVAL;
	if ((ret = txn_enter(st, &outer)))
		return ret;
	bind_key(s, 1, key);
	rc = sqlite3_step(s); /* RETURNING: the row is gone by the first step */
	if (rc == SQLITE_ROW) {
		has_ip4 = sqlite3_column_type(s, 0) == SQLITE_INTEGER;
		ip4 = sqlite3_column_int64(s, 0);
	}
	ret = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : sql_err(st, rc);
	sqlite3_reset(s);
	/* An address outside the pool cannot be handed out again; it simply leaves. A cache
	 * hands out nothing: the source's pools are the source's. */
	if (ret == 0 && has_ip4 && !st->cache && st->pool.has_ip4 && ip4 >= st->pool.ip4_first &&
	    ip4 <= st->pool.ip4_last) {
		s = st->stmt[S_FREE_IP4];
		sqlite3_bind_int64(s, 1, ip4);
		sqlite3_bind_int64(s, 2, now + (int64_t)st->pool.hold_down_s);
		ret = run(st, S_FREE_IP4);
	}
	return txn_leave(st, outer, ret);
}

/* An UPDATE keyed by pubkey with a time in ?2; -ENOENT when no row matched. */
static int update_time(struct store *st, enum stmt_id id, const uint8_t *key, int64_t t)
{
	sqlite3_stmt *s = st->stmt[id];
	int ret;

	err_clear(st);
	if (t < 0)
		return -EINVAL;
	bind_key(s, 1, key);
	bind_time(s, 2, t);
	ret = run(st, id);
	if (ret == 0 && sqlite3_changes(st->db) == 0)
		ret = -ENOENT;
	return ret;
}

int store_set_installed(struct store *st, const uint8_t key[static WG_KEY_LEN],
			int64_t installed_at)
{
	return update_time(st, S_SET_INSTALLED, key, installed_at);
}

int store_set_last_seen(struct store *st, const uint8_t key[static WG_KEY_LEN], int64_t last_seen)
{
	return update_time(st, S_SET_LAST_SEEN, key, last_seen);
}

int store_accept_timestamp(struct store *st, const uint8_t key[static WG_KEY_LEN],
			   const uint8_t ts[static WG_TAI64N_LEN])
{
	sqlite3_stmt *s = st->stmt[S_ACCEPT_TS];
	int ret;

	err_clear(st);
	bind_key(s, 1, key);
	sqlite3_bind_blob(s, 2, ts, WG_TAI64N_LEN, SQLITE_STATIC);
	if ((ret = run(st, S_ACCEPT_TS)))
		return ret;
	if (sqlite3_changes(st->db))
		return 0;
	ret = peer_exists(st, key);
	return ret < 0 ? ret : ret ? -EALREADY : -ENOENT;
}

int store_count(struct store *st, uint64_t *stored, uint64_t *installed)
{
	sqlite3_stmt *s = st->stmt[S_COUNTS];
	int64_t n_stored = 0, n_installed = 0;
	int rc, ret;

	err_clear(st);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		ret = col_int(s, 0, 0, INT64_MAX, false, &n_stored);
		if (ret == 0)
			ret = col_int(s, 1, 0, n_stored, false, &n_installed);
	} else {
		ret = rc == SQLITE_DONE ? -EBADMSG : sql_err(st, rc);
	}
	sqlite3_reset(s);
	if (ret)
		return ret;
	if (stored)
		*stored = (uint64_t)n_stored;
	if (installed)
		*installed = (uint64_t)n_installed;
	return 0;
}

/* ---- listings ---- */

enum list_kind { LIST_KEY, LIST_EXPIRED, LIST_INSTALLED };

/* Rows are copied out STORE_BATCH at a time and the statement reset before fn runs, so fn
 * may call any store function (the expiry sweep deletes as it goes). Paging resumes after
 * the last delivered (time, key). fn returning non-zero stops: a negative value is returned,
 * a positive one ends the listing with the count so far. */
static int list_run(struct store *st, enum list_kind kind, int64_t now, const uint8_t *after,
		    unsigned limit, store_peer_fn fn, void *arg)
{
	struct store_peer batch[STORE_BATCH];
	sqlite3_stmt *s;
	uint8_t cur_key[WG_KEY_LEN];
	bool has_key = after != NULL;
	int64_t cur_t = INT64_MIN;
	unsigned done = 0, want, got;
	int rc = SQLITE_DONE, ret = 0;

	err_clear(st);
	if (after)
		memcpy(cur_key, after, WG_KEY_LEN);
	if (limit > INT_MAX)
		limit = INT_MAX;
	while (done < limit) {
		want = limit - done < STORE_BATCH ? limit - done : STORE_BATCH;
		switch (kind) {
		case LIST_KEY:
			s = st->stmt[S_LIST];
			break;
		case LIST_EXPIRED:
			s = st->stmt[S_EXPIRED];
			sqlite3_bind_int64(s, 1, now);
			sqlite3_bind_int64(s, 2, cur_t);
			break;
		default:
			s = st->stmt[S_INSTALLED];
			sqlite3_bind_int64(s, 1, cur_t);
			break;
		}
		/* Key after the time; a zero-length blob sorts before every key. */
		int ki = kind == LIST_KEY ? 1 : kind == LIST_EXPIRED ? 3 : 2;
		if (has_key)
			bind_key(s, ki, cur_key);
		else
			sqlite3_bind_zeroblob(s, ki, 0);
		sqlite3_bind_int(s, ki + 1, (int)want);
		for (got = 0; got < want && (rc = sqlite3_step(s)) == SQLITE_ROW; got++)
			if ((ret = row_to_peer(s, &batch[got])))
				break;
		if (ret == 0 && got < want && rc != SQLITE_DONE)
			ret = sql_err(st, rc);
		sqlite3_reset(s);
		if (ret)
			goto out;
		for (unsigned i = 0; i < got; i++) {
			done++;
			if ((rc = fn(arg, &batch[i]))) {
				ret = rc < 0 ? rc : (int)done;
				goto out;
			}
		}
		if (got < want)
			break;
		memcpy(cur_key, batch[got - 1].pubkey, WG_KEY_LEN);
		has_key = true;
		cur_t = kind == LIST_EXPIRED ? batch[got - 1].expires_at
					     : batch[got - 1].installed_at;
	}
	ret = (int)done;
out:
	sodium_memzero(batch, sizeof(batch)); /* PSKs */
	return ret;
}

int store_list(struct store *st, const uint8_t *after, unsigned limit, store_peer_fn fn, void *arg)
{
	return list_run(st, LIST_KEY, 0, after, limit, fn, arg);
}

int store_list_expired(struct store *st, int64_t now, unsigned limit, store_peer_fn fn, void *arg)
{
	return list_run(st, LIST_EXPIRED, now, NULL, limit, fn, arg);
}

int store_list_installed(struct store *st, unsigned limit, store_peer_fn fn, void *arg)
{
	return list_run(st, LIST_INSTALLED, 0, NULL, limit, fn, arg);
}

int store_checkpoint(struct store *st, bool truncate)
{
	int rc;

	err_clear(st);
	if (!sqlite3_get_autocommit(st->db))
		return -EBUSY;
	rc = sqlite3_wal_checkpoint_v2(st->db, NULL, truncate ? SQLITE_CHECKPOINT_TRUNCATE
							      : SQLITE_CHECKPOINT_PASSIVE,
				       NULL, NULL);
	return rc == SQLITE_OK ? 0 : sql_err(st, rc);
}

/* ---- open ---- */

static const char *ip4_str(uint32_t ip, char buf[static INET_ADDRSTRLEN])
{
	struct in_addr a = { .s_addr = htonl(ip) };

	return inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

static const char *ip6_prefix_str(const uint8_t prefix[static 8], char buf[static INET6_ADDRSTRLEN])
{
	uint8_t a[16] = { 0 };

	memcpy(a, prefix, 8);
	return inet_ntop(AF_INET6, a, buf, INET6_ADDRSTRLEN);
}

static int check_pool(const struct store_pool *pool, char *err, size_t errlen)
{
	if (pool->has_ip4 && pool->ip4_first > pool->ip4_last) {
		seterr(err, errlen, "store: IPv4 pool ends before it starts");
		return -EINVAL;
	}
	if (pool->hold_down_s < STORE_HOLD_DOWN_MIN_S) {
		seterr(err, errlen, "store: address hold-down %u s is below %u s "
		       "(REJECT_AFTER_TIME)", pool->hold_down_s, (unsigned)STORE_HOLD_DOWN_MIN_S);
		return -EINVAL;
	}
	return 0;
}

/* Prepare and step a one-off statement (open time only). Returns 1 with *out on its first
 * row, 0 when it has none, or -errno; the caller finalizes *out. */
static int open_query(struct store *st, const char *sql, sqlite3_stmt **out)
{
	int rc = sqlite3_prepare_v2(st->db, sql, -1, out, NULL);

	if (rc != SQLITE_OK)
		return sql_err(st, rc);
	rc = sqlite3_step(*out);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		sqlite3_finalize(*out);
		*out = NULL;
		return sql_err(st, rc);
	}
	return rc == SQLITE_ROW ? 1 : 0;
}

static int exec_sql(struct store *st, const char *sql)
{
	int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : sql_err(st, rc);
}

/* Schema 1 had no route table: build it from the peers' routes text (one scan of the peers,
 * once). A row whose routes do not parse is skipped: the store cannot read it anyway. */
static int migrate_routes(struct store *st)
{
	static const char select_sql[] = "SELECT pubkey, routes FROM peer WHERE routes <> ''";
	static const char insert_sql[] = "INSERT OR IGNORE INTO route (lo, hi, bits, pubkey)"
					 " VALUES (?1, ?2, ?3, ?4)";
	char routes[STORE_ROUTES_STR];
	uint8_t lo[ROUTE_KEY_MAX], hi[ROUTE_KEY_MAX];
	sqlite3_stmt *s = NULL, *ins = NULL;
	struct store_peer p;
	int rc, ret;

	if ((ret = exec_sql(st, route_sql)))
		return ret;
	rc = sqlite3_prepare_v2(st->db, select_sql, -1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(st->db, insert_sql, -1, &ins, NULL);
	if (rc != SQLITE_OK) {
		ret = sql_err(st, rc);
		goto out;
	}
	while (ret == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&p, 0, sizeof(p));
		if (col_blob(s, 0, p.pubkey, WG_KEY_LEN, NULL) ||
		    col_text(s, 1, routes, sizeof(routes) - 1) || routes_parse(routes, &p))
			continue;
		for (unsigned i = 0; ret == 0 && i < p.n_routes; i++) {
			int n = route_keys(&p.routes[i], lo, hi);

			sqlite3_bind_blob(ins, 1, lo, n, SQLITE_STATIC);
			sqlite3_bind_blob(ins, 2, hi, n, SQLITE_STATIC);
			sqlite3_bind_int(ins, 3, p.routes[i].bits);
			sqlite3_bind_blob(ins, 4, p.pubkey, WG_KEY_LEN, SQLITE_STATIC);
			rc = sqlite3_step(ins);
			if (rc != SQLITE_DONE)
				ret = sql_err(st, rc);
			sqlite3_reset(ins);
		}
	}
	if (ret == 0 && rc != SQLITE_DONE)
		ret = sql_err(st, rc);
out:
	sqlite3_finalize(ins);
	sqlite3_finalize(s);
	return ret;
}

/* Record st->pool in meta and put the allocator at next (open time only). */
static int write_pool(struct store *st, int64_t next)
{
	static const char *const sql[] = {
		"INSERT OR REPLACE INTO meta (id, version, has_ip4, ip4_first, ip4_last, has_ip6,"
		" ip6_prefix) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
		"INSERT INTO alloc (id, next_ip4, last_ip4) VALUES (1, ?7, ?8) ON CONFLICT (id)"
		" DO UPDATE SET next_ip4 = excluded.next_ip4, last_ip4 = excluded.last_ip4",
	};
	const struct store_pool *p = &st->pool;
	sqlite3_stmt *u;
	int rc;

	for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
		rc = sqlite3_prepare_v2(st->db, sql[i], -1, &u, NULL);
		if (rc != SQLITE_OK)
			return sql_err(st, rc);
		sqlite3_bind_int(u, 1, STORE_SCHEMA_VERSION);
		sqlite3_bind_int(u, 2, p->has_ip4);
		sqlite3_bind_int64(u, 3, p->ip4_first);
		sqlite3_bind_int64(u, 4, p->ip4_last);
		sqlite3_bind_int(u, 5, p->has_ip6);
		sqlite3_bind_blob(u, 6, p->ip6_prefix, sizeof(p->ip6_prefix), SQLITE_STATIC);
		sqlite3_bind_int64(u, 7, next);
		sqlite3_bind_int64(u, 8, p->has_ip4 ? (int64_t)p->ip4_last : -1);
		rc = sqlite3_step(u);
		sqlite3_finalize(u);
		if (rc != SQLITE_DONE)
			return sql_err(st, rc);
	}
	return 0;
}

/* The file's pool versus the configured one. Addresses ever handed out pin the IPv4 start
 * and the high-water mark (so last may grow, or shrink down to the highest address handed
 * out); a stored IPv6 address pins the prefix. Anything else may change freely. */
static int reconcile_pool(struct store *st, const char *path, char *err, size_t errlen)
{
	const struct store_pool *p = &st->pool;
	char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
	sqlite3_stmt *s = NULL;
	int64_t version, has4, first, last, has6, next = 0, alloc_last = 0;
	uint8_t prefix[8];
	bool ip4_used, ip6_used;
	int ret;

	ret = open_query(st, "SELECT version, has_ip4, ip4_first, ip4_last, has_ip6, ip6_prefix"
			     " FROM meta WHERE id = 1", &s);
	if (ret == 0)
		ret = -EBADMSG;
	if (ret == 1)
		ret = col_int(s, 0, 0, INT64_MAX, false, &version);
	if (ret == 0 && version != STORE_SCHEMA_VERSION && version != 1) {
		seterr(err, errlen, "store %s: schema version %lld, this program knows %d", path,
		       (long long)version, STORE_SCHEMA_VERSION);
		sqlite3_finalize(s);
		return -EPROTONOSUPPORT;
	}
	if (ret == 0 && !((ret = col_int(s, 1, 0, 1, false, &has4)) ||
			  (ret = col_int(s, 2, 0, UINT32_MAX, false, &first)) ||
			  (ret = col_int(s, 3, 0, UINT32_MAX, false, &last)) ||
			  (ret = col_int(s, 4, 0, 1, false, &has6))))
		ret = col_blob(s, 5, prefix, sizeof(prefix), NULL);
	sqlite3_finalize(s);
	if (ret == 0) {
		ret = open_query(st, "SELECT next_ip4, last_ip4 FROM alloc WHERE id = 1", &s);
		if (ret == 0)
			ret = -EBADMSG;
		if (ret == 1 && !(ret = col_int(s, 0, 0, (int64_t)UINT32_MAX + 1, false, &next)))
			ret = col_int(s, 1, -1, UINT32_MAX, false, &alloc_last);
		sqlite3_finalize(s);
	}
	if (ret == 0 && has4 && (next < first || next > last + 1))
		ret = -EBADMSG;
	if (ret) {
		seterr(err, errlen, "store %s: damaged meta/alloc rows", path);
		return ret;
	}

	ip4_used = has4 && next != first;
	if (ip4_used && !p->has_ip4) {
		seterr(err, errlen, "store %s: no IPv4 pool configured, but addresses from %s were "
		       "handed out", path, ip4_str((uint32_t)first, a));
		return -EINVAL;
	}
	if (ip4_used && p->ip4_first != first) {
		seterr(err, errlen, "store %s: IPv4 pool starts at %s, the stored pool at %s "
		       "(addresses handed out)", path, ip4_str(p->ip4_first, a),
		       ip4_str((uint32_t)first, b));
		return -EINVAL;
	}
	if (ip4_used && p->ip4_last < next - 1) {
		seterr(err, errlen, "store %s: IPv4 pool ends at %s, but %s was handed out already",
		       path, ip4_str(p->ip4_last, a), ip4_str((uint32_t)(next - 1), b));
		return -EINVAL;
	}
	ret = open_query(st, "SELECT 1 FROM peer WHERE ip6 IS NOT NULL LIMIT 1", &s);
	sqlite3_finalize(s);
	if (ret < 0)
		return ret;
	ip6_used = has6 && ret == 1;
	ret = 0;
	if (ip6_used && (!p->has_ip6 || memcmp(p->ip6_prefix, prefix, sizeof(prefix)))) {
		seterr(err, errlen, "store %s: IPv6 prefix %s/64 conflicts with the stored %s/64 "
		       "(addresses handed out)", path,
		       p->has_ip6 ? ip6_prefix_str(p->ip6_prefix, a) : "(none)",
		       ip6_prefix_str(prefix, b));
		return -EINVAL;
	}
	/* Compatible: record the configured pool (and the schema version). A pool never used
	 * starts afresh. */
	if (!ip4_used && (ret = exec_sql(st, "DELETE FROM ip4_free")))
		return ret;
	if (version == 1 && (ret = migrate_routes(st)))
		return ret;
	return write_pool(st, ip4_used ? next : st->pool.ip4_first);
}

static int create_schema(struct store *st)
{
	int ret = exec_sql(st, schema_sql);

	if (ret == 0)
		ret = exec_sql(st, route_sql);

	return ret ? ret : write_pool(st, st->pool.ip4_first);
}

static int open_schema(struct store *st, const char *path, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int64_t has_meta = 0, objects = 0;
	int ret;

	if ((ret = exec_sql(st, "BEGIN IMMEDIATE")))
		goto fail;
	ret = open_query(st, "SELECT (SELECT count(*) FROM sqlite_schema WHERE type = 'table'"
			     " AND name = 'meta'), (SELECT count(*) FROM sqlite_schema)", &s);
	if (ret == 1) {
		has_meta = sqlite3_column_int64(s, 0);
		objects = sqlite3_column_int64(s, 1);
		ret = 0;
	}
	sqlite3_finalize(s);
	if (ret)
		goto fail;
	if (!has_meta && objects) {
		seterr(err, errlen, "store %s: not a wgws peer store (tables but no meta)", path);
		ret = -EINVAL;
		goto rollback;
	}
	ret = has_meta ? reconcile_pool(st, path, err, errlen) : create_schema(st);
	if (!ret)
		ret = exec_sql(st, tombstone_sql);
	if (!ret)
		ret = exec_sql(st, source_sql);
	if (ret) {
		if (err && errlen && !err[0])
			goto fail;
		goto rollback;
	}
	if ((ret = exec_sql(st, "COMMIT")))
		goto fail;
	return 0;
fail:
	seterr(err, errlen, "store %s: %s", path, st->errmsg);
rollback:
	if (!sqlite3_get_autocommit(st->db))
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return ret;
}

static int open_db(struct store *st, const char *path, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *mode;
	int fd, rc, ret;

	/* The file holds preshared keys: create it private before sqlite does (0644). The WAL
	 * and shm files take the database's mode. */
	if (strcmp(path, ":memory:") && (fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) >= 0)
		close(fd);
	rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE, NULL);
	if (rc != SQLITE_OK) {
		seterr(err, errlen, "store %s: %s", path,
		       st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		return sql_errno(rc);
	}
	sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
	ret = open_query(st, "PRAGMA journal_mode = WAL", &s);
	mode = ret == 1 ? sqlite3_column_text(s, 0) : NULL;
	if (ret >= 0 && (!mode || strcasecmp((const char *)mode, "wal"))) {
		seterr(err, errlen, "store %s: journal_mode stays %s, WAL is required", path,
		       mode ? (const char *)mode : "unknown");
		sqlite3_finalize(s);
		return -EINVAL;
	}
	sqlite3_finalize(s);
	if (ret < 0)
		goto fail;
	/* synchronous=NORMAL: a commit survives a crash of this process (not a power loss).
	 * wal_autocheckpoint=0: the writer checkpoints off the hot path (store_checkpoint).
	 * trusted_schema=OFF: the file is data, not code. secure_delete=FAST: deleted PSKs are
	 * zeroed in place when that costs no extra I/O. */
	/* No journal_size_limit: it would make the first write after a checkpoint truncate
	 * the WAL in the event loop; ckpt.c cuts a large WAL back while the writer is quiet. */
	ret = exec_sql(st, "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;"
			   "PRAGMA foreign_keys = OFF; PRAGMA trusted_schema = OFF;"
			   "PRAGMA secure_delete = FAST;");
	if (ret)
		goto fail;
	return 0;
fail:
	seterr(err, errlen, "store %s: %s", path, st->errmsg);
	return ret;
}

/* Overlaps stored before they were refused (schema 1): one pass over the route table in key
 * order (its rows, not the peers) keeping the furthest last address so far, and one address
 * seek per route. Nothing is changed; the first overlap and the count go to err. */
static int report_overlaps(struct store *st, const char *path, char *err, size_t errlen)
{
	char a[CIDR_STR], b[CIDR_STR], ka[WG_KEY_B64_LEN + 1], kb[WG_KEY_B64_LEN + 1];
	uint8_t far_hi[ROUTE_KEY_MAX], far_key[WG_KEY_LEN], key[WG_KEY_LEN];
	struct cidr c, far = { 0 };
	struct store_conflict cf;
	sqlite3_stmt *s = NULL;
	unsigned count = 0;
	int far_n = 0, rc, ret;

	rc = sqlite3_prepare_v2(st->db, "SELECT lo, hi, bits, pubkey FROM route ORDER BY lo", -1,
				&s, NULL);
	if (rc != SQLITE_OK)
		return sql_err(st, rc);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const uint8_t *lo = sqlite3_column_blob(s, 0), *hi = sqlite3_column_blob(s, 1);
		int n = sqlite3_column_bytes(s, 0);
		int64_t bits;

		if (!lo || !hi || (n != 5 && n != 17) || sqlite3_column_bytes(s, 1) != n ||
		    lo[0] != (n == 5 ? 4 : 6) || col_int(s, 2, 0, (n - 1) * 8, false, &bits) ||
		    col_blob(s, 3, key, WG_KEY_LEN, NULL))
			continue; /* not ours to judge: store_get() reports damage */
		memset(&c, 0, sizeof(c));
		c.family = n == 5 ? AF_INET : AF_INET6;
		c.bits = (uint8_t)bits;
		memcpy(c.addr, lo + 1, (size_t)n - 1);
		if (far_n == n && memcmp(far_hi, lo, (size_t)n) >= 0) {
			st->nested = true;
			if (count++ == 0) {
				key_to_base64(far_key, ka);
				key_to_base64(key, kb);
				cidr_format(&far, a);
				cidr_format(&c, b);
			}
		}
		if ((ret = address_overlap(st, &c, &cf)) < 0)
			goto out;
		if (ret == 1 && count++ == 0) {
			key_to_base64(key, ka);
			key_to_base64(cf.pubkey, kb);
			cidr_format(&c, a);
			cidr_format(&cf.theirs, b);
		}
		if (far_n == 0 || memcmp(hi, far_hi, (size_t)n) > 0) {
			far_n = n;
			memcpy(far_hi, hi, (size_t)n);
			memcpy(far_key, key, WG_KEY_LEN);
			far = c;
		}
	}
	ret = rc == SQLITE_DONE ? 0 : sql_err(st, rc);
	if (ret == 0 && count)
		seterr(err, errlen, "store %s: %u allowed IPs overlap another's (stored before "
		       "overlaps were refused), first %s of %s and %s of %s: WireGuard routes such "
		       "addresses to one peer only; delete one peer of each pair", path, count, a,
		       ka, b, kb);
out:
	sqlite3_finalize(s);
	return ret;
}

int store_open(struct store **out, const char *path, const struct store_pool *pool, char *err,
	       size_t errlen)
{
	struct store *st;
	int rc, ret;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if ((ret = check_pool(pool, err, errlen)))
		return ret;
	if (sqlite3_libversion_number() < STORE_MIN_SQLITE) {
		seterr(err, errlen, "store: SQLite %s is too old (STRICT tables need 3.37)",
		       sqlite3_libversion());
		return -ENOTSUP;
	}
	if (sodium_init() < 0) {
		seterr(err, errlen, "store: libsodium failed to initialise");
		return -EIO;
	}
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->pool = *pool;
	if (!pool->has_ip4)
		st->pool.ip4_first = st->pool.ip4_last = 0;
	if ((ret = open_db(st, path, err, errlen)) || (ret = open_schema(st, path, err, errlen)))
		goto out_close;
	for (int i = 0; i < S_MAX; i++) {
		rc = sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					&st->stmt[i], NULL);
		if (rc != SQLITE_OK) {
			ret = sql_err(st, rc);
			seterr(err, errlen, "store %s: preparing \"%s\": %s", path, stmt_sql[i],
			       st->errmsg);
			goto out_close;
		}
	}
	if ((ret = report_overlaps(st, path, err, errlen))) {
		seterr(err, errlen, "store %s: checking stored allowed IPs: %s", path, st->errmsg);
		goto out_close;
	}
	*out = st;
	return 0;
out_close:
	store_close(st);
	return ret;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	for (int i = 0; i < S_MAX; i++)
		sqlite3_finalize(st->stmt[i]);
	sqlite3_close(st->db);
	free(st);
}
