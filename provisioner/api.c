/* SPDX-License-Identifier: MIT */
/* The peer API: HTTP/1.1 and JSON, served by libwebsockets on a unix socket (and, when
 * configured, on TCP where every request needs the bearer token). Input is hostile until
 * checked: bodies are bounded by Content-Length before a byte is read, JSON must be an
 * object of known fields with checked types, and an error is a 4xx with {"error": …} that
 * changes nothing. A store failure is a 500 (507 for a full disk) with SQLite's own words in
 * the log only. A create answers only when the peer is durable in SQLite and, in eager mode,
 * installed in the device; a private key the server made for it is wiped once sent. */
#include <errno.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "log.h"
#include "procmetrics.h"
#include "prov.h"

enum {
	API_BODY_MAX = 16384,
	API_PATH_MAX = 256,
	API_LIST_DEFAULT = 100,
	API_LIST_MAX = 1000,
	API_TTL_MAX = 10 * 365 * 86400,
	API_METRICS_MAX = 32768,
	API_QUERY_MAX = 1024, /* a listing's whole query string, with a NUL */
};

enum api_method { M_OTHER, M_GET, M_POST, M_DELETE };
static const char *const method_names[API_METHODS] = { "other", "GET", "POST", "DELETE" };
static const unsigned code_values[API_CODES - 1] = { 200, 201, 204, 400, 401, 403, 404, 405,
						     409, 411, 413, 415, 429, 500, 503 };
static const char *const code_names[API_CODES] = { "200", "201", "204", "400", "401", "403",
						   "404", "405", "409", "411", "413", "415",
						   "429", "500", "503", "other" };

static unsigned api_code_index(unsigned status)
{
	for (unsigned i = 0; i < API_CODES - 1; i++)
		if (code_values[i] == status)
			return i;
	return API_CODES - 1;
}

/* Per HTTP connection (lws allocates and zeroes it). A handler only prepares the answer;
 * it is written from LWS_CALLBACK_HTTP_WRITEABLE, where lws expects the transaction to end
 * (completing it inside the HTTP or BODY callbacks corrupted pipelined requests and could
 * spin the loop). */
struct req {
	enum api_method method;
	char path[API_PATH_MAX];
	char *body;
	size_t body_len, body_want;
	double t0;
	bool answered;        /* an answer is prepared or sent: ignore the rest of this request */
	bool flushing;        /* the answer is written; close once lws has sent it all */
	unsigned status;
	const char *ctype;
	bool challenge;
	struct answer ans;    /* LWS_PRE of headroom, then the body */
	/* --source: a create or delete waiting for PostgreSQL (source.c) */
	struct lws *wsi;
	struct source_op *op;
	bool have_priv;
	uint8_t priv[WG_KEY_LEN]; /* a key pair the server made: shown once, then wiped */
};

static struct req *cur_req; /* the request being handled (single-threaded loop) */

/* Take a as the answer to the current request and ask for a WRITEABLE callback. */
static int reply_answer(struct lws *wsi, unsigned status, const char *ctype, struct answer *a,
			bool auth_challenge)
{
	struct req *r = cur_req;

	if (!r || r->answered) {
		answer_free(a);
		return 0;
	}
	r->answered = true;
	prov.st.api_by[r->method][api_code_index(status)]++;
	if (status >= 400)
		prov.st.api_errors++;
	r->ans = *a;
	memset(a, 0, sizeof(*a));
	r->status = status;
	r->ctype = ctype;
	r->challenge = auth_challenge;
	lws_callback_on_writable(wsi);
	return 0;
}

/* Prepare the answer to the current request (a copy of body). */
static int reply(struct lws *wsi, unsigned status, const char *ctype, const char *body,
		 size_t len, bool auth_challenge)
{
	struct answer a;

	if (!cur_req || cur_req->answered)
		return 0;
	if (answer_copy(&a, LWS_PRE, body, len) < 0)
		return -1;
	return reply_answer(wsi, status, ctype, &a, auth_challenge);
}

/* One request per connection: every answer says "connection: close" and the connection ends
 * once the answer is out. lws 4.1.6 spins its loop at 100% on pipelined requests left in a
 * kept-alive connection's buffer (lws_service_do_ripe_rxflow); closing discards them. */
static int write_answer(struct lws *wsi, struct req *r)
{
	uint8_t hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr);
	int ret = -1;

	if (r->flushing) {
		if (!lws_partial_buffered(wsi))
			return -1;
		lws_callback_on_writable(wsi);
		return 0;
	}
	if (!r->ans.buf)
		return 0; /* nothing prepared yet (lws may call early) */
	if (lws_add_http_common_headers(wsi, r->status, r->ctype, r->ans.len, &p, end))
		goto out;
	if (lws_add_http_header_by_name(wsi, (const unsigned char *)"connection:",
					(const unsigned char *)"close", 5, &p, end))
		goto out;
	if (r->challenge &&
	    lws_add_http_header_by_name(wsi, (const unsigned char *)"www-authenticate:",
					(const unsigned char *)"Bearer", 6, &p, end))
		goto out;
	if (lws_finalize_write_http_header(wsi, start, &p, end))
		goto out;
	if (r->ans.len && lws_write(wsi, r->ans.buf + r->ans.pre, r->ans.len,
				    LWS_WRITE_HTTP_FINAL) != (int)r->ans.len)
		goto out;
	if (lws_partial_buffered(wsi)) {
		/* A long listing: lws holds the rest; WRITEABLE comes once it is sent. */
		r->flushing = true;
		lws_callback_on_writable(wsi);
		ret = 0;
	}
out:
	answer_free(&r->ans); /* a private key: wiped once lws has it (see answer.c) */
	free(r->body);
	r->body = NULL;
	return ret;
}

/* Consumes j. A 401 also asks for the bearer token (WWW-Authenticate). */
static int reply_json(struct lws *wsi, unsigned status, json_t *j)
{
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	int ret;

	json_decref(j);
	if (!text)
		return reply(wsi, 500, "application/json", "{\"error\":\"out of memory\"}", 25,
			     false);
	ret = reply(wsi, status, "application/json", text, strlen(text), status == 401);
	free(text);
	return ret;
}

static int __attribute__((format(printf, 3, 4)))
reply_error(struct lws *wsi, unsigned status, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Messages echo input (a path, a header): JSON strings must be UTF-8, and a byte cut
	 * from a sequence or a hostile %ff would make json_pack fail, so ASCII only. */
	for (char *c = msg; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
			*c = '?';
	return reply_json(wsi, status, json_pack("{s:s}", "error", msg));
}

/* A store failure: SQLite's own words (store_errmsg) go to the log with what was being done;
 * the client gets a short message: 507 when the disk is full, 500 otherwise. */
static int reply_store_error(struct lws *wsi, const char *what, int err)
{
	const char *detail = store_errmsg(prov.store);

	log_warnx("store: %s failed: %s%s%s", what, strerror(-err), detail[0] ? ": " : "", detail);
	if (err == -ENOSPC)
		return reply_error(wsi, 507, "the peer store is out of disk space");
	return reply_error(wsi, 500, "the peer store failed (%s)", strerror(-err));
}

static json_t *cidr_json(const struct cidr *c)
{
	char buf[CIDR_STR];

	return json_string(cidr_format(c, buf));
}

static json_t *peer_json(const struct store_peer *sp)
{
	char b64[WG_KEY_B64_LEN + 1];
	struct wgdev_peer dp;
	json_t *j = json_object(), *addrs = json_array(), *allowed = json_array();
	unsigned n_addr = (unsigned)sp->has_ip4 + sp->has_ip6;

	peer_to_device(sp, &dp);
	for (unsigned i = 0; i < dp.n_allowed; i++) {
		if (i < n_addr)
			json_array_append_new(addrs, cidr_json(&dp.allowed[i]));
		json_array_append_new(allowed, cidr_json(&dp.allowed[i]));
	}
	key_to_base64(sp->pubkey, b64);
	json_object_set_new(j, "public_key", json_string(b64));
	if (sp->name[0])
		json_object_set_new(j, "name", json_string(sp->name));
	json_object_set_new(j, "addresses", addrs);
	json_object_set_new(j, "allowed_ips", allowed);
	json_object_set_new(j, "created_at", json_integer(sp->created_at));
	json_object_set_new(j, "expires_at", sp->expires_at ? json_integer(sp->expires_at)
							      : json_null());
	json_object_set_new(j, "installed", json_boolean(sp->installed_at != 0));
	json_object_set_new(j, "last_handshake", sp->last_seen ? json_integer(sp->last_seen)
							       : json_null());
	return j;
}

static bool name_is_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > PROV_NAME_MAX)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

static bool in_pools(const struct cidr *c, const struct cidr *pools, unsigned n_pools)
{
	for (unsigned i = 0; i < n_pools; i++)
		if (cidr_overlaps(c, &pools[i]))
			return true;
	return false;
}

unsigned api_parse_create(const char *body, size_t len, int64_t now,
			  const struct cidr *pools, unsigned n_pools,
			  const uint8_t *device_key, struct store_peer *sp, bool *have_key,
			  char msg[static API_MSG_LEN])
{
	json_error_t jerr;
	json_t *root = json_loadb(body ? body : "{}", body ? len : 2, JSON_REJECT_DUPLICATES, &jerr);
	const char *k;
	json_t *v;
	unsigned status = 0;

	memset(sp, 0, sizeof(*sp));
	*have_key = false;
	if (!root || !json_is_object(root)) {
		snprintf(msg, API_MSG_LEN, "the body must be a JSON object%s%s", root ? "" : ": ",
			 root ? "" : jerr.text);
		json_decref(root);
		return 400;
	}
	json_object_foreach(root, k, v) {
		if (!strcmp(k, "public_key")) {
			const char *why;

			if (!json_is_string(v) || key_from_base64(json_string_value(v), sp->pubkey) < 0) {
				snprintf(msg, API_MSG_LEN,
					 "public_key: not a 32-byte base64 WireGuard key");
				status = 400;
				break;
			}
			if (key_check_public(sp->pubkey, device_key, &why) < 0) {
				snprintf(msg, API_MSG_LEN, "public_key: %s", why);
				status = 400;
				break;
			}
			*have_key = true;
		} else if (!strcmp(k, "ttl_seconds")) {
			json_int_t t = json_is_integer(v) ? json_integer_value(v) : -1;

			if (t < 1 || t > API_TTL_MAX) {
				snprintf(msg, API_MSG_LEN, "ttl_seconds: an integer from 1 to %d",
					 API_TTL_MAX);
				status = 400;
				break;
			}
			sp->expires_at = now + t;
		} else if (!strcmp(k, "name")) {
			if (!json_is_string(v) || !name_is_ok(json_string_value(v))) {
				snprintf(msg, API_MSG_LEN, "name: a string of 1 to %d printable "
					 "characters", PROV_NAME_MAX);
				status = 400;
				break;
			}
			strcpy(sp->name, json_string_value(v));
		} else if (!strcmp(k, "allowed_ips")) {
			size_t i;
			json_t *e;
			const unsigned max = sizeof(sp->routes) / sizeof(sp->routes[0]);

			if (!json_is_array(v) || json_array_size(v) > max) {
				snprintf(msg, API_MSG_LEN,
					 "allowed_ips: an array of at most %u CIDR strings (routes "
					 "behind the peer; its own addresses are assigned)", max);
				status = 400;
				break;
			}
			json_array_foreach(v, i, e) {
				struct cidr *c = &sp->routes[i];

				if (!json_is_string(e) || cidr_parse(json_string_value(e), c) < 0) {
					snprintf(msg, API_MSG_LEN,
						 "allowed_ips[%zu]: not a CIDR such as "
						 "192.168.7.0/24 (host bits must be zero)", i);
					status = 400;
					break;
				}
				if (c->bits == 0 || in_pools(c, pools, n_pools)) {
					snprintf(msg, API_MSG_LEN,
						 "allowed_ips[%zu]: overlaps the address pool or "
						 "everything; it would take other peers' traffic", i);
					status = 400;
					break;
				}
				for (size_t o = 0; o < i; o++) {
					char a[CIDR_STR], b[CIDR_STR];

					if (!cidr_overlaps(c, &sp->routes[o]))
						continue;
					snprintf(msg, API_MSG_LEN, "allowed_ips[%zu]: %s overlaps "
						 "allowed_ips[%zu] %s", i, cidr_format(c, a), o,
						 cidr_format(&sp->routes[o], b));
					status = 400;
					break;
				}
				if (status)
					break;
				sp->n_routes++;
			}
			if (status)
				break;
		} else {
			snprintf(msg, API_MSG_LEN, "unknown field '%.64s' (known: public_key, "
				 "ttl_seconds, name, allowed_ips)", k);
			status = 400;
			break;
		}
	}
	json_decref(root);
	return status;
}

/* 409 for allowed IPs that overlap another peer's: WireGuard would silently move the shared
 * addresses to the newest peer. Names both prefixes and the peer that has the other. */
static int reply_conflict(struct lws *wsi, const struct store_conflict *cf)
{
	char mine[CIDR_STR], theirs[CIDR_STR], key[WG_KEY_B64_LEN + 1];

	cidr_format(&cf->mine, mine);
	cidr_format(&cf->theirs, theirs);
	key_to_base64(cf->pubkey, key);
	if (cf->mine_is_address)
		return reply_error(wsi, 409, "the next address from the pool, %s, is inside %s of "
				   "peer %s: delete that peer to free it", mine, theirs, key);
	return reply_error(wsi, 409, "allowed_ips: %s overlaps %s of peer %s (WireGuard would "
			   "route those addresses to one peer only)", mine, theirs, key);
}

/* The 201 for a key pair the server made: the peer's JSON with the private key and a config
 * that has it, in a secret answer (answer.c): no jansson string or dump buffer ever holds
 * the key, the config is wiped here, the answer once it is written. */
static int reply_with_key(struct lws *wsi, const struct store_peer *sp,
			  const uint8_t priv[static WG_KEY_LEN])
{
	json_t *j = peer_json(sp);
	struct answer a;
	char *pub, *config;
	int ret;

	pub = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	config = peer_config(sp, priv);
	ret = pub && config ? answer_secret(&a, LWS_PRE, pub, priv, config) : -ENOMEM;
	if (config) {
		sodium_memzero(config, strlen(config));
		free(config);
	}
	free(pub);
	if (ret < 0) {
		/* The peer is stored, but its private key is gone: take it back. */
		log_warnx("the answer to a create could not be built: %s", strerror(-ret));
		if (peer_delete(sp->pubkey, NULL) < 0)
			log_warnx("and the new peer could not be deleted");
		return reply_error(wsi, 500, "the answer could not be built: %s", strerror(-ret));
	}
	return reply_answer(wsi, 201, "application/json", &a, false);
}

/* Eager mode: the new peer, durable in the store, into the device and marked installed.
 * Returns 0, or 1 once a failure is answered (the peer is taken back out of both). */
static int install_new(struct lws *wsi, struct store_peer *sp)
{
	struct wgdev_peer dp;
	int ret, r2;

	peer_to_device(sp, &dp);
	ret = peer_install_device(&dp);
	if (ret < 0) {
		r2 = store_delete(prov.store, sp->pubkey, prov_wall_s());
		log_warnx("device %s refused a new peer: %s%s%s", prov.cfg.ifname, strerror(-ret),
			  r2 < 0 ? "; the store could not take it back: " : "",
			  r2 < 0 ? store_errmsg(prov.store) : "");
		reply_error(wsi, 503, "the WireGuard device refused the peer: %s", strerror(-ret));
		return 1;
	}
	sp->installed_at = prov_wall_s();
	ret = store_set_installed(prov.store, sp->pubkey, sp->installed_at);
	if (ret < 0) {
		/* In the device, but the store cannot say so: out of both, the device first. */
		reply_store_error(wsi, "marking a new peer installed", ret);
		r2 = wgdev_remove(prov.dev, (const uint8_t(*)[WG_KEY_LEN])sp->pubkey, 1);
		if (r2 == 0)
			r2 = store_delete(prov.store, sp->pubkey, prov_wall_s());
		if (r2 < 0)
			log_warnx("and the new peer could not be taken back: %s", strerror(-r2));
		return 1;
	}
	prov.writes_since_checkpoint = true;
	return 0;
}

/* --source: what PostgreSQL answered to a create (source_create). */
static void create_done(void *arg, int err, const struct store_peer *p)
{
	struct req *r = arg;
	struct lws *wsi = r->wsi;
	struct store_peer sp;
	char *config;
	json_t *j;

	r->op = NULL;
	cur_req = r;
	if (err == -EAGAIN) {
		reply_error(wsi, 503, "the peers' source (PostgreSQL) cannot be reached now: "
			    "nothing was created");
	} else if (err == -EEXIST) {
		reply_error(wsi, 409, "a peer with this public key exists");
	} else if (err == -EADDRNOTAVAIL) {
		reply_error(wsi, 409, "the address pool is exhausted");
	} else if (err == -EADDRINUSE) {
		reply_error(wsi, 409, "an allowed IP of this peer overlaps another peer's");
	} else if (err || !p) {
		reply_error(wsi, 500, "the peers' source failed (see the provisioner's log)");
	} else {
		sp = *p;
		/* This gateway caches it at once; the others at its first handshake there. */
		(void)source_cache_put(&sp);
		jit_forget(sp.pubkey);
		prov.st.creates++;
		hist_observe(&prov.st.create_latency, prov_now_s() - r->t0);
		if (r->have_priv) {
			reply_with_key(wsi, &sp, r->priv);
		} else {
			j = peer_json(&sp);
			config = peer_config(&sp, NULL);
			json_object_set_new(j, "config", config ? json_string(config) : json_null());
			free(config);
			reply_json(wsi, 201, j);
		}
	}
	sodium_memzero(r->priv, sizeof(r->priv));
	r->have_priv = false;
	cur_req = NULL;
}

/* --source: what PostgreSQL answered to a delete (source_delete). */
static void delete_done(void *arg, int err, const struct store_peer *p)
{
	struct req *r = arg;
	char b64[WG_KEY_B64_LEN + 1];
	int ret;

	(void)p;
	r->op = NULL;
	cur_req = r;
	if (err == -EAGAIN) {
		reply_error(r->wsi, 503, "the peers' source (PostgreSQL) cannot be reached now: "
			    "nothing was deleted");
	} else if (err == -ENOENT) {
		reply_error(r->wsi, 404, "no such peer");
	} else if (err) {
		reply_error(r->wsi, 500, "the peers' source failed (see the provisioner's log)");
	} else {
		/* Gone from the source: from here at once, from the others by the change log. */
		ret = peer_delete(r->priv, NULL);
		if (ret < 0 && ret != -ENOENT)
			log_warnx("a deleted peer could not leave this gateway yet: %s (the change "
				  "log retries)", strerror(-ret));
		prov.st.deletes++;
		key_to_base64(r->priv, b64);
		reply_json(r->wsi, 200, json_pack("{s:s}", "deleted", b64));
	}
	sodium_memzero(r->priv, sizeof(r->priv));
	cur_req = NULL;
}

static int api_create(struct lws *wsi, struct req *r)
{
	uint8_t priv[WG_KEY_LEN];
	struct store_peer sp;
	struct cidr pools[2];
	char msg[API_MSG_LEN], *config;
	unsigned n_pools = 0, status;
	bool have_key;
	json_t *j;
	int ret;

	if (prov.cfg.has_pool4)
		pools[n_pools++] = prov.cfg.pool4;
	if (prov.cfg.has_pool6)
		pools[n_pools++] = prov.cfg.pool6;
	status = api_parse_create(r->body, r->body_len, prov_wall_s(), pools, n_pools,
				  prov.info.has_public_key ? prov.info.public_key : NULL, &sp,
				  &have_key, msg);
	if (status)
		return reply_error(wsi, status, "%s", msg);
	if (!have_key) {
		/* The server makes the key pair; the private key is shown once, never stored. */
		randombytes_buf(priv, sizeof(priv));
		priv[0] &= 248;
		priv[31] = (priv[31] & 127) | 64;
		if (crypto_scalarmult_base(sp.pubkey, priv) != 0) {
			sodium_memzero(priv, sizeof(priv));
			return reply_error(wsi, 500, "key generation failed");
		}
	}
	if (source_configured()) {
		/* Created in PostgreSQL, answered once committed there (create_done). */
		r->wsi = wsi;
		r->have_priv = !have_key;
		if (!have_key)
			memcpy(r->priv, priv, sizeof(priv));
		sodium_memzero(priv, sizeof(priv));
		r->op = source_create(&sp, create_done, r);
		if (!r->op) {
			sodium_memzero(r->priv, sizeof(r->priv));
			return reply_error(wsi, 503, "the peers' source has too much waiting");
		}
		return 0;
	}
	ret = store_create(prov.store, &sp, prov_wall_s());
	if (ret < 0) {
		sodium_memzero(priv, sizeof(priv));
		if (ret == -EEXIST)
			return reply_error(wsi, 409, "a peer with this public key exists");
		if (ret == -EADDRNOTAVAIL)
			return reply_error(wsi, 409, "the address pool is exhausted");
		if (ret == -EADDRINUSE)
			return reply_conflict(wsi, store_last_conflict(prov.store));
		return reply_store_error(wsi, "create", ret);
	}
	prov.writes_since_checkpoint = true;
	jit_forget(sp.pubkey);
	if (!prov.cfg.jit && install_new(wsi, &sp)) {
		sodium_memzero(priv, sizeof(priv));
		return 0;
	}
	prov.st.creates++;
	hist_observe(&prov.st.create_latency, prov_now_s() - r->t0);
	if (!have_key) {
		ret = reply_with_key(wsi, &sp, priv);
		sodium_memzero(priv, sizeof(priv));
		return ret;
	}
	j = peer_json(&sp);
	config = peer_config(&sp, NULL);
	json_object_set_new(j, "config", config ? json_string(config) : json_null());
	free(config);
	return reply_json(wsi, 201, j);
}

static int api_show(struct lws *wsi, const char *k)
{
	uint8_t key[WG_KEY_LEN];
	struct store_peer sp;
	char *config;
	json_t *j;
	int ret;

	if (key_from_base64(k, key) < 0)
		return reply_error(wsi, 400, "not a URL-safe base64 public key: '%.60s'", k);
	ret = store_get(prov.store, key, &sp);
	if (ret == -ENOENT)
		return reply_error(wsi, 404, "no such peer");
	if (ret < 0)
		return reply_store_error(wsi, "get", ret);
	j = peer_json(&sp);
	config = peer_config(&sp, NULL);
	json_object_set_new(j, "config", config ? json_string(config) : json_null());
	free(config);
	return reply_json(wsi, 200, j);
}

static int api_delete(struct lws *wsi, const char *k)
{
	uint8_t key[WG_KEY_LEN];
	char b64[WG_KEY_B64_LEN + 1];
	bool in_store;
	int ret;

	if (key_from_base64(k, key) < 0)
		return reply_error(wsi, 400, "not a URL-safe base64 public key: '%.60s'", k);
	if (source_configured()) {
		struct req *r = cur_req;

		r->wsi = wsi;
		memcpy(r->priv, key, sizeof(key)); /* not a secret: the key to delete */
		r->op = source_delete(key, delete_done, r);
		if (!r->op)
			return reply_error(wsi, 503, "the peers' source has too much waiting");
		return 0;
	}
	ret = peer_delete(key, &in_store);
	if (ret == -ENOENT)
		return reply_error(wsi, 404, "no such peer");
	if (ret < 0 && in_store)
		return reply_store_error(wsi, "delete", ret);
	if (ret < 0)
		return reply_error(wsi, 503, "could not remove the peer from %s: %s",
				   prov.cfg.ifname, strerror(-ret));
	key_to_base64(key, b64);
	return reply_json(wsi, 200, json_pack("{s:s}", "deleted", b64));
}

struct list_ctx {
	json_t *arr;
	uint8_t last[WG_KEY_LEN];
};

static int list_one(void *arg, const struct store_peer *sp)
{
	struct list_ctx *lc = arg;

	json_array_append_new(lc->arr, peer_json(sp));
	memcpy(lc->last, sp->pubkey, WG_KEY_LEN);
	return 0;
}

/* The listing's query: after=KEY and limit=N, each at most once, nothing else. Every argument
 * is read whole (lws_get_urlarg_by_name() skips one longer than its buffer, and a cursor it
 * skipped silently restarted the listing from the first key). Returns 0, or an HTTP status
 * with msg set. */
static unsigned parse_list_query(struct lws *wsi, uint8_t after[static WG_KEY_LEN],
				 bool *has_after, unsigned long *limit, char msg[static API_MSG_LEN])
{
	char arg[API_QUERY_MAX];
	bool has_limit = false;
	int total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);

	*has_after = false;
	*limit = API_LIST_DEFAULT;
	if (total >= (int)sizeof(arg)) {
		snprintf(msg, API_MSG_LEN, "the query is over %d bytes", API_QUERY_MAX - 1);
		return 414;
	}
	/* Each fragment is one urldecoded "name=value"; -1 once there are no more. */
	for (int i = 0;
	     lws_hdr_copy_fragment(wsi, arg, sizeof(arg), WSI_TOKEN_HTTP_URI_ARGS, i) >= 0; i++) {
		if (!strncmp(arg, "after=", 6)) {
			if (*has_after || key_from_base64(arg + 6, after) < 0) {
				snprintf(msg, API_MSG_LEN, "after: %s", *has_after ? "given twice" :
					 "not a URL-safe base64 public key (the \"next\" of the "
					 "previous page)");
				return 400;
			}
			*has_after = true;
		} else if (!strncmp(arg, "limit=", 6)) {
			if (has_limit || conf_parse_uint(arg + 6, 1, API_LIST_MAX, limit) < 0) {
				if (has_limit)
					snprintf(msg, API_MSG_LEN, "limit: given twice");
				else
					snprintf(msg, API_MSG_LEN, "limit: an integer from 1 to %d",
						 API_LIST_MAX);
				return 400;
			}
			has_limit = true;
		} else if (arg[0] && strcmp(arg, "/")) {
			/* (lws 4.1.6 reports an empty argument, "?" or a trailing '&', as "/") */
			snprintf(msg, API_MSG_LEN, "unknown query argument '%.40s' (known: after, limit)",
				 arg);
			return 400;
		}
	}
	return 0;
}

static int api_list(struct lws *wsi)
{
	uint8_t after[WG_KEY_LEN];
	bool has_after;
	unsigned long limit;
	struct list_ctx lc;
	char msg[API_MSG_LEN];
	unsigned status;
	int n;

	status = parse_list_query(wsi, after, &has_after, &limit, msg);
	if (status)
		return reply_error(wsi, status, "%s", msg);
	lc.arr = json_array();
	n = store_list(prov.store, has_after ? after : NULL, (unsigned)limit, list_one, &lc);
	if (n < 0) {
		json_decref(lc.arr);
		return reply_store_error(wsi, "list", n);
	}
	if ((unsigned long)n == limit) {
		char b64[WG_KEY_B64_LEN + 1];

		key_to_base64url(lc.last, b64);
		return reply_json(wsi, 200, json_pack("{s:o,s:s}", "peers", lc.arr, "next", b64));
	}
	return reply_json(wsi, 200, json_pack("{s:o,s:n}", "peers", lc.arr, "next"));
}

/* Upper bounds in seconds; the last bucket is +Inf. */
static const double hist_bounds[PROV_HIST_BUCKETS - 1] = {
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
};

void hist_observe(struct hist *h, double seconds)
{
	unsigned i = 0;

	while (i < PROV_HIST_BUCKETS - 1 && seconds > hist_bounds[i])
		i++;
	h->bucket[i]++;
	h->count++;
	h->sum += seconds;
}

double hist_bound(unsigned i)
{
	return i < PROV_HIST_BUCKETS - 1 ? hist_bounds[i] : -1;
}

#define PUT(...)                                                                   \
	do {                                                                       \
		int n_ = snprintf(buf + len, size - len, __VA_ARGS__);             \
		if (n_ < 0 || (size_t)n_ >= size - len)                            \
			goto full;                                                 \
		len += (size_t)n_;                                                 \
	} while (0)

static size_t render_hist(char *buf, size_t size, const char *name, const char *help,
			  const struct hist *h)
{
	size_t len = 0;
	uint64_t cum = 0;

	PUT("# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (unsigned i = 0; i < PROV_HIST_BUCKETS; i++) {
		cum += h->bucket[i];
		if (i < PROV_HIST_BUCKETS - 1)
			PUT("%s_bucket{le=\"%g\"} %llu\n", name, hist_bound(i), (unsigned long long)cum);
		else
			PUT("%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
	}
	PUT("%s_sum %.9f\n%s_count %llu\n", name, h->sum, name, (unsigned long long)h->count);
	return len;
full:
	return 0;
}

static size_t render_jit(char *buf, size_t size)
{
	const struct jit_stats *j = &prov.jit;
	size_t len = 0;

	PUT("# HELP wgws_provisioner_jit_initiations_total Handshake initiations decided on.\n"
	    "# TYPE wgws_provisioner_jit_initiations_total counter\n"
	    "wgws_provisioner_jit_initiations_total{path=\"relay\"} %llu\n"
	    "wgws_provisioner_jit_initiations_total{path=\"capture\"} %llu\n",
	    (unsigned long long)j->initiations[JIT_PATH_RELAY],
	    (unsigned long long)j->initiations[JIT_PATH_CAPTURE]);
	PUT("# HELP wgws_provisioner_jit_mac1_failures_total Initiations whose mac1 does not match the device key (not for this gateway).\n"
	    "# TYPE wgws_provisioner_jit_mac1_failures_total counter\n"
	    "wgws_provisioner_jit_mac1_failures_total %llu\n"
	    "# HELP wgws_provisioner_jit_bad_initiations_total Initiations that failed to decrypt with the device key.\n"
	    "# TYPE wgws_provisioner_jit_bad_initiations_total counter\n"
	    "wgws_provisioner_jit_bad_initiations_total %llu\n"
	    "# HELP wgws_provisioner_jit_unknown_keys_total Initiations from a public key the store does not have.\n"
	    "# TYPE wgws_provisioner_jit_unknown_keys_total counter\n"
	    "wgws_provisioner_jit_unknown_keys_total %llu\n"
	    "# HELP wgws_provisioner_jit_negative_cache_hits_total Unknown keys answered from memory (--jit-negative-ttl).\n"
	    "# TYPE wgws_provisioner_jit_negative_cache_hits_total counter\n"
	    "wgws_provisioner_jit_negative_cache_hits_total %llu\n"
	    "# HELP wgws_provisioner_jit_replays_refused_total Initiations refused as replays (an old timestamp for the key).\n"
	    "# TYPE wgws_provisioner_jit_replays_refused_total counter\n"
	    "wgws_provisioner_jit_replays_refused_total %llu\n"
	    "# HELP wgws_provisioner_jit_rate_limited_total Initiations refused with the client "
	    "address over --jit-rate, before any public-key work.\n"
	    "# TYPE wgws_provisioner_jit_rate_limited_total counter\n"
	    "wgws_provisioner_jit_rate_limited_total %llu\n"
	    "# HELP wgws_provisioner_jit_installs_total Peers installed just in time.\n"
	    "# TYPE wgws_provisioner_jit_installs_total counter\n"
	    "wgws_provisioner_jit_installs_total %llu\n"
	    "# HELP wgws_provisioner_jit_already_live_total Initiations from peers already in the device.\n"
	    "# TYPE wgws_provisioner_jit_already_live_total counter\n"
	    "wgws_provisioner_jit_already_live_total %llu\n"
	    "# HELP wgws_provisioner_jit_errors_total JIT decisions that failed (store or device errors).\n"
	    "# TYPE wgws_provisioner_jit_errors_total counter\n"
	    "wgws_provisioner_jit_errors_total %llu\n"
	    "# HELP wgws_provisioner_jit_relay_connections_total Relay connections accepted on --jit-socket.\n"
	    "# TYPE wgws_provisioner_jit_relay_connections_total counter\n"
	    "wgws_provisioner_jit_relay_connections_total %llu\n"
	    "# HELP wgws_provisioner_jit_relay_refused_total Connections on --jit-socket refused (not root or --jit-user).\n"
	    "# TYPE wgws_provisioner_jit_relay_refused_total counter\n"
	    "wgws_provisioner_jit_relay_refused_total %llu\n"
	    "# HELP wgws_provisioner_jit_relay_protocol_errors_total Relay connections closed for a malformed message.\n"
	    "# TYPE wgws_provisioner_jit_relay_protocol_errors_total counter\n"
	    "wgws_provisioner_jit_relay_protocol_errors_total %llu\n"
	    "# HELP wgws_provisioner_jit_answers_dropped_total Answers to a relay dropped because its socket was full.\n"
	    "# TYPE wgws_provisioner_jit_answers_dropped_total counter\n"
	    "wgws_provisioner_jit_answers_dropped_total %llu\n"
	    "# HELP wgws_provisioner_jit_capture_malformed_total Captured packets (--capture) that were not a well-formed initiation.\n"
	    "# TYPE wgws_provisioner_jit_capture_malformed_total counter\n"
	    "wgws_provisioner_jit_capture_malformed_total %llu\n",
	    (unsigned long long)j->mac1_failures, (unsigned long long)j->bad_initiations,
	    (unsigned long long)j->unknown_keys, (unsigned long long)j->negative_hits,
	    (unsigned long long)j->replays, (unsigned long long)j->rate_limited,
	    (unsigned long long)j->installs, (unsigned long long)j->already_live,
	    (unsigned long long)j->errors, (unsigned long long)j->relay_conns,
	    (unsigned long long)j->relay_refused, (unsigned long long)j->relay_protocol_errors,
	    (unsigned long long)j->answers_dropped, (unsigned long long)j->capture_bad);
	/* What was answered without public-key work, and why (jitlimit.c). */
	PUT("# HELP wgws_provisioner_jit_replay_cache_hits_total Initiations answered from the "
	    "memory of those decided lately, by what they were then (forged: a remembered "
	    "ephemeral with other encrypted bytes).\n"
	    "# TYPE wgws_provisioner_jit_replay_cache_hits_total counter\n"
	    "wgws_provisioner_jit_replay_cache_hits_total{kind=\"replay\"} %llu\n"
	    "wgws_provisioner_jit_replay_cache_hits_total{kind=\"unknown\"} %llu\n"
	    "wgws_provisioner_jit_replay_cache_hits_total{kind=\"bad\"} %llu\n"
	    "wgws_provisioner_jit_replay_cache_hits_total{kind=\"forged\"} %llu\n",
	    (unsigned long long)j->recalled_replays, (unsigned long long)j->recalled_unknown,
	    (unsigned long long)j->recalled_bad, (unsigned long long)j->recalled_forged);
	PUT("# HELP wgws_provisioner_jit_budget_shed_total Initiations refused over --jit-budget, "
	    "before any public-key work.\n"
	    "# TYPE wgws_provisioner_jit_budget_shed_total counter\n"
	    "wgws_provisioner_jit_budget_shed_total %llu\n"
	    "# HELP wgws_provisioner_jit_budget_passed_total Initiations answered live over "
	    "--jit-budget without public-key work: their source was answered live lately.\n"
	    "# TYPE wgws_provisioner_jit_budget_passed_total counter\n"
	    "wgws_provisioner_jit_budget_passed_total %llu\n",
	    (unsigned long long)j->budget_shed, (unsigned long long)j->budget_passed);
	len += render_hist(buf + len, size - len, "wgws_provisioner_jit_install_seconds",
			   "Initiation received to peer live in the device (JIT installs).",
			   &j->latency);
	return len;
full:
	return 0;
}

size_t api_render_metrics(char *buf, size_t size)
{
	const struct prov_stats *st = &prov.st;
	uint64_t stored = 0, installed = 0;
	size_t len = 0;

	(void)store_count(prov.store, &stored, &installed);
	PUT("# HELP wgws_provisioner_peers_stored Peers in the store.\n"
	    "# TYPE wgws_provisioner_peers_stored gauge\n"
	    "wgws_provisioner_peers_stored %llu\n", (unsigned long long)stored);
	PUT("# HELP wgws_provisioner_peers_installed Peers the store has as installed in the device.\n"
	    "# TYPE wgws_provisioner_peers_installed gauge\n"
	    "wgws_provisioner_peers_installed %llu\n", (unsigned long long)installed);
	PUT("# HELP wgws_provisioner_creates_total Peers created through the API.\n"
	    "# TYPE wgws_provisioner_creates_total counter\n"
	    "wgws_provisioner_creates_total %llu\n"
	    "# HELP wgws_provisioner_deletes_total Peers deleted through the API.\n"
	    "# TYPE wgws_provisioner_deletes_total counter\n"
	    "wgws_provisioner_deletes_total %llu\n"
	    "# HELP wgws_provisioner_installs_total Peers installed into the device.\n"
	    "# TYPE wgws_provisioner_installs_total counter\n"
	    "wgws_provisioner_installs_total %llu\n"
	    "# HELP wgws_provisioner_install_errors_total Device installs that failed.\n"
	    "# TYPE wgws_provisioner_install_errors_total counter\n"
	    "wgws_provisioner_install_errors_total %llu\n"
	    "# HELP wgws_provisioner_removals_total Peers removed from the device.\n"
	    "# TYPE wgws_provisioner_removals_total counter\n"
	    "wgws_provisioner_removals_total %llu\n"
	    "# HELP wgws_provisioner_gc_runs_total Garbage collection runs.\n"
	    "# TYPE wgws_provisioner_gc_runs_total counter\n"
	    "wgws_provisioner_gc_runs_total %llu\n"
	    "# HELP wgws_provisioner_gc_removed_total Peers the garbage collector removed (idle or expired).\n"
	    "# TYPE wgws_provisioner_gc_removed_total counter\n"
	    "wgws_provisioner_gc_removed_total %llu\n"
	    "# HELP wgws_provisioner_expired_total Peers deleted when their TTL ran out.\n"
	    "# TYPE wgws_provisioner_expired_total counter\n"
	    "wgws_provisioner_expired_total %llu\n"
	    "# HELP wgws_provisioner_api_errors_total API requests answered with a status of 400 or more.\n"
	    "# TYPE wgws_provisioner_api_errors_total counter\n"
	    "wgws_provisioner_api_errors_total %llu\n",
	    (unsigned long long)st->creates, (unsigned long long)st->deletes,
	    (unsigned long long)st->installs, (unsigned long long)st->install_errors,
	    (unsigned long long)st->removals, (unsigned long long)st->gc_runs,
	    (unsigned long long)st->gc_removed, (unsigned long long)st->expired,
	    (unsigned long long)st->api_errors);
	PUT("# HELP wgws_provisioner_api_requests_total API requests answered, by method and "
	    "status code.\n"
	    "# TYPE wgws_provisioner_api_requests_total counter\n");
	for (unsigned m = 0; m < API_METHODS; m++)
		for (unsigned c = 0; c < API_CODES; c++)
			if (st->api_by[m][c] || (m == 1 && c == 0))
				PUT("wgws_provisioner_api_requests_total{method=\"%s\",code=\"%s\"} "
				    "%llu\n", method_names[m], code_names[c],
				    (unsigned long long)st->api_by[m][c]);
	len += render_hist(buf + len, size - len, "wgws_provisioner_create_seconds",
			   "API create: request complete to peer durable and installed.",
			   &st->create_latency);
	len += render_hist(buf + len, size - len, "wgws_provisioner_install_seconds",
			   "One peer installed into the device.", &st->install_latency);
	if (prov.cfg.jit) {
		len += render_jit(buf + len, size - len);
		if (len == 0)
			goto full;
	}
	if (source_configured()) {
		int64_t synced = st->source_synced_at;

		PUT("# HELP wgws_provisioner_source_connected 1 while the connection to the peers' source (PostgreSQL, --source) is up.\n"
		    "# TYPE wgws_provisioner_source_connected gauge\n"
		    "wgws_provisioner_source_connected %d\n"
		    "# HELP wgws_provisioner_source_failures_total Connections to the source lost or not made.\n"
		    "# TYPE wgws_provisioner_source_failures_total counter\n"
		    "wgws_provisioner_source_failures_total %llu\n"
		    "# HELP wgws_provisioner_source_cache_total JIT lookups of a key, by where it was found: this gateway's cache (hit) or asked of the source (miss).\n"
		    "# TYPE wgws_provisioner_source_cache_total counter\n"
		    "wgws_provisioner_source_cache_total{result=\"hit\"} %llu\n"
		    "wgws_provisioner_source_cache_total{result=\"miss\"} %llu\n"
		    "# HELP wgws_provisioner_source_notifications_total Change notifications received (LISTEN wgws_changes).\n"
		    "# TYPE wgws_provisioner_source_notifications_total counter\n"
		    "wgws_provisioner_source_notifications_total %llu\n"
		    "# HELP wgws_provisioner_source_changes_total Rows of the change log applied (catch-up included).\n"
		    "# TYPE wgws_provisioner_source_changes_total counter\n"
		    "wgws_provisioner_source_changes_total %llu\n"
		    "# HELP wgws_provisioner_source_removed_total Peers a delete or change elsewhere took off this gateway.\n"
		    "# TYPE wgws_provisioner_source_removed_total counter\n"
		    "wgws_provisioner_source_removed_total %llu\n"
		    "# HELP wgws_provisioner_source_change_seq The last entry of the source's change log applied here (wgws_changes.seq).\n"
		    "# TYPE wgws_provisioner_source_change_seq gauge\n"
		    "wgws_provisioner_source_change_seq %lld\n"
		    "# HELP wgws_provisioner_source_sync_age_seconds Time since the change log was last read (-1: never).\n"
		    "# TYPE wgws_provisioner_source_sync_age_seconds gauge\n"
		    "wgws_provisioner_source_sync_age_seconds %lld\n",
		    source_connected(), (unsigned long long)st->source_failures,
		    (unsigned long long)st->source_hits, (unsigned long long)st->source_misses,
		    (unsigned long long)st->source_notifications,
		    (unsigned long long)st->source_changes, (unsigned long long)st->source_removed,
		    (long long)source_seq(), synced ? (long long)(prov_wall_s() - synced) : -1LL);
		len += render_hist(buf + len, size - len, "wgws_provisioner_source_query_seconds",
				   "One operation on the source, sent to answered.",
				   &st->source_latency);
	}
	{
		uint64_t runs, failures;
		double sum, max;
		int wal, copied;

		ckpt_stats(&runs, &failures, &sum, &max, &wal, &copied);
		PUT("# HELP wgws_provisioner_checkpoints_total WAL checkpoints (in their own thread).\n"
		    "# TYPE wgws_provisioner_checkpoints_total counter\n"
		    "wgws_provisioner_checkpoints_total %llu\n"
		    "# HELP wgws_provisioner_checkpoint_failures_total WAL checkpoints that failed.\n"
		    "# TYPE wgws_provisioner_checkpoint_failures_total counter\n"
		    "wgws_provisioner_checkpoint_failures_total %llu\n"
		    "# HELP wgws_provisioner_checkpoint_seconds_total Time spent in WAL checkpoints.\n"
		    "# TYPE wgws_provisioner_checkpoint_seconds_total counter\n"
		    "wgws_provisioner_checkpoint_seconds_total %.6f\n"
		    "# HELP wgws_provisioner_checkpoint_seconds_max The longest WAL checkpoint.\n"
		    "# TYPE wgws_provisioner_checkpoint_seconds_max gauge\n"
		    "wgws_provisioner_checkpoint_seconds_max %.6f\n"
		    "# HELP wgws_provisioner_checkpoint_wal_frames WAL frames at the last checkpoint, and copied back by it.\n"
		    "# TYPE wgws_provisioner_checkpoint_wal_frames gauge\n"
		    "wgws_provisioner_checkpoint_wal_frames %d\n"
		    "# HELP wgws_provisioner_checkpoint_copied_frames WAL frames the last checkpoint copied back.\n"
		    "# TYPE wgws_provisioner_checkpoint_copied_frames gauge\n"
		    "wgws_provisioner_checkpoint_copied_frames %d\n",
		    (unsigned long long)runs, (unsigned long long)failures, sum, max, wal, copied);
	}
	PUT("# HELP wgws_provisioner_info The device this provisioner serves, and how.\n"
	    "# TYPE wgws_provisioner_info gauge\n"
	    "wgws_provisioner_info{version=\"%s\",backend=\"%s\",interface=\"%s\"} 1\n",
	    PROV_VERSION, prov.dev->ops->name, prov.cfg.ifname);
	len += metrics_build_process(buf + len, size - len, "wgws_provisioner", PROV_VERSION);
	return len;
full:
	while (len && buf[len - 1] != '\n')
		len--;
	return len;
}

static int api_metrics(struct lws *wsi)
{
	static char text[API_METRICS_MAX];
	size_t n = api_render_metrics(text, sizeof(text));

	return reply(wsi, 200, "text/plain; version=0.0.4", text, n, false);
}

static int dispatch(struct lws *wsi, struct req *r)
{
	static const char peers[] = "/v1/peers";

	if (!strcmp(r->path, "/healthz")) {
		if (r->method != M_GET)
			return reply_error(wsi, 405, "use GET");
		return reply_json(wsi, 200, json_pack("{s:s,s:s,s:s}", "status", "ok", "interface",
						      prov.cfg.ifname, "backend",
						      prov.dev->ops->name));
	}
	if (!strcmp(r->path, "/metrics")) {
		if (r->method != M_GET)
			return reply_error(wsi, 405, "use GET");
		return api_metrics(wsi);
	}
	if (!strcmp(r->path, peers)) {
		if (r->method == M_POST)
			return api_create(wsi, r);
		if (r->method == M_GET)
			return api_list(wsi);
		return reply_error(wsi, 405, "use GET or POST on %s", peers);
	}
	if (!strncmp(r->path, peers, sizeof(peers) - 1) && r->path[sizeof(peers) - 1] == '/') {
		const char *k = r->path + sizeof(peers);

		if (r->method == M_GET)
			return api_show(wsi, k);
		if (r->method == M_DELETE)
			return api_delete(wsi, k);
		return reply_error(wsi, 405, "use GET or DELETE on %s/{key}", peers);
	}
	return reply_error(wsi, 404, "no such endpoint: %.100s", r->path);
}

static bool token_ok(struct lws *wsi)
{
	char hdr[PROV_TOKEN_MAX + 16];
	uint8_t a[32], b[32];
	int n = lws_hdr_copy(wsi, hdr, sizeof(hdr), WSI_TOKEN_HTTP_AUTHORIZATION);

	if (n <= 7 || strncasecmp(hdr, "Bearer ", 7))
		return false;
	/* Compare digests: constant time whatever the lengths. */
	crypto_generichash(a, sizeof(a), (const uint8_t *)hdr + 7, (size_t)n - 7, NULL, 0);
	crypto_generichash(b, sizeof(b), (const uint8_t *)prov.cfg.token, strlen(prov.cfg.token),
			   NULL, 0);
	return sodium_memcmp(a, b, sizeof(a)) == 0;
}

static int api_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			size_t len)
{
	struct req *r = user;
	char cl[32];
	unsigned long want;

	cur_req = r;
	switch (reason) {
	case LWS_CALLBACK_HTTP:
		answer_free(&r->ans);
		free(r->body);
		memset(r, 0, sizeof(*r));
		r->t0 = prov_now_s();
		snprintf(r->path, sizeof(r->path), "%s", (const char *)in);
		if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI))
			r->method = M_GET;
		else if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI))
			r->method = M_POST;
		else if (lws_hdr_total_length(wsi, WSI_TOKEN_DELETE_URI))
			r->method = M_DELETE;
		if (prov.cfg.api_tcp && !token_ok(wsi))
			return reply_error(wsi, 401, "a valid 'Authorization: Bearer <token>' is required");
		if (r->method != M_POST)
			return dispatch(wsi, r);
		if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
			return reply_error(wsi, 411, "a POST needs a Content-Length");
		/* Plain decimal digits that fit: "-1", "0x10" or 2^64 is a lie, not a size. */
		if (lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
			snprintf(cl, sizeof(cl), "(%d characters)",
				 lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH));
		else if (conf_parse_uint(cl, 0, ULONG_MAX, &want) == 0)
			cl[0] = '\0';
		if (cl[0])
			return reply_error(wsi, 400, "Content-Length: not a decimal number of "
					   "bytes that fits in 64 bits: '%.24s'", cl);
		if (want > API_BODY_MAX)
			return reply_error(wsi, 413, "the body is over %d bytes", API_BODY_MAX);
		if (want == 0)
			return dispatch(wsi, r);
		r->body = malloc(want);
		if (!r->body)
			return reply_error(wsi, 500, "out of memory");
		r->body_want = want;
		return 0; /* the body follows */

	case LWS_CALLBACK_HTTP_BODY:
		if (r->answered)
			return 0; /* already answered: the connection closes after */
		if (!r->body || len > r->body_want - r->body_len)
			return reply_error(wsi, 400, "more body than Content-Length said");
		memcpy(r->body + r->body_len, in, len);
		r->body_len += len;
		return 0;

	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		if (r->answered)
			return 0;
		return dispatch(wsi, r);

	case LWS_CALLBACK_HTTP_WRITEABLE:
		return write_answer(wsi, r);

	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
	case LWS_CALLBACK_CLOSED_HTTP:
		if (r) {
			free(r->body);
			r->body = NULL;
			answer_free(&r->ans);
			/* PostgreSQL's answer comes to nobody now (it is done there all the
			 * same: a create's private key is lost with the connection). */
			source_cancel(r->op);
			r->op = NULL;
			sodium_memzero(r->priv, sizeof(r->priv));
		}
		return 0;

	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return 1; /* no WebSockets here */

	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

static int metrics_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
			    void *in, size_t len)
{
	struct req *r = user;

	cur_req = r;
	switch (reason) {
	case LWS_CALLBACK_HTTP:
		answer_free(&r->ans);
		memset(r, 0, sizeof(*r));
		if (!strcmp((const char *)in, "/metrics"))
			return api_metrics(wsi);
		return reply_error(wsi, 404, "only /metrics here");
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return write_answer(wsi, r);
	case LWS_CALLBACK_CLOSED_HTTP:
		if (r)
			answer_free(&r->ans);
		return 0;
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return 1;
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}


static const struct lws_protocols metrics_list_[] = {
	{ "http", metrics_callback, sizeof(struct req), 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

/* HTTP first (lws serves plain HTTP with the first protocol), then the JIT descriptors. */
const struct lws_protocols *api_protocols(void)
{
	static struct lws_protocols list[4] = {
		{ "http", api_callback, sizeof(struct req), 0, 0, NULL, 0 },
	};

	list[1] = *jit_protocol();
	list[2] = *source_protocol();
	return list;
}

const struct lws_protocols *api_metrics_protocols(void)
{
	return metrics_list_;
}
