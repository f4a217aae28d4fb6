/* SPDX-License-Identifier: MIT */
/* A session's life (session.h has the whole picture): its state and failures, back-off,
 * deadlines and idle end; the table of sessions by local source; and the event loop that
 * drives them, with the shim's public entry points (shim.h). */
#include <errno.h>
#include <ifaddrs.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "log.h"
#include "session.h"

static const char *const state_names[] = {
	[S_RESOLVING] = "resolving", [S_CONNECTING] = "connecting", [S_PROXY] = "via the proxy",
	[S_TLS] = "TLS handshake", [S_UPGRADE] = "WebSocket upgrade", [S_OPEN] = "open",
	[S_BACKOFF] = "back-off",
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t prng_next(struct shim *sh)
{
	uint64_t x = sh->prng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	sh->prng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

uint64_t shim_backoff_ms(unsigned attempt, uint64_t rnd)
{
	uint64_t base = SHIM_BACKOFF_MIN_MS;

	for (unsigned i = 1; i < attempt && base < SHIM_BACKOFF_MAX_MS; i++)
		base *= 2;
	if (base > SHIM_BACKOFF_MAX_MS)
		base = SHIM_BACKOFF_MAX_MS;
	return base / 2 + rnd % (base / 2 + 1);
}

static uint64_t dead_ms(const struct shim_conf *c)
{
	uint64_t ms = (uint64_t)c->keepalive_s * 3000;

	return ms < SHIM_DEAD_MIN_MS ? SHIM_DEAD_MIN_MS : ms;
}

void set_events(struct session *s, uint32_t mask)
{
	struct epoll_event ev = { .events = mask };

	if (s->fd < 0 || s->ev_mask == mask)
		return;
	ev.data.u64 = (uint64_t)s->gen << 32 | (s->slot + TAG_SESSION);
	if (epoll_ctl(s->sh->epfd, s->ev_mask ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->fd, &ev) < 0)
		fatal("epoll_ctl");
	s->ev_mask = mask;
}

static void conn_teardown(struct session *s)
{
	if (s->sh->ssess == s)
		sendq_flush(s->sh);
	if (s->res) {
		s->res->owner = NULL;
		gai_cancel(&s->res->cb);
		s->res = NULL;
	}
	if (s->ssl) {
		SSL_free(s->ssl);
		s->ssl = NULL;
	}
	proxy_abort(s); /* after SSL_free: an https:// proxy's BIO uses the transfer */
	if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
	}
	connect_abort(s);
	s->ev_mask = 0;
	s->probe_at = s->tx_unanswered = 0;
	/* The upgrade request (with --token-file's token) went through this buffer, and
	 * out_len says nothing of it once it was written: all of it. */
	OPENSSL_cleanse(s->out, SHIM_OUT_CAP);
	s->out_off = s->out_len = 0;
	s->rx_ready = false;
	s->in_len = 0;
	s->in_slot = 0;
	s->want_write = false;
	memset(&s->wsp, 0, sizeof(s->wsp));
	s->wsp.max_frame = WS_FRAME_MAX;
	s->dec_idx = 0;
	if (frame_dec_init(&s->dec, s->dec_buf, FRAME_MAX_LEN) < 0)
		fatalx("frame_dec_init");
}

void session_free(struct session *s)
{
	struct shim *sh = s->sh;

	conn_teardown(s);
	log_debug("%s: session closed (sent %llu, received %llu; dropped: %llu queue, %llu "
		  "back-pressure, %llu oversized, %llu local)",
		  s->name, (unsigned long long)s->tx_pkts, (unsigned long long)s->rx_pkts,
		  (unsigned long long)s->drop_queue, (unsigned long long)s->drop_full,
		  (unsigned long long)s->drop_big, (unsigned long long)s->drop_udp);
	for (unsigned i = 0; i < sh->rn; i++)
		if (sh->rsess[i] == s)
			sh->rsess[i] = NULL;
	if (sh->last_hit == s)
		sh->last_hit = NULL;
	sh->slots[s->slot] = NULL;
	sh->nsess--;
	free(s->out);
	free(s->in);
	free(s->q);
	free(s->dec_buf);
	free(s);
}

/* The connection is over (why): torn down. True when s was a check session, which that
 * ends (and frees): nothing is scheduled for it. */
static bool conn_end(struct session *s, const char *why)
{
	conn_teardown(s);
	if (!s->check)
		return false;
	check_failed(s, why);
	return true;
}

/* Tear the connection down and schedule the next attempt (or close an idle session).
 * Returns -1 so callers can "return session_fail(...)"; s may be freed. */
int __attribute__((format(printf, 2, 3))) session_fail(struct session *s, const char *fmt,
							      ...)
{
	struct shim *sh = s->sh;
	char why[SHIM_ERR_LEN];
	bool setup = s->state != S_OPEN && s->state != S_BACKOFF;
	uint64_t delay;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (conn_end(s, why))
		return -1;
	if (sh->now - s->last_local >= SHIM_IDLE_MS) {
		log_warnx("%s: %s; no local traffic for %llu s, session closed", s->name, why,
			  (unsigned long long)(sh->now - s->last_local) / 1000);
		session_free(s);
		return -1;
	}
	/* Several relays: one that cannot be reached (or refuses us) gives way to the next at
	 * once; when every one has failed in a row, the back-off. */
	if (setup && sh->conf->nrelays > 1 && ++s->relays_failed < sh->conf->nrelays) {
		/* from this session's relay: relay_cur moves whenever another session opens */
		s->relay = (s->relay + 1) % sh->conf->nrelays;
		s->state = S_BACKOFF;
		s->retry_at = sh->now;
		deadline_hint(s);
		log_warnx("%s: %s; trying relay %s", s->name, why, sh->conf->relay_strs[s->relay]);
		return -1;
	}
	s->relays_failed = 0;
	s->attempts++;
	delay = shim_backoff_ms(s->attempts, prng_next(sh));
	s->state = S_BACKOFF;
	s->retry_at = sh->now + delay;
	deadline_hint(s);
	log_warnx("%s: %s; reconnecting in %.1f s", s->name, why, (double)delay / 1000.0);
	return -1;
}

static void session_on_io(struct session *s, uint32_t events)
{
	switch (s->state) {
	case S_CONNECTING:
		(void)tcp_check(s);
		break;
	case S_PROXY: /* its sockets are curl's (TAG_CURL) */
		break;
	case S_TLS:
		(void)tls_handshake(s);
		break;
	case S_UPGRADE:
		(void)upgrade_io(s);
		break;
	case S_OPEN:
		if ((events & EPOLLOUT) || s->want_write) {
			if (session_flush(s) < 0)
				return;
		}
		if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
			(void)session_read(s);
		break;
	case S_RESOLVING:
	case S_BACKOFF:
		break; /* a stale event for a descriptor already closed */
	}
}

/* Deadline of s's next timer event. */
/* Ask the relay whether the connection still works: a ping, whose answer (or any data)
 * clears probe_at (stream.c); session_tick ends the connection if none comes in time. */
static void probe(struct session *s, const char *why)
{
	if (s->state != S_OPEN || s->probe_at)
		return;
	s->probe_at = s->sh->now;
	s->probe_why = why;
	log_debug("%s: probing the connection: %s", s->name, why);
	deadline_hint(s);
	if (ws_send(s, WS_OP_PING, NULL, 0) == 0)
		(void)session_flush(s);
}

/* As session_fail(), but the next attempt starts at once: the failure says nothing about
 * the relay (the network changed under a connection), so no back-off. */
static void __attribute__((format(printf, 2, 3))) reconnect_now(struct session *s,
								 const char *fmt, ...)
{
	char why[SHIM_ERR_LEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (conn_end(s, why))
		return;
	s->state = S_BACKOFF;
	s->retry_at = s->sh->now;
	s->attempts = 0;
	s->relays_failed = 0;
	deadline_hint(s);
	log_warnx("%s: %s; reconnecting now", s->name, why);
}

const char *ifaddr_find(const struct ifaddrs *list, const struct sockaddr_storage *a)
{
	for (const struct ifaddrs *i = list; i; i = i->ifa_next) {
		const struct sockaddr *ia = i->ifa_addr;

		if (!ia || ia->sa_family != a->ss_family)
			continue;
		if (ia->sa_family == AF_INET &&
		    !memcmp(&((const struct sockaddr_in *)ia)->sin_addr,
			    &((const struct sockaddr_in *)a)->sin_addr, 4))
			return i->ifa_name;
		if (ia->sa_family == AF_INET6 &&
		    !memcmp(&((const struct sockaddr_in6 *)ia)->sin6_addr,
			    &((const struct sockaddr_in6 *)a)->sin6_addr, 16))
			return i->ifa_name;
	}
	return NULL;
}

/* Whether the address fd is bound to is still one of list's (the host's). */
static bool local_addr_present(const struct ifaddrs *list, int fd)
{
	struct sockaddr_storage a;
	socklen_t len = sizeof(a);

	if (!list || getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		return true; /* cannot tell: the probe will */
	return ifaddr_find(list, &a) != NULL;
}

/* The network changed (an address, a route, a link: another Wi-Fi, a NAT rebinding, a
 * cable): a connection may be dead without a word, which TCP would find in ~30 s and the
 * keepalive in 45. One whose local address is gone is replaced at once; the others are
 * probed; sessions waiting in back-off try again now. */
static void net_changed(struct shim *sh)
{
	struct ifaddrs *list = NULL;

	log_debug("the network changed: looking at the connections");
	if (getifaddrs(&list) < 0)
		list = NULL; /* then every connection is probed */
	for (unsigned i = 0; i < sh->conf->max_sessions; i++) {
		struct session *s = sh->slots[i];

		if (!s)
			continue;
		switch (s->state) {
		case S_BACKOFF:
			s->retry_at = sh->now;
			s->attempts = 0;
			s->relays_failed = 0;
			deadline_hint(s);
			break;
		case S_OPEN:
			if (!local_addr_present(list, s->fd))
				reconnect_now(s, "the network changed: the connection's address "
						 "is gone");
			else
				probe(s, "the network changed");
			break;
		default:
			if (s->fd >= 0 && !local_addr_present(list, s->fd))
				reconnect_now(s, "the network changed during set-up: its address "
						 "is gone");
			break;
		}
	}
	if (list)
		freeifaddrs(list);
}

static uint64_t session_deadline(const struct session *s)
{
	const struct shim_conf *c = s->sh->conf;
	uint64_t d = UINT64_MAX;

	switch (s->state) {
	case S_BACKOFF:
		return s->retry_at;
	case S_OPEN:
		if (c->keepalive_s) {
			d = s->next_ping;
			if (s->last_rx + dead_ms(c) < d)
				d = s->last_rx + dead_ms(c);
		}
		if (s->attempts && s->open_at + SHIM_HEALTHY_MS < d)
			d = s->open_at + SHIM_HEALTHY_MS;
		if (s->probe_at && s->probe_at + SHIM_PROBE_MS < d)
			d = s->probe_at + SHIM_PROBE_MS;
		else if (!s->probe_at && s->tx_unanswered && s->tx_unanswered + SHIM_STALL_MS < d)
			d = s->tx_unanswered + SHIM_STALL_MS;
		return d;
	default:
		if (s->next_attempt && s->next_attempt < s->phase_deadline)
			return s->next_attempt;
		return s->phase_deadline;
	}
}

/* s has a deadline that may be earlier than every other: the loop must look at it. */
void deadline_hint(struct session *s)
{
	uint64_t d = session_deadline(s);

	if (d < s->sh->next_due)
		s->sh->next_due = d;
}

static void session_tick(struct session *s)
{
	const struct shim_conf *c = s->sh->conf;
	uint64_t now = s->sh->now;

	switch (s->state) {
	case S_BACKOFF:
		if (now >= s->retry_at)
			session_connect(s);
		return;
	case S_OPEN:
		if (s->attempts && now >= s->open_at + SHIM_HEALTHY_MS)
			s->attempts = 0;
		if (s->probe_at && now >= s->probe_at + SHIM_PROBE_MS) {
			reconnect_now(s, "no answer from the relay within %u ms of a ping (%s)",
				      SHIM_PROBE_MS, s->probe_why);
			return;
		}
		if (!s->probe_at && s->tx_unanswered && now >= s->tx_unanswered + SHIM_STALL_MS) {
			probe(s, "traffic out, nothing back for 3 s");
			return; /* a failed write in probe() may have ended (or freed) the session */
		}
		if (!c->keepalive_s)
			return;
		if (now >= s->last_rx + dead_ms(c)) {
			session_fail(s, "no data or pong from relay for %llu s",
				     (unsigned long long)(now - s->last_rx) / 1000);
			return;
		}
		if (now >= s->next_ping) {
			s->next_ping = now + (uint64_t)c->keepalive_s * 1000;
			if (ws_send(s, WS_OP_PING, NULL, 0) == 0)
				(void)session_flush(s);
		}
		return;
	default:
		if (now >= s->phase_deadline) {
			session_fail(s, "connection set-up timed out after %u s (%s)",
				     SHIM_CONNECT_TIMEOUT_MS / 1000, state_names[s->state]);
			return;
		}
		connect_tick(s);
		return;
	}
}

struct session *session_new(struct shim *sh, const struct sockaddr_storage *src,
				   socklen_t len)
{
	unsigned max = sh->conf->max_sessions, slot = max;
	struct session *s;

	if (sh->nsess == max) {
		struct session *old = NULL;

		for (unsigned i = 0; i < max; i++)
			if (sh->slots[i] && (!old || sh->slots[i]->last_local < old->last_local))
				old = sh->slots[i];
		log_info("%s: evicted, %u sessions is the maximum (--max-sessions)", old->name,
			 max);
		session_free(old);
	}
	for (unsigned i = 0; i < max && slot == max; i++)
		if (!sh->slots[i])
			slot = i;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->out = malloc(SHIM_OUT_CAP);
	s->in = malloc((size_t)SHIM_IN_SLOTS * SHIM_IN_CAP);
	s->q = malloc(SHIM_QUEUE_BYTES);
	s->dec_buf = malloc((size_t)SHIM_DEC_BUFS * FRAME_MAX_LEN);
	if (!s->out || !s->in || !s->q || !s->dec_buf) {
		free(s->out);
		free(s->in);
		free(s->q);
		free(s->dec_buf);
		free(s);
		return NULL;
	}
	s->sh = sh;
	s->slot = slot;
	s->gen = ++sh->gen;
	s->fd = -1;
	for (unsigned i = 0; i < SHIM_MAX_ADDRS; i++)
		s->afd[i] = -1;
	memcpy(&s->src, src, len);
	s->src_len = len;
	addr_format((const struct sockaddr *)src, s->name);
	s->last_local = sh->now;
	sh->slots[slot] = s;
	sh->nsess++;
	conn_teardown(s); /* initialises the parser and the decoder */
	return s;
}

struct session *session_lookup(struct shim *sh, const struct sockaddr_storage *src)
{
	unsigned max = sh->conf->max_sessions;

	if (sh->last_hit && addr_equal((const struct sockaddr *)&sh->last_hit->src,
				       (const struct sockaddr *)src))
		return sh->last_hit;
	for (unsigned i = 0; i < max; i++) {
		struct session *s = sh->slots[i];

		if (s && addr_equal((const struct sockaddr *)&s->src, (const struct sockaddr *)src))
			return sh->last_hit = s;
	}
	return NULL;
}

int shim_open(struct shim **out, const struct shim_conf *conf, SSL_CTX *ctx,
	      enum shim_check check)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct shim *sh = calloc(1, sizeof(*sh));
	sigset_t mask;
	int ret;

	*out = NULL;
	if (!sh)
		return -ENOMEM;
	sh->conf = conf;
	sh->ctx = ctx;
	sh->check = check;
	sh->verify = !conf->insecure && conf->npins == 0;
	sh->epfd = sh->udp_fd = sh->sig_fd = sh->res_fd = sh->nl_fd = -1;
	sh->now = now_ms();
	if (RAND_bytes((unsigned char *)&sh->prng, sizeof(sh->prng)) != 1 || !sh->prng)
		sh->prng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid() ^ sh->now;
	sh->slots = calloc(conf->max_sessions, sizeof(*sh->slots));
	sh->rbuf = malloc((size_t)SHIM_BATCH * SHIM_DGRAM_BUF);
	if (!sh->slots || !sh->rbuf) {
		ret = -ENOMEM;
		goto out_close;
	}

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGHUP);
	/* blocked before getaddrinfo_a() starts threads, so they inherit the mask */
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ||
	    (sh->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
	    (sh->res_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
	    (sh->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		ret = -errno;
		log_warn("cannot set up the event loop");
		goto out_close;
	}
	if (check == CHECK_ONLY)
		goto no_udp; /* --check never takes the port of a shim that serves */
	sh->udp_fd = socket(conf->listen.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (sh->udp_fd < 0 || bind(sh->udp_fd, (const struct sockaddr *)&conf->listen,
				   conf->listen_len) < 0) {
		ret = -errno;
		log_warn("--listen %s: cannot bind", conf->listen_str);
		goto out_close;
	}
	/* bursts arrive while the loop is busy with TLS: a deep queue beats drops (FORCE works
	 * for root, the plain option is capped by net.core.rmem_max) */
	for (int i = 0; i < 2; i++) {
		static const int opts[2][2] = { { SO_RCVBUFFORCE, SO_RCVBUF },
						 { SO_SNDBUFFORCE, SO_SNDBUF } };
		int sz = SHIM_UDP_BUF;

		if (setsockopt(sh->udp_fd, SOL_SOCKET, opts[i][0], &sz, sizeof(sz)) < 0)
			(void)setsockopt(sh->udp_fd, SOL_SOCKET, opts[i][1], &sz, sizeof(sz));
	}
	ev.data.u64 = TAG_UDP;
	if (epoll_ctl(sh->epfd, EPOLL_CTL_ADD, sh->udp_fd, &ev) < 0)
		goto out_errno;
no_udp:
	ev.data.u64 = TAG_SIGNAL;
	if (epoll_ctl(sh->epfd, EPOLL_CTL_ADD, sh->sig_fd, &ev) < 0)
		goto out_errno;
	ev.data.u64 = TAG_RESOLVER;
	if (epoll_ctl(sh->epfd, EPOLL_CTL_ADD, sh->res_fd, &ev) < 0)
		goto out_errno;
	if (conf->proxy.set && (ret = proxy_open(sh)) < 0) {
		log_warnx("cannot initialise libcurl for the proxy");
		goto out_close;
	}
	if ((ret = netwatch_open()) < 0) {
		errno = -ret;
		log_warn("cannot watch the network for changes (rtnetlink): after one, a dead "
			 "connection is found by its traffic or the keepalive");
	} else {
		sh->nl_fd = ret;
		ev.data.u64 = TAG_NETLINK;
		if (epoll_ctl(sh->epfd, EPOLL_CTL_ADD, sh->nl_fd, &ev) < 0)
			goto out_errno;
	}
	*out = sh;
	return 0;
out_errno:
	ret = -errno;
	log_warn("epoll_ctl");
out_close:
	shim_close(sh);
	return ret;
}

static void shim_shutdown(struct shim *sh)
{
	static const uint8_t normal[2] = { WS_CLOSE_NORMAL >> 8, WS_CLOSE_NORMAL & 0xff };
	unsigned closed = 0;

	for (unsigned i = 0; i < sh->conf->max_sessions; i++) {
		struct session *s = sh->slots[i];

		if (!s || s->state != S_OPEN)
			continue;
		/* best effort: one non-blocking write of what is queued plus the close frame */
		if (ws_send(s, WS_OP_CLOSE, normal, sizeof(normal)) == 0) {
			ERR_clear_error();
			(void)SSL_write(s->ssl, s->out + s->out_off, (int)(s->out_len - s->out_off));
			(void)SSL_shutdown(s->ssl);
			ERR_clear_error();
			closed++;
		}
	}
	log_info("shutting down, %u open session(s) closed", closed);
}

const char *session_via(const struct session *s, char *buf, size_t len)
{
	const struct shim_proxy *p = &s->sh->conf->proxy;
	char hp[ADDR_HOST_MAX + 16];

	if (!session_proxied(s))
		return "direct";
	snprintf(buf, len, "via proxy %s",
		 url_format_hostport(p->host, p->host_is_v6, p->port, hp, sizeof(hp)));
	return buf;
}

/* SIGUSR1: what every session is doing, one line each, at info level. */
static void shim_status(struct shim *sh)
{
	const struct shim_conf *c = sh->conf;
	unsigned open = 0;

	for (unsigned i = 0; i < c->max_sessions; i++)
		open += sh->slots[i] && sh->slots[i]->state == S_OPEN;
	log_info("status: %u session%s (%u open, at most %u), relay %s first, %llu datagrams "
		 "dropped for want of a session", sh->nsess, sh->nsess == 1 ? "" : "s", open,
		 c->max_sessions, c->relay_strs[sh->relay_cur],
		 (unsigned long long)sh->drop_nosession);
	for (unsigned i = 0; i < c->max_sessions; i++) {
		struct session *s = sh->slots[i];
		char via[ADDR_HOST_MAX + 64], what[SHIM_ERR_LEN];

		if (!s)
			continue;
		if (s->state == S_OPEN)
			snprintf(what, sizeof(what), "open for %llu s to %s (%s, %s), last heard "
				 "%.1f s ago", (unsigned long long)(sh->now - s->open_at) / 1000,
				 c->relay_strs[s->relay], session_via(s, via, sizeof(via)),
				 SSL_get_version(s->ssl), (double)(sh->now - s->last_rx) / 1000.0);
		else if (s->state == S_BACKOFF)
			snprintf(what, sizeof(what), "waiting to reconnect to %s (attempt %u) in %.1f s",
				 c->relay_strs[s->relay], s->attempts + 1,
				 s->retry_at > sh->now ? (double)(s->retry_at - sh->now) / 1000.0 : 0.0);
		else
			snprintf(what, sizeof(what), "%s to %s (%s)", state_names[s->state],
				 c->relay_strs[s->relay], session_via(s, via, sizeof(via)));
		log_info("status: %s: %s; datagrams sent %llu, received %llu, dropped %llu "
			 "(queue %llu, back-pressure %llu, oversized %llu, local %llu); idle %.1f s",
			 s->name, what, (unsigned long long)s->tx_pkts,
			 (unsigned long long)s->rx_pkts,
			 (unsigned long long)(s->drop_queue + s->drop_full + s->drop_big +
					      s->drop_udp),
			 (unsigned long long)s->drop_queue, (unsigned long long)s->drop_full,
			 (unsigned long long)s->drop_big, (unsigned long long)s->drop_udp,
			 (double)(sh->now - s->last_local) / 1000.0);
	}
}

int shim_run(struct shim *sh)
{
	struct epoll_event evs[64];
	const struct shim_conf *c = sh->conf;

	for (unsigned r = 0; sh->check != CHECK_ONLY && r < c->nrelays; r++) {
		bool proxied = c->proxy.set && !c->relay_direct[r];
		char hp[ADDR_HOST_MAX + 16];

		log_info("listening on %s for WireGuard, relay %s (%s%s)%s", c->listen_str,
			 c->relay_strs[r], proxied ? "via proxy " : "direct",
			 proxied ? url_format_hostport(c->proxy.host, c->proxy.host_is_v6,
						       c->proxy.port, hp, sizeof(hp)) : "",
			 c->nrelays > 1 ? (r ? ", then" : ", first") : "");
	}
	check_begin(sh);
	while (!sh->stop) {
		uint64_t next;
		bool ready;
		int timeout, n;

		sh->now = now_ms();
		if (sh->net_due && sh->now >= sh->net_due) {
			sh->net_due = 0;
			net_changed(sh);
		}
		if (sh->curl_due && sh->now >= sh->curl_due)
			proxy_on_timer(sh);
		if (sh->now >= sh->next_due) {
			next = sh->net_due ? sh->net_due : UINT64_MAX;
			if (sh->curl_due && sh->curl_due < next)
				next = sh->curl_due;
			for (unsigned i = 0; i < sh->conf->max_sessions; i++) {
				struct session *s = sh->slots[i];

				if (s && session_deadline(s) <= sh->now)
					session_tick(s);
				if ((s = sh->slots[i])) {
					uint64_t d = session_deadline(s);

					if (d < next)
						next = d;
				}
			}
			sh->next_due = next;
		}
		next = sh->next_due;
		/* a tick may have started a proxy transfer: curl's timer was set after next */
		if (sh->curl_due && sh->curl_due < next)
			next = sh->curl_due;
		ready = sh->rx_ready_any;
		if (ready)
			timeout = 0;
		else if (next == UINT64_MAX)
			timeout = -1;
		else
			timeout = next <= sh->now ? 0 : (int)(next - sh->now > 60000 ? 60000 :
							       next - sh->now);
		n = epoll_wait(sh->epfd, evs, 64, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fatal("epoll_wait");
		}
		sh->now = now_ms();
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;
			unsigned slot;
			struct session *s;

			switch (tag) {
			case TAG_UDP:
				shim_on_udp(sh);
				continue;
			case TAG_SIGNAL: {
				struct signalfd_siginfo si;

				while (read(sh->sig_fd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGUSR1) {
						shim_status(sh);
						continue;
					}
					if (si.ssi_signo == SIGHUP) {
						log_info("SIGHUP: nothing to reload (the shim reads its "
							 "settings at start: restart it to change "
							 "them); still serving");
						continue;
					}
					log_info("received signal %u", si.ssi_signo);
					sh->stop = true;
				}
				continue;
			}
			case TAG_RESOLVER:
				shim_on_resolver(sh);
				continue;
			case TAG_NETLINK:
				if (netwatch_read(sh->nl_fd) > 0 && !sh->net_due) {
					sh->net_due = sh->now + SHIM_NET_SETTLE_MS;
					if (sh->net_due < sh->next_due)
						sh->next_due = sh->net_due;
				}
				continue;
			}
			if ((uint32_t)tag == TAG_CURL) {
				proxy_on_event(sh, (int)(tag >> 32), evs[i].events);
				continue;
			}
			slot = (unsigned)(tag & 0xffffffff) - TAG_SESSION;
			if (slot >= sh->conf->max_sessions)
				continue;
			s = sh->slots[slot];
			if (!s || s->gen != (uint32_t)(tag >> 32))
				continue; /* freed or replaced within this batch */
			session_on_io(s, evs[i].events);
		}
		/* Sessions that stopped reading on their budget: their turn comes after the
		 * events of this round (the local UDP socket's among them). */
		ready = sh->rx_ready_any;
		sh->rx_ready_any = false;
		for (unsigned i = 0; ready && i < sh->conf->max_sessions; i++) {
			struct session *s = sh->slots[i];

			if (s && s->rx_ready && s->state == S_OPEN)
				(void)session_read(s);
		}
	}
	if (sh->check == CHECK_ONLY)
		return sh->check_failed || sh->check_relay < c->nrelays ? 1 : 0;
	shim_shutdown(sh);
	return 0;
}

void shim_close(struct shim *sh)
{
	if (!sh)
		return;
	if (sh->slots)
		for (unsigned i = 0; i < sh->conf->max_sessions; i++)
			if (sh->slots[i])
				session_free(sh->slots[i]);
	proxy_close(sh);
	/* requests still running in glibc keep their memory; the process is ending */
	for (struct resolve *r = sh->resolves, *next; r; r = next) {
		next = r->next;
		if (gai_cancel(&r->cb) == EAI_ALLDONE || gai_error(&r->cb) != EAI_INPROGRESS) {
			if (r->cb.ar_result)
				freeaddrinfo(r->cb.ar_result);
			free(r);
		}
	}
	if (sh->udp_fd >= 0)
		close(sh->udp_fd);
	if (sh->sig_fd >= 0)
		close(sh->sig_fd);
	if (sh->res_fd >= 0)
		close(sh->res_fd);
	if (sh->nl_fd >= 0)
		close(sh->nl_fd);
	if (sh->epfd >= 0)
		close(sh->epfd);
	free(sh->rbuf);
	free(sh->slots);
	free(sh);
}
