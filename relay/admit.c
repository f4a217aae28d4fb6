/* SPDX-License-Identifier: MIT */
/* Admission: the relay's listening sockets and every connection until it is a tunnel.
 *
 * lws's vhosts have no listener of their own: this file accepts, so that what a client may
 * hold before it has proved anything is bounded here, whatever lws does.
 *  - Every accepted tunnel-port connection takes one of --max-pending slots. The slot is
 *    returned when the connection upgrades or when lws destroys it (admit_release, from
 *    ESTABLISHED and WSI_DESTROY), found through the wsi's opaque pointer: per
 *    connection, whatever the connection did or named.
 *  - A source (an IPv4 address, an IPv6 /64) holds at most --max-pending-per-ip slots: one
 *    more evicts its own oldest. A full table evicts the oldest connection of all, so a new
 *    client always gets a slot and only connections older than max_pending newer ones lose.
 *  - New connections per source are rate-limited (--rate-per-ip, a token bucket in two hashed
 *    tables: a source is refused only when both its buckets are empty, so an innocent address
 *    sharing one bucket with a flooder still gets through). A TLS handshake costs ~1 ms of CPU.
 *  - A connection that has sent nothing waits in a slot of our own (no TLS state, no lws
 *    wsi) for ADMIT_HELLO_MS. When its first bytes arrive, its TLS handshake runs on the
 *    handshake thread (handshake.c), within --header-timeout of the accept; so a burst of
 *    new clients (a relay restart makes every client reconnect at once) does not hold open
 *    tunnels' datagrams behind its handshakes. A finished handshake joins a queue; a few
 *    join lws per pass of the event loop (their request and upgrade are lws's).
 *  - --listen-ws connections (plain ws:// from a reverse proxy on this host) take the same
 *    slots and skip the TLS thread. From a --forwarded-from source, the client is the one its
 *    X-Forwarded-For names, known only at the upgrade (admit_forwarded): its rate is counted
 *    then, not the proxy's at accept (every client would share the proxy's).
 *  - Accept errors (EMFILE, ENFILE, ENOBUFS) pause a listener (this one, the metrics one) for
 *    LISTENER_PAUSE_MS instead of spinning on a socket that stays readable (listener_*).
 * This file reads no byte of a connection but a PROXY header: TLS is handshake.c's, HTTP and
 * WebSocket lws's. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "forwarded.h"

#include "log.h"
#include "relay.h"

enum {
	ADMIT_ACCEPT_BATCH = 32,   /* accepts per listener per loop pass */
	ADMIT_ADOPT_PER_PASS = 8,  /* connections handed to lws per loop pass, at most */
	ADMIT_PASS_BUDGET_US = 500, /* past this much work in a pass, only one more */
	ADMIT_HELLO_MS = 3000,     /* a connection that has sent nothing is closed after this */
	ADMIT_BUCKETS = 1024,      /* per table, two tables */
	ADMIT_BACKLOG = 1024,
	ADMIT_PROXY_MAX = 512,     /* a PROXY v2 header's addresses and TLVs, at most */
};

struct admit_slot {
	struct admit_slot *prev, *next; /* pending, oldest first (or the free list: next only) */
	struct admit_slot *rnext;       /* the ready queue: TLS done, lws not yet */
	struct handshake *hs;           /* while its TLS handshake runs on the thread */
	SSL *ssl;                       /* once it is done, until lws takes it: on the ready queue */
	struct lws *wsi;                /* NULL until adopted into lws */
	ev_io io;                       /* waiting for the first byte */
	int fd;
	bool in_use;
	bool queued;                    /* on the ready queue */
	bool proxied;                   /* from --proxy-protocol-from: a PROXY v2 header first */
	bool plain;                     /* from --listen-ws: no TLS */
	bool forwarder;                 /* and from --forwarded-from: X-Forwarded-For names
					 * the client (admit_forwarded) */
	uint16_t phave;                 /* bytes of the PROXY header read so far */
	uint8_t phdr[16 + ADMIT_PROXY_MAX];
	uint64_t accepted_ms;
	uint8_t src[16];                /* the source's key: IPv4 address or IPv6 /64 */
	struct sockaddr_storage client; /* the client (PROXY v2's source, else the TCP peer) */
};

struct bucket {
	uint32_t tokens_milli; /* tokens * 1000 */
	uint64_t last_ms;
};

static struct {
	struct ev_loop *loop;
	struct listener tunnel;
	struct listener plain;          /* --listen-ws */
	struct admit_slot *slots, *free, *oldest, *newest;
	struct admit_slot *ready, **ready_tail;
	ev_prepare adopt;
	ev_idle busy;                   /* keeps the loop from sleeping while some are ready */
	uint8_t hash_key[2][16];
	struct bucket buckets[2][ADMIT_BUCKETS];
} adm = { .tunnel.fd = -1, .plain.fd = -1 };

/* An address's admission key: IPv4 (also v4-mapped) as itself, IPv6 by its /64, which one
 * host is normally given whole. */
static void src_key(const struct sockaddr_storage *ss, uint8_t key[static 16])
{
	memset(key, 0, 16);
	if (ss->ss_family == AF_INET) {
		memcpy(key, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			memcpy(key, a->s6_addr + 12, 4);
		} else {
			key[4] = 6; /* never equal to an IPv4 key */
			memcpy(key + 8, a->s6_addr, 8);
		}
	}
}

/* SipHash would do; this keyed FNV-style mix is enough to keep an attacker from choosing
 * collisions with a victim without knowing the key (random at start). */
static unsigned bucket_of(int table, const uint8_t key[static 16])
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (int i = 0; i < 16; i++) {
		h ^= (uint64_t)(key[i] ^ adm.hash_key[table][i]);
		h *= 0x100000001b3ull;
		h ^= h >> 29;
	}
	return (unsigned)(h % ADMIT_BUCKETS);
}

static void bucket_refill(struct bucket *b, uint64_t now_ms)
{
	uint64_t burst = (uint64_t)relay.cfg.rate_per_ip * ADMIT_RATE_BURST * 1000;
	uint64_t add = (now_ms - b->last_ms) * relay.cfg.rate_per_ip;

	b->last_ms = now_ms;
	b->tokens_milli = (uint32_t)(b->tokens_milli + add > burst ? burst : b->tokens_milli + add);
}

/* One new connection from key: allowed while either of its buckets has a token. */
static bool rate_allows(const uint8_t key[static 16], uint64_t now_ms)
{
	struct bucket *b[2];
	bool ok = false;

	if (!relay.cfg.rate_per_ip)
		return true;
	for (int t = 0; t < 2; t++) {
		b[t] = &adm.buckets[t][bucket_of(t, key)];
		bucket_refill(b[t], now_ms);
		ok |= b[t]->tokens_milli >= 1000;
	}
	if (!ok)
		return false;
	for (int t = 0; t < 2; t++)
		b[t]->tokens_milli = b[t]->tokens_milli >= 1000 ? b[t]->tokens_milli - 1000 : 0;
	return true;
}

static void slot_unlink(struct admit_slot *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		adm.oldest = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		adm.newest = s->prev;
}

static void ready_remove(struct admit_slot *s)
{
	struct admit_slot **pp = &adm.ready;

	while (*pp && *pp != s)
		pp = &(*pp)->rnext;
	if (*pp) {
		*pp = s->rnext;
		if (adm.ready_tail == &s->rnext)
			adm.ready_tail = pp;
	}
	s->rnext = NULL;
	s->queued = false;
}

/* The slot goes back to the free list; the connection is someone else's business now
 * (lws's, a tunnel's) or gone. */
static void slot_release(struct admit_slot *s)
{
	if (!s->in_use)
		return;
	if (s->queued)
		ready_remove(s);
	ev_io_stop(adm.loop, &s->io);
	slot_unlink(s);
	s->in_use = false;
	s->wsi = NULL;
	s->hs = NULL;
	s->ssl = NULL;
	s->fd = -1;
	s->next = adm.free;
	adm.free = s;
	relay.conns_pending--;
}

/* Close a pending connection (not yet lws's) and free its slot. */
static void slot_close(struct admit_slot *s)
{
	if (s->hs) {
		handshake_cancel(s->hs); /* handshake.c closes it once its thread lets go */
	} else {
		SSL_free(s->ssl);
		close(s->fd);
	}
	slot_release(s);
}

/* Close a pending connection to make room. Adopted ones are closed by lws at once, which
 * releases the slot through WSI_DESTROY. */
static void slot_evict(struct admit_slot *s, enum relay_evict why)
{
	relay.st.evicted[why]++;
	if (s->wsi) {
		lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
		slot_release(s); /* no-op when WSI_DESTROY already did it */
		return;
	}
	slot_close(s);
}

/* A PROXY protocol v2 header (haproxy's proxy-protocol.txt, section 2.2) at the start of
 * s's connection, read into s->phdr exactly (16 bytes, then the length they announce), so
 * that not a byte of the TLS behind it is taken: the client it names into *client (family 0
 * for LOCAL, a health check, or UNSPEC: the TCP peer stays). 1 when it is not all there yet
 * (nothing is left readable: the level-triggered watcher does not spin), 0 done, -1 for a
 * connection closed before its header (-2 when it sent nothing at all), -3 for one that is
 * not a valid header. */
static int read_proxy_v2(struct admit_slot *s, struct sockaddr_storage *client)
{
	static const uint8_t sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
					 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };
	uint8_t *h = s->phdr;
	size_t want = 16, len = 0;
	ssize_t n;

	for (;;) {
		if (s->phave >= 16) {
			if (memcmp(h, sig, sizeof(sig)) || (h[12] & 0xf0) != 0x20 ||
			    (h[12] & 0x0f) > 1)
				return -3; /* version 2; command LOCAL (0) or PROXY (1) */
			len = (size_t)h[14] << 8 | h[15];
			if (len > ADMIT_PROXY_MAX)
				return -3;
			want = 16 + len;
		}
		if (s->phave >= want)
			break;
		n = recv(s->fd, h + s->phave, want - s->phave, 0);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 1 : -1;
		if (n == 0)
			return s->phave ? -1 : -2;
		s->phave += (uint16_t)n;
		if (memcmp(h, sig, s->phave < sizeof(sig) ? s->phave : sizeof(sig)))
			return -3; /* fail early: not even the signature */
	}
	memset(client, 0, sizeof(*client));
	if ((h[12] & 0x0f) == 1 && h[13] == 0x11 && len >= 12) { /* TCP over IPv4 */
		struct sockaddr_in *a = (struct sockaddr_in *)client;

		a->sin_family = AF_INET;
		memcpy(&a->sin_addr, h + 16, 4);
		memcpy(&a->sin_port, h + 24, 2);
	} else if ((h[12] & 0x0f) == 1 && h[13] == 0x21 && len >= 36) { /* TCP over IPv6 */
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)client;

		a->sin6_family = AF_INET6;
		memcpy(&a->sin6_addr, h + 16, 16);
		memcpy(&a->sin6_port, h + 48, 2);
	} else if ((h[12] & 0x0f) == 1 && h[13] != 0x00) {
		return -3; /* PROXY for UDP or unix sockets: not a client of ours */
	}
	return 0;
}

static bool slot_admit_key(struct admit_slot *s, uint64_t now_ms);
static void slot_ready(struct admit_slot *s);

static void on_first_bytes(struct ev_loop *loop, ev_io *w, int revents)
{
	struct admit_slot *s = w->data;

	if (s->proxied) {
		struct sockaddr_storage client;
		int ret = read_proxy_v2(s, &client);

		if (ret == 1)
			return; /* the rest of the header comes; ADMIT_HELLO_MS still runs */
		if (ret < 0) {
			/* A front end's health check connects and closes: not worth a line. */
			if (ret != -2) {
				relay.st.rejects[REJECT_PROXY_PROTOCOL]++;
				log_info_ratelimited("a connection from a --proxy-protocol-from "
						     "source without a valid PROXY v2 header: "
						     "closed");
			}
			ev_io_stop(loop, w);
			slot_close(s);
			return;
		}
		s->proxied = false;
		if (client.ss_family) {
			s->client = client;
			if (!slot_admit_key(s, relay_now_ms()))
				return; /* closed: the real client is over its rate */
		}
	}
	ev_io_stop(loop, w);
	if (s->plain) {
		slot_ready(s); /* no TLS: lws reads the request */
		return;
	}
	s->hs = handshake_submit(s->fd, s);
	if (!s->hs) {
		relay.st.accept_errors++;
		slot_close(s);
	}
}

/* s joins the queue of connections lws takes at the end of each pass (on_prepare). */
static void slot_ready(struct admit_slot *s)
{
	s->rnext = NULL;
	s->queued = true;
	*adm.ready_tail = s;
	adm.ready_tail = &s->rnext;
	ev_idle_start(adm.loop, &adm.busy);
}

/* From handshake.c, on the loop: s's TLS handshake is done (ssl) or failed (NULL). */
static void on_handshake(void *owner, SSL *ssl)
{
	struct admit_slot *s = owner;

	s->hs = NULL;
	if (!ssl) {
		relay.st.tls_failures++;
		slot_close(s);
		return;
	}
	s->ssl = ssl;
	slot_ready(s);
}

static void adopt_one(struct admit_slot *s)
{
	lws_adopt_desc_t info;
	lws_sock_file_fd_type fd = { .sockfd = s->fd };
	struct lws *wsi;

	memset(&info, 0, sizeof(info));
	info.vh = relay.vhost;
	/* Without LWS_ADOPT_ALLOW_SSL lws serves it in clear on the same (TLS) vhost. */
	info.type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP | (s->plain ? 0 : LWS_ADOPT_ALLOW_SSL);
	info.fd = fd;
	info.opaque = s;
	/* lws's SSL_new for this connection returns the finished session (handshake.c). */
	if (!s->plain)
		handshake_adopt_next(s->ssl);
	s->ssl = NULL;
	s->wsi = NULL;
	wsi = lws_adopt_descriptor_vhost_via_info(&info);
	if (!s->plain)
		handshake_adopt_done();
	/* On failure lws closed the socket, and destroyed the wsi (WSI_DESTROY released the
	 * slot) if it had made one. */
	if (!wsi) {
		s->fd = -1;
		relay.st.accept_errors++;
		slot_release(s);
		return;
	}
	if (s->in_use)
		s->wsi = wsi;
}

/* At the end of each pass: hand connections whose TLS is done to lws, one at least, more
 * while this pass has used less than ADMIT_PASS_BUDGET_US in all, ADMIT_ADOPT_PER_PASS at
 * most (what follows, their request and upgrade, runs on the loop). */
static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
	for (int n = 0; n < ADMIT_ADOPT_PER_PASS && adm.ready &&
			(n == 0 || relay_pass_elapsed_us() < ADMIT_PASS_BUDGET_US); n++) {
		struct admit_slot *s = adm.ready;

		adm.ready = s->rnext;
		if (!adm.ready)
			adm.ready_tail = &adm.ready;
		s->rnext = NULL;
		s->queued = false;
		adopt_one(s);
	}
	if (!adm.ready)
		ev_idle_stop(loop, &adm.busy);
}

static void on_busy(struct ev_loop *loop, ev_idle *w, int revents)
{
}

/* The oldest pending connection of key, and how many key holds. */
static struct admit_slot *oldest_of(const uint8_t key[static 16], unsigned long *count)
{
	struct admit_slot *first = NULL;

	*count = 0;
	for (struct admit_slot *s = adm.oldest; s; s = s->next)
		if (!memcmp(s->src, key, 16) && !(*count)++)
			first = s;
	return first;
}

/* s's real client is known now (PROXY v2): its rate and its share of the pending slots
 * as any direct client's. False when s was closed for it. */
static bool slot_admit_key(struct admit_slot *s, uint64_t now_ms)
{
	struct admit_slot *old;
	unsigned long count;
	uint8_t key[16];

	src_key(&s->client, key);
	if (!rate_allows(key, now_ms)) {
		relay.st.rejects[REJECT_IP_RATE]++;
		ev_io_stop(adm.loop, &s->io);
		slot_close(s);
		return false;
	}
	old = oldest_of(key, &count);
	if (old && old != s && count >= relay.cfg.max_pending_per_ip)
		slot_evict(old, EVICT_PER_IP);
	memcpy(s->src, key, 16);
	return true;
}

bool admit_client(struct lws *wsi, struct sockaddr_storage *out)
{
	struct admit_slot *s = lws_get_opaque_user_data(wsi);

	if (!s || !s->client.ss_family)
		return false;
	*out = s->client;
	return true;
}

int admit_forwarded(struct lws *wsi, const char **why)
{
	struct admit_slot *s = lws_get_opaque_user_data(wsi);
	char value[FORWARDED_MAX + 1];
	struct sockaddr_storage client;
	uint8_t key[16];
	int n;

	if (!s)
		return 0;
	if (!s->forwarder)
		return s->plain && lws_hdr_total_length(wsi, WSI_TOKEN_X_FORWARDED_FOR) > 0;
	n = lws_hdr_copy(wsi, value, sizeof(value), WSI_TOKEN_X_FORWARDED_FOR);
	if (n <= 0 || forwarded_client(value, relay.cfg.fwd_from, relay.cfg.n_fwd_from,
				       &client) < 0) {
		*why = n < 0 ? "an X-Forwarded-For too long" : n == 0 ? "no X-Forwarded-For" :
			"a malformed X-Forwarded-For";
		return -EINVAL;
	}
	s->forwarder = false;
	s->client = client;
	src_key(&client, key);
	memcpy(s->src, key, 16);
	if (!rate_allows(key, relay_now_ms()))
		return -EAGAIN;
	return 0;
}

static void admit_tunnel(int fd, const struct sockaddr_storage *ss, bool plain,
			 uint64_t now_ms)
{
	struct admit_slot *s;
	unsigned long count;
	uint8_t key[16];
	bool proxied, forwarder;

	/* lws sets this on sockets it accepts itself, not on adopted ones: without it a small
	 * write behind an unacknowledged one waits for the peer's delayed ACK (40 ms): the
	 * 101 behind the session tickets, a tunnel's records whenever the loop ran late. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	src_key(ss, key);
	proxied = !plain && relay_proxy_trusted(ss);
	forwarder = plain && relay_forwarder(ss);
	/* A front end's connections are its clients': their rate and share are counted once
	 * its PROXY header (slot_admit_key) or X-Forwarded-For (admit_forwarded) names each. */
	if (!proxied && !forwarder && !rate_allows(key, now_ms)) {
		relay.st.rejects[REJECT_IP_RATE]++;
		close(fd);
		return;
	}
	/* Evicting a connection in its TLS handshake leaves its descriptor with the handshake
	 * thread until that thread runs (handshake.c): at most --max-pending of those, or the
	 * descriptors would outgrow the open-file limit (main.c counts 2 x --max-pending). */
	if (handshake_cancelled() >= relay.cfg.max_pending) {
		relay.st.rejects[REJECT_PENDING]++;
		close(fd);
		return;
	}
	s = oldest_of(key, &count);
	if (!proxied && !forwarder && count >= relay.cfg.max_pending_per_ip)
		slot_evict(s, EVICT_PER_IP);
	if (!adm.free)
		slot_evict(adm.oldest, EVICT_FULL);

	s = adm.free;
	adm.free = s->next;
	memset(s, 0, sizeof(*s));
	s->in_use = true;
	s->fd = fd;
	s->accepted_ms = now_ms;
	s->proxied = proxied;
	s->plain = plain;
	s->forwarder = forwarder;
	s->client = *ss;
	memcpy(s->src, key, 16);
	s->prev = adm.newest;
	if (adm.newest)
		adm.newest->next = s;
	else
		adm.oldest = s;
	adm.newest = s;
	relay.conns_pending++;
	ev_io_init(&s->io, on_first_bytes, fd, EV_READ);
	s->io.data = s;
	ev_io_start(adm.loop, &s->io);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct listener *l = w->data;
	uint64_t now_ms = relay_now_ms();

	for (int n = 0; n < ADMIT_ACCEPT_BATCH; n++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = listener_accept(l, &ss, &len);

		if (fd < 0)
			return;
		if (relay.shutting_down) {
			relay.st.rejects[REJECT_SHUTDOWN]++;
			close(fd);
			continue;
		}
		admit_tunnel(fd, &ss, l == &adm.plain, now_ms);
	}
}

static void on_pause_end(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct listener *l = w->data;

	ev_io_start(loop, &l->io);
}

void listener_start(struct listener *l, struct ev_loop *loop, int fd, const char *what,
		    void (*cb)(struct ev_loop *, ev_io *, int))
{
	l->loop = loop;
	l->fd = fd;
	l->what = what;
	ev_io_init(&l->io, cb, fd, EV_READ);
	l->io.data = l;
	ev_timer_init(&l->pause, on_pause_end, 0., 0.);
	l->pause.data = l;
	ev_io_start(loop, &l->io);
}

int listener_accept(struct listener *l, struct sockaddr_storage *ss, socklen_t *len)
{
	for (;;) {
		int fd = accept4(l->fd, (struct sockaddr *)ss, ss ? len : NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0)
			return fd;
		if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -1;
		/* EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays in the backlog and the
		 * socket readable; rest instead of spinning on it. */
		relay.st.accept_errors++;
		log_warn_ratelimited("accept on %s (pausing it %d ms; counted in "
				     "wgws_relay_accept_errors_total)", l->what, LISTENER_PAUSE_MS);
		ev_io_stop(l->loop, &l->io);
		ev_timer_set(&l->pause, LISTENER_PAUSE_MS / 1000., 0.);
		ev_timer_start(l->loop, &l->pause);
		return -1;
	}
}

void listener_stop(struct listener *l)
{
	if (l->fd < 0)
		return;
	ev_io_stop(l->loop, &l->io);
	ev_timer_stop(l->loop, &l->pause);
	close(l->fd);
	l->fd = -1;
}

/* A unix listener at path: a socket file left by a previous run is replaced, but not one a
 * live process answers on (-EADDRINUSE, as a TCP port would say), nor anything else
 * (-EEXIST); created 0660 (umask: never wider, not even until a chmod), then given to
 * uid:gid (lchown: never the target of a link put there meanwhile), whose group lets a
 * reverse proxy in. */
static int listen_unix(int fd, const struct sockaddr_un *un, socklen_t len, uid_t uid,
		       gid_t gid)
{
	struct stat st;
	mode_t old;
	int ret;

	if (lstat(un->sun_path, &st) == 0) {
		int probe;

		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (const struct sockaddr *)un, len) == 0) {
			close(probe);
			return -EADDRINUSE;
		}
		if (probe >= 0)
			close(probe);
		if (unlink(un->sun_path) < 0)
			return -errno;
	}
	old = umask(0117);
	ret = bind(fd, (const struct sockaddr *)un, len);
	umask(old);
	if (ret < 0)
		return -errno;
	if ((geteuid() == 0 && lchown(un->sun_path, uid, gid) < 0) ||
	    listen(fd, ADMIT_BACKLOG) < 0) {
		ret = -errno;
		unlink(un->sun_path);
		return ret;
	}
	return 0;
}

int admit_listen(const struct sockaddr_storage *ss, socklen_t len, uid_t uid, gid_t gid)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1, zero = 0;

	if (fd < 0)
		return -errno;
	if (ss->ss_family == AF_UNIX) {
		int ret = listen_unix(fd, (const struct sockaddr_un *)ss, len, uid, gid);

		if (ret < 0) {
			close(fd);
			return ret;
		}
		return fd;
	}
	/* [::] takes IPv4 too, whatever net.ipv6.bindv6only says. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (ss->ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0) ||
	    bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, ADMIT_BACKLOG) < 0) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return fd;
}

int admit_start(struct ev_loop *loop, int tls_fd, int plain_fd)
{
	int ret;

	adm.loop = loop;
	adm.slots = calloc(relay.cfg.max_pending, sizeof(*adm.slots));
	if (!adm.slots)
		return -ENOMEM;
	for (unsigned long i = relay.cfg.max_pending; i-- > 0;) {
		adm.slots[i].fd = -1;
		adm.slots[i].next = adm.free;
		adm.free = &adm.slots[i];
	}
	adm.ready_tail = &adm.ready;
	if (getrandom(adm.hash_key, sizeof(adm.hash_key), 0) != sizeof(adm.hash_key))
		return -EIO;
	if (tls_fd >= 0 && (ret = handshake_start(loop, on_handshake)) < 0)
		return ret;
	ev_prepare_init(&adm.adopt, on_prepare);
	ev_prepare_start(loop, &adm.adopt);
	ev_idle_init(&adm.busy, on_busy);
	if (tls_fd >= 0)
		listener_start(&adm.tunnel, loop, tls_fd, "--listen", on_accept);
	if (plain_fd >= 0)
		listener_start(&adm.plain, loop, plain_fd, "--listen-ws", on_accept);
	return 0;
}

void admit_stop_listening(void)
{
	listener_stop(&adm.tunnel);
	listener_stop(&adm.plain);
}

void admit_stop(void)
{
	admit_stop_listening();
	/* The thread gives back what it held (on_handshake runs for each); then the connections
	 * lws never got are ours to close, lws closes the rest. */
	handshake_stop();
	while (adm.oldest) {
		struct admit_slot *s = adm.oldest;

		if (!s->wsi)
			slot_close(s);
		else
			slot_release(s);
	}
	ev_prepare_stop(adm.loop, &adm.adopt);
	ev_idle_stop(adm.loop, &adm.busy);
	free(adm.slots);
	adm.slots = NULL;
}

void admit_sweep(uint64_t now_ms)
{
	uint64_t tls_ms = (uint64_t)relay.cfg.header_timeout_s * 1000;
	uint64_t first = tls_ms < ADMIT_HELLO_MS ? tls_ms : ADMIT_HELLO_MS;
	struct admit_slot *s = adm.oldest, *next;

	/* Oldest first: stop at the first one young enough for both deadlines. Adopted ones run
	 * on lws's timers (--header-timeout again, for the request). */
	for (; s && now_ms - s->accepted_ms >= first; s = next) {
		uint64_t age = now_ms - s->accepted_ms;

		next = s->next;
		if (s->hs && age >= tls_ms)
			slot_evict(s, EVICT_SLOW);
		else if (!s->wsi && !s->hs && !s->queued && age >= ADMIT_HELLO_MS)
			slot_evict(s, EVICT_SILENT);
	}
}

void admit_release(struct lws *wsi)
{
	struct admit_slot *s = lws_get_opaque_user_data(wsi);

	if (s) {
		lws_set_opaque_user_data(wsi, NULL);
		slot_release(s);
	}
}
