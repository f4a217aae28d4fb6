/* SPDX-License-Identifier: MIT */
/* Bounded work per client for the JIT decision: what jit.c consults after mac1 and before any
 * public-key work, so that whatever a client sends, and from however many addresses or
 * tunnels, what it costs the provisioner is capped. Three tables, allocated at open and never
 * resized, and one bucket; each lookup is one or two keyed SipHashes (crypto_shorthash, a secret key,
 * so nobody can aim at a slot) and a few compares. No I/O, no logging, no clock of its own:
 * the caller passes monotonic seconds. It knows nothing of the store or the device.
 *
 * 1. Initiations decided lately, keyed on the ephemeral: the 32 unencrypted bytes a real
 *    client draws afresh for every initiation, retransmissions included. A slot keeps a hash
 *    of the ephemeral and one of bytes 8-116 (ephemeral, encrypted static, encrypted
 *    timestamp: what the handshake authenticates; the sender index is under mac1 only, which
 *    anyone can recompute, so changing it does not make a new handshake). The same bytes
 *    again get the same decision, and that is never a positive one: an accepted initiation
 *    repeated is a replay (its timestamp is taken), an unknown key is still unknown, a bad
 *    one still bad. The same ephemeral with other encrypted bytes is forged (no real client
 *    reuses an ephemeral): refused, so no verdict can carry over to altered bytes and flipping
 *    them buys no decryption. Direct-mapped, the newest entry wins: an attacker can evict
 *    entries only with new messages, each of which pays for a decision under the budget.
 *    A 64-bit hash collision could refuse one fresh initiation (2^-64 a pair).
 *
 * 2. Token buckets per client address, as a count-min sketch: two rows of buckets, each
 *    address hashed to one bucket in each row. As count-min trusts the smaller count, an
 *    address goes on when the fuller of its buckets holds a token, and then takes one from
 *    both (a bucket short of one is left at zero). Alone on its buckets, an address drains
 *    both together: one bucket's rate and burst. No address owns a bucket, so nothing is
 *    evicted and nothing is reset: a newcomer, or an address coming back, finds its buckets
 *    as traffic left them (full only if nobody drew on them for burst/rate seconds). A
 *    client cycling through addresses cannot collect fresh bursts: with the clock stopped,
 *    every address there is gets at most 2 * cells * burst tokens in all, and over time
 *    2 * cells * rate per second, which the global budget (3) caps further. Two rows, so
 *    that a client shares the fate of abusers only when both its buckets are drained: about
 *    (A/cells)^2 with A abusing addresses, instead of A/cells with one row. Rejected
 *    alternatives: a table of named buckets where a newcomer inherits the evicted one's
 *    tokens is this with one row and a name that changes nothing; one where a newcomer
 *    starts at zero refuses the first initiation of every client whose slot was ever used,
 *    which costs a real client WireGuard's 5-second retransmit.
 *
 * 3. A global budget of decisions with public-key work (one token bucket): over it, nothing
 *    gets an X25519, except that
 * 4. a source (a relay tunnel's UDP socket, a plain UDP sender) answered installed or live
 *    lately is answered live without one: the peer is in the device, and WireGuard itself
 *    authenticates the handshake it forwards. Only an answer after the public-key work
 *    (jitlimit_mark_live) records or refreshes a source, never a pass, so a source passes
 *    at most live_ttl_s after its last verified handshake. */
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "prov.h"

enum {
	EPH_OFF = 8,        /* type (4), sender index (4), then the ephemeral */
	EPH_LEN = 32,
	BODY_END = 116,     /* ephemeral, encrypted static (48), encrypted timestamp (28) */
	SKETCH_ROWS = 2,
};

struct seen_slot {
	uint64_t eph, body; /* keyed hashes of the ephemeral and of bytes 8-116 */
	double until;       /* 0: empty */
	uint8_t key[WG_KEY_LEN];
	uint8_t seen;       /* enum jitlimit_seen */
};

struct cell {
	double tokens, at;
};

struct live_slot {
	struct jitlimit_id source;
	uint8_t key[WG_KEY_LEN];
	double until; /* 0: empty */
};

struct jitlimit {
	struct jitlimit_cfg cfg;
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
	struct seen_slot *seen;
	struct cell *cells; /* SKETCH_ROWS rows of cfg.sketch_cells */
	struct live_slot *live;
	struct cell budget;
};

static bool is_pow2(unsigned n)
{
	return n && !(n & (n - 1));
}

static uint64_t hash64(const struct jitlimit *l, const void *p, size_t len)
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(h, p, len, l->hash_key);
	memcpy(&v, h, sizeof(v));
	return v;
}

int jitlimit_open(struct jitlimit **out, const struct jitlimit_cfg *cfg)
{
	struct jitlimit *l;

	*out = NULL;
	if (!is_pow2(cfg->replay_slots) || !is_pow2(cfg->sketch_cells) ||
	    !is_pow2(cfg->live_slots) || !(cfg->rate >= 1) || !(cfg->burst >= 1) ||
	    !(cfg->budget >= 1) || !(cfg->budget_burst >= 1))
		return -EINVAL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->cfg = *cfg;
	l->cfg.hash_key = NULL;
	if (cfg->hash_key)
		memcpy(l->hash_key, cfg->hash_key, sizeof(l->hash_key));
	else
		crypto_shorthash_keygen(l->hash_key);
	l->seen = calloc(cfg->replay_slots, sizeof(*l->seen));
	l->cells = calloc((size_t)SKETCH_ROWS * cfg->sketch_cells, sizeof(*l->cells));
	l->live = calloc(cfg->live_slots, sizeof(*l->live));
	if (!l->seen || !l->cells || !l->live) {
		jitlimit_close(l);
		return -ENOMEM;
	}
	/* Full buckets stamped at time 0: whatever the clock says, they are full at first use. */
	for (size_t i = 0; i < (size_t)SKETCH_ROWS * cfg->sketch_cells; i++)
		l->cells[i].tokens = cfg->burst;
	l->budget.tokens = cfg->budget_burst;
	*out = l;
	return 0;
}

void jitlimit_close(struct jitlimit *l)
{
	if (!l)
		return;
	free(l->seen);
	free(l->cells);
	free(l->live);
	sodium_memzero(l->hash_key, sizeof(l->hash_key));
	free(l);
}

/* ---- identities ---- */

static void id_make(struct jitlimit_id *id, const struct sockaddr_storage *ss, bool source)
{
	memset(id, 0, sizeof(*id));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		id->b[0] = 4;
		if (source)
			memcpy(id->b + 2, &sin->sin_port, 2);
		memcpy(id->b + 4, &sin->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		const uint8_t *a = sin6->sin6_addr.s6_addr;

		if (source)
			memcpy(id->b + 2, &sin6->sin6_port, 2);
		if (!source && IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			id->b[0] = 4; /* a dual-stack listener's IPv4 client is that IPv4 client */
			memcpy(id->b + 4, a + 12, 4);
		} else {
			id->b[0] = 6;
			/* One site hands a host a whole /64: as a client, that is one address. */
			memcpy(id->b + 4, a, source ? 16 : 8);
		}
	}
}

void jitlimit_id_client(struct jitlimit_id *id, const struct sockaddr_storage *ss)
{
	id_make(id, ss, false);
}

void jitlimit_id_source(struct jitlimit_id *id, const struct sockaddr_storage *ss)
{
	id_make(id, ss, true);
}

/* ---- 1. initiations decided lately ---- */

static struct seen_slot *seen_slot(struct jitlimit *l, const uint8_t *msg, uint64_t *eph)
{
	*eph = hash64(l, msg + EPH_OFF, EPH_LEN);
	return &l->seen[*eph & (l->cfg.replay_slots - 1)];
}

enum jitlimit_recall jitlimit_recall(struct jitlimit *l, const uint8_t *msg, double now,
				     enum jitlimit_seen *seen, uint8_t key[static WG_KEY_LEN])
{
	uint64_t eph;
	struct seen_slot *s = seen_slot(l, msg, &eph);

	if (!(s->until > now) || s->eph != eph)
		return JITLIMIT_MISS;
	if (s->body != hash64(l, msg + EPH_OFF, BODY_END - EPH_OFF))
		return JITLIMIT_FORGED;
	*seen = (enum jitlimit_seen)s->seen;
	memcpy(key, s->key, WG_KEY_LEN);
	return JITLIMIT_HIT;
}

void jitlimit_remember(struct jitlimit *l, const uint8_t *msg, enum jitlimit_seen seen,
		       const uint8_t *key, double now, double ttl_s)
{
	uint64_t eph;
	struct seen_slot *s = seen_slot(l, msg, &eph);

	if (ttl_s > l->cfg.replay_ttl_s)
		ttl_s = l->cfg.replay_ttl_s;
	if (!(ttl_s > 0))
		return;
	s->eph = eph;
	s->body = hash64(l, msg + EPH_OFF, BODY_END - EPH_OFF);
	s->until = now + ttl_s;
	s->seen = (uint8_t)seen;
	if (key)
		memcpy(s->key, key, WG_KEY_LEN);
	else
		memset(s->key, 0, WG_KEY_LEN);
}

/* ---- 2. and 3. token buckets ---- */

static void refill(struct cell *c, double now, double rate, double burst)
{
	if (now > c->at) {
		c->tokens += (now - c->at) * rate;
		if (c->tokens > burst)
			c->tokens = burst;
		c->at = now;
	}
}

static bool client_take(struct jitlimit *l, const struct jitlimit_id *client, double now)
{
	uint64_t h = hash64(l, client->b, sizeof(client->b));
	unsigned mask = l->cfg.sketch_cells - 1;
	struct cell *a = &l->cells[h & mask];
	struct cell *b = &l->cells[l->cfg.sketch_cells + ((h >> 32) & mask)];

	refill(a, now, l->cfg.rate, l->cfg.burst);
	refill(b, now, l->cfg.rate, l->cfg.burst);
	if (a->tokens < 1.0 && b->tokens < 1.0)
		return false;
	a->tokens = a->tokens > 1.0 ? a->tokens - 1.0 : 0.0;
	b->tokens = b->tokens > 1.0 ? b->tokens - 1.0 : 0.0;
	return true;
}

static bool budget_take(struct jitlimit *l, double now)
{
	refill(&l->budget, now, l->cfg.budget, l->cfg.budget_burst);
	if (l->budget.tokens < 1.0)
		return false;
	l->budget.tokens -= 1.0;
	return true;
}

/* ---- 4. sources answered installed/live lately ---- */

static struct live_slot *live_slot(struct jitlimit *l, const struct jitlimit_id *source)
{
	return &l->live[hash64(l, source->b, sizeof(source->b)) & (l->cfg.live_slots - 1)];
}

void jitlimit_mark_live(struct jitlimit *l, const struct jitlimit_id *source,
			const uint8_t key[static WG_KEY_LEN], double now)
{
	struct live_slot *s = live_slot(l, source);

	s->source = *source;
	memcpy(s->key, key, WG_KEY_LEN);
	s->until = now + l->cfg.live_ttl_s;
}

enum jitlimit_admit jitlimit_admit(struct jitlimit *l, const struct jitlimit_id *client,
				   const struct jitlimit_id *source, double now,
				   uint8_t key[static WG_KEY_LEN])
{
	struct live_slot *s;

	if (!client_take(l, client, now))
		return JITLIMIT_SHED_RATE;
	if (budget_take(l, now))
		return JITLIMIT_ADMIT;
	s = live_slot(l, source);
	if (s->until > now && !memcmp(&s->source, source, sizeof(*source))) {
		memcpy(key, s->key, WG_KEY_LEN);
		return JITLIMIT_PASS_LIVE;
	}
	return JITLIMIT_SHED_BUDGET;
}
