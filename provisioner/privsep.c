/* SPDX-License-Identifier: MIT */
/* The engine's end of the channel to the privileged half (priv.c; prov.h has the message
 * contract): priv_start forks it, privsep_ops stands in for the device, priv_dh for the
 * device's private key in the Noise responder, priv_capture_open for the AF_PACKET socket.
 * Every call is synchronous, a request then its answer(s), as the device calls it replaces
 * were: no state but a sequence number. The engine trusts the privileged side with its
 * device, not with its bytes: an answer of the wrong size, op or sequence, a stray
 * descriptor, or the channel closing ends the engine (fatalx), as a lie ends the other
 * side. Never sends anything but zeroed memory with the fields set. */
#include <errno.h>
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

		/* The engine decides when to stop: it closes the channel, we see EOF. A SIGHUP
		 * (a reload, a terminal's hangup) is the engine's to answer. */
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGHUP, &sa, NULL);
		sigaction(SIGPIPE, &sa, NULL);
		close(sv[0]);
		ret = priv_serve(sv[1], dev, capture_if);
		wgdev_close(dev);
		_exit(ret == 0 ? 0 : 1);
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
	m->h.len = (uint32_t)priv_msg_len(op, false);
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

	n = priv_recvmsg(p->fd, &mh, MSG_CMSG_CLOEXEC);
	if (n <= 0)
		fatalx("priv: the privileged process is gone");
	*fd = -1;
	c = CMSG_FIRSTHDR(&mh);
	if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
	    c->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(fd, CMSG_DATA(c), sizeof(int));
	want = (uint32_t)priv_msg_len(m->h.op, true);
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

static int privsep_set(void *impl, const struct wgdev_peer *p, uint32_t op)
{
	union priv_msg m;
	int ret;

	memset(&m, 0, sizeof(m));
	if (p->n_allowed > PROV_MAX_ALLOWED)
		return -E2BIG; /* the privileged side would take it for a lie */
	priv_peer_to_wire(p, &m.peer.p);
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
		priv_copy_endpoint(&pi.endpoint, &w->endpoint);
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
