/* SPDX-License-Identifier: MIT */
/* The garbage collector. Every --gc-interval:
 *  1. expired peers (ttl_seconds) are deleted: from the device first, then from the store;
 *  2. the device is dumped (its only O(installed) operation) and each stored peer's last
 *     handshake goes into the store (the API's last_handshake), written only when it moved;
 *  3. with --gc-idle, peers whose last handshake is older than the threshold — or that never
 *     shook hands and were installed longer ago than that — are removed from the device, not
 *     from the store. Without it (the default without --jit) the dump only reads.
 * Removals go --gc-batch at a time, one batch per turn of the event loop (a timer of a few
 * milliseconds), so API requests and installs never wait behind a long GC: each kernel
 * removal costs an RCU grace period under rtnl_lock. Peers in the device that the store
 * does not know (added by hand) are left alone. */
#include <errno.h>
#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "prov.h"

enum {
	GC_MAX_PER_RUN = 4096, /* removals queued by one run; the rest wait for the next */
	GC_STEP_US = 5000,     /* pause between batches: the loop serves requests meanwhile */
	GC_EXPIRED_PER_RUN = 1024,
};

static struct {
	lws_sorted_usec_list_t run_sul, step_sul;
	uint8_t (*queue)[WG_KEY_LEN];
	unsigned queued, done;
	int64_t now;
} gc;

struct idle_ctx {
	int64_t now;
	unsigned queued;
};

static int expire_one(void *arg, const struct store_peer *sp)
{
	char b64[WG_KEY_B64_LEN + 1];
	bool in_store;
	int ret = peer_delete(sp->pubkey, &in_store);

	(void)arg;
	key_to_base64(sp->pubkey, b64);
	if (ret < 0 && ret != -ENOENT) {
		if (in_store)
			log_warnx("gc: expired peer %s: the store failed: %s%s%s", b64,
				  strerror(-ret), store_errmsg(prov.store)[0] ? ": " : "",
				  store_errmsg(prov.store));
		else
			log_warnx("gc: expired peer %s: %s refused the removal: %s", b64,
				  prov.cfg.ifname, strerror(-ret));
		return 0;
	}
	prov.st.expired++;
	log_info("gc: peer %s expired and was deleted", b64);
	return 0;
}

/* The store resets its statement before each callback: deleting as we go is safe. */
static void gc_expire(int64_t now)
{
	if (store_list_expired(prov.store, now, GC_EXPIRED_PER_RUN, expire_one, NULL) < 0)
		log_warnx("gc: cannot list expired peers");
}

/* A time within a second of the stored one is the same handshake: boringtun reports an age,
 * which uapi.c turns into a time against our clock, so one handshake can come out a second
 * apart from one dump to the next; rewriting it would be a store write per live peer per run. */
static bool handshake_moved(int64_t seen_s, int64_t stored_s)
{
	return seen_s > stored_s + 1 || seen_s < stored_s - 1;
}

static int consider(void *arg, const struct wgdev_peer_info *pi)
{
	struct idle_ctx *ic = arg;
	struct store_peer sp;
	int64_t since;

	if (!pi->last_handshake_s && !prov.cfg.gc_idle_s)
		return 0; /* nothing to record, nothing to collect: no store lookup */
	if (store_get(prov.store, pi->pubkey, &sp) < 0)
		return 0; /* not ours */
	if (pi->last_handshake_s && handshake_moved(pi->last_handshake_s, sp.last_seen)) {
		(void)store_set_last_seen(prov.store, pi->pubkey, pi->last_handshake_s);
		prov.writes_since_checkpoint = true;
	}
	if (!prov.cfg.gc_idle_s || ic->queued >= GC_MAX_PER_RUN)
		return 0;
	since = pi->last_handshake_s ? pi->last_handshake_s : sp.installed_at;
	if (!since || ic->now - since <= (int64_t)prov.cfg.gc_idle_s)
		return 0;
	memcpy(gc.queue[ic->queued++], pi->pubkey, WG_KEY_LEN);
	return 0;
}

/* A queued peer that just proved alive (a JIT decision answered for it) stays: the queue
 * was filled from a dump up to a second ago. O(queued), and only while removals run. */
void gc_spare(const uint8_t key[static WG_KEY_LEN])
{
	for (unsigned i = gc.done; i < gc.queued; i++)
		if (!memcmp(gc.queue[i], key, WG_KEY_LEN))
			memset(gc.queue[i], 0, WG_KEY_LEN); /* the all-zero key: skipped */
}

static void gc_step(lws_sorted_usec_list_t *sul)
{
	static const uint8_t spared[WG_KEY_LEN];
	uint8_t (*batch)[WG_KEY_LEN] = gc.queue + gc.done;
	unsigned n = gc.queued - gc.done, k = 0;
	int ret;

	(void)sul;
	if (n > prov.cfg.gc_batch)
		n = prov.cfg.gc_batch;
	if (!n)
		return;
	/* Close the gaps gc_spare() left, in place (the entries are consumed). */
	for (unsigned i = 0; i < n; i++)
		if (memcmp(batch[i], spared, WG_KEY_LEN))
			memmove(batch[k++], batch[i], WG_KEY_LEN);
	ret = k ? wgdev_remove(prov.dev, (const uint8_t(*)[WG_KEY_LEN])batch, k) : 0;
	if (ret < 0) {
		log_warnx("gc: removing %u peers from %s: %s; next run retries", k,
			  prov.cfg.ifname, strerror(-ret));
		gc.done = gc.queued;
		return;
	}
	for (unsigned i = 0; i < k; i++)
		(void)store_set_installed(prov.store, batch[i], 0);
	prov.writes_since_checkpoint = true;
	prov.st.gc_removed += k;
	prov.st.removals += k;
	gc.done += n;
	if (gc.done < gc.queued)
		lws_sul_schedule(prov.ctx, 0, &gc.step_sul, gc_step, GC_STEP_US);
	else
		log_info("gc: removed %u idle peers from %s", gc.queued, prov.cfg.ifname);
}

static void gc_run(lws_sorted_usec_list_t *sul)
{
	(void)sul;
	prov.st.gc_runs++;
	gc.now = prov_wall_s();
	gc_expire(gc.now);
	if (source_configured())
		source_expire(); /* in PostgreSQL: every gateway hears of it (source.c) */
	/* Handshake times are read with or without --gc-idle, or the API would never show one;
	 * a run whose removals are still going out skips its dump (the next one reads). */
	if (gc.done == gc.queued) {
		struct idle_ctx ic = { .now = gc.now };
		int ret = wgdev_dump(prov.dev, consider, &ic);

		if (ret < 0)
			log_warnx("gc: dump of %s: %s", prov.cfg.ifname, strerror(-ret));
		gc.queued = ic.queued;
		gc.done = 0;
		if (gc.queued)
			lws_sul_schedule(prov.ctx, 0, &gc.step_sul, gc_step, GC_STEP_US);
	}
	lws_sul_schedule(prov.ctx, 0, &gc.run_sul, gc_run,
			 (lws_usec_t)prov.cfg.gc_interval_s * LWS_US_PER_SEC);
}

/* ---- start-up reconciliation: eager mode puts missing peers back; JIT mode only corrects
 * the store's installed marks ---- */

enum { RECONCILE_PAGE = 64, RECONCILE_STEP_US = 2000 };

static struct {
	lws_sorted_usec_list_t sul;
	uint8_t (*have)[WG_KEY_LEN]; /* the device's peers, sorted */
	size_t n_have, cap;
	uint8_t cursor[WG_KEY_LEN];
	bool started;
	unsigned installed, present, failed, foreign, unmarked;
} rc;

bool prov_in_pools(const struct cidr *c)
{
	return (prov.cfg.has_pool4 && cidr_overlaps(c, &prov.cfg.pool4)) ||
	       (prov.cfg.has_pool6 && cidr_overlaps(c, &prov.cfg.pool6));
}

static int cmp_key(const void *a, const void *b)
{
	return memcmp(a, b, WG_KEY_LEN);
}

static int collect_device(void *arg, const struct wgdev_peer_info *pi)
{
	struct store_peer sp;
	unsigned n = pi->n_allowed < PROV_MAX_ALLOWED ? pi->n_allowed : PROV_MAX_ALLOWED;

	(void)arg;
	/* A peer we do not know holding pool addresses: the store may hand them out again, and
	 * the kernel would silently move them to the new peer. Say so, loudly, once. */
	if (store_get(prov.store, pi->pubkey, &sp) == -ENOENT) {
		for (unsigned i = 0; i < n; i++) {
			char b64[WG_KEY_B64_LEN + 1], cidr[CIDR_STR];

			if (!prov_in_pools(&pi->allowed[i]))
				continue;
			key_to_base64(pi->pubkey, b64);
			log_warnx("%s has peer %s, which the store does not know, with %s from the "
				  "pool: remove it (wg set %s peer %s remove) or that address may be "
				  "handed out twice", prov.cfg.ifname, b64,
				  cidr_format(&pi->allowed[i], cidr), prov.cfg.ifname, b64);
			rc.foreign++;
			break;
		}
	}
	if (rc.n_have == rc.cap) {
		size_t cap = rc.cap ? rc.cap * 2 : 1024;
		void *p = realloc(rc.have, cap * WG_KEY_LEN);

		if (!p)
			return -ENOMEM;
		rc.have = p;
		rc.cap = cap;
	}
	memcpy(rc.have[rc.n_have++], pi->pubkey, WG_KEY_LEN);
	return 0;
}

static int reconcile_one(void *arg, const struct store_peer *sp)
{
	(void)arg;
	memcpy(rc.cursor, sp->pubkey, WG_KEY_LEN);
	rc.started = true;
	if (rc.n_have && bsearch(sp->pubkey, rc.have, rc.n_have, WG_KEY_LEN, cmp_key)) {
		rc.present++;
		if (!sp->installed_at)
			(void)store_set_installed(prov.store, sp->pubkey, prov_wall_s());
		return 0;
	}
	if (prov.cfg.jit) {
		/* Just in time: the peer comes back with its next handshake; until then the
		 * store must not call it live. */
		if (sp->installed_at) {
			(void)store_set_installed(prov.store, sp->pubkey, 0);
			rc.unmarked++;
		}
		return 0;
	}
	if (peer_install(sp) < 0)
		rc.failed++;
	else
		rc.installed++;
	return 0;
}

static void reconcile_step(lws_sorted_usec_list_t *sul)
{
	int n;

	(void)sul;
	n = store_list(prov.store, rc.started ? rc.cursor : NULL, RECONCILE_PAGE, reconcile_one,
		       NULL);
	prov.writes_since_checkpoint = true;
	if (n == RECONCILE_PAGE) {
		lws_sul_schedule(prov.ctx, 0, &rc.sul, reconcile_step, RECONCILE_STEP_US);
		return;
	}
	if (n < 0)
		log_warnx("reconcile: cannot list the store: %s", strerror(-n));
	if (prov.cfg.jit)
		log_info("reconcile: %u stored peers are in %s, %u the store had as installed are "
			 "not (they return on their next handshake), %u unknown peers hold pool "
			 "addresses", rc.present, prov.cfg.ifname, rc.unmarked, rc.foreign);
	else
		log_info("reconcile: %u stored peers put back into %s, %u were there, %u unknown "
			 "peers hold pool addresses%s", rc.installed, prov.cfg.ifname, rc.present,
			 rc.foreign, rc.failed ? " (some failed: see above)" : "");
	if (rc.failed)
		log_warnx("reconcile: %u peers could not be installed", rc.failed);
	free(rc.have);
	rc.have = NULL;
}

void gc_reconcile_start(void)
{
	int ret = wgdev_dump(prov.dev, collect_device, NULL);

	if (ret < 0) {
		log_warnx("reconcile: dump of %s: %s; stored peers are not re-installed",
			  prov.cfg.ifname, strerror(-ret));
		return;
	}
	if (rc.n_have) /* qsort and bsearch want a real array, even for 0 elements */
		qsort(rc.have, rc.n_have, WG_KEY_LEN, cmp_key);
	lws_sul_schedule(prov.ctx, 0, &rc.sul, reconcile_step, 1);
}

void gc_start(void)
{
	gc.queue = calloc(GC_MAX_PER_RUN, WG_KEY_LEN);
	if (!gc.queue)
		fatalx("out of memory");
	lws_sul_schedule(prov.ctx, 0, &gc.run_sul, gc_run,
			 (lws_usec_t)prov.cfg.gc_interval_s * LWS_US_PER_SEC);
}
