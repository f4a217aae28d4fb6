/* SPDX-License-Identifier: MIT */
/* Unit tests for provisioner/wgnl.c: the generic netlink messages the kernel backend sends.
 * The builders are the ones install/update/remove/dump use. Each case is compared byte for
 * byte with a message written out here by hand from the attribute tables; the first of each
 * kind is the hexdump of reference/wireguard-jit.md §10, made by an independent prototype.
 * Every builder is also run with every buffer size smaller than its message: it must say
 * -EMSGSIZE and write nothing past the size it was given (a canary, and an exact heap
 * allocation for ASan). Sending them to a real kernel is tests/e2e/test_kernel_netlink.sh.
 * The dump parser runs over replies built here with libmnl, as the kernel lays them out
 * (wgnl_parse_dump, the receive loop of a real dump fed from memory): device facts, peers
 * delivered once even when the kernel splits one across batches, and every way a reply can
 * end or lie. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>

#include "prov.h"
/* After prov.h: this header #defines WG_KEY_LEN, which prov.h declares as an enum. */
#include <linux/time_types.h>
#include <linux/wireguard.h>

enum {
	FAM = 0x1234, /* a placeholder family id, as in §10 */
	MSG_MAX = 512,
	CANARY = 0x5a,
};

static const char *cur_case = "?";
#include "expect.h"

/* "b8 00 ab*32 ..." to bytes: hex pairs, "hh*N" repeats a byte N times. */
static size_t unhex(const char *s, uint8_t *out, size_t max)
{
	size_t n = 0;

	while (*s) {
		unsigned byte, rep = 1;
		int used;

		if (*s == ' ' || *s == '\n' || *s == '\t') {
			s++;
			continue;
		}
		if (sscanf(s, "%2x%n", &byte, &used) != 1 || used != 2)
			fail_msg("bad hex in test table near '%.8s'", s);
		s += 2;
		if (*s == '*') {
			rep = (unsigned)strtoul(s + 1, (char **)&s, 10);
		}
		while (rep--) {
			if (n == max)
				fail_msg("hex in test table longer than %zu bytes", max);
			out[n++] = (uint8_t)byte;
		}
	}
	return n;
}

static void expect_bytes(const uint8_t *got, size_t got_len, const char *want_hex)
{
	uint8_t want[MSG_MAX];
	size_t want_len = unhex(want_hex, want, sizeof(want));

	if (got_len != want_len)
		fail_msg("case %s: message is %zu bytes, expected %zu", cur_case, got_len, want_len);
	for (size_t i = 0; i < want_len; i++)
		if (got[i] != want[i])
			fail_msg("case %s: byte %zu is %02x, expected %02x", cur_case, i, got[i],
				 want[i]);
}

/* --- peers --------------------------------------------------------------------------- */

static void key_fill(uint8_t key[static WG_KEY_LEN], uint8_t b)
{
	memset(key, b, WG_KEY_LEN);
}

static void endpoint(struct wgdev_peer *p, const char *ip, uint16_t port)
{
	memset(&p->endpoint, 0, sizeof(p->endpoint));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&p->endpoint;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		in6->sin6_flowinfo = htonl(0x12345); /* not ours to send */
		assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&p->endpoint;

		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		memset(in->sin_zero, 0xee, sizeof(in->sin_zero)); /* must not leak */
		assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
	}
}

static void allow(struct wgdev_peer *p, const char *cidr)
{
	assert_true(p->n_allowed < PROV_MAX_ALLOWED);
	if (cidr_parse(cidr, &p->allowed[p->n_allowed]) != 0)
		fail_msg("case %s: cidr_parse(%s) failed", cur_case, cidr);
	p->n_allowed++;
}

static void peer_init(struct wgdev_peer *p, uint8_t key)
{
	memset(p, 0, sizeof(*p));
	key_fill(p->pubkey, key);
	p->keepalive_s = -1;
}

/* §10: v4 + v6 allowed IPs, an IPv6 endpoint, no keepalive, no PSK. */
static void peer_ref(struct wgdev_peer *p)
{
	peer_init(p, 0xab);
	endpoint(p, "2001:db8::1", 40000);
	allow(p, "10.0.0.2/32");
	allow(p, "fd00::2/128");
}

static void peer_v4(struct wgdev_peer *p)
{
	peer_init(p, 0xcd);
	p->has_psk = true;
	key_fill(p->psk, 0xef);
	endpoint(p, "192.0.2.1", 51820);
	p->keepalive_s = 25;
	allow(p, "10.0.0.3/32");
}

static void peer_v6(struct wgdev_peer *p)
{
	peer_init(p, 0x11);
	p->keepalive_s = 0;
	allow(p, "fd00:1::/64");
}

static void peer_update(struct wgdev_peer *p)
{
	peer_init(p, 0x22);
	endpoint(p, "2001:db8::1", 40000);
	p->keepalive_s = 25;
	allow(p, "10.0.0.9/32"); /* an update never touches allowed IPs */
}

static void peer_bare(struct wgdev_peer *p)
{
	peer_init(p, 0x33);
}

static void peer_max_keepalive(struct wgdev_peer *p)
{
	peer_init(p, 0x44);
	p->keepalive_s = 65535;
	allow(p, "10.1.2.0/24");
}

struct set_case {
	const char *name;
	void (*make)(struct wgdev_peer *p);
	const char *ifname;
	uint32_t seq, flags;
	const char *hex;
};

static const struct set_case set_cases[] = {
	{ "add v4+v6 with v6 endpoint (§10, 184 bytes)", peer_ref, "wg0", 1,
	  WGPEER_F_REPLACE_ALLOWEDIPS,
	  "b8 00 00 00 34 12 05 00 01 00 00 00 00 00 00 00"
	  " 01 01 00 00  08 00 02 00 77 67 30 00  9c 00 08 80"
	  " 98 00 00 80  24 00 01 00 ab*32"
	  " 08 00 03 00 02 00 00 00"
	  " 20 00 04 00 0a 00 9c 40 00 00 00 00 20 01 0d b8 00*11 01 00 00 00 00"
	  " 48 00 09 80  1c 00 00 80 06 00 01 00 02 00 00 00"
	  " 08 00 02 00 0a 00 00 02  05 00 03 00 20 00 00 00"
	  " 28 00 00 80 06 00 01 00 0a 00 00 00 14 00 02 00"
	  " fd 00*14 02  05 00 03 00 80 00 00 00" },
	{ "v4 only, v4 endpoint, psk, keepalive 25", peer_v4, "wg0", 2,
	  WGPEER_F_REPLACE_ALLOWEDIPS,
	  "b0 00 00 00 34 12 05 00 02 00 00 00 00 00 00 00"
	  " 01 01 00 00  08 00 02 00 77 67 30 00  94 00 08 80"
	  " 90 00 00 80  24 00 01 00 cd*32"
	  " 08 00 03 00 02 00 00 00"
	  " 24 00 02 00 ef*32"
	  " 14 00 04 00 02 00 ca 6c c0 00 02 01 00*8"
	  " 06 00 05 00 19 00 00 00"
	  " 20 00 09 80  1c 00 00 80 06 00 01 00 02 00 00 00"
	  " 08 00 02 00 0a 00 00 03  05 00 03 00 20 00 00 00" },
	{ "v6 only, no endpoint, keepalive 0 (off)", peer_v6, "wg0", 3,
	  WGPEER_F_REPLACE_ALLOWEDIPS,
	  "84 00 00 00 34 12 05 00 03 00 00 00 00 00 00 00"
	  " 01 01 00 00  08 00 02 00 77 67 30 00  68 00 08 80"
	  " 64 00 00 80  24 00 01 00 11*32"
	  " 08 00 03 00 02 00 00 00"
	  " 06 00 05 00 00 00 00 00"
	  " 2c 00 09 80  28 00 00 80 06 00 01 00 0a 00 00 00"
	  " 14 00 02 00 fd 00 00 01 00*12  05 00 03 00 40 00 00 00" },
	{ "update-only: endpoint and keepalive, no allowed IPs", peer_update, "wg0", 4,
	  WGPEER_F_UPDATE_ONLY,
	  "78 00 00 00 34 12 05 00 04 00 00 00 00 00 00 00"
	  " 01 01 00 00  08 00 02 00 77 67 30 00  5c 00 08 80"
	  " 58 00 00 80  24 00 01 00 22*32"
	  " 08 00 03 00 04 00 00 00"
	  " 20 00 04 00 0a 00 9c 40 00 00 00 00 20 01 0d b8 00*11 01 00 00 00 00"
	  " 06 00 05 00 19 00 00 00" },
	{ "install with no allowed IPs: no empty nest", peer_bare, "wg0", 5,
	  WGPEER_F_REPLACE_ALLOWEDIPS,
	  "50 00 00 00 34 12 05 00 05 00 00 00 00 00 00 00"
	  " 01 01 00 00  08 00 02 00 77 67 30 00  34 00 08 80"
	  " 30 00 00 80  24 00 01 00 33*32  08 00 03 00 02 00 00 00" },
	{ "13-char ifname (padded), keepalive 65535, v4 /24", peer_max_keepalive,
	  "wgws-gateway0", 6, WGPEER_F_REPLACE_ALLOWEDIPS,
	  "84 00 00 00 34 12 05 00 06 00 00 00 00 00 00 00"
	  " 01 01 00 00  12 00 02 00 77 67 77 73 2d 67 61 74 65 77 61 79 30 00 00 00"
	  " 5c 00 08 80  58 00 00 80  24 00 01 00 44*32"
	  " 08 00 03 00 02 00 00 00"
	  " 06 00 05 00 ff ff 00 00"
	  " 20 00 09 80  1c 00 00 80 06 00 01 00 02 00 00 00"
	  " 08 00 02 00 0a 01 02 00  05 00 03 00 18 00 00 00" },
};

/* Every size below the message's: -EMSGSIZE, and not a byte written past the size. */
typedef ssize_t (*build_fn)(void *buf, size_t size, const void *arg);

static void expect_no_overrun(build_fn build, const void *arg, size_t len)
{
	_Alignas(8) uint8_t buf[MSG_MAX + 64];

	for (size_t size = 0; size < len; size++) {
		uint8_t *exact = malloc(size ? size : 1);
		ssize_t r;

		assert_non_null(exact);
		memset(buf, CANARY, sizeof(buf));
		r = build(buf, size, arg);
		if (r != -EMSGSIZE)
			fail_msg("case %s: size %zu of %zu gave %zd, expected -EMSGSIZE", cur_case,
				 size, len, r);
		for (size_t i = size; i < sizeof(buf); i++)
			if (buf[i] != CANARY)
				fail_msg("case %s: size %zu: byte %zu written", cur_case, size, i);
		EXPECT_EQ(build(exact, size, arg), -EMSGSIZE); /* ASan sees any overrun */
		free(exact);
	}
}

struct set_arg {
	const struct set_case *c;
	struct wgdev_peer peer;
};

static ssize_t build_set(void *buf, size_t size, const void *arg)
{
	const struct set_arg *a = arg;

	return wgnl_build_set_peer(buf, size, FAM, a->c->seq, a->c->ifname, &a->peer, a->c->flags);
}

static void test_set_peer(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(set_cases) / sizeof(set_cases[0]); i++) {
		_Alignas(8) uint8_t buf[MSG_MAX];
		struct set_arg a = { .c = &set_cases[i] };
		ssize_t len;

		cur_case = a.c->name;
		a.c->make(&a.peer);
		memset(buf, 0xa5, sizeof(buf)); /* padding must be zeroed, not left over */
		len = build_set(buf, sizeof(buf), &a);
		EXPECT(len > 0);
		expect_bytes(buf, (size_t)len, a.c->hex);
		/* Exactly enough room is enough. */
		EXPECT_EQ(build_set(buf, (size_t)len, &a), len);
		expect_bytes(buf, (size_t)len, a.c->hex);
		expect_no_overrun(build_set, &a, (size_t)len);
	}
}

/* Input the kernel would refuse (or we must not send) never becomes a message. */
static void test_set_peer_invalid(void **state)
{
	static const struct {
		const char *name;
		int what;
	} cases[] = {
		{ "keepalive 65536", 0 },      { "9 allowed IPs", 1 },
		{ "allowed IP family 0", 2 },  { "v4 allowed IP /33", 3 },
		{ "endpoint AF_UNIX", 4 },     { "ifname of 16 chars", 5 },
		{ "empty ifname", 6 },
	};
	_Alignas(8) uint8_t buf[MSG_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *ifname = "wg0";
		struct wgdev_peer p;

		cur_case = cases[i].name;
		peer_ref(&p);
		switch (cases[i].what) {
		case 0:
			p.keepalive_s = 65536;
			break;
		case 1:
			p.n_allowed = PROV_MAX_ALLOWED + 1;
			break;
		case 2:
			p.allowed[1].family = 0;
			break;
		case 3:
			p.allowed[0].bits = 33;
			break;
		case 4:
			p.endpoint.ss_family = AF_UNIX;
			break;
		case 5:
			ifname = "wgws-gateway-123";
			break;
		case 6:
			ifname = "";
			break;
		}
		EXPECT_EQ(wgnl_build_set_peer(buf, sizeof(buf), FAM, 1, ifname, &p,
					      WGPEER_F_REPLACE_ALLOWEDIPS),
			  -EINVAL);
	}
}

/* --- remove and dump ----------------------------------------------------------------- */

struct remove_case {
	const char *name;
	unsigned n;
	uint8_t first_key; /* key i is filled with first_key + i */
	uint32_t seq;
	const char *hex;
};

static const struct remove_case remove_cases[] = {
	{ "remove one key (§10, 80 bytes)", 1, 0xab, 1,
	  "50 00 00 00 34 12 05 00 01 00 00 00 00 00 00 00"
	  " 01 01 00 00  08 00 02 00 77 67 30 00"
	  " 34 00 08 80 30 00 00 80 24 00 01 00 ab*32 08 00 03 00 01 00 00 00" },
	{ "remove three keys in one message", 3, 0x01, 7,
	  "b0 00 00 00 34 12 05 00 07 00 00 00 00 00 00 00"
	  " 01 01 00 00  08 00 02 00 77 67 30 00  94 00 08 80"
	  " 30 00 00 80 24 00 01 00 01*32 08 00 03 00 01 00 00 00"
	  " 30 00 00 80 24 00 01 00 02*32 08 00 03 00 01 00 00 00"
	  " 30 00 00 80 24 00 01 00 03*32 08 00 03 00 01 00 00 00" },
};

struct remove_arg {
	const struct remove_case *c;
	uint8_t keys[8][WG_KEY_LEN];
};

static ssize_t build_remove(void *buf, size_t size, const void *arg)
{
	const struct remove_arg *a = arg;

	return wgnl_build_remove(buf, size, FAM, a->c->seq, "wg0",
				 (const uint8_t(*)[WG_KEY_LEN])a->keys, a->c->n);
}

static void test_remove(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(remove_cases) / sizeof(remove_cases[0]); i++) {
		_Alignas(8) uint8_t buf[MSG_MAX];
		struct remove_arg a = { .c = &remove_cases[i] };
		ssize_t len;

		cur_case = a.c->name;
		for (unsigned k = 0; k < a.c->n; k++)
			key_fill(a.keys[k], (uint8_t)(a.c->first_key + k));
		memset(buf, 0xa5, sizeof(buf));
		len = build_remove(buf, sizeof(buf), &a);
		EXPECT(len > 0);
		expect_bytes(buf, (size_t)len, a.c->hex);
		EXPECT_EQ(build_remove(buf, (size_t)len, &a), len);
		expect_no_overrun(build_remove, &a, (size_t)len);
	}
	cur_case = "remove of no keys";
	{
		_Alignas(8) uint8_t buf[MSG_MAX];
		uint8_t key[1][WG_KEY_LEN] = { { 0 } };

		EXPECT_EQ(wgnl_build_remove(buf, sizeof(buf), FAM, 1, "wg0",
					    (const uint8_t(*)[WG_KEY_LEN])key, 0),
			  -EINVAL);
	}
}

static ssize_t build_dump(void *buf, size_t size, const void *arg)
{
	(void)arg;
	return wgnl_build_dump(buf, size, FAM, 3, "wg0");
}

static void test_dump_request(void **state)
{
	_Alignas(8) uint8_t buf[MSG_MAX];
	ssize_t len;

	(void)state;
	cur_case = "dump request (§10, 28 bytes, REQUEST|ACK|DUMP)";
	memset(buf, 0xa5, sizeof(buf));
	len = build_dump(buf, sizeof(buf), NULL);
	EXPECT(len > 0);
	expect_bytes(buf, (size_t)len,
		     "1c 00 00 00 34 12 05 03 03 00 00 00 00 00 00 00"
		     " 00 01 00 00 08 00 02 00 77 67 30 00");
	expect_no_overrun(build_dump, NULL, (size_t)len);
}

/* --- dump replies -------------------------------------------------------------------- */

enum { PORTID = 77, SEQ = 9, DGRAM_MAX = 33000 };

/* Ways to spoil the reply of dump_cases. */
enum spoil {
	GOOD,
	NO_PRIVATE_KEY,   /* the device message lacks WGDEVICE_A_PRIVATE_KEY */
	DONE_ENODEV,      /* NLMSG_DONE carries -ENODEV */
	ACK_EPERM,        /* an NLMSG_ERROR -EPERM instead of the first batch */
	NO_DONE,          /* the datagrams end before NLMSG_DONE */
	TRUNCATED,        /* the last message of the first datagram is cut */
	STALE_FIRST,      /* a reply to an older request comes first */
	LYING_PORT,       /* WGDEVICE_A_LISTEN_PORT as 4 bytes */
	INTERRUPTED,      /* NLM_F_DUMP_INTR: reported as it is */
	OVERSIZED,        /* a datagram over the socket's 32 KiB buffer */
	WRONG_CMD,        /* genl cmd SET_DEVICE */
	HUGE_LEN,         /* a stale message whose nlmsg_len has bit 31 set (libmnl takes it) */
};

struct dump_case {
	const char *name;
	enum spoil spoil;
	bool want_key;    /* ask for the private key */
	unsigned stop_at; /* the callback returns 5 at this peer (1-based; 0: never) */
	int ret;
	unsigned peers;   /* delivered */
};

static const struct dump_case dump_cases[] = {
	{ "three datagrams, a peer split across two", GOOD, true, 0, 0, 3 },
	{ "no private key, asked for", NO_PRIVATE_KEY, true, 0, -ENOKEY, 3 },
	{ "no private key, not asked for", NO_PRIVATE_KEY, false, 0, 0, 3 },
	{ "the kernel fails the dump at its end", DONE_ENODEV, false, 0, -ENODEV, 2 },
	{ "the kernel refuses the dump", ACK_EPERM, false, 0, -EPERM, 0 },
	{ "the datagrams end before NLMSG_DONE", NO_DONE, false, 0, -ETIMEDOUT, 2 },
	{ "a truncated message", TRUNCATED, false, 0, -EBADMSG, 0 },
	{ "a stale reply first", STALE_FIRST, true, 0, 0, 3 },
	{ "a u16 attribute of 4 bytes", LYING_PORT, false, 0, -EBADMSG, 0 },
	{ "an interrupted dump", INTERRUPTED, true, 0, 0, 3 },
	{ "a datagram over 32 KiB", OVERSIZED, false, 0, -EMSGSIZE, 1 },
	{ "a reply to another command", WRONG_CMD, false, 0, -EBADMSG, 0 },
	{ "a message length of 2^31 + 768", HUGE_LEN, false, 0, -EBADMSG, 1 },
	{ "the callback stops at the first peer", GOOD, false, 1, 5, 1 },
	{ "the callback stops at the split peer", GOOD, false, 2, 5, 2 },
};

static struct nlmsghdr *reply_start(uint8_t *buf, uint16_t type, uint32_t seq, uint16_t flags)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_MULTI | flags;
	nlh->nlmsg_seq = seq;
	nlh->nlmsg_pid = PORTID;
	return nlh;
}

static struct nlmsghdr *device_start(uint8_t *buf, uint8_t cmd, uint32_t seq, uint16_t flags)
{
	struct nlmsghdr *nlh = reply_start(buf, FAM, seq, flags);
	struct genlmsghdr *genl = mnl_nlmsg_put_extra_header(nlh, sizeof(*genl));

	genl->cmd = cmd;
	genl->version = WG_GENL_VERSION;
	return nlh;
}

/* One peer element inside WGDEVICE_A_PEERS: its key, the allowed IPs, and with details its
 * counters, keepalive, endpoint and handshake time. */
static void put_peer(struct nlmsghdr *nlh, uint8_t key, const char *const *cidrs, unsigned n,
		     bool details)
{
	struct nlattr *peer = mnl_attr_nest_start(nlh, 0), *ips;
	uint8_t k[WG_KEY_LEN];

	key_fill(k, key);
	mnl_attr_put(nlh, WGPEER_A_PUBLIC_KEY, sizeof(k), k);
	if (details) {
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(51820) };
		struct __kernel_timespec ts = { .tv_sec = 1700000000, .tv_nsec = 5 };

		assert_int_equal(inet_pton(AF_INET, "192.0.2.1", &sin.sin_addr), 1);
		mnl_attr_put(nlh, WGPEER_A_ENDPOINT, sizeof(sin), &sin);
		mnl_attr_put(nlh, WGPEER_A_LAST_HANDSHAKE_TIME, sizeof(ts), &ts);
		mnl_attr_put_u64(nlh, WGPEER_A_RX_BYTES, 100);
		mnl_attr_put_u64(nlh, WGPEER_A_TX_BYTES, 200);
		mnl_attr_put_u16(nlh, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, 25);
		mnl_attr_put_u32(nlh, WGPEER_A_PROTOCOL_VERSION, 1);
	}
	ips = mnl_attr_nest_start(nlh, WGPEER_A_ALLOWEDIPS);
	for (unsigned i = 0; i < n; i++) {
		struct nlattr *ip = mnl_attr_nest_start(nlh, 0);
		struct cidr c;

		assert_int_equal(cidr_parse(cidrs[i], &c), 0);
		mnl_attr_put_u16(nlh, WGALLOWEDIP_A_FAMILY, c.family);
		mnl_attr_put(nlh, WGALLOWEDIP_A_IPADDR, c.family == AF_INET ? 4 : 16, c.addr);
		mnl_attr_put_u8(nlh, WGALLOWEDIP_A_CIDR_MASK, c.bits);
		mnl_attr_nest_end(nlh, ip);
	}
	mnl_attr_nest_end(nlh, ips);
	mnl_attr_nest_end(nlh, peer);
}

/* The reply to a dump of a device with three peers, the second split by the kernel across
 * the first two datagrams, spoiled as the case says. Returns the number of datagrams. */
static unsigned build_reply(enum spoil spoil, uint8_t (*dg)[DGRAM_MAX], size_t *len)
{
	static const char *const ips1[] = { "10.0.0.2/32", "fd00::2/128" };
	static const char *const ips2a[] = { "10.0.1.0/24" }, *const ips2b[] = { "10.0.2.0/24" };
	uint8_t key[WG_KEY_LEN];
	struct nlmsghdr *nlh;
	struct nlattr *peers;
	size_t off = 0;
	int err;

	memset(dg, 0, 3 * sizeof(*dg));
	if (spoil == STALE_FIRST) {
		nlh = device_start(dg[0], WG_CMD_GET_DEVICE, SEQ - 1, 0);
		off = nlh->nlmsg_len;
	}
	if (spoil == ACK_EPERM) {
		struct nlmsgerr e = { .error = -EPERM };

		nlh = reply_start(dg[0], NLMSG_ERROR, SEQ, 0);
		mnl_nlmsg_put_extra_header(nlh, sizeof(e));
		memcpy(mnl_nlmsg_get_payload(nlh), &e, sizeof(e));
		len[0] = nlh->nlmsg_len;
		return 1;
	}
	nlh = device_start(dg[0] + off, spoil == WRONG_CMD ? WG_CMD_SET_DEVICE : WG_CMD_GET_DEVICE,
			   SEQ, spoil == INTERRUPTED ? NLM_F_DUMP_INTR : 0);
	mnl_attr_put_u32(nlh, WGDEVICE_A_IFINDEX, 7);
	mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, "wg0");
	if (spoil == LYING_PORT)
		mnl_attr_put_u32(nlh, WGDEVICE_A_LISTEN_PORT, 51820);
	else
		mnl_attr_put_u16(nlh, WGDEVICE_A_LISTEN_PORT, 51820);
	key_fill(key, 0x11);
	if (spoil != NO_PRIVATE_KEY)
		mnl_attr_put(nlh, WGDEVICE_A_PRIVATE_KEY, sizeof(key), key);
	key_fill(key, 0x22);
	mnl_attr_put(nlh, WGDEVICE_A_PUBLIC_KEY, sizeof(key), key);
	peers = mnl_attr_nest_start(nlh, WGDEVICE_A_PEERS);
	put_peer(nlh, 0xa1, ips1, 2, true);
	put_peer(nlh, 0xa2, ips2a, 1, false);
	mnl_attr_nest_end(nlh, peers);
	len[0] = off + nlh->nlmsg_len - (spoil == TRUNCATED ? 8 : 0);

	/* The kernel's next batch: the rest of the second peer, then the third. */
	nlh = device_start(dg[1], WG_CMD_GET_DEVICE, SEQ, 0);
	mnl_attr_put_u32(nlh, WGDEVICE_A_IFINDEX, 7);
	peers = mnl_attr_nest_start(nlh, WGDEVICE_A_PEERS);
	put_peer(nlh, 0xa2, ips2b, 1, false);
	put_peer(nlh, 0xa3, NULL, 0, false);
	mnl_attr_nest_end(nlh, peers);
	len[1] = spoil == OVERSIZED ? DGRAM_MAX : nlh->nlmsg_len;
	if (spoil == NO_DONE)
		return 2;
	if (spoil == HUGE_LEN) {
		nlh = reply_start(dg[1], NLMSG_NOOP, SEQ + 1, 0);
		nlh->nlmsg_len = 0x80000300;
		len[1] = 29;
	}

	nlh = reply_start(dg[2], NLMSG_DONE, SEQ, 0);
	err = spoil == DONE_ENODEV ? -ENODEV : 0;
	mnl_nlmsg_put_extra_header(nlh, sizeof(err));
	memcpy(mnl_nlmsg_get_payload(nlh), &err, sizeof(err));
	len[2] = nlh->nlmsg_len;
	return 3;
}

struct dumped {
	const struct dump_case *c;
	unsigned n;
	struct wgdev_peer_info peer[4];
};

static int on_dumped(void *arg, const struct wgdev_peer_info *p)
{
	struct dumped *d = arg;

	if (d->n == 4)
		fail_msg("case %s: more than three peers", cur_case);
	d->peer[d->n++] = *p;
	return d->n == d->c->stop_at ? 5 : 0;
}

static void expect_peer(const struct wgdev_peer_info *p, uint8_t key, const char *const *cidrs,
			unsigned n)
{
	char buf[CIDR_STR];

	EXPECT_EQ(p->pubkey[0], key);
	EXPECT_EQ(p->pubkey[WG_KEY_LEN - 1], key);
	EXPECT_EQ(p->n_allowed, n);
	for (unsigned i = 0; i < n; i++)
		EXPECT_STREQ(cidr_format(&p->allowed[i], buf), cidrs[i]);
}

static void test_dump_parse(void **state)
{
	static const char *const ips1[] = { "10.0.0.2/32", "fd00::2/128" };
	static const char *const ips2[] = { "10.0.1.0/24", "10.0.2.0/24" };
	uint8_t (*dg)[DGRAM_MAX] = malloc(3 * sizeof(*dg));

	(void)state;
	assert_non_null(dg);
	for (size_t i = 0; i < sizeof(dump_cases) / sizeof(dump_cases[0]); i++) {
		const struct dump_case *c = &dump_cases[i];
		const void *ptrs[3] = { dg[0], dg[1], dg[2] };
		struct dumped d = { .c = c };
		struct wgdev_info info;
		uint8_t priv[WG_KEY_LEN];
		size_t len[3];
		unsigned n;

		cur_case = c->name;
		n = build_reply(c->spoil, dg, len);
		memset(priv, 0xee, sizeof(priv));
		EXPECT_EQ(wgnl_parse_dump(ptrs, len, n, FAM, PORTID, SEQ, &info,
					  c->want_key ? priv : NULL, on_dumped, &d), c->ret);
		EXPECT_EQ(d.n, c->peers);
		if (d.n >= 1) {
			const struct sockaddr_in *sin;

			sin = (const struct sockaddr_in *)&d.peer[0].endpoint;
			expect_peer(&d.peer[0], 0xa1, ips1, 2);
			EXPECT_EQ(d.peer[0].rx_bytes, 100);
			EXPECT_EQ(d.peer[0].tx_bytes, 200);
			EXPECT_EQ(d.peer[0].keepalive_s, 25);
			EXPECT_EQ(d.peer[0].last_handshake_s, 1700000000);
			EXPECT_EQ(sin->sin_family, AF_INET);
			EXPECT_EQ(ntohs(sin->sin_port), 51820);
		}
		if (d.n >= 2) /* once, with the allowed IPs of both batches */
			expect_peer(&d.peer[1], 0xa2, ips2, 2);
		if (d.n >= 3)
			expect_peer(&d.peer[2], 0xa3, NULL, 0);
		if (c->ret == 0 || c->ret == -ENOKEY) {
			EXPECT_EQ(info.ifindex, 7);
			EXPECT_EQ(info.listen_port, 51820);
			EXPECT(info.has_public_key);
			EXPECT_EQ(info.public_key[0], 0x22);
		}
		EXPECT_EQ(priv[0], c->want_key && c->ret == 0 ? 0x11 : 0xee);
	}
	free(dg);
}

/* On this host there may be no kernel WireGuard at all; either way opening an interface
 * that does not exist must fail cleanly through the real socket path. */
static void test_open_absent(void **state)
{
	void *impl = NULL;
	int ret;

	(void)state;
	cur_case = "open of an absent interface";
	ret = wgnl_open(&impl, "wgws-absent0");
	if (ret != -EPROTONOSUPPORT && ret != -ENODEV && ret != -EPERM)
		fail_msg("case %s: wgnl_open gave %d (%s)", cur_case, ret, strerror(-ret));
	EXPECT(impl == NULL);
	cur_case = "open with an over-long name";
	EXPECT_EQ(wgnl_open(&impl, "wgws-gateway-123"), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_peer),
		cmocka_unit_test(test_set_peer_invalid),
		cmocka_unit_test(test_remove),
		cmocka_unit_test(test_dump_request),
		cmocka_unit_test(test_dump_parse),
		cmocka_unit_test(test_open_absent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
