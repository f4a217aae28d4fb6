/* SPDX-License-Identifier: MIT */
/* The relay's end of the JIT channel (the contract is common/jitproto.h): one unix
 * SOCK_SEQPACKET connection to wgws-provisioner, adopted into the service loop as a raw
 * descriptor. Each tunnel's newest handshake initiation is held (struct jit_hold, in the
 * tunnel) while a request about it is in flight, and released when the answer comes, after
 * JIT_HOLD_MS, or when the channel goes: forwarded, or dropped for "unknown" and "refused".
 *
 * This file must never block the loop nor make a tunnel wait on anything but its own
 * answer: sends are MSG_DONTWAIT; a request that finds the socket full (a burst bigger than
 * net.core.wmem_max lets the buffer be) stays held, marked unsent, and goes out when the
 * socket is writable again, still within its deadline; a channel that is down means the
 * initiation is forwarded at once, as without a provisioner. Every structure is O(held):
 * held tunnels are a list in deadline order (all holds last the same time, so appending
 * keeps it sorted) under one timer, and requests in flight are hashed by id. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "relay.h"

enum {
	JIT_RETRY_MS = 1000,   /* reconnect period */
	JIT_RX_BUDGET = 64,    /* answers read per wakeup: the loop has tunnels to serve too */
	JIT_HASH_SIZE = 1024,  /* ids are consecutive: they spread evenly over the buckets */
	JIT_FLAP_MS = 2000,    /* closed sooner than this, unanswered: refused, not lost */
	JIT_MSG_COST = 1280,   /* socket buffer one queued request takes (skb truesize) */
};

static struct {
	struct lws *wsi;        /* set while connected, and while lws closes it */
	int fd;
	bool stopping;
	bool flapping;          /* the last connection closed at once: say so once, not each time */
	bool announced;         /* this connection's "connected" line was logged */
	bool answered;          /* this connection has carried an answer */
	bool sndbuf_warned;
	bool in_rx;             /* in channel_rx(): its return value closes the channel */
	int logged_err;         /* the connect() error last logged, so it is logged once */
	unsigned unsent;        /* held ones whose request waits for room in the socket */
	uint64_t up_ms;
	uint64_t next_id;
	struct jit_hold *head, *tail;
	struct jit_hold *inflight[JIT_HASH_SIZE];
	lws_sorted_usec_list_t retry, expiry, rearm;
} jit = { .fd = -1 };

static void jit_connect(void);

static struct jit_hold **bucket(uint64_t id)
{
	return &jit.inflight[id & (JIT_HASH_SIZE - 1)];
}

static void inflight_add(struct jit_hold *h)
{
	struct jit_hold **b = bucket(h->req.id);

	h->hnext = *b;
	if (*b)
		(*b)->hpprev = &h->hnext;
	h->hpprev = b;
	*b = h;
}

static void inflight_del(struct jit_hold *h)
{
	if (!h->hpprev)
		return;
	*h->hpprev = h->hnext;
	if (h->hnext)
		h->hnext->hpprev = h->hpprev;
	h->hnext = NULL;
	h->hpprev = NULL;
}

static struct jit_hold *inflight_find(uint64_t id)
{
	for (struct jit_hold *h = *bucket(id); h; h = h->hnext)
		if (h->req.id == id)
			return h;
	return NULL;
}

static void expire_cb(lws_sorted_usec_list_t *sul);

static void held_append(struct jit_hold *h)
{
	h->next = NULL;
	h->prev = jit.tail;
	if (jit.tail)
		jit.tail->next = h;
	else
		jit.head = h;
	jit.tail = h;
	/* Alone: its deadline is the earliest. Otherwise the timer is set for an older one
	 * and moves on to the next when it fires. */
	if (jit.head == h)
		lws_sul_schedule(relay.ctx, 0, &jit.expiry, expire_cb,
				 JIT_HOLD_MS * LWS_US_PER_MS);
}

static void held_del(struct jit_hold *h)
{
	if (h->prev)
		h->prev->next = h->next;
	else
		jit.head = h->next;
	if (h->next)
		h->next->prev = h->prev;
	else
		jit.tail = h->prev;
	h->prev = h->next = NULL;
}

/* End a hold; forward sends its datagram to WireGuard. */
static void release(struct jit_hold *h, bool forward)
{
	if (h->unsent) {
		h->unsent = false;
		jit.unsent--;
	}
	inflight_del(h);
	held_del(h);
	h->held = false;
	relay.jit_held--;
	if (forward)
		conn_forward_held(h);
}

static void expire_cb(lws_sorted_usec_list_t *sul)
{
	uint64_t now = relay_now_ms();

	(void)sul;
	while (jit.head && jit.head->deadline_ms <= now) {
		/* A provisioner that never answered is slow or stuck: forward, as without one.
		 * One that answered, while newer initiations kept replacing the one asked
		 * about, was never given the chance to refuse the last: drop it (a client
		 * doing that is not WireGuard, which waits 5 s between initiations). */
		bool forward = !jit.head->answered;

		if (forward)
			relay.st.jit_timeouts++;
		else
			relay.st.drops[DROP_JIT_SUPERSEDED]++;
		release(jit.head, forward); /* its answer, if it ever comes, finds no id */
	}
	if (jit.head)
		lws_sul_schedule(relay.ctx, 0, &jit.expiry, expire_cb,
				 (lws_usec_t)(jit.head->deadline_ms - now) * LWS_US_PER_MS);
}

static void retry_cb(lws_sorted_usec_list_t *sul)
{
	(void)sul;
	if (jit.stopping)
		return;
	if (jit.wsi) { /* the last connection is still being closed */
		lws_sul_schedule(relay.ctx, 0, &jit.retry, retry_cb, JIT_RETRY_MS * LWS_US_PER_MS);
		return;
	}
	jit_connect();
}

static void rearm_cb(lws_sorted_usec_list_t *sul)
{
	(void)sul;
	if (jit.wsi && relay.jit_up && jit.unsent)
		lws_callback_on_writable(jit.wsi);
}

static void schedule_retry(void)
{
	if (!jit.stopping)
		lws_sul_schedule(relay.ctx, 0, &jit.retry, retry_cb, JIT_RETRY_MS * LWS_US_PER_MS);
}

/* The channel is unusable: stop asking, let every held initiation go to WireGuard now (the
 * provisioner may be back before their client retries), and reconnect later. why is logged
 * unless NULL (the caller said it). */
static void channel_lost(const char *why)
{
	bool quick = !jit.answered && relay_now_ms() - jit.up_ms < JIT_FLAP_MS;

	if (!relay.jit_up)
		return;
	relay.jit_up = false;
	/* A provisioner that refuses us closes at once, every second: say it once. */
	if (why && quick && jit.flapping)
		log_debug("jit: %s closed the channel again", relay.cfg.jit_socket);
	else if (why && quick)
		log_warnx("jit: %s closed the channel right after it was opened (does the "
			  "provisioner allow uid %u? see its log); retrying every %d s",
			  relay.cfg.jit_socket, (unsigned)geteuid(), JIT_RETRY_MS / 1000);
	else if (why)
		log_warnx("jit: %s: %s; forwarding initiations without asking, reconnecting every "
			  "%d s", relay.cfg.jit_socket, why, JIT_RETRY_MS / 1000);
	jit.flapping = why && quick;
	jit.logged_err = 0;
	while (jit.head) {
		relay.st.jit_not_asked++;
		release(jit.head, true);
	}
	/* Inside its own callback, returning -1 closes it; elsewhere lws does, soon. */
	if (jit.wsi && !jit.in_rx)
		lws_set_timeout(jit.wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
	schedule_retry();
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* The provisioner's time to decide, as the relay sees it (request sent -> answer): for a
 * key the provisioner looks up elsewhere (--source), the lookup and the install. */
static void observe_answer(const struct jit_hold *h)
{
	static const uint64_t le_us[RELAY_JIT_BUCKETS - 1] = { 250, 500, 1000, 2000, 5000,
							       10000, 50000, 100000, 1000000 };
	uint64_t us = now_us() - h->asked_us;
	unsigned i = 0;

	while (i < RELAY_JIT_BUCKETS - 1 && us > le_us[i])
		i++;
	relay.st.jit_answer_le[i]++;
	relay.st.jit_answer_count++;
	relay.st.jit_answer_sum_us += us;
}

/* Send the request for h's held datagram under a new id. Returns 0 or -errno. */
static int ask(struct jit_hold *h)
{
	ssize_t n;

	h->req.id = ++jit.next_id;
	n = send(jit.fd, &h->req, sizeof(h->req), MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n != (ssize_t)sizeof(h->req))
		return n < 0 ? -errno : -EMSGSIZE;
	h->asked_seq = h->seq;
	h->asked_us = now_us();
	inflight_add(h);
	relay.st.jit_requests++;
	return 0;
}

static bool socket_full(int err)
{
	return err == -EAGAIN || err == -EWOULDBLOCK || err == -ENOBUFS || err == -EINTR;
}

/* A held request that found the socket full waits for POLLOUT (send_unsent). */
static void mark_unsent(struct jit_hold *h)
{
	if (!h->unsent) {
		h->unsent = true;
		jit.unsent++;
		relay.st.jit_deferred++;
	}
	lws_callback_on_writable(jit.wsi);
}

/* After a failed ask() whose hold the caller has released: the channel no longer works. */
static void ask_failed(int err)
{
	errno = -err;
	log_warn("jit: sending to %s", relay.cfg.jit_socket);
	channel_lost(NULL);
}

/* The socket has room again: send the waiting requests, oldest first. O(held), and only
 * after a burst filled the socket. Returns -1 when the channel broke. */
static int send_unsent(void)
{
	for (struct jit_hold *h = jit.head, *next; h && jit.unsent; h = next) {
		int ret;

		next = h->next;
		if (!h->unsent)
			continue;
		ret = ask(h);
		if (socket_full(ret)) {
			lws_callback_on_writable(jit.wsi);
			return 0;
		}
		h->unsent = false;
		jit.unsent--;
		if (ret < 0) {
			relay.st.jit_not_asked++;
			release(h, true);
			ask_failed(ret);
			return -1;
		}
	}
	return 0;
}

static void on_answer(const struct jit_answer *a)
{
	struct jit_hold *h = inflight_find(a->id);
	int ret;

	relay.st.jit_answers[a->verdict]++;
	if (!h) {
		relay.st.jit_stale++;
		return;
	}
	inflight_del(h);
	observe_answer(h);
	h->answered = true;
	if (h->seq != h->asked_seq) {
		/* A newer initiation replaced the one asked about: it needs its own answer,
		 * within the same deadline. */
		ret = ask(h);
		if (!ret)
			return;
		if (socket_full(ret)) {
			mark_unsent(h);
			return;
		}
		relay.st.jit_not_asked++;
		release(h, true);
		ask_failed(ret);
		return;
	}
	switch (a->verdict) {
	case JIT_UNKNOWN:
		relay.st.drops[DROP_JIT_UNKNOWN]++;
		release(h, false);
		break;
	case JIT_REFUSED:
		relay.st.drops[DROP_JIT_REFUSED]++;
		release(h, false);
		break;
	default: /* installed, live, or the provisioner could not tell: WireGuard decides */
		if ((a->verdict == JIT_INSTALLED || a->verdict == JIT_LIVE) &&
		    memcmp(a->key, (uint8_t[32]){ 0 }, 32))
			conn_jit_peer(h, a->key, jit_verdict_name(a->verdict));
		release(h, true);
		break;
	}
}

/* Returns -1 when the channel must be closed (lost already). */
static int channel_rx(void)
{
	for (int i = 0; i < JIT_RX_BUDGET; i++) {
		/* Room for more than an answer: a longer message shows its length. */
		struct jit_answer a[2] = { { 0 } };
		ssize_t n = recv(jit.fd, a, sizeof(a), MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return 0;
			channel_lost(strerror(errno));
			return -1;
		}
		if (n == 0) {
			channel_lost("the provisioner closed the channel");
			return -1;
		}
		if (jit_answer_check(&a[0], (size_t)n) < 0) {
			log_warnx("jit: %s sent a malformed answer (%zd bytes, magic %08x, verdict "
				  "%u); closing the channel, reconnecting in %d s",
				  relay.cfg.jit_socket, n, a[0].magic, a[0].verdict,
				  JIT_RETRY_MS / 1000);
			channel_lost(NULL);
			return -1;
		}
		if (!jit.answered && !jit.announced)
			log_info("jit: the provisioner at %s answers", relay.cfg.jit_socket);
		jit.answered = jit.announced = true;
		on_answer(&a[0]);
		if (!relay.jit_up)
			return -1; /* a re-ask found the channel broken */
	}
	return 0;
}

/* One queued request costs about JIT_MSG_COST of the sender's buffer and each tunnel has at
 * most one in flight: size it for --max-conns so that a burst rarely has to wait for room.
 * The kernel caps it at net.core.wmem_max (and doubles what it grants). */
static void size_sndbuf(int fd)
{
	unsigned long want = relay.cfg.max_conns * JIT_MSG_COST / 2;
	int v = want < 65536 ? 65536 : want > (1UL << 30) ? 1 << 30 : (int)want;
	socklen_t len = sizeof(v);

	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &len) < 0 || jit.sndbuf_warned)
		return;
	if ((unsigned long)v / JIT_MSG_COST < relay.cfg.max_conns) {
		jit.sndbuf_warned = true;
		log_info("jit: the channel's socket buffer holds about %d requests (net.core."
			 "wmem_max caps it): a bigger burst of initiations waits for room", v / JIT_MSG_COST);
	}
}

static bool peer_trusted(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof(cred))
		return false;
	if (cred.uid == 0 || cred.uid == geteuid() || cred.uid == relay.user_uid)
		return true;
	if (jit.logged_err != EPERM)
		log_warnx("jit: %s is served by uid %u (pid %d), neither root nor the relay's user: "
			  "not asking it", relay.cfg.jit_socket, (unsigned)cred.uid, (int)cred.pid);
	return false;
}

static void jit_connect(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	lws_sock_file_fd_type desc;
	int fd, err;

	strcpy(sun.sun_path, relay.cfg.jit_socket); /* length checked with the options */
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	/* A unix connect() does not wait for accept(): it succeeds or fails here. */
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		goto fail_close;
	/* Whoever answers decides which initiations WireGuard sees: only root, or the user the
	 * relay runs as (the provisioner's engine may share it), not any local user who got to
	 * the path first. */
	if (!peer_trusted(fd)) {
		errno = EPERM;
		goto fail_close;
	}
	size_sndbuf(fd);
	desc.filefd = fd;
	jit.wsi = lws_adopt_descriptor_vhost(relay.internal_vhost, LWS_ADOPT_RAW_FILE_DESC,
					     desc, "wgws-jit", NULL);
	if (!jit.wsi) {
		errno = ENOMEM;
		goto fail_close;
	}
	jit.fd = fd;
	jit.up_ms = relay_now_ms();
	jit.answered = false;
	jit.announced = !jit.flapping;
	relay.jit_up = true;
	if (jit.announced)
		log_info("jit: connected to the provisioner at %s", relay.cfg.jit_socket);
	else
		log_debug("jit: connected to %s", relay.cfg.jit_socket);
	return;

fail_close:
	err = errno;
	close(fd);
	errno = err;
fail:
	if (errno != jit.logged_err)
		log_warn("jit: cannot connect to %s (forwarding initiations without asking, "
			 "retrying every %d s)", relay.cfg.jit_socket, JIT_RETRY_MS / 1000);
	jit.logged_err = errno;
	jit.flapping = false;
	schedule_retry();
}

void jit_start(void)
{
	if (relay.cfg.jit_socket[0])
		jit_connect();
}

void jit_stop(void)
{
	jit.stopping = true;
	lws_sul_cancel(&jit.retry);
	lws_sul_cancel(&jit.expiry);
	lws_sul_cancel(&jit.rearm);
}

void jit_hold_init(struct jit_hold *h, const struct sockaddr *source,
		   const struct sockaddr *client)
{
	memset(h, 0, sizeof(*h));
	h->req.magic = JIT_MAGIC_REQUEST;
	jit_addr_from_sockaddr(&h->req.source, source);
	jit_addr_from_sockaddr(&h->req.client, client);
}

bool jit_hold(struct jit_hold *h, const uint8_t dgram[static JIT_INITIATION_LEN])
{
	int ret;

	if (h->held) {
		/* Newest wins; the answer about the old one will ask about this one. */
		memcpy(h->req.initiation, dgram, JIT_INITIATION_LEN);
		h->seq++;
		return true;
	}
	if (!relay.jit_up || !h->req.source.family) {
		relay.st.jit_not_asked++;
		return false;
	}
	memcpy(h->req.initiation, dgram, JIT_INITIATION_LEN);
	h->seq++;
	/* Behind requests already waiting for room: keep their order, do not overtake. */
	ret = jit.unsent ? -EAGAIN : ask(h);
	if (ret < 0 && !socket_full(ret)) {
		relay.st.jit_not_asked++;
		ask_failed(ret);
		return false;
	}
	h->held = true;
	h->answered = false;
	h->deadline_ms = relay_now_ms() + JIT_HOLD_MS;
	relay.jit_held++;
	held_append(h);
	if (ret < 0)
		mark_unsent(h);
	return true;
}

void jit_hold_forget(struct jit_hold *h)
{
	if (h->held)
		release(h, false);
}

int jit_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		 size_t len)
{
	int ret;

	(void)user;
	(void)in;
	(void)len;
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		if (wsi != jit.wsi || !relay.jit_up)
			return -1; /* a channel given up on (channel_lost) */
		jit.in_rx = true;
		ret = channel_rx();
		/* The provisioner read what it answered: room for waiting requests. */
		if (!ret && jit.unsent)
			ret = send_unsent();
		jit.in_rx = false;
		return ret;
	case LWS_CALLBACK_RAW_WRITEABLE_FILE:
		if (wsi != jit.wsi || !relay.jit_up)
			return 0;
		jit.in_rx = true;
		ret = send_unsent();
		jit.in_rx = false;
		/* lws 4.1 clears POLLOUT after this callback returns, undoing a request made
		 * inside it: ask again from a timer. */
		if (!ret && jit.unsent)
			lws_sul_schedule(relay.ctx, 0, &jit.rearm, rearm_cb, 1000);
		return ret;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		if (wsi != jit.wsi)
			return 0;
		/* lws closed the descriptor: never use its number again. */
		jit.wsi = NULL;
		jit.fd = -1;
		if (!jit.stopping)
			channel_lost("the channel was closed");
		return 0;
	default:
		return 0;
	}
}
