/* SPDX-License-Identifier: MIT */
/* The privileged half of the provisioner (prov.h has the message contract; privsep.c is the
 * engine's end). This process owns the device and its private key; it reads one fixed-size
 * request at a time from a SOCK_SEQPACKET socketpair, checks everything it can (size, op,
 * every range, every reserved byte), does one device operation or one X25519, or hands over
 * the capture socket it opened at start, and answers. It treats a malformed request as an attack: fatalx, which
 * logs and exits; the engine then loses its channel and exits too.
 *
 * It must never parse bytes from the network (only the device's own replies, in wgnl.c and
 * uapi.c), never return the private key, and never answer with memory it did not zero first.
 * The key lives in sodium_malloc'ed memory (guarded, locked) and is wiped on every exit. */
#include <errno.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "prov.h"
#include "sandbox.h"

/* No padding: every byte of a message is a field someone checks or sets. */
_Static_assert(sizeof(struct priv_hdr) == 16, "priv_hdr padding");
_Static_assert(sizeof(struct cidr) == 18, "prov_cidr padding");
_Static_assert(sizeof(struct priv_peer) == 2 * WG_KEY_LEN + 8 + sizeof(struct sockaddr_storage) +
		       PROV_MAX_ALLOWED * sizeof(struct cidr),
	       "priv_peer padding");
_Static_assert(sizeof(struct priv_remove) == 8 + PRIV_REMOVE_MAX * WG_KEY_LEN,
	       "priv_remove padding");
_Static_assert(sizeof(struct priv_peer_info) == WG_KEY_LEN + 24 + sizeof(struct sockaddr_storage) +
		       8 + PROV_MAX_ALLOWED * sizeof(struct cidr),
	       "priv_peer_info padding");
_Static_assert(sizeof(struct priv_info) == WG_KEY_LEN + 8, "priv_info padding");
_Static_assert(sizeof(struct priv_peer_msg) == 16 + sizeof(struct priv_peer), "peer_msg");
_Static_assert(sizeof(struct priv_remove_msg) == 16 + sizeof(struct priv_remove), "remove_msg");
_Static_assert(sizeof(struct priv_dump_msg) == 16 + sizeof(struct priv_peer_info), "dump_msg");
_Static_assert(sizeof(struct priv_info_msg) == 16 + sizeof(struct priv_info), "info_msg");
_Static_assert(sizeof(struct priv_ifname_msg) == 16 + IF_NAMESIZE, "ifname_msg");

static const uint32_t request_len[PRIV_OP_MAX] = {
	[PRIV_INSTALL] = sizeof(struct priv_peer_msg),
	[PRIV_UPDATE] = sizeof(struct priv_peer_msg),
	[PRIV_REMOVE] = sizeof(struct priv_remove_msg),
	[PRIV_DUMP] = sizeof(struct priv_hdr),
	[PRIV_GET_INFO] = sizeof(struct priv_hdr),
	[PRIV_DH] = sizeof(struct priv_key_msg),
	[PRIV_RELOAD_KEY] = sizeof(struct priv_hdr),
	[PRIV_CAPTURE_OPEN] = sizeof(struct priv_ifname_msg),
};

static const uint32_t answer_len[PRIV_OP_MAX] = {
	[PRIV_INSTALL] = sizeof(struct priv_hdr),
	[PRIV_UPDATE] = sizeof(struct priv_hdr),
	[PRIV_REMOVE] = sizeof(struct priv_hdr),
	[PRIV_DUMP] = sizeof(struct priv_hdr),
	[PRIV_GET_INFO] = sizeof(struct priv_info_msg),
	[PRIV_DH] = sizeof(struct priv_key_msg),
	[PRIV_RELOAD_KEY] = sizeof(struct priv_info_msg),
	[PRIV_CAPTURE_OPEN] = sizeof(struct priv_hdr),
};

/* Between two polls: 64 spin-wait hints (0.2-3 µs, by CPU model), so that the poll does not leave
 * the other process's X25519 (on the other CPU, which on a VM may share a physical core with
 * this one) competing with back-to-back system calls. make jit-bench JIT_BENCH_ARGS='-q -s'
 * against '-q', five alternating pairs each way, median of the pairs: unknown key p50 +23 %
 * and rate -17 % without it, +4 % and -14 % with it; already live +18 % / -23 %, then
 * +6 % / -12 %. */
static void cpu_relax(void)
{
	for (int i = 0; i < 64; i++) {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#elif defined(__aarch64__)
		__asm__ __volatile__("yield");
#endif
	}
}

ssize_t priv_recvmsg(int fd, struct msghdr *mh, int flags)
{
	size_t controllen = mh->msg_controllen;
	struct timespec t0, t;
	ssize_t n;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		mh->msg_controllen = controllen;
		n = recvmsg(fd, mh, flags | MSG_DONTWAIT);
		if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			return n;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000000 + (t.tv_nsec - t0.tv_nsec) / 1000 >= PRIV_SPIN_US)
			break;
		cpu_relax();
	}
	do {
		mh->msg_controllen = controllen;
		n = recvmsg(fd, mh, flags);
	} while (n < 0 && errno == EINTR);
	return n;
}

size_t priv_msg_len(uint32_t op, bool answer)
{
	if (op == PRIV_DUMP_PEER)
		return answer ? sizeof(struct priv_dump_msg) : 0;
	if (op == 0 || op >= PRIV_OP_MAX)
		return 0;
	return answer ? answer_len[op] : request_len[op];
}

void priv_copy_endpoint(struct sockaddr_storage *dst, const struct sockaddr_storage *src)
{
	memset(dst, 0, sizeof(*dst));
	if (src->ss_family == AF_INET)
		memcpy(dst, src, sizeof(struct sockaddr_in));
	else if (src->ss_family == AF_INET6)
		memcpy(dst, src, sizeof(struct sockaddr_in6));
}

void priv_copy_cidr(struct cidr *dst, const struct cidr *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->family = src->family;
	dst->bits = src->bits;
	memcpy(dst->addr, src->addr, src->family == AF_INET ? 4 : 16);
}

struct privd {
	int fd;
	struct wgdev *dev;
	const char *capture_if;
	int capture_fd;     /* opened at start (the only use of CAP_NET_RAW), handed over once */
	int capture_err;    /* why it could not be opened (-errno) */
	uint8_t *key;  /* sodium_malloc'ed */
	bool has_key;
};

static uint8_t *key_mem; /* for the exit handler: fatalx exits from anywhere */

static void key_wipe(void)
{
	if (key_mem)
		sodium_free(key_mem); /* zeroes it */
	key_mem = NULL;
}

/* ---- what a request may be: checked whole before anything is done ---- */

/* Say why in why; returns -EBADMSG. */
static int __attribute__((format(printf, 2, 3))) lie(char *why, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, PRIV_WHY_LEN, fmt, ap);
	va_end(ap);
	return -EBADMSG;
}

static int check_cidr(const struct cidr *c, char *why)
{
	if (c->family == AF_INET && c->bits <= 32 && sodium_is_zero(c->addr + 4, 12))
		return 0;
	if (c->family == AF_INET6 && c->bits <= 128)
		return 0;
	return lie(why, "allowed IP with family %u, /%u", c->family, c->bits);
}

static int check_endpoint(const struct sockaddr_storage *ss, char *why)
{
	const uint8_t *b = (const uint8_t *)ss;
	size_t used;

	switch (ss->ss_family) {
	case AF_UNSPEC:
		used = 0;
		break;
	case AF_INET:
		used = sizeof(struct sockaddr_in);
		break;
	case AF_INET6:
		used = sizeof(struct sockaddr_in6);
		break;
	default:
		return lie(why, "endpoint of family %u", ss->ss_family);
	}
	if (!sodium_is_zero(b + used, sizeof(*ss) - used))
		return lie(why, "endpoint of family %u with bytes past its end", ss->ss_family);
	return 0;
}

static int check_peer(const struct priv_peer *w, char *why)
{
	int ret;

	if (w->has_psk > 1 || (!w->has_psk && !sodium_is_zero(w->psk, WG_KEY_LEN)))
		return lie(why, "psk flag %u", w->has_psk);
	if (w->reserved)
		return lie(why, "reserved bytes set in a peer");
	if (w->keepalive_s < -1 || w->keepalive_s > 65535)
		return lie(why, "keepalive %d", (int)w->keepalive_s);
	if (w->n_allowed > PROV_MAX_ALLOWED)
		return lie(why, "%u allowed IPs (at most %d)", w->n_allowed, PROV_MAX_ALLOWED);
	ret = check_endpoint(&w->endpoint, why);
	for (unsigned i = 0; i < PROV_MAX_ALLOWED && ret == 0; i++) {
		if (i < w->n_allowed)
			ret = check_cidr(&w->allowed[i], why);
		else if (!sodium_is_zero((const uint8_t *)&w->allowed[i], sizeof(w->allowed[i])))
			ret = lie(why, "allowed IP slot %u set past n_allowed %u", i, w->n_allowed);
	}
	return ret;
}

static int check_remove(const struct priv_remove *r, char *why)
{
	if (r->n == 0 || r->n > PRIV_REMOVE_MAX || r->reserved)
		return lie(why, "remove of %u keys", r->n);
	if (!sodium_is_zero(r->keys[r->n], (PRIV_REMOVE_MAX - r->n) * WG_KEY_LEN))
		return lie(why, "remove of %u keys with more after them", r->n);
	return 0;
}

static int check_ifname(const struct priv_ifname *n, char *why)
{
	size_t len = strnlen(n->name, IF_NAMESIZE);

	if (len == 0 || len == IF_NAMESIZE ||
	    !sodium_is_zero((const uint8_t *)n->name + len, IF_NAMESIZE - len))
		return lie(why, "interface name not NUL-terminated or not zero-padded");
	return 0;
}

int priv_check_request(const union priv_msg *m, size_t n, char why[static PRIV_WHY_LEN])
{
	size_t want;

	why[0] = '\0';
	if (n < sizeof(m->h) || n > sizeof(*m))
		return lie(why, "request of %zu bytes", n);
	want = priv_msg_len(m->h.op, false);
	if (!want)
		return lie(why, "request op %u", m->h.op);
	if (n != want || m->h.len != n || m->h.result != 0)
		return lie(why, "request op %u of %zu bytes (len %u, result %d; expected %zu)",
			   m->h.op, n, m->h.len, (int)m->h.result, want);
	switch (m->h.op) {
	case PRIV_INSTALL:
	case PRIV_UPDATE:
		return check_peer(&m->peer.p, why);
	case PRIV_REMOVE:
		return check_remove(&m->remove.r, why);
	case PRIV_CAPTURE_OPEN:
		return check_ifname(&m->ifname.n, why);
	default: /* no body, or 32 bytes of anything (DH: X25519 takes every point) */
		return 0;
	}
}

void priv_peer_from_wire(const struct priv_peer *w, struct wgdev_peer *p)
{
	memset(p, 0, sizeof(*p));
	memcpy(p->pubkey, w->pubkey, WG_KEY_LEN);
	p->has_psk = w->has_psk;
	memcpy(p->psk, w->psk, WG_KEY_LEN);
	p->endpoint = w->endpoint;
	p->keepalive_s = w->keepalive_s;
	p->n_allowed = w->n_allowed;
	memcpy(p->allowed, w->allowed, sizeof(p->allowed));
}

void priv_peer_to_wire(const struct wgdev_peer *p, struct priv_peer *w)
{
	memset(w, 0, sizeof(*w));
	w->has_psk = p->has_psk;
	if (p->has_psk)
		memcpy(w->psk, p->psk, WG_KEY_LEN);
	memcpy(w->pubkey, p->pubkey, WG_KEY_LEN);
	w->keepalive_s = p->keepalive_s;
	priv_copy_endpoint(&w->endpoint, &p->endpoint);
	w->n_allowed = (uint8_t)p->n_allowed; /* <= PROV_MAX_ALLOWED: checked by the caller */
	for (unsigned i = 0; i < p->n_allowed; i++)
		priv_copy_cidr(&w->allowed[i], &p->allowed[i]);
}

/* ---- the loop ---- */

static void send_answer(struct privd *d, union priv_msg *m, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = m, .iov_len = m->h.len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		struct cmsghdr *c;

		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	if (sendmsg(d->fd, &mh, MSG_NOSIGNAL) != (ssize_t)m->h.len)
		fatal("priv: answering the engine");
}

static void answer_init(union priv_msg *m, uint32_t op, uint32_t seq, int result)
{
	if (result > 0 || result < -4095)
		result = -EIO; /* 0 or -errno, whatever a backend said: the engine checks */
	memset(m, 0, sizeof(*m));
	m->h.op = op;
	m->h.len = (uint32_t)priv_msg_len(op, true);
	m->h.seq = seq;
	m->h.result = result;
}

struct dump_ctx {
	struct privd *d;
	uint32_t seq;
};

static int dump_one(void *arg, const struct wgdev_peer_info *pi)
{
	struct dump_ctx *ctx = arg;
	union priv_msg m;
	struct priv_peer_info *w = &m.dump.p;

	answer_init(&m, PRIV_DUMP_PEER, ctx->seq, 0);
	memcpy(w->pubkey, pi->pubkey, WG_KEY_LEN);
	w->last_handshake_s = pi->last_handshake_s;
	w->rx_bytes = pi->rx_bytes;
	w->tx_bytes = pi->tx_bytes;
	priv_copy_endpoint(&w->endpoint, &pi->endpoint);
	w->keepalive_s = pi->keepalive_s;
	w->n_allowed = pi->n_allowed;
	for (unsigned i = 0; i < pi->n_allowed && i < PROV_MAX_ALLOWED; i++)
		priv_copy_cidr(&w->allowed[i], &pi->allowed[i]);
	send_answer(ctx->d, &m, -1);
	return 0;
}

static void info_to_wire(const struct wgdev_info *info, struct priv_info *w)
{
	memcpy(w->public_key, info->public_key, WG_KEY_LEN);
	w->has_public_key = info->has_public_key;
	w->listen_port = info->listen_port;
	w->ifindex = info->ifindex;
}

/* Read the device's key; keep the old one unless a new one was read. */
static int load_key(struct privd *d, struct wgdev_info *info)
{
	uint8_t tmp[WG_KEY_LEN];
	int ret = wgdev_get_info(d->dev, info, tmp);

	if (ret == 0 && sodium_is_zero(tmp, WG_KEY_LEN))
		ret = -EINVAL; /* wg(8)'s "no key" */
	if (ret == 0) {
		memcpy(d->key, tmp, WG_KEY_LEN);
		d->has_key = true;
	}
	sodium_memzero(tmp, sizeof(tmp));
	/* Say which key is held now: the device's public key may be a newer one. */
	info->has_public_key = d->has_key && crypto_scalarmult_base(info->public_key, d->key) == 0;
	if (!info->has_public_key)
		memset(info->public_key, 0, WG_KEY_LEN);
	return ret;
}

/* The capture socket is opened at start, while CAP_NET_RAW is still there; the first request
 * for it takes it (the engine asks once, at start). */
static int capture(struct privd *d, const struct priv_ifname *n)
{
	int fd;

	if (!d->capture_if || strcmp(n->name, d->capture_if) != 0) {
		log_warnx("priv: refusing a capture on %s (configured: %s)", n->name,
			  d->capture_if && *d->capture_if ? d->capture_if : "none");
		return -EPERM;
	}
	if (d->capture_fd < 0)
		return d->capture_err;
	fd = d->capture_fd;
	d->capture_fd = -1;
	d->capture_err = -EBUSY; /* handed over already */
	return fd;
}

static void capture_prepare(struct privd *d)
{
	struct wgdev_info info;
	int ret;

	d->capture_fd = -1;
	d->capture_err = -EPERM;
	if (!d->capture_if)
		return;
	ret = wgdev_get_info(d->dev, &info, NULL);
	if (ret == 0 && !info.listen_port)
		ret = -EADDRNOTAVAIL;
	if (ret == 0)
		ret = capture_open(d->capture_if, info.listen_port);
	if (ret >= 0)
		d->capture_fd = ret;
	else
		d->capture_err = ret;
}

/* Keep only what device operations need: uid 0 (the UAPI socket is root's), CAP_NET_ADMIN
 * (netlink), no_new_privs. Nothing to drop when not started as root (tests). */
static void drop_to_net_admin(void)
{
	int ret;

	if (geteuid() != 0)
		return;
	ret = sandbox_switch_user(0, 0, CAP_NET_ADMIN);
	if (ret < 0) {
		errno = -ret;
		fatal("priv: cannot keep CAP_NET_ADMIN alone");
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fatal("priv: PR_SET_NO_NEW_PRIVS");
}

static void serve_one(struct privd *d, union priv_msg *req)
{
	uint32_t op = req->h.op, seq = req->h.seq;
	struct wgdev_info info = { .has_public_key = false };
	struct wgdev_peer p;
	struct dump_ctx dc = { .d = d, .seq = seq };
	union priv_msg ans;
	int ret, fd = -1;

	switch (op) {
	case PRIV_INSTALL:
	case PRIV_UPDATE:
		priv_peer_from_wire(&req->peer.p, &p);
		ret = op == PRIV_INSTALL ? wgdev_install(d->dev, &p) : wgdev_update(d->dev, &p);
		sodium_memzero(&p, sizeof(p));
		answer_init(&ans, op, seq, ret);
		break;
	case PRIV_REMOVE: {
		const struct priv_remove *r = &req->remove.r;

		answer_init(&ans, op, seq, wgdev_remove(d->dev, r->keys, r->n));
		break;
	}
	case PRIV_DUMP:
		ret = wgdev_dump(d->dev, dump_one, &dc);
		answer_init(&ans, op, seq, ret);
		break;
	case PRIV_GET_INFO:
	case PRIV_RELOAD_KEY:
		if (op == PRIV_RELOAD_KEY)
			ret = load_key(d, &info);
		else
			ret = wgdev_get_info(d->dev, &info, NULL);
		answer_init(&ans, op, seq, ret);
		if (ret == 0 || op == PRIV_RELOAD_KEY)
			info_to_wire(&info, &ans.info.i);
		break;
	case PRIV_DH:
		answer_init(&ans, op, seq, -ENOKEY);
		/* A low-order point gives -EINVAL; the result stays answer_init's zeros. */
		if (d->has_key)
			ans.h.result = noise_dh_local(d->key, ans.key.k.key, req->key.k.key);
		break;
	case PRIV_CAPTURE_OPEN:
		ret = capture(d, &req->ifname.n);
		if (ret >= 0)
			fd = ret;
		answer_init(&ans, op, seq, ret < 0 ? ret : 0);
		break;
	default:
		fatalx("priv: op %u", op); /* checked by the caller */
	}
	send_answer(d, &ans, fd);
	if (fd >= 0)
		close(fd);
	sodium_memzero(&ans, sizeof(ans));
}

int priv_serve(int fd, struct wgdev *dev, const char *capture_if)
{
	struct privd d = { .fd = fd, .dev = dev, .capture_if = capture_if };
	char why[PRIV_WHY_LEN];
	struct wgdev_info info;
	union priv_msg m;
	int ret;

	if (sodium_init() < 0)
		fatalx("priv: libsodium failed to initialise");
	d.key = key_mem = sodium_malloc(WG_KEY_LEN);
	if (!d.key)
		fatalx("priv: out of (locked) memory for the key");
	atexit(key_wipe);
	ret = load_key(&d, &info);
	if (ret < 0)
		log_debug("priv: no private key from %s yet: %s", dev->ifname, strerror(-ret));
	capture_prepare(&d);
	drop_to_net_admin();
	for (;;) {
		struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n = priv_recvmsg(fd, &mh, 0);

		if (n >= 0 && (mh.msg_flags & MSG_TRUNC))
			n = (ssize_t)sizeof(m) + 1; /* longer than any message: priv_check_request says so */
		if (n == 0)
			break; /* the engine is done */
		if (n < 0)
			fatal("priv: reading from the engine");
		if (priv_check_request(&m, (size_t)n, why) < 0)
			fatalx("priv: %s", why);
		serve_one(&d, &m);
		sodium_memzero(&m, sizeof(m));
	}
	key_wipe();
	return 0;
}
