/* SPDX-License-Identifier: MIT */
/* The privileged half of the provisioner and the engine's end of its channel (prov.h has the
 * message contract). The privileged process owns the device and its private key; it reads one
 * fixed-size request at a time from a SOCK_SEQPACKET socketpair, checks everything it can
 * (size, op, every range, every reserved byte), does one device operation, one X25519 or one
 * socket() for the capture, and answers. It treats a malformed request as an attack: fatalx,
 * which logs and exits; the engine then loses its channel and exits too.
 *
 * It must never parse bytes from the network (only the device's own replies, in wgnl.c and
 * uapi.c), never return the private key, and never answer with memory it did not zero first.
 * The key lives in sodium_malloc'ed memory (guarded, locked) and is wiped on every exit.
 *
 * The engine's side (privsep_ops, priv_dh) is synchronous: a request, then its answer(s), as
 * the device calls it replaces were. An answer that lies ends the engine (fatalx). */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "prov.h"

struct peer_msg {
	struct priv_hdr h;
	struct priv_peer p;
};
struct remove_msg {
	struct priv_hdr h;
	struct priv_remove r;
};
struct dump_msg {
	struct priv_hdr h;
	struct priv_peer_info p;
};
struct info_msg {
	struct priv_hdr h;
	struct priv_info i;
};
struct key_msg {
	struct priv_hdr h;
	struct priv_key k;
};
struct ifname_msg {
	struct priv_hdr h;
	struct priv_ifname n;
};

union priv_msg {
	struct priv_hdr h;
	struct peer_msg peer;
	struct remove_msg remove;
	struct dump_msg dump;
	struct info_msg info;
	struct key_msg key;
	struct ifname_msg ifname;
};

/* No padding: every byte of a message is a field someone checks or sets. */
_Static_assert(sizeof(struct priv_hdr) == 16, "priv_hdr padding");
_Static_assert(sizeof(struct prov_cidr) == 18, "prov_cidr padding");
_Static_assert(sizeof(struct priv_peer) == 2 * WG_KEY_LEN + 8 + sizeof(struct sockaddr_storage) +
		       PROV_MAX_ALLOWED * sizeof(struct prov_cidr),
	       "priv_peer padding");
_Static_assert(sizeof(struct priv_remove) == 8 + PRIV_REMOVE_MAX * WG_KEY_LEN,
	       "priv_remove padding");
_Static_assert(sizeof(struct priv_peer_info) == WG_KEY_LEN + 24 + sizeof(struct sockaddr_storage) +
		       8 + PROV_MAX_ALLOWED * sizeof(struct prov_cidr),
	       "priv_peer_info padding");
_Static_assert(sizeof(struct priv_info) == WG_KEY_LEN + 8, "priv_info padding");
_Static_assert(sizeof(struct peer_msg) == 16 + sizeof(struct priv_peer), "peer_msg padding");
_Static_assert(sizeof(struct remove_msg) == 16 + sizeof(struct priv_remove), "remove_msg padding");
_Static_assert(sizeof(struct dump_msg) == 16 + sizeof(struct priv_peer_info), "dump_msg padding");
_Static_assert(sizeof(struct info_msg) == 16 + sizeof(struct priv_info), "info_msg padding");
_Static_assert(sizeof(struct ifname_msg) == 16 + IF_NAMESIZE, "ifname_msg padding");

static const uint32_t request_len[PRIV_OP_MAX] = {
	[PRIV_INSTALL] = sizeof(struct peer_msg),
	[PRIV_UPDATE] = sizeof(struct peer_msg),
	[PRIV_REMOVE] = sizeof(struct remove_msg),
	[PRIV_DUMP] = sizeof(struct priv_hdr),
	[PRIV_GET_INFO] = sizeof(struct priv_hdr),
	[PRIV_DH] = sizeof(struct key_msg),
	[PRIV_RELOAD_KEY] = sizeof(struct priv_hdr),
	[PRIV_CAPTURE_OPEN] = sizeof(struct ifname_msg),
};

static const uint32_t answer_len[PRIV_OP_MAX] = {
	[PRIV_INSTALL] = sizeof(struct priv_hdr),
	[PRIV_UPDATE] = sizeof(struct priv_hdr),
	[PRIV_REMOVE] = sizeof(struct priv_hdr),
	[PRIV_DUMP] = sizeof(struct priv_hdr),
	[PRIV_GET_INFO] = sizeof(struct info_msg),
	[PRIV_DH] = sizeof(struct key_msg),
	[PRIV_RELOAD_KEY] = sizeof(struct info_msg),
	[PRIV_CAPTURE_OPEN] = sizeof(struct priv_hdr),
};

/* Only the bytes that mean something, into zeroed memory: the rest of a sockaddr_storage or
 * of an IPv4 prefix's address may hold whatever the writer's stack held. */
static void copy_endpoint(struct sockaddr_storage *dst, const struct sockaddr_storage *src)
{
	memset(dst, 0, sizeof(*dst));
	if (src->ss_family == AF_INET)
		memcpy(dst, src, sizeof(struct sockaddr_in));
	else if (src->ss_family == AF_INET6)
		memcpy(dst, src, sizeof(struct sockaddr_in6));
}

static void copy_cidr(struct prov_cidr *dst, const struct prov_cidr *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->family = src->family;
	dst->bits = src->bits;
	memcpy(dst->addr, src->addr, src->family == AF_INET ? 4 : 16);
}

/* ---- the privileged process ---- */

struct privd {
	int fd;
	struct wgdev *dev;
	const char *capture_if;
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

static void check_cidr(const struct prov_cidr *c)
{
	if (c->family == AF_INET && c->bits <= 32 && sodium_is_zero(c->addr + 4, 12))
		return;
	if (c->family == AF_INET6 && c->bits <= 128)
		return;
	fatalx("priv: allowed IP with family %u, /%u", c->family, c->bits);
}

static void check_endpoint(const struct sockaddr_storage *ss)
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
		fatalx("priv: endpoint of family %u", ss->ss_family);
	}
	if (!sodium_is_zero(b + used, sizeof(*ss) - used))
		fatalx("priv: endpoint of family %u with bytes past its end", ss->ss_family);
}

/* A request's peer into the device's form, or fatalx. */
static void peer_from_wire(const struct priv_peer *w, struct wgdev_peer *p)
{
	if (w->has_psk > 1 || (!w->has_psk && !sodium_is_zero(w->psk, WG_KEY_LEN)))
		fatalx("priv: psk flag %u", w->has_psk);
	if (w->reserved)
		fatalx("priv: reserved bytes set in a peer");
	if (w->keepalive_s < -1 || w->keepalive_s > 65535)
		fatalx("priv: keepalive %d", (int)w->keepalive_s);
	if (w->n_allowed > PROV_MAX_ALLOWED)
		fatalx("priv: %u allowed IPs (at most %d)", w->n_allowed, PROV_MAX_ALLOWED);
	check_endpoint(&w->endpoint);
	for (unsigned i = 0; i < PROV_MAX_ALLOWED; i++) {
		if (i < w->n_allowed)
			check_cidr(&w->allowed[i]);
		else if (!sodium_is_zero((const uint8_t *)&w->allowed[i], sizeof(w->allowed[i])))
			fatalx("priv: allowed IP slot %u set past n_allowed %u", i, w->n_allowed);
	}
	memset(p, 0, sizeof(*p));
	memcpy(p->pubkey, w->pubkey, WG_KEY_LEN);
	p->has_psk = w->has_psk;
	memcpy(p->psk, w->psk, WG_KEY_LEN);
	p->endpoint = w->endpoint;
	p->keepalive_s = w->keepalive_s;
	p->n_allowed = w->n_allowed;
	memcpy(p->allowed, w->allowed, sizeof(p->allowed));
}

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
	memset(m, 0, sizeof(*m));
	m->h.op = op;
	m->h.len = op == PRIV_DUMP_PEER ? sizeof(struct dump_msg) : answer_len[op];
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
	copy_endpoint(&w->endpoint, &pi->endpoint);
	w->keepalive_s = pi->keepalive_s;
	w->n_allowed = pi->n_allowed;
	for (unsigned i = 0; i < pi->n_allowed && i < PROV_MAX_ALLOWED; i++)
		copy_cidr(&w->allowed[i], &pi->allowed[i]);
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

static int capture(struct privd *d, const struct priv_ifname *n)
{
	struct wgdev_info info;
	size_t len = strnlen(n->name, IF_NAMESIZE);
	int ret;

	if (len == 0 || len == IF_NAMESIZE ||
	    !sodium_is_zero((const uint8_t *)n->name + len, IF_NAMESIZE - len))
		fatalx("priv: interface name not NUL-terminated or not zero-padded");
	if (!d->capture_if || strcmp(n->name, d->capture_if) != 0) {
		log_warnx("priv: refusing a capture on %s (configured: %s)", n->name,
			  d->capture_if && *d->capture_if ? d->capture_if : "none");
		return -EPERM;
	}
	ret = wgdev_get_info(d->dev, &info, NULL);
	if (ret < 0)
		return ret;
	if (!info.listen_port)
		return -EADDRNOTAVAIL;
	return capture_open(n->name, info.listen_port);
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
		peer_from_wire(&req->peer.p, &p);
		ret = op == PRIV_INSTALL ? wgdev_install(d->dev, &p) : wgdev_update(d->dev, &p);
		sodium_memzero(&p, sizeof(p));
		answer_init(&ans, op, seq, ret);
		break;
	case PRIV_REMOVE: {
		const struct priv_remove *r = &req->remove.r;

		if (r->n == 0 || r->n > PRIV_REMOVE_MAX || r->reserved ||
		    !sodium_is_zero(r->keys[r->n], (PRIV_REMOVE_MAX - r->n) * WG_KEY_LEN))
			fatalx("priv: remove of %u keys", r->n);
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
		if (d->has_key) {
			ret = crypto_scalarmult(ans.key.k.key, d->key, req->key.k.key);
			ans.h.result = ret == 0 ? 0 : -EINVAL; /* low order: an all-zero point */
			if (ret)
				sodium_memzero(ans.key.k.key, WG_KEY_LEN);
		}
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
	for (;;) {
		ssize_t n = recv(fd, &m, sizeof(m), MSG_TRUNC);
		uint32_t op;

		if (n == 0)
			break; /* the engine is done */
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fatal("priv: reading from the engine");
		}
		if ((size_t)n < sizeof(m.h) || (size_t)n > sizeof(m))
			fatalx("priv: request of %zd bytes", n);
		op = m.h.op;
		if (op == 0 || op >= PRIV_OP_MAX)
			fatalx("priv: request op %u", op);
		if ((size_t)n != request_len[op] || m.h.len != (uint32_t)n || m.h.result != 0)
			fatalx("priv: request op %u of %zd bytes (len %u, result %d; expected %u)",
			       op, n, m.h.len, (int)m.h.result, request_len[op]);
		serve_one(&d, &m);
		sodium_memzero(&m, sizeof(m));
	}
	key_wipe();
	wgdev_close(dev);
	return 0;
}

/* ---- the engine's end ---- */

struct priv {
	int fd;
	pid_t pid;
	uint32_t seq;
	struct wgdev_ops ops; /* privsep_ops named after the backend the child has */
};

int priv_attach(struct priv **out, int fd, pid_t pid)
{
	struct priv *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->fd = fd;
	p->pid = pid;
	p->ops = privsep_ops;
	*out = p;
	return 0;
}

int priv_start(struct priv **out, struct wgdev *dev, const char *capture_if)
{
	int sv[2], ret;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		close(sv[0]);
		close(sv[1]);
		return ret;
	}
	if (pid == 0) {
		struct sigaction sa = { .sa_handler = SIG_IGN };

		/* The engine decides when to stop: it closes the channel, we see EOF. */
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGPIPE, &sa, NULL);
		close(sv[0]);
		_exit(priv_serve(sv[1], dev, capture_if) == 0 ? 0 : 1);
	}
	close(sv[1]);
	ret = priv_attach(out, sv[0], pid);
	if (ret < 0) {
		close(sv[0]);
		(void)waitpid(pid, NULL, 0);
		return ret;
	}
	(*out)->ops.name = dev->ops->name; /* a static string: the same in both processes */
	return 0;
}

bool priv_is_gone(struct priv *p)
{
	struct pollfd pfd = { .fd = p->fd, .events = POLLIN };

	/* No answer is due: readable means closed or lying. A failed poll() is no news. */
	return poll(&pfd, 1, 0) > 0;
}

pid_t priv_pid(const struct priv *p)
{
	return p->pid;
}

void priv_close(struct priv *p)
{
	int status;

	if (!p)
		return;
	close(p->fd);
	while (p->pid > 0 && waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
		;
	free(p);
}

static void request(struct priv *p, union priv_msg *m, uint32_t op)
{
	ssize_t n;

	m->h.op = op;
	m->h.len = request_len[op];
	m->h.seq = ++p->seq;
	m->h.result = 0;
	do
		n = send(p->fd, m, m->h.len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)m->h.len)
		fatal("priv: the privileged process is gone");
}

/* The next answer to the last request, checked; *fd gets a passed descriptor (or -1). */
static void answer(struct priv *p, union priv_msg *m, int *fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = m, .iov_len = sizeof(*m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	uint32_t want;
	ssize_t n;

	do
		n = recvmsg(p->fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		fatalx("priv: the privileged process is gone");
	*fd = -1;
	c = CMSG_FIRSTHDR(&mh);
	if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
	    c->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(fd, CMSG_DATA(c), sizeof(int));
	want = 0;
	if (m->h.op == PRIV_DUMP_PEER)
		want = sizeof(struct dump_msg);
	else if (m->h.op > 0 && m->h.op < PRIV_OP_MAX)
		want = answer_len[m->h.op];
	/* A descriptor comes with a successful CAPTURE_OPEN, and with nothing else. */
	if ((size_t)n < sizeof(m->h) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    (size_t)n != want || m->h.len != want || m->h.seq != p->seq || m->h.result > 0 ||
	    m->h.result < -4095 || (c && *fd < 0) ||
	    (*fd >= 0) != (m->h.op == PRIV_CAPTURE_OPEN && m->h.result == 0))
		fatalx("priv: malformed answer (op %u, %zd bytes)", m->h.op, n);
}

/* One request with one answer of the same op; returns its result. */
static int call(struct priv *p, union priv_msg *m, uint32_t op, int *fd_out)
{
	int fd;

	request(p, m, op);
	answer(p, m, &fd);
	if (m->h.op != op)
		fatalx("priv: answer op %u to request op %u", m->h.op, op);
	if (fd_out)
		*fd_out = fd;
	return m->h.result;
}

static void peer_to_wire(const struct wgdev_peer *p, struct priv_peer *w)
{
	w->has_psk = p->has_psk;
	if (p->has_psk)
		memcpy(w->psk, p->psk, WG_KEY_LEN);
	memcpy(w->pubkey, p->pubkey, WG_KEY_LEN);
	w->keepalive_s = p->keepalive_s;
	copy_endpoint(&w->endpoint, &p->endpoint);
	w->n_allowed = (uint8_t)p->n_allowed; /* <= PROV_MAX_ALLOWED: checked by the caller */
	for (unsigned i = 0; i < p->n_allowed; i++)
		copy_cidr(&w->allowed[i], &p->allowed[i]);
}

static int privsep_set(void *impl, const struct wgdev_peer *p, uint32_t op)
{
	union priv_msg m;
	int ret;

	memset(&m, 0, sizeof(m));
	if (p->n_allowed > PROV_MAX_ALLOWED)
		return -E2BIG; /* the privileged side would take it for a lie */
	peer_to_wire(p, &m.peer.p);
	ret = call(impl, &m, op, NULL);
	sodium_memzero(&m, sizeof(m));
	return ret;
}

static int privsep_install(void *impl, const struct wgdev_peer *p)
{
	return privsep_set(impl, p, PRIV_INSTALL);
}

static int privsep_update(void *impl, const struct wgdev_peer *p)
{
	return privsep_set(impl, p, PRIV_UPDATE);
}

static int privsep_remove(void *impl, const uint8_t (*keys)[WG_KEY_LEN], unsigned n)
{
	union priv_msg m;
	int ret = 0;

	while (n && ret == 0) {
		unsigned k = n < PRIV_REMOVE_MAX ? n : PRIV_REMOVE_MAX;

		memset(&m, 0, sizeof(m));
		m.remove.r.n = k;
		memcpy(m.remove.r.keys, keys, k * WG_KEY_LEN);
		ret = call(impl, &m, PRIV_REMOVE, NULL);
		keys += k;
		n -= k;
	}
	return ret;
}

static int privsep_dump(void *impl, wgdev_peer_fn fn, void *arg)
{
	union priv_msg m;
	int ret = 0, fd;

	memset(&m, 0, sizeof(m));
	request(impl, &m, PRIV_DUMP);
	for (;;) {
		struct wgdev_peer_info pi;
		const struct priv_peer_info *w = &m.dump.p;

		answer(impl, &m, &fd);
		if (m.h.op == PRIV_DUMP)
			return ret ? ret : m.h.result;
		if (m.h.op != PRIV_DUMP_PEER)
			fatalx("priv: answer op %u in a dump", m.h.op);
		if (ret)
			continue; /* fn said stop: drain the rest */
		memset(&pi, 0, sizeof(pi));
		memcpy(pi.pubkey, w->pubkey, WG_KEY_LEN);
		pi.last_handshake_s = w->last_handshake_s;
		pi.rx_bytes = w->rx_bytes;
		pi.tx_bytes = w->tx_bytes;
		copy_endpoint(&pi.endpoint, &w->endpoint);
		pi.keepalive_s = w->keepalive_s > 65535 ? 65535 : (uint16_t)w->keepalive_s;
		pi.n_allowed = w->n_allowed;
		memcpy(pi.allowed, w->allowed, sizeof(pi.allowed));
		ret = fn(arg, &pi);
	}
}

static void info_from_wire(const struct priv_info *w, struct wgdev_info *info)
{
	memset(info, 0, sizeof(*info));
	memcpy(info->public_key, w->public_key, WG_KEY_LEN);
	info->has_public_key = w->has_public_key != 0;
	info->listen_port = w->listen_port;
	info->ifindex = w->ifindex;
}

static int privsep_get_info(void *impl, struct wgdev_info *info, uint8_t *private_key)
{
	union priv_msg m;
	int ret;

	if (private_key)
		return -EPERM; /* it stays in the privileged process: use priv_dh */
	memset(&m, 0, sizeof(m));
	ret = call(impl, &m, PRIV_GET_INFO, NULL);
	info_from_wire(&m.info.i, info);
	return ret;
}

static void privsep_close(void *impl)
{
	priv_close(impl);
}

const struct wgdev_ops privsep_ops = {
	.name = "privsep",
	.install = privsep_install,
	.update = privsep_update,
	.remove = privsep_remove,
	.dump = privsep_dump,
	.get_info = privsep_get_info,
	.close = privsep_close,
};

int priv_open_device(struct wgdev **out, struct priv *p, const char *ifname)
{
	struct wgdev *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->ops = &p->ops;
	d->impl = p;
	snprintf(d->ifname, sizeof(d->ifname), "%s", ifname);
	*out = d;
	return 0;
}

int priv_dh(void *arg, uint8_t out[static WG_KEY_LEN], const uint8_t pub[static WG_KEY_LEN])
{
	union priv_msg m;
	int ret;

	memset(&m, 0, sizeof(m));
	memcpy(m.key.k.key, pub, WG_KEY_LEN);
	ret = call(arg, &m, PRIV_DH, NULL);
	if (ret == 0)
		memcpy(out, m.key.k.key, WG_KEY_LEN);
	sodium_memzero(&m, sizeof(m));
	return ret;
}

int priv_reload_key(struct priv *p, struct wgdev_info *info)
{
	union priv_msg m;
	int ret;

	memset(&m, 0, sizeof(m));
	ret = call(p, &m, PRIV_RELOAD_KEY, NULL);
	info_from_wire(&m.info.i, info);
	return ret;
}

int priv_capture_open(struct priv *p, const char *ifname)
{
	union priv_msg m;
	int ret, fd;

	memset(&m, 0, sizeof(m));
	if (!ifname || !*ifname || strlen(ifname) >= IF_NAMESIZE)
		return -EINVAL;
	strcpy(m.ifname.n.name, ifname);
	ret = call(p, &m, PRIV_CAPTURE_OPEN, &fd);
	return ret < 0 ? ret : fd; /* answer() made sure there is one on success */
}
