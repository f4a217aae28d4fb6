/* SPDX-License-Identifier: MIT */
/* Unit tests for the privileged half (provisioner/priv.c) through prov.h.
 *
 * Each test forks a child that runs priv_serve() against a fake device: a struct wgdev_ops
 * of this file that records every call in shared memory (MAP_SHARED, so the parent sees what
 * the child did) and answers from it. The parent is the engine: privsep_ops, priv_dh and the
 * rest for the round trips; raw messages on the socket for the lies and for the key hunt.
 * The child's stderr goes into a pipe, so a test can read the line it logged before it died.
 * The timing print at the end is information for the report, not an assertion. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "prov.h"

static char cur_case[96] = "?";

#define CASE(...) snprintf(cur_case, sizeof(cur_case), __VA_ARGS__)

#include "expect.h"

enum { LISTEN_PORT = 51820, IFINDEX = 7, DUMP_PEERS = 5, LOG_MAX = 4096 };

/* ---- the fake device, in memory the child and the parent share ---- */

struct fake {
	uint8_t key[WG_KEY_LEN];   /* the device's private key */
	int key_ret;               /* what get_info with a key buffer returns */
	int install_ret;
	unsigned installs, updates, remove_calls, dumps, get_infos, closes;
	struct wgdev_peer last;    /* the last installed or updated peer */
	unsigned n_removed;
	uint8_t removed[256][WG_KEY_LEN];
	unsigned remove_sizes[8];
};

static struct fake *fk;

static int fake_set(struct wgdev_peer *dst, const struct wgdev_peer *p, unsigned *count)
{
	(*count)++;
	*dst = *p;
	return fk->install_ret;
}

static int fake_install(void *impl, const struct wgdev_peer *p)
{
	return fake_set(&fk->last, p, &fk->installs);
}

static int fake_update(void *impl, const struct wgdev_peer *p)
{
	return fake_set(&fk->last, p, &fk->updates);
}

static int fake_remove(void *impl, const uint8_t (*keys)[WG_KEY_LEN], unsigned n)
{
	if (fk->remove_calls < 8)
		fk->remove_sizes[fk->remove_calls] = n;
	fk->remove_calls++;
	for (unsigned i = 0; i < n && fk->n_removed < 256; i++)
		memcpy(fk->removed[fk->n_removed++], keys[i], WG_KEY_LEN);
	return 0;
}

static void dump_peer(unsigned i, struct wgdev_peer_info *pi)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&pi->endpoint;

	memset(pi, 0, sizeof(*pi));
	memset(pi->pubkey, 0x10 + i, WG_KEY_LEN);
	pi->last_handshake_s = 1700000000 + i;
	pi->rx_bytes = 1000 * i;
	pi->tx_bytes = 2000 * i + 1;
	sin->sin_family = AF_INET;
	sin->sin_port = htons(40000 + i);
	sin->sin_addr.s_addr = htonl(0xc0000200 + i);
	pi->keepalive_s = (uint16_t)(i * 5);
	pi->n_allowed = i == 3 ? 11 : 1; /* more than PROV_MAX_ALLOWED: the first 8 are kept */
	for (unsigned a = 0; a < pi->n_allowed && a < PROV_MAX_ALLOWED; a++) {
		pi->allowed[a].family = AF_INET;
		pi->allowed[a].bits = 32;
		pi->allowed[a].addr[0] = 10;
		pi->allowed[a].addr[3] = (uint8_t)(i * 10 + a);
	}
}

static int fake_dump(void *impl, wgdev_peer_fn fn, void *arg)
{
	fk->dumps++;
	for (unsigned i = 0; i < DUMP_PEERS; i++) {
		struct wgdev_peer_info pi;
		int ret;

		dump_peer(i, &pi);
		ret = fn(arg, &pi);
		if (ret)
			return ret;
	}
	return 0;
}

static int fake_get_info(void *impl, struct wgdev_info *info, uint8_t *private_key)
{
	fk->get_infos++;
	memset(info, 0, sizeof(*info));
	info->has_public_key = crypto_scalarmult_base(info->public_key, fk->key) == 0;
	info->listen_port = LISTEN_PORT;
	info->ifindex = IFINDEX;
	if (private_key && fk->key_ret == 0)
		memcpy(private_key, fk->key, WG_KEY_LEN);
	return private_key ? fk->key_ret : 0;
}

static void fake_close(void *impl)
{
	fk->closes++;
}

static const struct wgdev_ops fake_ops = {
	.name = "fake",
	.install = fake_install,
	.update = fake_update,
	.remove = fake_remove,
	.dump = fake_dump,
	.get_info = fake_get_info,
	.close = fake_close,
};

/* ---- a privileged child ---- */

struct child {
	pid_t pid;
	int fd;      /* the engine's end */
	int log_fd;  /* the child's stderr */
	struct priv *priv;
	struct wgdev *dev;
};

static void child_start(struct child *c)
{
	int sv[2], lp[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(pipe2(lp, O_CLOEXEC), 0);
	c->pid = fork();
	assert_true(c->pid >= 0);
	if (c->pid == 0) {
		struct wgdev *dev = calloc(1, sizeof(*dev));

		close(sv[0]);
		close(lp[0]);
		dup2(lp[1], STDERR_FILENO);
		if (!dev)
			_exit(3);
		dev->ops = &fake_ops;
		strcpy(dev->ifname, "wgfake");
		int ret = priv_serve(sv[1], dev, "lo");

		wgdev_close(dev);
		_exit(ret == 0 ? 0 : 2);
	}
	close(sv[1]);
	close(lp[1]);
	c->fd = sv[0];
	c->log_fd = lp[0];
	assert_int_equal(priv_attach(&c->priv, c->fd, 0), 0);
	assert_int_equal(priv_open_device(&c->dev, c->priv, "wgfake"), 0);
}

/* Close the channel (or not, when the child died already) and return its wait status (0
 * when c->pid is 0: reaped already); log gets what it wrote on stderr. */
static int child_end(struct child *c, char log[static LOG_MAX])
{
	size_t len = 0;
	ssize_t n;
	int status = 0;

	wgdev_close(c->dev); /* closes c->fd: the child sees EOF */
	while ((n = read(c->log_fd, log + len, LOG_MAX - 1 - len)) > 0)
		len += (size_t)n;
	log[len] = '\0';
	close(c->log_fd);
	if (c->pid > 0)
		assert_int_equal(waitpid(c->pid, &status, 0), c->pid);
	return status;
}

static void fake_reset(void)
{
	memset(fk, 0, sizeof(*fk));
	randombytes_buf(fk->key, sizeof(fk->key));
}

static int setup(void **state)
{
	fk = mmap(NULL, sizeof(*fk), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return fk == MAP_FAILED ? -1 : 0;
}

static int teardown(void **state)
{
	munmap(fk, sizeof(*fk));
	return 0;
}

/* ---- round trips through privsep_ops ---- */

static void sample_peer(struct wgdev_peer *p)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&p->endpoint;

	memset(p, 0, sizeof(*p));
	randombytes_buf(p->pubkey, WG_KEY_LEN);
	p->has_psk = true;
	randombytes_buf(p->psk, WG_KEY_LEN);
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(51000);
	sin6->sin6_addr.s6_addr[0] = 0xfd;
	sin6->sin6_addr.s6_addr[15] = 2;
	p->keepalive_s = 25;
	p->n_allowed = 2;
	assert_int_equal(cidr_parse("10.64.0.2/32", &p->allowed[0]), 0);
	assert_int_equal(cidr_parse("fd00::/64", &p->allowed[1]), 0);
}

static bool peer_equal(const struct wgdev_peer *a, const struct wgdev_peer *b)
{
	return !memcmp(a->pubkey, b->pubkey, WG_KEY_LEN) && a->has_psk == b->has_psk &&
	       !memcmp(a->psk, b->psk, WG_KEY_LEN) &&
	       !memcmp(&a->endpoint, &b->endpoint, sizeof(a->endpoint)) &&
	       a->keepalive_s == b->keepalive_s && a->n_allowed == b->n_allowed &&
	       !memcmp(a->allowed, b->allowed, a->n_allowed * sizeof(a->allowed[0]));
}

struct dump_seen {
	unsigned n, stop_at;
	bool ok;
};

static int dump_check(void *arg, const struct wgdev_peer_info *pi)
{
	struct dump_seen *s = arg;
	struct wgdev_peer_info want;

	dump_peer(s->n, &want);
	if (memcmp(pi->pubkey, want.pubkey, WG_KEY_LEN) ||
	    pi->last_handshake_s != want.last_handshake_s || pi->rx_bytes != want.rx_bytes ||
	    pi->tx_bytes != want.tx_bytes ||
	    memcmp(&pi->endpoint, &want.endpoint, sizeof(want.endpoint)) ||
	    pi->keepalive_s != want.keepalive_s || pi->n_allowed != want.n_allowed ||
	    memcmp(pi->allowed, want.allowed, sizeof(want.allowed)))
		s->ok = false;
	s->n++;
	return s->n == s->stop_at ? 42 : 0;
}

static void test_round_trips(void **state)
{
	uint8_t keys[100][WG_KEY_LEN], pub[WG_KEY_LEN], out[WG_KEY_LEN], want[WG_KEY_LEN];
	uint8_t priv_key[WG_KEY_LEN];
	struct wgdev_peer p, q;
	struct wgdev_info info;
	struct dump_seen seen;
	char log[LOG_MAX];
	struct child c;
	int fd;

	fake_reset();
	child_start(&c);

	CASE("install");
	sample_peer(&p);
	EXPECT_EQ(wgdev_install(c.dev, &p), 0);
	EXPECT_EQ(fk->installs, 1);
	EXPECT(peer_equal(&fk->last, &p));

	CASE("update: IPv4 endpoint, no psk, keepalive -1, no allowed IPs");
	memset(&q, 0, sizeof(q));
	memcpy(q.pubkey, p.pubkey, WG_KEY_LEN);
	((struct sockaddr_in *)&q.endpoint)->sin_family = AF_INET;
	((struct sockaddr_in *)&q.endpoint)->sin_port = htons(1234);
	q.keepalive_s = -1;
	EXPECT_EQ(wgdev_update(c.dev, &q), 0);
	EXPECT_EQ(fk->updates, 1);
	EXPECT(peer_equal(&fk->last, &q));

	CASE("the device's error comes back");
	fk->install_ret = -ENOENT;
	EXPECT_EQ(wgdev_install(c.dev, &p), -ENOENT);
	fk->install_ret = 0;

	CASE("more allowed IPs than a message holds");
	p.n_allowed = PROV_MAX_ALLOWED + 1;
	EXPECT_EQ(wgdev_install(c.dev, &p), -E2BIG);
	EXPECT_EQ(fk->installs, 2);

	CASE("remove 100 keys: split into 64 + 36, in order");
	randombytes_buf(keys, sizeof(keys));
	EXPECT_EQ(wgdev_remove(c.dev, (const uint8_t(*)[WG_KEY_LEN])keys, 100), 0);
	EXPECT_EQ(fk->remove_calls, 2);
	EXPECT_EQ(fk->remove_sizes[0], PRIV_REMOVE_MAX);
	EXPECT_EQ(fk->remove_sizes[1], 100 - PRIV_REMOVE_MAX);
	EXPECT_EQ(fk->n_removed, 100);
	EXPECT(!memcmp(fk->removed, keys, sizeof(keys)));
	EXPECT_EQ(wgdev_remove(c.dev, (const uint8_t(*)[WG_KEY_LEN])keys, 0), 0);
	EXPECT_EQ(fk->remove_calls, 2);

	CASE("dump: every peer, field for field");
	seen = (struct dump_seen){ .ok = true };
	EXPECT_EQ(wgdev_dump(c.dev, dump_check, &seen), 0);
	EXPECT_EQ(seen.n, DUMP_PEERS);
	EXPECT(seen.ok);

	CASE("dump stopped by the callback: its value, and the channel is still in step");
	seen = (struct dump_seen){ .ok = true, .stop_at = 2 };
	EXPECT_EQ(wgdev_dump(c.dev, dump_check, &seen), 42);
	EXPECT_EQ(seen.n, 2);
	EXPECT(seen.ok);

	CASE("get_info");
	assert_int_equal(crypto_scalarmult_base(pub, fk->key), 0);
	EXPECT_EQ(wgdev_get_info(c.dev, &info, NULL), 0);
	EXPECT(info.has_public_key);
	EXPECT(!memcmp(info.public_key, pub, WG_KEY_LEN));
	EXPECT_EQ(info.listen_port, LISTEN_PORT);
	EXPECT_EQ(info.ifindex, IFINDEX);

	CASE("get_info never gives the private key");
	memset(priv_key, 0, sizeof(priv_key));
	EXPECT_EQ(wgdev_get_info(c.dev, &info, priv_key), -EPERM);
	EXPECT(sodium_is_zero(priv_key, sizeof(priv_key)));

	CASE("DH = crypto_scalarmult with the device key");
	for (int i = 0; i < 20; i++) {
		randombytes_buf(pub, sizeof(pub));
		EXPECT_EQ(priv_dh(c.priv, out, pub), 0);
		assert_int_equal(crypto_scalarmult(want, fk->key, pub), 0);
		EXPECT(!memcmp(out, want, WG_KEY_LEN));
	}

	CASE("DH with a low-order point");
	memset(pub, 0, sizeof(pub));
	memset(out, 0xa5, sizeof(out));
	EXPECT_EQ(priv_dh(c.priv, out, pub), -EINVAL);
	pub[0] = 1; /* the identity, also of low order */
	EXPECT_EQ(priv_dh(c.priv, out, pub), -EINVAL);

	CASE("the responder through priv_dh decodes an initiation");
	{
		uint8_t msg[NOISE_INITIATION_LEN], i_priv[WG_KEY_LEN], ts[WG_TAI64N_LEN];
		struct noise_responder r;
		struct noise_initiation in;

		assert_int_equal(crypto_scalarmult_base(pub, fk->key), 0);
		assert_int_equal(noise_responder_init(&r, pub, priv_dh, c.priv), 0);
		randombytes_buf(i_priv, sizeof(i_priv));
		noise_tai64n_now(ts);
		assert_int_equal(noise_create_initiation(i_priv, pub, ts, 3, msg), 0);
		EXPECT_EQ(noise_decode_initiation(&r, msg, sizeof(msg), &in), NOISE_OK);
		EXPECT(!memcmp(in.timestamp, ts, WG_TAI64N_LEN));
		noise_responder_wipe(&r);
	}

	CASE("reload: a new key is used from then on");
	randombytes_buf(fk->key, sizeof(fk->key));
	assert_int_equal(crypto_scalarmult_base(pub, fk->key), 0);
	EXPECT_EQ(priv_reload_key(c.priv, &info), 0);
	EXPECT(info.has_public_key);
	EXPECT(!memcmp(info.public_key, pub, WG_KEY_LEN));
	EXPECT_EQ(priv_dh(c.priv, out, pub), 0);
	assert_int_equal(crypto_scalarmult(want, fk->key, pub), 0);
	EXPECT(!memcmp(out, want, WG_KEY_LEN));

	CASE("reload failing keeps the key held");
	memcpy(priv_key, fk->key, WG_KEY_LEN);
	fk->key_ret = -ENOKEY;
	randombytes_buf(fk->key, sizeof(fk->key));
	EXPECT_EQ(priv_reload_key(c.priv, &info), -ENOKEY);
	EXPECT(info.has_public_key);
	assert_int_equal(crypto_scalarmult_base(want, priv_key), 0);
	EXPECT(!memcmp(info.public_key, want, WG_KEY_LEN));
	EXPECT_EQ(priv_dh(c.priv, out, pub), 0);
	assert_int_equal(crypto_scalarmult(want, priv_key, pub), 0);
	EXPECT(!memcmp(out, want, WG_KEY_LEN));

	CASE("reload of an all-zero key: -EINVAL, key kept");
	fk->key_ret = 0;
	memset(fk->key, 0, sizeof(fk->key));
	EXPECT_EQ(priv_reload_key(c.priv, &info), -EINVAL);
	EXPECT(info.has_public_key);

	CASE("capture on another interface: refused");
	EXPECT_EQ(priv_capture_open(c.priv, "eth7"), -EPERM);
	EXPECT_EQ(priv_capture_open(c.priv, ""), -EINVAL);

	CASE("capture on the configured interface: a descriptor (AF_PACKET as root)");
	fd = priv_capture_open(c.priv, "lo");
	if (geteuid() == 0) {
		int domain = 0;
		socklen_t len = sizeof(domain);

		EXPECT(fd >= 0);
		if (fd >= 0) {
			EXPECT_EQ(getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len), 0);
			EXPECT_EQ(domain, AF_PACKET);
			EXPECT(fcntl(fd, F_GETFD) & FD_CLOEXEC);
			close(fd);
		}
	} else {
		EXPECT(fd == -EPERM || fd >= 0);
		if (fd >= 0)
			close(fd);
	}

	CASE("the engine closes: the child closes the device and exits 0");
	{
		int status = child_end(&c, log);

		EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		EXPECT_EQ(fk->closes, 1);
	}
	sodium_memzero(priv_key, sizeof(priv_key));
}

static void test_no_key(void **state)
{
	uint8_t pub[WG_KEY_LEN], out[WG_KEY_LEN];
	struct wgdev_info info;
	char log[LOG_MAX];
	struct child c;

	CASE("a device without a readable key: DH says -ENOKEY, the rest works");
	fake_reset();
	fk->key_ret = -ENOKEY;
	child_start(&c);
	randombytes_buf(pub, sizeof(pub));
	EXPECT_EQ(priv_dh(c.priv, out, pub), -ENOKEY);
	EXPECT_EQ(priv_reload_key(c.priv, &info), -ENOKEY);
	EXPECT(!info.has_public_key);
	EXPECT_EQ(info.listen_port, LISTEN_PORT);
	EXPECT_EQ(wgdev_get_info(c.dev, &info, NULL), 0);

	CASE("a device without a key gets one");
	fk->key_ret = 0;
	EXPECT_EQ(priv_reload_key(c.priv, &info), 0);
	EXPECT_EQ(priv_dh(c.priv, out, pub), 0);
	EXPECT(WIFEXITED(child_end(&c, log)));
}

static void test_gone(void **state)
{
	uint8_t pub[WG_KEY_LEN], out[WG_KEY_LEN];
	char log[LOG_MAX];
	struct child c;
	int status;

	CASE("alive and idle: not gone");
	fake_reset();
	child_start(&c);
	randombytes_buf(pub, sizeof(pub));
	EXPECT_EQ(priv_dh(c.priv, out, pub), 0);
	EXPECT(!priv_is_gone(c.priv));

	CASE("killed: gone, without a request");
	assert_int_equal(kill(c.pid, SIGKILL), 0);
	assert_int_equal(waitpid(c.pid, &status, 0), c.pid);
	EXPECT(WIFSIGNALED(status));
	EXPECT(priv_is_gone(c.priv));
	c.pid = 0; /* reaped */
	(void)child_end(&c, log);
}

/* ---- lies ---- */

union raw {
	struct priv_hdr h;
	struct priv_peer_msg peer;
	struct priv_remove_msg remove;
	struct priv_ifname_msg ifname;
	struct priv_key_msg key;
	uint8_t bytes[16384];
};

static size_t valid(union raw *m, uint32_t op)
{
	size_t len = sizeof(struct priv_hdr);

	memset(m, 0, sizeof(*m));
	switch (op) {
	case PRIV_INSTALL:
	case PRIV_UPDATE:
		len = sizeof(struct priv_peer_msg);
		randombytes_buf(m->peer.p.pubkey, WG_KEY_LEN);
		m->peer.p.keepalive_s = -1;
		m->peer.p.n_allowed = 1;
		m->peer.p.allowed[0].family = AF_INET;
		m->peer.p.allowed[0].bits = 32;
		m->peer.p.allowed[0].addr[0] = 10;
		break;
	case PRIV_REMOVE:
		len = sizeof(struct priv_remove_msg);
		m->remove.r.n = 2;
		randombytes_buf(m->remove.r.keys, 2 * WG_KEY_LEN);
		break;
	case PRIV_DH:
		len = sizeof(struct priv_key_msg);
		randombytes_buf(m->key.k.key, WG_KEY_LEN);
		break;
	case PRIV_CAPTURE_OPEN:
		len = sizeof(struct priv_ifname_msg);
		strcpy(m->ifname.n.name, "nosuch0");
		break;
	}
	m->h.op = op;
	m->h.len = (uint32_t)len;
	m->h.seq = 1;
	return len;
}

enum spoil {
	SHORT_MSG, HEADER_ONLY, ONE_MORE, ONE_LESS, HUGE, OP_ZERO, OP_MAX, OP_ANSWER, LEN_FIELD,
	RESULT_SET, N_ALLOWED_9, N_ALLOWED_255, FAMILY_BAD, FAMILY_ZERO, V4_BITS, V4_TAIL,
	V6_BITS, SLOT_PAST_N, PSK_FLAG, PSK_UNFLAGGED, KEEPALIVE_BIG, KEEPALIVE_NEG, RESERVED,
	EP_FAMILY, EP_UNSPEC_BYTES, EP_V4_TAIL, REMOVE_ZERO, REMOVE_MANY, REMOVE_TAIL,
	REMOVE_RESERVED, NAME_UNTERMINATED, NAME_TAIL, NAME_EMPTY,
};

/* Spoil a valid message of len bytes; returns the length to send. */
static size_t spoil(union raw *m, size_t len, enum spoil how)
{
	struct priv_peer *p = &m->peer.p;
	uint8_t *ep = (uint8_t *)&p->endpoint;

	switch (how) {
	case SHORT_MSG:
		return 8;
	case HEADER_ONLY:
		m->h.len = sizeof(m->h);
		return sizeof(m->h);
	case ONE_MORE:
		m->h.len = (uint32_t)len + 1;
		return len + 1;
	case ONE_LESS:
		m->h.len = (uint32_t)len - 1;
		return len - 1;
	case HUGE:
		return sizeof(m->bytes);
	case OP_ZERO:
		m->h.op = 0;
		break;
	case OP_MAX:
		m->h.op = PRIV_OP_MAX;
		break;
	case OP_ANSWER:
		m->h.op = PRIV_DUMP_PEER;
		break;
	case LEN_FIELD:
		m->h.len++;
		break;
	case RESULT_SET:
		m->h.result = -1;
		break;
	case N_ALLOWED_9:
		p->n_allowed = 9;
		break;
	case N_ALLOWED_255:
		p->n_allowed = 255;
		break;
	case FAMILY_BAD:
		p->allowed[0].family = AF_UNIX;
		break;
	case FAMILY_ZERO:
		p->allowed[0].family = 0;
		break;
	case V4_BITS:
		p->allowed[0].bits = 33;
		break;
	case V4_TAIL:
		p->allowed[0].addr[9] = 1;
		break;
	case V6_BITS:
		p->allowed[0].family = AF_INET6;
		p->allowed[0].bits = 129;
		break;
	case SLOT_PAST_N:
		p->allowed[5].family = AF_INET;
		break;
	case PSK_FLAG:
		p->has_psk = 2;
		break;
	case PSK_UNFLAGGED:
		p->psk[7] = 1;
		break;
	case KEEPALIVE_BIG:
		p->keepalive_s = 65536;
		break;
	case KEEPALIVE_NEG:
		p->keepalive_s = -2;
		break;
	case RESERVED:
		p->reserved = 1;
		break;
	case EP_FAMILY:
		p->endpoint.ss_family = AF_UNIX;
		break;
	case EP_UNSPEC_BYTES:
		ep[20] = 1;
		break;
	case EP_V4_TAIL:
		p->endpoint.ss_family = AF_INET;
		ep[sizeof(struct sockaddr_in)] = 1;
		break;
	case REMOVE_ZERO:
		m->remove.r.n = 0;
		memset(m->remove.r.keys, 0, sizeof(m->remove.r.keys));
		break;
	case REMOVE_MANY:
		m->remove.r.n = PRIV_REMOVE_MAX + 1;
		break;
	case REMOVE_TAIL:
		m->remove.r.keys[2][0] = 1;
		break;
	case REMOVE_RESERVED:
		m->remove.r.reserved = 1;
		break;
	case NAME_UNTERMINATED:
		memset(m->ifname.n.name, 'a', IF_NAMESIZE);
		break;
	case NAME_TAIL:
		m->ifname.n.name[12] = 'x';
		break;
	case NAME_EMPTY:
		memset(m->ifname.n.name, 0, IF_NAMESIZE);
		break;
	}
	return len;
}

struct lie {
	const char *name;
	uint32_t op;
	enum spoil how;
};

static const struct lie lies[] = {
	{ "8 bytes", PRIV_GET_INFO, SHORT_MSG },
	{ "INSTALL with a header only", PRIV_INSTALL, HEADER_ONLY },
	{ "INSTALL one byte long", PRIV_INSTALL, ONE_MORE },
	{ "INSTALL one byte short", PRIV_INSTALL, ONE_LESS },
	{ "DH one byte long", PRIV_DH, ONE_MORE },
	{ "GET_INFO with a body", PRIV_GET_INFO, ONE_MORE },
	{ "16 KiB", PRIV_DUMP, HUGE },
	{ "op 0", PRIV_GET_INFO, OP_ZERO },
	{ "op PRIV_OP_MAX", PRIV_GET_INFO, OP_MAX },
	{ "an answer's op", PRIV_GET_INFO, OP_ANSWER },
	{ "len field disagrees", PRIV_DH, LEN_FIELD },
	{ "result set in a request", PRIV_REMOVE, RESULT_SET },
	{ "n_allowed 9", PRIV_INSTALL, N_ALLOWED_9 },
	{ "n_allowed 255", PRIV_UPDATE, N_ALLOWED_255 },
	{ "allowed IP family AF_UNIX", PRIV_INSTALL, FAMILY_BAD },
	{ "allowed IP family 0", PRIV_INSTALL, FAMILY_ZERO },
	{ "IPv4 /33", PRIV_INSTALL, V4_BITS },
	{ "IPv4 prefix with bytes past 4", PRIV_INSTALL, V4_TAIL },
	{ "IPv6 /129", PRIV_UPDATE, V6_BITS },
	{ "allowed slot set past n_allowed", PRIV_INSTALL, SLOT_PAST_N },
	{ "psk flag 2", PRIV_INSTALL, PSK_FLAG },
	{ "psk without its flag", PRIV_UPDATE, PSK_UNFLAGGED },
	{ "keepalive 65536", PRIV_INSTALL, KEEPALIVE_BIG },
	{ "keepalive -2", PRIV_UPDATE, KEEPALIVE_NEG },
	{ "reserved bytes", PRIV_INSTALL, RESERVED },
	{ "endpoint family AF_UNIX", PRIV_INSTALL, EP_FAMILY },
	{ "endpoint AF_UNSPEC with bytes", PRIV_INSTALL, EP_UNSPEC_BYTES },
	{ "IPv4 endpoint with bytes past it", PRIV_UPDATE, EP_V4_TAIL },
	{ "REMOVE of 0 keys", PRIV_REMOVE, REMOVE_ZERO },
	{ "REMOVE of PRIV_REMOVE_MAX + 1", PRIV_REMOVE, REMOVE_MANY },
	{ "REMOVE with a key past n", PRIV_REMOVE, REMOVE_TAIL },
	{ "REMOVE reserved", PRIV_REMOVE, REMOVE_RESERVED },
	{ "capture name unterminated", PRIV_CAPTURE_OPEN, NAME_UNTERMINATED },
	{ "capture name with bytes after the NUL", PRIV_CAPTURE_OPEN, NAME_TAIL },
	{ "capture name empty", PRIV_CAPTURE_OPEN, NAME_EMPTY },
};

/* The checker alone, in this process: every lie refused with a reason, every honest
 * message accepted, and an accepted peer is exactly what the engine makes of it. */
static void test_check_request(void **state)
{
	static union raw m;
	static const uint32_t ops[] = { PRIV_INSTALL, PRIV_UPDATE, PRIV_REMOVE, PRIV_DUMP,
					PRIV_GET_INFO, PRIV_DH, PRIV_RELOAD_KEY,
					PRIV_CAPTURE_OPEN };
	char why[PRIV_WHY_LEN];

	for (size_t i = 0; i < sizeof(lies) / sizeof(lies[0]); i++) {
		size_t len;

		CASE("checker, lie: %s", lies[i].name);
		len = spoil(&m, valid(&m, lies[i].op), lies[i].how);
		EXPECT_EQ(priv_check_request((const union priv_msg *)&m, len, why), -EBADMSG);
		EXPECT(why[0] != '\0');
	}
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		size_t len = valid(&m, ops[i]);

		CASE("checker, honest op %u", ops[i]);
		EXPECT_EQ(priv_check_request((const union priv_msg *)&m, len, why), 0);
		EXPECT_STREQ(why, "");
	}
	for (int i = 0; i < 200; i++) {
		struct priv_peer_msg pm = { .h = { .op = PRIV_INSTALL, .len = sizeof(pm) } };
		struct priv_peer again;
		struct wgdev_peer p, back;

		CASE("checker, engine's peer #%d", i);
		sample_peer(&p);
		p.has_psk = i % 2;
		p.keepalive_s = i % 3 == 0 ? -1 : i * 300;
		p.n_allowed = (unsigned)i % (PROV_MAX_ALLOWED + 1);
		for (unsigned a = 2; a < p.n_allowed; a++)
			p.allowed[a] = p.allowed[a % 2];
		if (i % 4 == 1)
			memset(&p.endpoint, 0, sizeof(p.endpoint));
		if (i % 4 == 2) {
			/* garbage past the address: not sent */
			memset(&p.endpoint, 0xee, sizeof(p.endpoint));
			((struct sockaddr_in *)&p.endpoint)->sin_family = AF_INET;
		}
		priv_peer_to_wire(&p, &pm.p);
		EXPECT_EQ(priv_check_request((const union priv_msg *)&pm, sizeof(pm), why), 0);
		priv_peer_from_wire(&pm.p, &back);
		priv_peer_to_wire(&back, &again);
		EXPECT(!memcmp(&again, &pm.p, sizeof(again)));
		EXPECT_EQ(back.keepalive_s, p.keepalive_s);
		EXPECT_EQ(back.n_allowed, p.n_allowed);
	}
}

static void test_lies(void **state)
{
	static union raw m;
	char log[LOG_MAX];

	for (size_t i = 0; i < sizeof(lies) / sizeof(lies[0]); i++) {
		const struct lie *l = &lies[i];
		struct child c;
		size_t len;
		int status;

		CASE("lie: %s", l->name);
		fake_reset();
		child_start(&c);
		/* One honest request first: the child is serving. */
		len = valid(&m, PRIV_GET_INFO);
		EXPECT_EQ(send(c.fd, &m, len, 0), (ssize_t)len);
		EXPECT(recv(c.fd, &m, sizeof(m), 0) > 0);

		len = spoil(&m, valid(&m, l->op), l->how);
		EXPECT_EQ(send(c.fd, &m, len, 0), (ssize_t)len);
		EXPECT_EQ(recv(c.fd, &m, sizeof(m), 0), 0); /* no answer: the channel closes */
		status = child_end(&c, log);
		EXPECT(WIFEXITED(status) && WEXITSTATUS(status) != 0);
		EXPECT(strstr(log, "priv: ") != NULL);
		EXPECT(strstr(log, ": fatal: priv: ") != NULL);
		EXPECT_EQ(fk->installs + fk->updates + fk->remove_calls, 0);
	}

	CASE("honest variants of the same messages pass");
	{
		static const uint32_t ops[] = { PRIV_INSTALL, PRIV_UPDATE, PRIV_REMOVE, PRIV_DUMP,
						PRIV_GET_INFO, PRIV_DH, PRIV_RELOAD_KEY,
						PRIV_CAPTURE_OPEN };
		struct child c;

		fake_reset();
		child_start(&c);
		for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
			size_t len = valid(&m, ops[i]);
			ssize_t n;

			CASE("honest op %u", ops[i]);
			EXPECT_EQ(send(c.fd, &m, len, 0), (ssize_t)len);
			do
				n = recv(c.fd, &m, sizeof(m), 0);
			while (n > 0 && m.h.op == PRIV_DUMP_PEER);
			EXPECT(n >= (ssize_t)sizeof(struct priv_hdr));
			EXPECT_EQ(m.h.op, ops[i]);
		}
		EXPECT(WIFEXITED(child_end(&c, log)));
		EXPECT_EQ(fk->installs + fk->updates + fk->remove_calls, 3);
	}
}

/* ---- lying answers: the engine ends ---- */

enum answer_lie {
	ANS_SEQ, ANS_SHORT, ANS_LONG, ANS_OP, ANS_RESULT_POSITIVE, ANS_FD_WITH_DH,
	ANS_CAPTURE_NO_FD, ANS_CLOSED,
};

static const struct {
	const char *name;
	enum answer_lie how;
	uint32_t op; /* what the engine asks */
} answer_lies[] = {
	{ "another seq", ANS_SEQ, PRIV_DH },
	{ "one byte short", ANS_SHORT, PRIV_DH },
	{ "one byte long", ANS_LONG, PRIV_RELOAD_KEY },
	{ "an answer of another op", ANS_OP, PRIV_DH },
	{ "a positive result", ANS_RESULT_POSITIVE, PRIV_DH },
	{ "a descriptor with a DH answer", ANS_FD_WITH_DH, PRIV_DH },
	{ "a capture without its descriptor", ANS_CAPTURE_NO_FD, PRIV_CAPTURE_OPEN },
	{ "the privileged side closes", ANS_CLOSED, PRIV_DH },
};

static void send_with_fd(int sock, const void *buf, size_t len, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	EXPECT_EQ(sendmsg(sock, &mh, 0), (ssize_t)len);
}

static void test_lying_answers(void **state)
{
	static union raw m;
	char log[LOG_MAX];

	for (size_t i = 0; i < sizeof(answer_lies) / sizeof(answer_lies[0]); i++) {
		int sv[2], lp[2], status;
		size_t len;
		ssize_t n;
		pid_t pid;

		CASE("engine told %s", answer_lies[i].name);
		assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
		assert_int_equal(pipe2(lp, O_CLOEXEC), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) { /* the engine */
			uint8_t pub[WG_KEY_LEN] = { 9 }, out[WG_KEY_LEN];
			struct priv *p;

			close(sv[1]);
			close(lp[0]);
			dup2(lp[1], STDERR_FILENO);
			if (priv_attach(&p, sv[0], 0) < 0)
				_exit(3);
			struct wgdev_info info;
			int ret;

			if (answer_lies[i].op == PRIV_DH)
				ret = priv_dh(p, out, pub);
			else if (answer_lies[i].op == PRIV_RELOAD_KEY)
				ret = priv_reload_key(p, &info);
			else
				ret = priv_capture_open(p, "lo");
			_exit(ret > 0 ? 4 : 0); /* it believed the lie */
		}
		close(sv[0]);
		close(lp[1]);
		/* We are the privileged side: read the request, answer it wrongly. */
		n = recv(sv[1], &m, sizeof(m), 0);
		EXPECT(n >= (ssize_t)sizeof(struct priv_hdr));
		EXPECT_EQ(m.h.op, answer_lies[i].op);
		if (m.h.op == PRIV_DH)
			len = sizeof(struct priv_key_msg);
		else if (m.h.op == PRIV_CAPTURE_OPEN)
			len = sizeof(struct priv_hdr);
		else
			len = sizeof(struct priv_hdr) + sizeof(struct priv_info);
		memset((uint8_t *)&m + sizeof(m.h), 0, sizeof(m) - sizeof(m.h));
		m.h.len = (uint32_t)len;
		switch (answer_lies[i].how) {
		case ANS_SEQ:
			m.h.seq++;
			break;
		case ANS_SHORT:
			m.h.len = (uint32_t)--len;
			break;
		case ANS_LONG:
			m.h.len = (uint32_t)++len;
			break;
		case ANS_OP: /* a GET_INFO answer, well formed, to a DH */
			m.h.op = PRIV_GET_INFO;
			len = m.h.len = sizeof(struct priv_hdr) + sizeof(struct priv_info);
			break;
		case ANS_RESULT_POSITIVE:
			m.h.result = 5;
			break;
		case ANS_FD_WITH_DH:
		case ANS_CAPTURE_NO_FD:
		case ANS_CLOSED:
			break;
		}
		if (answer_lies[i].how == ANS_FD_WITH_DH)
			send_with_fd(sv[1], &m, len, STDIN_FILENO);
		else if (answer_lies[i].how != ANS_CLOSED)
			EXPECT_EQ(send(sv[1], &m, len, 0), (ssize_t)len);
		close(sv[1]);
		n = read(lp[0], log, LOG_MAX - 1);
		log[n > 0 ? n : 0] = '\0';
		close(lp[0]);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 1);
		EXPECT(strstr(log, ": fatal: priv: ") != NULL);
	}
}

/* ---- the key in answers ---- */

/* Does any 8-byte run of the key occur in buf? */
static bool leaks(const uint8_t *buf, size_t len, const uint8_t key[static WG_KEY_LEN])
{
	for (size_t k = 0; k + 8 <= WG_KEY_LEN; k++)
		if (memmem(buf, len, key + k, 8))
			return true;
	return false;
}

static void test_key_never_answered(void **state)
{
	static const uint32_t ops[] = { PRIV_INSTALL, PRIV_UPDATE, PRIV_REMOVE, PRIV_DUMP,
					PRIV_GET_INFO, PRIV_DH, PRIV_RELOAD_KEY, PRIV_CAPTURE_OPEN,
					PRIV_DH, PRIV_DH };
	static union raw m;
	static uint8_t all[1 << 16];
	size_t total = 0;
	char log[LOG_MAX];
	struct child c;

	CASE("every answer's bytes, the key nowhere in them");
	fake_reset();
	child_start(&c);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		size_t len = valid(&m, ops[i]);
		ssize_t n;

		if (i >= 8) /* the base point (answer: the public key), then a low-order one */
			memset(m.key.k.key, 0, WG_KEY_LEN);
		if (i == 8)
			m.key.k.key[0] = 9;
		EXPECT_EQ(send(c.fd, &m, len, 0), (ssize_t)len);
		do {
			n = recv(c.fd, &m, sizeof(m), 0);
			if (n > 0 && total + (size_t)n <= sizeof(all)) {
				memcpy(all + total, &m, (size_t)n);
				total += (size_t)n;
			}
		} while (n > 0 && m.h.op == PRIV_DUMP_PEER);
		EXPECT(n > 0);
	}
	EXPECT(total > 1000);
	EXPECT(!leaks(all, total, fk->key));
	EXPECT(WIFEXITED(child_end(&c, log)));
}

/* ---- what a DH costs over the channel (printed, not asserted) ---- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_dh_timing(void **state)
{
	enum { N = 2000 };
	uint8_t pub[WG_KEY_LEN], out[WG_KEY_LEN];
	double t0, remote, local;
	char log[LOG_MAX];
	struct child c;
	int ok = 0;

	CASE("timing");
	fake_reset();
	child_start(&c);
	randombytes_buf(pub, sizeof(pub));
	t0 = now_s();
	for (int i = 0; i < N; i++)
		ok += priv_dh(c.priv, out, pub) == 0;
	remote = now_s() - t0;
	t0 = now_s();
	for (int i = 0; i < N; i++)
		ok += crypto_scalarmult(out, fk->key, pub) == 0;
	local = now_s() - t0;
	EXPECT_EQ(ok, 2 * N);
	printf("priv: %.2f us per DH over the socketpair, %.2f us per local crypto_scalarmult "
	       "(%d each)\n", remote / N * 1e6, local / N * 1e6, N);
	EXPECT(WIFEXITED(child_end(&c, log)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_no_key),
		cmocka_unit_test(test_gone),
		cmocka_unit_test(test_check_request),
		cmocka_unit_test(test_lies),
		cmocka_unit_test(test_lying_answers),
		cmocka_unit_test(test_key_never_answered),
		cmocka_unit_test(test_dh_timing),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, setup, teardown);
}
