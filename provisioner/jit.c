/* SPDX-License-Identifier: MIT */
/* Just-in-time peers: a stored peer goes into the device when its first handshake
 * initiation arrives, and not before (reference §5, §7.2).
 *
 * Two ways an initiation reaches us. The relay asks over --jit-socket (a unix SOCK_SEQPACKET
 * socket, common/jitproto.h) and holds the datagram until we answer, so the first handshake
 * completes without a retransmit. On --capture IFNAME an AF_PACKET socket (capture.c) sees a
 * copy of each initiation sent over plain UDP; the device drops the original (it does not
 * know the peer yet), so we install the peer with the sender as its endpoint and make the
 * device initiate back at once.
 *
 * The decision, cheapest check first: mac1 (one keyed BLAKE2s); then, with no public-key work
 * (jitlimit.c), initiations decided lately (an exact replay is answered from memory), a
 * token bucket per client address and the global budget of decisions, past which only
 * sources answered live lately still pass; then the initiator's static key (one X25519),
 * the negative cache and the store, then the timestamp (the static-static secret comes from
 * a cache when it can: a second X25519 otherwise), which must be strictly newer than the
 * last one accepted for that key: the timestamp is stored before the peer is installed, so a
 * recorded initiation can never bring a peer back once the device has forgotten its own
 * replay counter. Everything runs in the provisioner's event loop; the relay never waits
 * for it (it holds, then forwards on a time-out). */
#include <errno.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "addr.h"
#include "log.h"
#include "prov.h"

enum {
	JIT_TABLE = 4096,         /* slots in each cache (power of two) */
	JIT_RX_BUDGET = 64,       /* messages read per wake-up, per socket */
	JIT_MAX_RELAYS = 16,      /* relay connections at once */
	JIT_RETRY_S = 10,         /* a live peer initiating again this soon did not get through */
	JIT_KEY_REFRESH_S = 600,  /* re-read the device's key this often (O(installed peers)) */
	JIT_FORCE_KEEPALIVE = 25, /* keepalive set for a moment to make the device initiate */
	JIT_KICK_DELAY_MS = 50,   /* after the install: see kick_later() */
	JIT_KICKS = 256,          /* installs waiting for their kick */
	JIT_ANSWERS_BUFFERED = 8192, /* answers a relay may leave unread (socket buffer) */
	/* jitlimit.c's tables. Decided initiations: only decisions under the budget add one,
	 * so at the default budget an entry lasts about a second under attack, and a replay
	 * that outlives it costs one budgeted decision, no more (4096 x 64 bytes; one slot per
	 * ephemeral hash, so at most 4096, fewer when two hash to one slot). */
	JIT_REPLAY_SLOTS = 4096,
	JIT_REPLAY_TTL_S = 60,   /* a replay is a replay for good; only eviction needs a bound */
	/* Per client address: 2 rows of 8192 buckets (256 KiB). Draining every bucket takes
	 * 8192 x --jit-rate mac1-valid initiations per second (164,000/s at 20/s). */
	JIT_SKETCH_CELLS = 8192,
	/* Sources answered installed/live: one per live tunnel, up to 8192 at once (one slot
	 * per source hash: two sources on one slot keep only the later). */
	JIT_LIVE_SLOTS = 8192,
	/* A live WireGuard session rekeys every 120 s (REKEY_AFTER_TIME): its next initiation
	 * comes within that, plus retries. Shorter with a shorter --gc-idle: see jit_init(). */
	JIT_LIVE_TTL_S = 180,
};

/* What the lws raw descriptors adopted here are. */
enum jit_fd_kind { FD_LISTEN = 1, FD_RELAY, FD_CAPTURE };

struct jit_fd {
	enum jit_fd_kind kind;
	int fd;
	struct lws *wsi;
	pid_t pid;
	uid_t uid;
	uint64_t gen;           /* a relay connection's number: a late answer finds it by it */
};

/* --source: an initiation whose key this gateway's cache lacks, while the source is asked
 * (source.c); decided again, and answered, when it has answered. */
struct fetch {
	uint8_t msg[JIT_INITIATION_LEN];
	struct sockaddr_storage client, source;
	enum jit_path path;
	double t0;
	struct jit_fd *jf;      /* the relay that asked, if it still is jf with gen */
	uint64_t gen, id;
};

struct negative {
	uint8_t key[WG_KEY_LEN];
	double until;
};

struct secret {
	uint8_t key[WG_KEY_LEN];
	uint8_t ss[WG_KEY_LEN];
	bool used;
};

/* A peer installed from a captured initiation, to be made to initiate a moment later. */
struct kick {
	uint8_t key[WG_KEY_LEN];
	uint16_t keepalive_s; /* the stored value, put back after the toggle */
	double due;
};

static struct {
	struct noise_responder *responder; /* sodium_malloc'ed: guarded, locked, wiped */
	struct secret *secrets;            /* sodium_malloc'ed too: static-static secrets */
	lws_sorted_usec_list_t key_sul, kick_sul;
	struct kick kicks[JIT_KICKS];      /* a ring: all wait the same time, so it stays sorted */
	unsigned kick_head, n_kicks;
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
	struct jitlimit *limit;            /* replays, per-client rates, the budget */
	struct negative negative[JIT_TABLE];
	unsigned relays;
	bool stopping;
	struct jit_fd listener, capture;
	struct lws_vhost *vhost;
	struct jit_fd *relay_fds[JIT_MAX_RELAYS]; /* the relays connected now */
	uint64_t next_gen;
	struct jit_fd *cur_jf;  /* the relay whose request jit_decide is deciding, and its id */
	uint64_t cur_id;
	bool resuming;          /* deciding again after the source answered (fetch_done) */
	int resume_err;         /* what it answered: 0, -ENOENT, or it could not (-EAGAIN...) */
} jit;

static unsigned slot_of(const void *p, size_t len)
{
	uint8_t h[crypto_shorthash_BYTES];
	uint32_t v;

	crypto_shorthash(h, p, len, jit.hash_key);
	memcpy(&v, h, sizeof(v));
	return v & (JIT_TABLE - 1);
}

/* ---- the device's key ---- */

static int responder_load(void)
{
	uint8_t priv[WG_KEY_LEN];
	struct wgdev_info info;
	int ret;

	if (prov.priv) { /* the daemon: the key stays in the privileged process */
		ret = priv_reload_key(prov.priv, &info);
		if (ret < 0)
			return ret;
		if (jit.responder->dh &&
		    memcmp(info.public_key, jit.responder->public_key, WG_KEY_LEN) == 0)
			return 0;
		ret = noise_responder_init(jit.responder, info.public_key, priv_dh, prov.priv);
		goto loaded;
	}
	ret = wgdev_get_info(prov.dev, &info, priv);
	if (ret < 0)
		return ret;
	if (jit.responder && sodium_memcmp(priv, jit.responder->local_key, WG_KEY_LEN) == 0) {
		sodium_memzero(priv, sizeof(priv));
		return 0;
	}
	ret = noise_responder_init_local(jit.responder, priv);
	sodium_memzero(priv, sizeof(priv));
loaded:
	if (ret < 0)
		return ret;
	/* Secrets made with the old key are worth nothing now. */
	sodium_memzero(jit.secrets, sizeof(*jit.secrets) * JIT_TABLE);
	prov.info.has_public_key = true;
	memcpy(prov.info.public_key, jit.responder->public_key, WG_KEY_LEN);
	return 0;
}

/* Has the device's key changed under us (an operator rotated it)? Read on a slow timer,
 * never because of a packet: reading it lists every installed peer on both backends (about
 * 4 us each: 20-30 ms at 5,000 installed, in the loop), and a mac1 failure is something
 * anyone can send. */
static void responder_refresh(lws_sorted_usec_list_t *sul)
{
	uint8_t before[WG_KEY_LEN];

	memcpy(before, jit.responder->public_key, WG_KEY_LEN);
	if (responder_load() == 0 && memcmp(before, jit.responder->public_key, WG_KEY_LEN))
		log_warnx("jit: the private key of %s changed; using the new one", prov.cfg.ifname);
	lws_sul_schedule(prov.ctx, 0, sul, responder_refresh,
			 (lws_usec_t)JIT_KEY_REFRESH_S * LWS_US_PER_SEC);
}

/* ---- caches keyed by the initiator's public key ---- */

static bool negative_hit(const uint8_t key[static WG_KEY_LEN])
{
	struct negative *n = &jit.negative[slot_of(key, WG_KEY_LEN)];

	return n->until > prov_now_s() && !memcmp(n->key, key, WG_KEY_LEN);
}

static void negative_add(const uint8_t key[static WG_KEY_LEN])
{
	struct negative *n = &jit.negative[slot_of(key, WG_KEY_LEN)];

	memcpy(n->key, key, WG_KEY_LEN);
	n->until = prov_now_s() + prov.cfg.jit_negative_ttl_s;
}

void jit_forget(const uint8_t key[static WG_KEY_LEN])
{
	struct negative *n = &jit.negative[slot_of(key, WG_KEY_LEN)];

	if (!memcmp(n->key, key, WG_KEY_LEN))
		n->until = 0;
}

/* DH(our key, theirs): from the cache, or computed and kept. Returns 0 or -EINVAL. */
static int static_secret(const uint8_t key[static WG_KEY_LEN], uint8_t ss[static WG_KEY_LEN])
{
	struct secret *s = &jit.secrets[slot_of(key, WG_KEY_LEN)];
	int ret;

	if (s->used && !memcmp(s->key, key, WG_KEY_LEN)) {
		memcpy(ss, s->ss, WG_KEY_LEN);
		return 0;
	}
	ret = noise_static_secret(jit.responder, key, ss);
	if (ret < 0)
		return ret;
	memcpy(s->key, key, WG_KEY_LEN);
	memcpy(s->ss, ss, WG_KEY_LEN);
	s->used = true;
	return 0;
}

/* ---- the decision ---- */

/* TAI64N seconds (the label 2^62 included: only differences matter here). */
static uint64_t tai_seconds(const uint8_t ts[static WG_TAI64N_LEN])
{
	uint64_t s = 0;

	for (int i = 0; i < 8; i++)
		s = s << 8 | ts[i];
	return s;
}

/* A live peer whose previous accepted initiation is only seconds old: its client is
 * retrying, so that handshake did not complete (the device lost the peer: a wireguard-go
 * restart, a removal behind our back). Put it back; installing is idempotent. */
static bool retrying(const struct store_peer *sp, const uint8_t ts[static WG_TAI64N_LEN])
{
	return sp->has_last_ts && tai_seconds(ts) - tai_seconds(sp->last_ts) < JIT_RETRY_S;
}

/* Make the device initiate to a peer: a persistent keepalive going from 0 to N does that on
 * the kernel and on wireguard-go (an endpoint alone does not), then the stored value goes
 * back. */
static void kick_now(const struct kick *k)
{
	struct wgdev_peer dp = { .keepalive_s = JIT_FORCE_KEEPALIVE };
	int ret;

	memcpy(dp.pubkey, k->key, WG_KEY_LEN);
	ret = wgdev_update(prov.dev, &dp);
	if (ret == 0 && k->keepalive_s != JIT_FORCE_KEEPALIVE) {
		dp.keepalive_s = k->keepalive_s;
		ret = wgdev_update(prov.dev, &dp);
	}
	if (ret < 0)
		log_warnx("jit: could not make %s initiate to a new peer: %s", prov.cfg.ifname,
			  strerror(-ret));
}

static void kicks_due(lws_sorted_usec_list_t *sul)
{
	double now = prov_now_s();

	while (jit.n_kicks && jit.kicks[jit.kick_head].due <= now) {
		kick_now(&jit.kicks[jit.kick_head]);
		jit.kick_head = (jit.kick_head + 1) % JIT_KICKS;
		jit.n_kicks--;
	}
	if (jit.n_kicks)
		lws_sul_schedule(prov.ctx, 0, sul, kicks_due,
				 (lws_usec_t)((jit.kicks[jit.kick_head].due - now) * 1e6) + 1);
}

/* The device may still have the captured initiation itself to process (wireguard-go reads
 * its socket in its own time): if it answers that one after the install and we also made
 * it initiate at once, the two handshakes cross, each side drops the other's response and
 * the client waits for its 5 s retransmit. So the kick comes JIT_KICK_DELAY_MS later: by
 * then the device has either answered (the kick then costs a spare handshake) or dropped
 * the initiation (the kick is the handshake). */
static void kick_later(const struct store_peer *sp)
{
	struct kick *k;

	if (jit.n_kicks == JIT_KICKS) { /* a burst: no room to wait */
		struct kick now = { .keepalive_s = sp->keepalive_s };

		memcpy(now.key, sp->pubkey, WG_KEY_LEN);
		kick_now(&now);
		return;
	}
	k = &jit.kicks[(jit.kick_head + jit.n_kicks) % JIT_KICKS];
	memcpy(k->key, sp->pubkey, WG_KEY_LEN);
	k->keepalive_s = sp->keepalive_s;
	k->due = prov_now_s() + JIT_KICK_DELAY_MS / 1000.0;
	if (jit.n_kicks++ == 0)
		lws_sul_schedule(prov.ctx, 0, &jit.kick_sul, kicks_due,
				 (lws_usec_t)JIT_KICK_DELAY_MS * LWS_US_PER_MS);
}

/* Install; with the sender as endpoint when we saw it arrive over plain UDP, where the device
 * dropped the original (or is about to answer it) and is then made to initiate. The
 * keepalive starts at 0 so that the install itself does not already initiate. */
static int install(const struct store_peer *sp, const struct sockaddr_storage *endpoint)
{
	struct wgdev_peer dp;
	int ret;

	peer_to_device(sp, &dp);
	if (!endpoint)
		return peer_install_as(sp, &dp);
	memcpy(&dp.endpoint, endpoint, sizeof(dp.endpoint));
	dp.keepalive_s = 0;
	ret = peer_install_as(sp, &dp);
	if (ret == 0)
		kick_later(sp);
	return ret;
}

static const char *key_b64(const uint8_t key[static WG_KEY_LEN], char out[static WG_KEY_B64_LEN + 1])
{
	key_to_base64(key, out);
	return out;
}

/* An initiation decided lately, again: the same answer as then, without public-key work
 * (jitlimit.c says why none of them is positive). 0: decide it afresh. */
static enum jit_verdict recalled(const uint8_t *msg, double now)
{
	struct jit_stats *st = &prov.jit;
	enum jitlimit_seen seen = JITLIMIT_SEEN_BAD;
	uint8_t key[WG_KEY_LEN];

	switch (jitlimit_recall(jit.limit, msg, now, &seen, key)) {
	case JITLIMIT_MISS:
		return 0;
	case JITLIMIT_FORGED:
		st->recalled_forged++;
		st->replays++;
		return JIT_REFUSED;
	case JITLIMIT_HIT:
		break;
	}
	switch (seen) {
	case JITLIMIT_SEEN_UNKNOWN:
		/* Only while the negative cache agrees: creating the peer (jit_forget) ends it. */
		if (!negative_hit(key))
			return 0;
		st->recalled_unknown++;
		st->unknown_keys++;
		return JIT_UNKNOWN;
	case JITLIMIT_SEEN_BAD:
		st->recalled_bad++;
		st->bad_initiations++;
		return JIT_REFUSED;
	case JITLIMIT_SEEN_REPLAY:
	default:
		st->recalled_replays++;
		st->replays++;
		return JIT_REFUSED;
	}
}

/* Before any public-key work: may this one have it? 0: yes; otherwise the answer. */
static enum jit_verdict admit(const struct sockaddr_storage *client,
			      const struct sockaddr_storage *source, double now)
{
	struct jit_stats *st = &prov.jit;
	struct jitlimit_id client_id, source_id;
	char b64[WG_KEY_B64_LEN + 1], who[ADDR_STR_LEN];
	uint8_t key[WG_KEY_LEN];

	jitlimit_id_source(&source_id, source);
	/* A relay that did not say who the client is: the tunnel is the client. */
	if (client && client->ss_family)
		jitlimit_id_client(&client_id, client);
	else
		client_id = source_id;
	switch (jitlimit_admit(jit.limit, &client_id, &source_id, now, key)) {
	case JITLIMIT_ADMIT:
		return 0;
	case JITLIMIT_SHED_RATE:
		st->rate_limited++;
		return JIT_REFUSED;
	case JITLIMIT_SHED_BUDGET:
		st->budget_shed++;
		return JIT_REFUSED;
	case JITLIMIT_PASS_LIVE:
	default:
		st->budget_passed++;
		gc_spare(key); /* the key its source was checked for, not one it claims now */
		/* Every pass is a decision under a flood: format only what will be logged. */
		if (log_is_debug()) {
			addr_format((const struct sockaddr *)source, who);
			log_debug_ratelimited("jit: over --jit-budget: %s, live for %s lately, "
					      "passed to WireGuard", who, key_b64(key, b64));
		}
		return JIT_LIVE;
	}
}

static struct jit_fd *live_relay(struct jit_fd *jf, uint64_t gen)
{
	for (unsigned i = 0; i < JIT_MAX_RELAYS; i++)
		if (jit.relay_fds[i] && jit.relay_fds[i] == jf && jf->gen == gen)
			return jf;
	return NULL;
}

static void fetch_done(void *arg, int err, const struct store_peer *p)
{
	struct fetch *f = arg;
	struct jit_answer ans = { .magic = JIT_MAGIC_ANSWER, .id = f->id };
	struct jit_fd *jf;
	int ret;

	if (err == 0) {
		ret = source_cache_put(p);
		if (ret < 0)
			err = -EIO;
	}
	jit.resuming = true;
	jit.resume_err = err;
	jit.cur_jf = NULL;
	ans.verdict = jit_decide(f->msg, sizeof(f->msg), &f->client, &f->source, f->path, f->t0,
				 ans.key);
	jit.resuming = false;
	jit.resume_err = 0;
	jf = f->path == JIT_PATH_RELAY ? live_relay(f->jf, f->gen) : NULL;
	if (jf && ans.verdict &&
	    send(jf->fd, &ans, sizeof(ans), MSG_DONTWAIT | MSG_NOSIGNAL) != sizeof(ans))
		prov.jit.answers_dropped++;
	sodium_memzero(f, sizeof(*f));
	free(f);
}

/* Ask the source about key; 0 when the decision is left to fetch_done. */
static int fetch_start(const uint8_t *msg, size_t len, const struct sockaddr_storage *client,
		       const struct sockaddr_storage *source, enum jit_path path, double t0,
		       const uint8_t key[static WG_KEY_LEN])
{
	struct fetch *f;

	if (len != JIT_INITIATION_LEN || (path == JIT_PATH_RELAY && !jit.cur_jf))
		return -EINVAL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	memcpy(f->msg, msg, len);
	if (client)
		f->client = *client;
	f->source = *source;
	f->path = path;
	f->t0 = t0;
	f->jf = jit.cur_jf;
	f->gen = jit.cur_jf ? jit.cur_jf->gen : 0;
	f->id = jit.cur_id;
	if (!source_lookup(key, fetch_done, f)) {
		free(f);
		return -EAGAIN; /* the queue is full: decided now, as unknown */
	}
	return 0;
}

enum jit_verdict jit_decide(const uint8_t *msg, size_t len,
			    const struct sockaddr_storage *client,
			    const struct sockaddr_storage *source, enum jit_path path, double t0,
			    uint8_t *key)
{
	struct jit_stats *st = &prov.jit;
	char b64[WG_KEY_B64_LEN + 1], who[ADDR_STR_LEN];
	uint8_t ss[WG_KEY_LEN], ts[WG_TAI64N_LEN];
	struct jitlimit_id source_id;
	enum jit_verdict verdict;
	enum noise_result nr;
	struct noise_half h;
	struct store_peer sp;
	bool source_failed = false;
	double now;
	int ret;

	if (!jit.resuming) /* counted the first time */
		st->initiations[path]++;
	/* mac1 first (one keyed BLAKE2s): only initiations made for this gateway spend a
	 * client's tokens or the budget, so garbage sent in a client's name cannot starve it. */
	if (!noise_mac1_ok(jit.responder, msg, len)) {
		st->mac1_failures++;
		return JIT_REFUSED;
	}
	now = prov_now_s();
	verdict = recalled(msg, now);
	if (!verdict && !jit.resuming) /* a resumed decision paid its rate the first time */
		verdict = admit(client, source, now);
	if (verdict)
		return verdict;
	nr = noise_open_static(jit.responder, msg, len, &h);
	switch (nr) {
	case NOISE_OK:
		break;
	case NOISE_NOT_INITIATION:
	case NOISE_BAD_MAC1:
		st->mac1_failures++;
		return JIT_REFUSED;
	case NOISE_BAD_STATIC:
	case NOISE_BAD_TIMESTAMP:
		st->bad_initiations++;
		jitlimit_remember(jit.limit, msg, JITLIMIT_SEEN_BAD, NULL, now, JIT_REPLAY_TTL_S);
		return JIT_REFUSED;
	default:
		st->errors++;
		return JIT_ERROR;
	}
	addr_format((const struct sockaddr *)source, who);
	key_b64(h.initiator_public, b64);
	if (key)
		memcpy(key, h.initiator_public, WG_KEY_LEN);

	if (negative_hit(h.initiator_public)) {
		st->unknown_keys++;
		st->negative_hits++;
		jitlimit_remember(jit.limit, msg, JITLIMIT_SEEN_UNKNOWN, h.initiator_public, now,
				  prov.cfg.jit_negative_ttl_s);
		verdict = JIT_UNKNOWN;
		goto out;
	}
	ret = store_get(prov.store, h.initiator_public, &sp);
	if (ret == 0 && sp.expires_at && sp.expires_at <= prov_wall_s())
		ret = -ENOENT; /* expired: the GC deletes it soon; it is not let in meanwhile */
	if (ret == -ENOENT && source_configured()) {
		/* The source's answer (resuming), or whether it could be asked at all. */
		int fr = jit.resuming ? jit.resume_err :
			 fetch_start(msg, len, client, source, path, t0, h.initiator_public);

		if (!jit.resuming && fr == 0) {
			prov.st.source_misses++;
			verdict = 0; /* pending: fetch_done decides and answers */
			goto out;
		}
		if (fr && fr != -ENOENT)
			source_failed = true;
	}
	if (source_failed) {
		/* The source could not say: unknown for now, quickly, but not remembered as
		 * unknown (the key may well be there once the source is back). */
		st->unknown_keys++;
		verdict = JIT_UNKNOWN;
		goto out;
	}
	if (ret == 0 && source_configured() && !jit.resuming)
		prov.st.source_hits++;
	if (ret == -ENOENT) {
		negative_add(h.initiator_public);
		jitlimit_remember(jit.limit, msg, JITLIMIT_SEEN_UNKNOWN, h.initiator_public, now,
				  prov.cfg.jit_negative_ttl_s);
		st->unknown_keys++;
		log_debug_ratelimited("jit: unknown key %s from %s", b64, who);
		verdict = JIT_UNKNOWN;
		goto out;
	}
	if (ret < 0) {
		st->errors++;
		log_warnx("jit: store lookup: %s", strerror(-ret));
		verdict = JIT_ERROR;
		goto out;
	}
	if (static_secret(h.initiator_public, ss) < 0 ||
	    noise_open_timestamp(jit.responder, &h, msg, ss, ts) != NOISE_OK) {
		st->bad_initiations++;
		jitlimit_remember(jit.limit, msg, JITLIMIT_SEEN_BAD, h.initiator_public, now,
				  JIT_REPLAY_TTL_S);
		verdict = JIT_REFUSED;
		goto out;
	}
	ret = store_accept_timestamp(prov.store, h.initiator_public, ts);
	prov.writes_since_checkpoint = true;
	if (ret == -EALREADY) {
		st->replays++;
		jitlimit_remember(jit.limit, msg, JITLIMIT_SEEN_REPLAY, h.initiator_public, now,
				  JIT_REPLAY_TTL_S);
		log_debug_ratelimited("jit: replayed or old initiation for %s from %s refused",
				      b64, who);
		verdict = JIT_REFUSED;
		goto out;
	}
	if (ret < 0) {
		st->errors++;
		log_warnx("jit: store timestamp: %s", strerror(-ret));
		verdict = JIT_ERROR;
		goto out;
	}
	/* Its timestamp is taken: whatever happens next, the same bytes again are a replay. */
	jitlimit_remember(jit.limit, msg, JITLIMIT_SEEN_REPLAY, h.initiator_public, now,
			  JIT_REPLAY_TTL_S);
	gc_spare(h.initiator_public);
	jitlimit_id_source(&source_id, source);
	if (sp.installed_at && !retrying(&sp, ts)) {
		st->already_live++;
		jitlimit_mark_live(jit.limit, &source_id, h.initiator_public, now);
		verdict = JIT_LIVE;
		goto out;
	}
	ret = install(&sp, path == JIT_PATH_CAPTURE ? source : NULL);
	if (ret < 0) {
		st->errors++;
		log_warnx("jit: installing %s into %s: %s", b64, prov.cfg.ifname, strerror(-ret));
		verdict = JIT_ERROR;
		goto out;
	}
	st->installs++;
	jitlimit_mark_live(jit.limit, &source_id, h.initiator_public, now);
	hist_observe(&st->latency, prov_now_s() - t0);
	if (path == JIT_PATH_RELAY) {
		char cl[ADDR_STR_LEN] = "?";

		if (client && client->ss_family)
			addr_format((const struct sockaddr *)client, cl);
		log_info_ratelimited("jit: peer %s installed: a relay tunnel from client %s, its "
				     "WireGuard endpoint %s%s", b64, cl, who, sp.installed_at ?
				     " (again: its client was retrying)" : "");
	} else {
		log_info_ratelimited("jit: peer %s installed: plain UDP from %s%s", b64, who,
				     sp.installed_at ? " (again: its client was retrying)" : "");
	}
	verdict = JIT_INSTALLED;
out:
	noise_half_wipe(&h);
	sodium_memzero(ss, sizeof(ss));
	return verdict;
}

/* ---- the relay channel and the capture socket in the event loop ---- */

static struct jit_fd *adopt(int fd, enum jit_fd_kind kind)
{
	lws_sock_file_fd_type desc = { .filefd = fd };
	struct jit_fd *jf = kind == FD_LISTEN ? &jit.listener
			    : kind == FD_CAPTURE ? &jit.capture
						 : calloc(1, sizeof(*jf));

	if (!jf)
		return NULL;
	jf->kind = kind;
	jf->fd = fd;
	jf->wsi = lws_adopt_descriptor_vhost(jit.vhost, LWS_ADOPT_RAW_FILE_DESC, desc, "wgws-jit",
					     NULL);
	if (!jf->wsi) {
		if (kind == FD_RELAY)
			free(jf);
		return NULL;
	}
	lws_set_opaque_user_data(jf->wsi, jf);
	return jf;
}

static bool relay_allowed(uid_t uid)
{
	return uid == 0 || uid == geteuid() || uid == prov.cfg.jit_uid;
}

/* Unread answers are charged to our send buffer; a relay busy with a TLS storm may leave
 * many there, and an answer that does not fit is lost (the relay then waits out its 3 s).
 * Root may go past net.core.wmem_max: room for JIT_ANSWERS_BUFFERED answers. */
static void size_sndbuf(int fd)
{
	int v = JIT_ANSWERS_BUFFERED * 768;

	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
}

static void accept_relays(void)
{
	for (int i = 0; i < JIT_RX_BUDGET; i++) {
		struct ucred cred;
		socklen_t clen = sizeof(cred);
		struct jit_fd *jf;
		int fd = accept4(jit.listener.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("jit: accept on %s", prov.cfg.jit_socket);
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
		    !relay_allowed(cred.uid)) {
			prov.jit.relay_refused++;
			log_warnx_ratelimited("jit: refusing a connection on %s from uid %ld "
					      "(allowed: root, uid %ld, --jit-user uid %ld)",
					      prov.cfg.jit_socket,
					      clen == sizeof(cred) ? (long)cred.uid : -1L,
					      (long)geteuid(), (long)prov.cfg.jit_uid);
			close(fd);
			continue;
		}
		if (jit.relays >= JIT_MAX_RELAYS) {
			prov.jit.relay_refused++;
			log_warnx_ratelimited("jit: %d relays connected already; refusing pid %ld",
					      JIT_MAX_RELAYS, (long)cred.pid);
			close(fd);
			continue;
		}
		jf = adopt(fd, FD_RELAY);
		if (!jf) {
			close(fd);
			log_warnx("jit: cannot add a relay connection to the event loop");
			continue;
		}
		jf->pid = cred.pid;
		jf->uid = cred.uid;
		jf->gen = ++jit.next_gen;
		for (unsigned k = 0; k < JIT_MAX_RELAYS; k++)
			if (!jit.relay_fds[k]) {
				jit.relay_fds[k] = jf;
				break;
			}
		size_sndbuf(fd);
		jit.relays++;
		prov.jit.relay_conns++;
		log_info("jit: relay pid %ld (uid %ld) connected", (long)cred.pid, (long)cred.uid);
	}
}

/* Returns -1 to close the connection (a protocol error). */
static int serve_relay(struct jit_fd *jf)
{
	for (int i = 0; i < JIT_RX_BUDGET; i++) {
		struct jit_request req;
		struct jit_answer ans = { .magic = JIT_MAGIC_ANSWER };
		struct sockaddr_storage source, client;
		double t0 = prov_now_s();
		ssize_t n = recv(jf->fd, &req, sizeof(req), MSG_DONTWAIT | MSG_TRUNC);

		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		if (n == 0)
			return -1; /* the relay went away */
		if (jit_request_check(&req, (size_t)n, &source) < 0) {
			prov.jit.relay_protocol_errors++;
			log_warnx("jit: relay pid %ld sent a malformed request (%zd bytes); closing",
				  (long)jf->pid, n);
			return -1;
		}
		/* Family 0 (the relay did not know it) leaves client empty: see admit(). */
		(void)jit_addr_to_sockaddr(&req.client, &client);
		ans.id = req.id;
		jit.cur_jf = jf;
		jit.cur_id = req.id;
		ans.verdict = jit_decide(req.initiation, sizeof(req.initiation), &client, &source,
					 JIT_PATH_RELAY, t0, ans.key);
		jit.cur_jf = NULL;
		if (!ans.verdict)
			continue; /* asked of the source: fetch_done answers */
		if (send(jf->fd, &ans, sizeof(ans), MSG_DONTWAIT | MSG_NOSIGNAL) != sizeof(ans))
			prov.jit.answers_dropped++; /* the relay times out and forwards */
	}
	return 0;
}

static void on_capture(void *arg, const uint8_t *msg, const struct sockaddr_storage *src)
{
	(void)arg;
	(void)jit_decide(msg, JIT_INITIATION_LEN, src, src, JIT_PATH_CAPTURE, prov_now_s(), NULL);
}

static int jit_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
			void *in, size_t len)
{
	struct jit_fd *jf = lws_get_opaque_user_data(wsi);

	(void)user;
	(void)in;
	(void)len;
	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return 1; /* internal: never an HTTP or WS protocol */
	case LWS_CALLBACK_RAW_RX_FILE:
		if (!jf)
			return 0;
		if (jf->kind == FD_LISTEN) {
			accept_relays();
		} else if (jf->kind == FD_RELAY) {
			return serve_relay(jf);
		} else {
			int n = capture_drain(jf->fd, prov.info.listen_port, JIT_RX_BUDGET, on_capture,
					      NULL, &prov.jit.capture_bad);

			if (n < 0 && n != -EINTR)
				log_warnx("jit: reading the capture on %s: %s", prov.cfg.capture_if,
					  strerror(-n));
		}
		return 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		if (!jf)
			return 0;
		lws_set_opaque_user_data(wsi, NULL);
		if (jf->kind == FD_RELAY) {
			if (!jit.stopping)
				log_info("jit: relay pid %ld disconnected", (long)jf->pid);
			for (unsigned k = 0; k < JIT_MAX_RELAYS; k++)
				if (jit.relay_fds[k] == jf)
					jit.relay_fds[k] = NULL;
			jit.relays--;
			free(jf);
		} else if (!jit.stopping) {
			/* Only a broken socket gets here: nothing to fall back to. */
			log_warnx("jit: the %s socket closed; that path is off until a restart",
				  jf->kind == FD_LISTEN ? "--jit-socket" : "--capture");
			jf->wsi = NULL;
		}
		return 0;
	default:
		return 0;
	}
}

const struct lws_protocols *jit_protocol(void)
{
	static const struct lws_protocols proto = { "wgws-jit", jit_callback, 0, 0, 0, NULL, 0 };

	return &proto;
}

static int listen_relays(void)
{
	mode_t old_mask;
	int ret;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(prov.cfg.jit_socket) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, prov.cfg.jit_socket);
	/* A socket left by a dead daemon goes; one a live daemon answers on does not. */
	if (lstat(sun.sun_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			fatalx("--jit-socket %s exists and is not a socket", sun.sun_path);
		fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
			fatalx("another daemon answers on --jit-socket %s", sun.sun_path);
		if (fd >= 0)
			close(fd);
		if (unlink(sun.sun_path) < 0)
			fatal("cannot remove the stale socket %s", sun.sun_path);
	}
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Created 0600 (umask), never wider for a moment; then handed to the relay's user. */
	old_mask = umask(0177);
	ret = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old_mask);
	if (ret < 0 || listen(fd, 16) < 0 ||
	    (prov.cfg.jit_uid != geteuid() && chown(sun.sun_path, prov.cfg.jit_uid, (gid_t)-1) < 0)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	if (!adopt(fd, FD_LISTEN)) {
		close(fd);
		return -ENOMEM;
	}
	return 0;
}

int jit_init(void)
{
	const struct jitlimit_cfg lc = {
		.replay_slots = JIT_REPLAY_SLOTS,
		.sketch_cells = JIT_SKETCH_CELLS,
		.live_slots = JIT_LIVE_SLOTS,
		.replay_ttl_s = JIT_REPLAY_TTL_S,
		/* A pass is worth something only while the peer is in the device: the GC removes
		 * it --gc-idle after its last handshake, which came after the marking answer. */
		.live_ttl_s = prov.cfg.gc_idle_s && prov.cfg.gc_idle_s < JIT_LIVE_TTL_S
				      ? prov.cfg.gc_idle_s
				      : JIT_LIVE_TTL_S,
		.rate = prov.cfg.jit_rate,
		.burst = 2.0 * prov.cfg.jit_rate,
		.budget = prov.cfg.jit_budget,
		.budget_burst = prov.cfg.jit_budget, /* one second's worth at once */
	};
	int ret;

	ret = jitlimit_open(&jit.limit, &lc);
	if (ret == -EINVAL) /* main.c keeps both at 1 or more */
		fatalx("jit: --jit-rate %u, --jit-budget %u: not limits", prov.cfg.jit_rate,
		       prov.cfg.jit_budget);
	if (ret < 0)
		return ret;
	randombytes_buf(jit.hash_key, sizeof(jit.hash_key));
	jit.responder = sodium_malloc(sizeof(*jit.responder));
	jit.secrets = sodium_malloc(sizeof(*jit.secrets) * JIT_TABLE);
	if (!jit.responder || !jit.secrets)
		return -ENOMEM;
	sodium_memzero(jit.responder, sizeof(*jit.responder));
	sodium_memzero(jit.secrets, sizeof(*jit.secrets) * JIT_TABLE);
	return responder_load();
}

void jit_start(void)
{
	int ret;

	if (!prov.cfg.jit)
		return;
	ret = jit_init();
	if (ret == -ENOMEM)
		fatalx("out of (locked) memory for the JIT keys and tables");
	if (ret < 0)
		fatalx("--interface %s: cannot read its private key for JIT (%s)%s",
		       prov.cfg.ifname, strerror(-ret),
		       ret == -EINVAL ? ": the device has none; set one first" : "");
	lws_sul_schedule(prov.ctx, 0, &jit.key_sul, responder_refresh,
			 (lws_usec_t)JIT_KEY_REFRESH_S * LWS_US_PER_SEC);
	jit.vhost = lws_get_vhost_by_name(prov.ctx, "api");
	if (!jit.vhost)
		fatalx("jit: no API vhost");
	if (prov.cfg.jit_socket[0]) {
		ret = listen_relays();
		if (ret < 0)
			fatalx("--jit-socket %s: %s", prov.cfg.jit_socket, strerror(-ret));
	}
	if (prov.cfg.capture_if[0]) {
		if (!prov.info.listen_port)
			fatalx("--capture: %s has no listen port, so plain UDP clients cannot reach "
			       "it", prov.cfg.ifname);
		ret = prov.priv ? priv_capture_open(prov.priv, prov.cfg.capture_if)
				: capture_open(prov.cfg.capture_if, prov.info.listen_port);
		if (ret < 0)
			fatalx("--capture %s: %s%s", prov.cfg.capture_if, strerror(-ret),
			       ret == -EPERM ? " (needs CAP_NET_RAW)" : "");
		if (!adopt(ret, FD_CAPTURE)) {
			close(ret);
			fatalx("--capture: cannot add the socket to the event loop");
		}
	}
	log_info("jit: %s mode%s%s%s%s, negative cache %u s, %u initiations/s per client address, "
		 "%u decisions/s with public-key work", prov.cfg.jit ? "on-demand" : "eager",
		 prov.cfg.jit_socket[0] ? ", relays on " : "", prov.cfg.jit_socket,
		 prov.cfg.capture_if[0] ? ", capturing on " : "", prov.cfg.capture_if,
		 prov.cfg.jit_negative_ttl_s, prov.cfg.jit_rate, prov.cfg.jit_budget);
}

void jit_stop(void)
{
	/* The descriptors close with the lws context, after this. */
	jit.stopping = true;
	if (prov.cfg.jit_socket[0] && jit.listener.fd > 0)
		unlink(prov.cfg.jit_socket);
	if (jit.responder)
		sodium_free(jit.responder);
	if (jit.secrets)
		sodium_free(jit.secrets);
	jit.responder = NULL;
	jit.secrets = NULL;
	jitlimit_close(jit.limit);
	jit.limit = NULL;
}
