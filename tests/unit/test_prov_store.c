/* SPDX-License-Identifier: MIT */
/* Unit tests for the provisioner's peer store (provisioner/store.c) through prov.h only.
 * Every test gets its own database in a mkdtemp() directory under /tmp, removed afterwards.
 * Time is always passed in explicitly, so hold-downs and expiry are exact, not slept for.
 * A side connection (plain sqlite3) is used only to check integrity and to damage rows the
 * store must then refuse to read. The crash test SIGKILLs a child mid-stream of creates and
 * checks every create it reported is in the reopened file. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>
#include <sqlite3.h>

#include "prov.h"

static const char *cur_case = "?";
#include "expect.h"

#define IP4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (d))

static const uint8_t prefix_a[8] = { 0xfd, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x03 };
static const uint8_t prefix_b[8] = { 0xfd, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x04 };

/* --- fixture --------------------------------------------------------------------------- */

struct fix {
	char dir[64];
	char path[128];
	struct store *st;
	struct store_pool pool;
};

/* A /24 by default: room for every test but the exhaustion ones, which set their own. */
static struct store_pool pool_default(void)
{
	return (struct store_pool){
		.has_ip4 = true,
		.ip4_first = IP4(10, 1, 0, 1),
		.ip4_last = IP4(10, 1, 0, 254),
		.has_ip6 = true,
		.ip6_prefix = { 0xfd, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x03 },
		.hold_down_s = 180,
	};
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/wgws-store-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/peers.db", f->dir);
	f->pool = pool_default();
	*state = f;
	cur_case = "?";
	return 0;
}

static void remove_db(const char *path)
{
	char p[160];

	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
}

static int teardown(void **state)
{
	struct fix *f = *state;

	store_close(f->st);
	remove_db(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void fix_open(struct fix *f)
{
	char err[256] = "";
	int ret;

	store_close(f->st);
	f->st = NULL;
	ret = store_open(&f->st, f->path, &f->pool, err, sizeof(err));
	if (ret)
		fail_msg("case %s: store_open: %d (%s)", cur_case, ret, err);
}

static void fix_close(struct fix *f)
{
	store_close(f->st);
	f->st = NULL;
}

/* --- peers ----------------------------------------------------------------------------- */

/* Keys in no particular order, so key order differs from creation order. */
static void key_of(unsigned i, uint8_t key[static WG_KEY_LEN])
{
	uint8_t in[4] = { (uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i };

	crypto_generichash(key, WG_KEY_LEN, in, sizeof(in), (const uint8_t *)"test-key", 8);
}

static void peer_init(struct store_peer *p, unsigned i)
{
	memset(p, 0, sizeof(*p));
	key_of(i, p->pubkey);
	snprintf(p->name, sizeof(p->name), "peer-%u", i);
}

static int create(struct fix *f, unsigned i, int64_t now, struct store_peer *out)
{
	struct store_peer p;

	peer_init(&p, i);
	int ret = store_create(f->st, &p, now);
	if (out)
		*out = p;
	return ret;
}

static void create_ok(struct fix *f, unsigned i, int64_t now, struct store_peer *out)
{
	int ret = create(f, i, now, out);

	if (ret)
		fail_msg("case %s: creating peer %u: %d", cur_case, i, ret);
}

static void expect_same_peer(const struct store_peer *a, const struct store_peer *b)
{
	EXPECT(!memcmp(a->pubkey, b->pubkey, WG_KEY_LEN));
	EXPECT_EQ(a->has_ip4, b->has_ip4);
	EXPECT_EQ(a->ip4, b->ip4);
	EXPECT_EQ(a->has_ip6, b->has_ip6);
	EXPECT(!memcmp(a->ip6, b->ip6, 16));
	EXPECT_EQ(a->has_psk, b->has_psk);
	EXPECT(!a->has_psk || !memcmp(a->psk, b->psk, WG_KEY_LEN));
	EXPECT_EQ(a->keepalive_s, b->keepalive_s);
	EXPECT(!strcmp(a->name, b->name));
	EXPECT_EQ(a->n_routes, b->n_routes);
	for (unsigned i = 0; i < a->n_routes && i < b->n_routes; i++)
		EXPECT(!memcmp(&a->routes[i], &b->routes[i], sizeof(a->routes[i])));
	EXPECT_EQ(a->created_at, b->created_at);
	EXPECT_EQ(a->expires_at, b->expires_at);
	EXPECT_EQ(a->last_seen, b->last_seen);
	EXPECT_EQ(a->installed_at, b->installed_at);
	EXPECT_EQ(a->has_last_ts, b->has_last_ts);
	EXPECT(!a->has_last_ts || !memcmp(a->last_ts, b->last_ts, WG_TAI64N_LEN));
}

static void expect_counts(struct fix *f, uint64_t stored, uint64_t installed)
{
	uint64_t s = 0, i = 0;

	EXPECT_EQ(store_count(f->st, &s, &i), 0);
	EXPECT_EQ(s, stored);
	EXPECT_EQ(i, installed);
}

/* p's own address of that family as a host route. */
static void host_of(const struct store_peer *p, int family, struct cidr *c)
{
	uint32_t ip = htonl(p->ip4);

	memset(c, 0, sizeof(*c));
	c->family = (uint8_t)family;
	c->bits = family == AF_INET ? 32 : 128;
	memcpy(c->addr, family == AF_INET ? (const void *)&ip : p->ip6, family == AF_INET ? 4 : 16);
}

/* Collects what a listing delivers. */
struct collect {
	unsigned n, cap;
	struct store_peer *p;
	unsigned stop_after; /* 0: never */
	int stop_ret;
	struct store *del_st; /* non-NULL: delete each delivered peer (re-entrancy) */
	int64_t del_now;
};

static int collect_fn(void *arg, const struct store_peer *p)
{
	struct collect *c = arg;

	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 64;
		c->p = realloc(c->p, c->cap * sizeof(*c->p));
		assert_non_null(c->p);
	}
	c->p[c->n++] = *p;
	if (c->del_st && store_delete(c->del_st, p->pubkey, c->del_now))
		return -EIO;
	if (c->stop_after && c->n == c->stop_after)
		return c->stop_ret;
	return 0;
}

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, WG_KEY_LEN);
}

/* --- allocation ------------------------------------------------------------------------ */

static void test_alloc_exhaust(void **state)
{
	struct fix *f = *state;
	struct store_peer p, got;
	bool seen[16] = { false };

	cur_case = "/28 pool";
	f->pool.ip4_first = IP4(10, 1, 0, 16);
	f->pool.ip4_last = IP4(10, 1, 0, 31);
	fix_open(f);
	for (unsigned i = 0; i < 16; i++) {
		create_ok(f, i, 1000, &p);
		EXPECT(p.has_ip4);
		EXPECT_EQ(p.ip4, f->pool.ip4_first + i); /* high-water mark: in order */
		EXPECT(p.ip4 >= f->pool.ip4_first && p.ip4 <= f->pool.ip4_last);
		EXPECT(!seen[p.ip4 - f->pool.ip4_first]);
		seen[p.ip4 - f->pool.ip4_first] = true;
		EXPECT_EQ(p.created_at, 1000);
		EXPECT_EQ(store_get(f->st, p.pubkey, &got), 0);
		expect_same_peer(&p, &got);
	}
	cur_case = "/28 pool exhausted";
	EXPECT_EQ(create(f, 16, 1000, &p), -EADDRNOTAVAIL);
	EXPECT_EQ(store_get(f->st, p.pubkey, &got), -ENOENT);
	expect_counts(f, 16, 0);
	cur_case = "/28 pool exhausted after reopen";
	fix_open(f);
	EXPECT_EQ(create(f, 17, 5000, NULL), -EADDRNOTAVAIL);
	expect_counts(f, 16, 0);
}

static void test_create_exists(void **state)
{
	struct fix *f = *state;
	struct store_peer a, again, got, c;

	fix_open(f);
	cur_case = "duplicate key";
	create_ok(f, 1, 1000, &a);
	create_ok(f, 2, 1000, NULL);
	peer_init(&again, 1);
	snprintf(again.name, sizeof(again.name), "second");
	again.has_psk = true;
	memset(again.psk, 7, sizeof(again.psk));
	EXPECT_EQ(store_create(f->st, &again, 2000), -EEXIST);
	EXPECT_EQ(store_get(f->st, a.pubkey, &got), 0);
	expect_same_peer(&a, &got);
	expect_counts(f, 2, 0);
	cur_case = "no address consumed by -EEXIST";
	create_ok(f, 3, 1000, &c);
	EXPECT_EQ(c.ip4, f->pool.ip4_first + 2);

	cur_case = "-EEXIST inside a caller's transaction";
	EXPECT_EQ(store_begin(f->st), 0);
	EXPECT_EQ(store_begin(f->st), -EBUSY);
	create_ok(f, 4, 1000, NULL);
	EXPECT_EQ(create(f, 1, 1000, NULL), -EEXIST);
	create_ok(f, 5, 1000, &c);
	EXPECT_EQ(c.ip4, f->pool.ip4_first + 4);
	EXPECT_EQ(store_checkpoint(f->st, false), -EBUSY);
	EXPECT_EQ(store_commit(f->st), 0);
	EXPECT_EQ(store_commit(f->st), -EINVAL);
	fix_open(f);
	for (unsigned i = 1; i <= 5; i++) {
		struct store_peer p;

		peer_init(&p, i);
		EXPECT_EQ(store_get(f->st, p.pubkey, &got), 0);
	}
	expect_counts(f, 5, 0);
}

enum op { OP_CREATE, OP_DELETE };

struct hold_step {
	const char *name;
	enum op op;
	unsigned peer;
	int64_t now;
	int want;
	int ip_of; /* OP_CREATE: expect the address peer ip_of had; -1: a fresh one */
};

static void test_hold_down(void **state)
{
	static const struct hold_step steps[] = {
		{ "fill 0", OP_CREATE, 0, 1000, 0, -1 },
		{ "fill 1", OP_CREATE, 1, 1000, 0, -1 },
		{ "fill 2", OP_CREATE, 2, 1000, 0, -1 },
		{ "fill 3", OP_CREATE, 3, 1000, 0, -1 },
		{ "release 2 at 1000", OP_DELETE, 2, 1000, 0, 0 },
		{ "release 0 at 1010", OP_DELETE, 0, 1010, 0, 0 },
		{ "delete again", OP_DELETE, 0, 1011, -ENOENT, 0 },
		{ "1 s before 2's hold-down ends", OP_CREATE, 4, 1179, -EADDRNOTAVAIL, 0 },
		{ "2's hold-down over", OP_CREATE, 4, 1180, 0, 2 },
		{ "1 s before 0's hold-down ends", OP_CREATE, 5, 1189, -EADDRNOTAVAIL, 0 },
		{ "0's hold-down over", OP_CREATE, 5, 1190, 0, 0 },
		{ "release 1 at 2000", OP_DELETE, 1, 2000, 0, 0 },
		{ "release 3 at 1990", OP_DELETE, 3, 1990, 0, 0 },
		{ "oldest release first (3)", OP_CREATE, 6, 3000, 0, 3 },
		{ "then 1", OP_CREATE, 7, 3000, 0, 1 },
		{ "full again", OP_CREATE, 8, 3000, -EADDRNOTAVAIL, 0 },
	};
	struct fix *f = *state;
	uint32_t ip[16] = { 0 };
	struct store_peer p;

	f->pool.ip4_first = IP4(10, 2, 0, 1);
	f->pool.ip4_last = IP4(10, 2, 0, 4);
	fix_open(f);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		const struct hold_step *s = &steps[i];

		cur_case = s->name;
		if (s->op == OP_DELETE) {
			key_of(s->peer, p.pubkey);
			EXPECT_EQ(store_delete(f->st, p.pubkey, s->now), s->want);
			continue;
		}
		EXPECT_EQ(create(f, s->peer, s->now, &p), s->want);
		if (s->want)
			continue;
		ip[s->peer] = p.ip4;
		if (s->ip_of >= 0)
			EXPECT_EQ(p.ip4, ip[s->ip_of]);
		else
			EXPECT_EQ(p.ip4, f->pool.ip4_first + s->peer);
	}
	expect_counts(f, 4, 0);
}

/* A released address is preferred over a fresh one only once its hold-down is over. */
static void test_hold_down_vs_fresh(void **state)
{
	struct fix *f = *state;
	struct store_peer p0, p;

	fix_open(f);
	cur_case = "free list vs high-water mark";
	create_ok(f, 0, 1000, &p0);
	create_ok(f, 1, 1000, NULL);
	EXPECT_EQ(store_delete(f->st, p0.pubkey, 1000), 0);
	create_ok(f, 2, 1100, &p);
	EXPECT_EQ(p.ip4, f->pool.ip4_first + 2);
	create_ok(f, 3, 1180, &p);
	EXPECT_EQ(p.ip4, p0.ip4);
	create_ok(f, 4, 5000, &p);
	EXPECT_EQ(p.ip4, f->pool.ip4_first + 3);
}

static void test_ip6(void **state)
{
	struct fix *f = *state;
	struct store_peer p, again, got;
	uint8_t h[crypto_generichash_BYTES];

	fix_open(f);
	for (unsigned i = 0; i < 20; i++) {
		cur_case = "prefix ‖ BLAKE2b(key)[0..8]";
		create_ok(f, i, 1000, &p);
		crypto_generichash(h, sizeof(h), p.pubkey, WG_KEY_LEN, NULL, 0);
		EXPECT(p.has_ip6);
		EXPECT(!memcmp(p.ip6, prefix_a, 8));
		EXPECT(!memcmp(p.ip6 + 8, h, 8));
		EXPECT_EQ(store_get(f->st, p.pubkey, &got), 0);
		EXPECT(!memcmp(got.ip6, p.ip6, 16));
		cur_case = "same key, same address after delete";
		EXPECT_EQ(store_delete(f->st, p.pubkey, 1000), 0);
		peer_init(&again, i);
		EXPECT_EQ(store_create(f->st, &again, 1001), 0);
		EXPECT(!memcmp(again.ip6, p.ip6, 16));
	}
}

static void test_pool_families(void **state)
{
	struct fix *f = *state;
	struct store_peer p, got;

	cur_case = "IPv6 only: no IPv4 limit";
	f->pool.has_ip4 = false;
	fix_open(f);
	for (unsigned i = 0; i < 300; i++) {
		create_ok(f, i, 1000, &p);
		EXPECT(!p.has_ip4);
		EXPECT(p.has_ip6);
	}
	EXPECT_EQ(store_get(f->st, p.pubkey, &got), 0);
	EXPECT(!got.has_ip4);
	EXPECT_EQ(store_delete(f->st, p.pubkey, 1000), 0);

	cur_case = "IPv4 only";
	fix_close(f);
	remove_db(f->path);
	f->pool = pool_default();
	f->pool.has_ip6 = false;
	fix_open(f);
	create_ok(f, 1, 1000, &p);
	EXPECT(p.has_ip4);
	EXPECT(!p.has_ip6);
	EXPECT_EQ(store_get(f->st, p.pubkey, &got), 0);
	expect_same_peer(&p, &got);
}

/* --- input checks and round trips ------------------------------------------------------ */

static void test_create_rejects(void **state)
{
	static const struct {
		const char *name;
		int what;
	} cases[] = {
		{ "name without NUL", 0 }, { "7 routes", 1 },       { "route with host bits", 2 },
		{ "route family 0", 3 },   { "route /33", 4 },      { "expires_at < 0", 5 },
		{ "now < 0", 6 },
	};
	struct fix *f = *state;
	struct store_peer p;

	fix_open(f);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t now = 1000;

		cur_case = cases[i].name;
		peer_init(&p, 1);
		switch (cases[i].what) {
		case 0:
			memset(p.name, 'x', sizeof(p.name));
			break;
		case 1:
			p.n_routes = PROV_MAX_ALLOWED - 1;
			for (unsigned r = 0; r < p.n_routes; r++)
				assert_int_equal(cidr_parse("10.9.0.0/16", &p.routes[r]), 0);
			break;
		case 2:
			p.n_routes = 1;
			assert_int_equal(cidr_parse("10.9.0.0/16", &p.routes[0]), 0);
			p.routes[0].addr[3] = 1;
			break;
		case 3:
			p.n_routes = 1;
			p.routes[0].bits = 8;
			break;
		case 4:
			p.n_routes = 1;
			assert_int_equal(cidr_parse("10.9.0.0/16", &p.routes[0]), 0);
			p.routes[0].bits = 33;
			break;
		case 5:
			p.expires_at = -1;
			break;
		case 6:
			now = -1;
			break;
		}
		EXPECT_EQ(store_create(f->st, &p, now), -EINVAL);
		expect_counts(f, 0, 0);
	}
}

static void test_round_trip(void **state)
{
	static const char *const routes[] = { "192.168.7.0/24", "fd10::/48", "64.0.0.0/2",
					       "4000::/2", "10.20.30.40/32", "2001:db8::1/128" };
	struct fix *f = *state;
	struct store_peer p, got;

	fix_open(f);
	cur_case = "every field";
	peer_init(&p, 42);
	p.has_psk = true;
	for (unsigned i = 0; i < WG_KEY_LEN; i++)
		p.psk[i] = (uint8_t)(0xa0 + i);
	p.keepalive_s = 65535;
	memset(p.name, 'n', PROV_NAME_MAX);
	p.name[PROV_NAME_MAX] = '\0';
	p.n_routes = PROV_MAX_ALLOWED - 2;
	for (unsigned i = 0; i < p.n_routes; i++)
		assert_int_equal(cidr_parse(routes[i], &p.routes[i]), 0);
	p.expires_at = 99999;
	EXPECT_EQ(store_create(f->st, &p, 1234), 0);
	EXPECT_EQ(store_set_installed(f->st, p.pubkey, 1300), 0);
	EXPECT_EQ(store_set_last_seen(f->st, p.pubkey, 1299), 0);
	p.installed_at = 1300;
	p.last_seen = 1299;
	EXPECT_EQ(store_get(f->st, p.pubkey, &got), 0);
	expect_same_peer(&p, &got);
	cur_case = "zeros read back as absent";
	EXPECT_EQ(store_set_last_seen(f->st, p.pubkey, 0), 0);
	EXPECT_EQ(store_get(f->st, p.pubkey, &got), 0);
	EXPECT_EQ(got.last_seen, 0);
	EXPECT_EQ(store_set_last_seen(f->st, p.pubkey, -5), -EINVAL);
	cur_case = "routes of everything, alone in the store";
	EXPECT_EQ(store_delete(f->st, p.pubkey, 1400), 0);
	peer_init(&p, 43);
	p.n_routes = 2;
	assert_int_equal(cidr_parse("0.0.0.0/0", &p.routes[0]), 0);
	assert_int_equal(cidr_parse("::/0", &p.routes[1]), 0);
	EXPECT_EQ(store_create(f->st, &p, 1500), 0);
	EXPECT_EQ(store_get(f->st, p.pubkey, &got), 0);
	expect_same_peer(&p, &got);
	key_of(999, p.pubkey);
	EXPECT_EQ(store_set_last_seen(f->st, p.pubkey, 5), -ENOENT);
	EXPECT_EQ(store_get(f->st, p.pubkey, &got), -ENOENT);
	EXPECT_EQ(store_delete(f->st, p.pubkey, 5), -ENOENT);
}

/* --- allowed IPs that overlap another peer's ---------------------------------------------- */

/* A create with these routes; keeps the peer in *out. */
static int create_routes(struct fix *f, unsigned i, int64_t now, const char *const *routes,
			 struct store_peer *out)
{
	struct store_peer p;
	int ret;

	peer_init(&p, i);
	for (; *routes; routes++)
		assert_int_equal(cidr_parse(*routes, &p.routes[p.n_routes++]), 0);
	ret = store_create(f->st, &p, now);
	if (out)
		*out = p;
	return ret;
}

static void expect_conflict(struct fix *f, const char *mine, bool is_address, const char *theirs,
			    const uint8_t key[static WG_KEY_LEN])
{
	const struct store_conflict *cf = store_last_conflict(f->st);
	char a[CIDR_STR], b[CIDR_STR];

	EXPECT_STREQ(cidr_format(&cf->mine, a), mine);
	EXPECT_EQ(cf->mine_is_address, is_address);
	EXPECT_STREQ(cidr_format(&cf->theirs, b), theirs);
	EXPECT(!memcmp(cf->pubkey, key, WG_KEY_LEN));
}

static void test_overlap(void **state)
{
	enum { A = 1, B = 2, C = 3 };
	static const char *const routes_a[] = { "192.168.0.0/16", "fd10::/48", NULL };
	static const char *const routes_b[] = { "172.16.5.0/24", "10.99.0.8/29", NULL };
	static const char *const routes_c[] = { "2001:db8::1/128", NULL };
	static const struct {
		const char *name, *route;
		unsigned owner; /* 0: accepted; else the peer whose prefix it overlaps */
		const char *theirs; /* "A4"/"A6": A's own IPv4/IPv6 address */
	} cases[] = {
		{ "equal", "192.168.0.0/16", A, "192.168.0.0/16" },
		{ "inside", "192.168.77.0/24", A, "192.168.0.0/16" },
		{ "a host inside", "192.168.255.255/32", A, "192.168.0.0/16" },
		{ "containing", "192.0.0.0/8", A, "192.168.0.0/16" },
		{ "containing another's /29", "10.99.0.0/24", B, "10.99.0.8/29" },
		{ "last address of a /29", "10.99.0.15/32", B, "10.99.0.8/29" },
		{ "first address of a /29", "10.99.0.8/32", B, "10.99.0.8/29" },
		{ "just below a /29", "10.99.0.7/32", 0, NULL },
		{ "just above a /29", "10.99.0.16/32", 0, NULL },
		{ "the /24 before", "172.16.4.0/24", 0, NULL },
		{ "the /24 after", "172.16.6.0/24", 0, NULL },
		{ "everything IPv4", "0.0.0.0/0", A, "192.168.0.0/16" },
		{ "IPv6 inside", "fd10:0:0:1::/64", A, "fd10::/48" },
		{ "IPv6 next to it", "fd10:1::/48", 0, NULL },
		{ "IPv6 containing a host route", "2001:db8::/64", C, "2001:db8::1/128" },
		{ "IPv6 everything", "::/0", A, "fd10::/48" },
		{ "IPv4-mapped IPv6", "::ffff:192.168.0.0/112", 0, NULL },
		{ "containing a peer's IPv4 address", "10.1.0.0/24", A, "A4" },
		{ "a peer's IPv6 address", "A6", A, "A6" },
	};
	struct fix *f = *state;
	struct store_peer pa, pb, pc, p;
	char a4[CIDR_STR], a6[CIDR_STR];
	struct cidr c;
	uint8_t keys[4][WG_KEY_LEN];
	unsigned next = 100;

	fix_open(f);
	cur_case = "three peers with routes";
	EXPECT_EQ(create_routes(f, A, 1000, routes_a, &pa), 0);
	EXPECT_EQ(create_routes(f, B, 1000, routes_b, &pb), 0);
	EXPECT_EQ(create_routes(f, C, 1000, routes_c, &pc), 0);
	memcpy(keys[A], pa.pubkey, WG_KEY_LEN);
	memcpy(keys[B], pb.pubkey, WG_KEY_LEN);
	memcpy(keys[C], pc.pubkey, WG_KEY_LEN);
	host_of(&pa, AF_INET, &c);
	cidr_format(&c, a4);
	host_of(&pa, AF_INET6, &c);
	cidr_format(&c, a6);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *route = strcmp(cases[i].route, "A6") ? cases[i].route : a6;
		const char *theirs = !cases[i].theirs ? NULL : !strcmp(cases[i].theirs, "A4") ? a4 :
				     !strcmp(cases[i].theirs, "A6") ? a6 : cases[i].theirs;
		const char *routes[] = { route, NULL };
		int ret;

		cur_case = cases[i].name;
		ret = create_routes(f, next++, 1000, routes, &p);
		if (!cases[i].owner) {
			EXPECT_EQ(ret, 0);
			EXPECT_EQ(store_delete(f->st, p.pubkey, 1000), 0);
			continue;
		}
		EXPECT_EQ(ret, -EADDRINUSE);
		expect_conflict(f, route, false, theirs, keys[cases[i].owner]);
		EXPECT_EQ(store_get(f->st, p.pubkey, &p), -ENOENT);
		expect_counts(f, 3, 0);
	}

	cur_case = "the second route overlaps: nothing of the first is kept";
	const char *two[] = { "10.200.0.0/24", "192.168.1.0/24", NULL };
	EXPECT_EQ(create_routes(f, next++, 1000, two, NULL), -EADDRINUSE);
	expect_conflict(f, "192.168.1.0/24", false, "192.168.0.0/16", keys[A]);
	const char *first[] = { "10.200.0.0/24", NULL };
	EXPECT_EQ(create_routes(f, next++, 1000, first, NULL), 0);
	cur_case = "a create that works clears the last conflict";
	EXPECT_EQ(store_last_conflict(f->st)->mine.family, 0);

	cur_case = "a peer's own routes overlapping each other";
	const char *own[] = { "198.51.100.0/24", "198.51.100.128/25", NULL };
	EXPECT_EQ(create_routes(f, next++, 1000, own, NULL), -EINVAL);
	const char *dup[] = { "198.51.100.0/24", "198.51.100.0/24", NULL };
	EXPECT_EQ(create_routes(f, next++, 1000, dup, NULL), -EINVAL);

	cur_case = "a deleted peer's routes are free again";
	EXPECT_EQ(store_delete(f->st, pa.pubkey, 1000), 0);
	const char *again[] = { "192.168.0.0/16", "fd10::/48", NULL };
	EXPECT_EQ(create_routes(f, next++, 1000, again, NULL), 0);
	cur_case = "and still taken after a reopen";
	fix_open(f);
	EXPECT_EQ(create_routes(f, next++, 1000, again, NULL), -EADDRINUSE);
}

/* The address a create would get, inside another peer's route: refused (the pool does not
 * skip it: the operator has to take the route away). */
static void test_overlap_address(void **state)
{
	static const char *const route4[] = { "10.1.0.4/30", NULL };
	struct fix *f = *state;
	struct store_peer x, y, p;
	char r6[CIDR_STR], prefix[INET6_ADDRSTRLEN];
	uint8_t a6[16] = { 0 };

	fix_open(f);
	cur_case = "a route over the next addresses of the pool";
	EXPECT_EQ(create_routes(f, 1, 1000, route4, &x), 0); /* gets .1 */
	create_ok(f, 2, 1000, NULL);                           /* .2 */
	create_ok(f, 3, 1000, NULL);                           /* .3 */
	EXPECT_EQ(create(f, 4, 1000, &p), -EADDRINUSE);
	expect_conflict(f, "10.1.0.4/32", true, "10.1.0.4/30", x.pubkey);
	EXPECT_EQ(create(f, 5, 1000, &p), -EADDRINUSE); /* rolled back: the same address again */
	expect_counts(f, 3, 0);
	cur_case = "the route gone, the address is handed out";
	EXPECT_EQ(store_delete(f->st, x.pubkey, 1000), 0);
	create_ok(f, 4, 1000, &p);
	EXPECT_EQ(p.ip4, IP4(10, 1, 0, 4));

	cur_case = "a route over the IPv6 pool";
	memcpy(a6, f->pool.ip6_prefix, 8);
	inet_ntop(AF_INET6, a6, prefix, sizeof(prefix));
	snprintf(r6, sizeof(r6), "%s/64", prefix);
	const char *route6[] = { r6, NULL };
	/* Alone with its route: every stored peer's address is in it. */
	EXPECT_EQ(create_routes(f, 6, 1000, route6, &y), -EADDRINUSE);
	EXPECT_EQ(store_last_conflict(f->st)->mine_is_address, false);
	EXPECT_EQ(store_last_conflict(f->st)->theirs.family, AF_INET6);
	EXPECT_EQ(store_last_conflict(f->st)->theirs.bits, 128);
}

/* A schema 1 store (no route table) with overlaps already in it: opened, the table is built,
 * the overlaps are reported as a warning and kept, new ones are refused. */
static void test_overlap_migrate(void **state)
{
	static const char *const r1[] = { "10.60.0.0/16", NULL };
	static const char *const r2[] = { "10.61.0.0/24", NULL };
	static const char *const inside[] = { "10.60.9.0/24", NULL };
	static const char *const inside2[] = { "10.60.5.128/25", NULL };
	static const char *const around[] = { "10.0.0.0/8", NULL };
	struct fix *f = *state;
	struct store_peer p1, p2;
	char err[512];
	sqlite3 *db;
	sqlite3_stmt *s;
	int ret;

	fix_open(f);
	EXPECT_EQ(create_routes(f, 1, 1000, r1, &p1), 0);
	EXPECT_EQ(create_routes(f, 2, 1000, r2, &p2), 0);
	fix_close(f);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "DROP TRIGGER peer_route_del; DROP TABLE route;"
				      "UPDATE meta SET version = 1;"
				      "UPDATE peer SET routes = '10.60.5.0/24'"
				      " WHERE routes = '10.61.0.0/24'", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);

	cur_case = "open a schema 1 store holding an overlap";
	err[0] = '\0';
	ret = store_open(&f->st, f->path, &f->pool, err, sizeof(err));
	EXPECT_EQ(ret, 0);
	if (!strstr(err, "1 allowed IPs overlap") || !strstr(err, "10.60.0.0/16") ||
	    !strstr(err, "10.60.5.0/24"))
		fail_msg("case %s: the warning is \"%s\"", cur_case, err);
	cur_case = "the overlap is kept";
	EXPECT_EQ(store_get(f->st, p2.pubkey, &p2), 0);
	EXPECT_EQ(p2.n_routes, 1);
	cur_case = "a new overlap is refused, beside the nested prefix";
	EXPECT_EQ(create_routes(f, 3, 1000, inside, NULL), -EADDRINUSE);
	expect_conflict(f, "10.60.9.0/24", false, "10.60.0.0/16", p1.pubkey);
	cur_case = "a new overlap is refused, inside the nested prefix";
	EXPECT_EQ(create_routes(f, 3, 1000, inside2, NULL), -EADDRINUSE);
	expect_conflict(f, "10.60.5.128/25", false, "10.60.5.0/24", p2.pubkey);
	cur_case = "a new overlap is refused, around both";
	EXPECT_EQ(create_routes(f, 3, 1000, around, NULL), -EADDRINUSE);
	EXPECT_EQ(store_last_conflict(f->st)->theirs.bits == 16 ||
		  store_last_conflict(f->st)->theirs.bits == 24, 1);
	cur_case = "the old route of the changed peer is free";
	EXPECT_EQ(create_routes(f, 4, 1000, r2, NULL), 0);
	cur_case = "the file says schema 2";
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT version FROM meta", -1, &s, NULL),
			 SQLITE_OK);
	EXPECT_EQ(sqlite3_step(s), SQLITE_ROW);
	EXPECT_EQ(sqlite3_column_int(s, 0), 2);
	sqlite3_finalize(s);
	sqlite3_close(db);

	cur_case = "overlap deleted: no warning at the next open";
	EXPECT_EQ(store_delete(f->st, p2.pubkey, 1000), 0);
	fix_close(f);
	err[0] = 'x';
	EXPECT_EQ(store_open(&f->st, f->path, &f->pool, err, sizeof(err)), 0);
	EXPECT_STREQ(err, "");

	cur_case = "a store from a later schema is refused";
	fix_close(f);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE meta SET version = 3", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	EXPECT_EQ(store_open(&f->st, f->path, &f->pool, err, sizeof(err)), -EPROTONOSUPPORT);
	EXPECT(f->st == NULL);
}

/* --- listings -------------------------------------------------------------------------- */

static void test_expiry(void **state)
{
	static const int64_t expires[] = { 0, 100, 50, 200, 50, 100, 0, 150 };
	static const struct {
		const char *name;
		int64_t now;
		unsigned limit;
		int want;
	} cases[] = {
		{ "nothing expired yet", 49, 10, 0 }, { "first two at 50", 50, 10, 2 },
		{ "<= 100", 100, 10, 4 },             { "limit 3", 100, 3, 3 },
		{ "all but never", 1000, 100, 6 },    { "limit 0", 1000, 0, 0 },
		{ "limit 1", 1000, 1, 1 },
	};
	struct fix *f = *state;
	struct store_peer p;

	fix_open(f);
	for (unsigned i = 0; i < sizeof(expires) / sizeof(expires[0]); i++) {
		peer_init(&p, i);
		p.expires_at = expires[i];
		EXPECT_EQ(store_create(f->st, &p, 10), 0);
	}
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct collect col = { 0 };

		cur_case = cases[c].name;
		EXPECT_EQ(store_list_expired(f->st, cases[c].now, cases[c].limit, collect_fn, &col),
			  cases[c].want);
		EXPECT_EQ(col.n, cases[c].want);
		for (unsigned i = 0; i < col.n; i++) {
			EXPECT(col.p[i].expires_at != 0);
			EXPECT(col.p[i].expires_at <= cases[c].now);
			if (i)
				EXPECT(col.p[i - 1].expires_at < col.p[i].expires_at ||
				       (col.p[i - 1].expires_at == col.p[i].expires_at &&
					key_cmp(col.p[i - 1].pubkey, col.p[i].pubkey) < 0));
		}
		free(col.p);
	}
}

/* The GC's sweep deletes in the callback; batches must neither skip nor repeat a peer. */
static void test_expiry_delete_in_callback(void **state)
{
	struct fix *f = *state;
	struct collect col = { 0 };
	struct store_peer p;

	fix_open(f);
	cur_case = "delete while listing, 3 batches";
	for (unsigned i = 0; i < 80; i++) {
		peer_init(&p, i);
		p.expires_at = i < 70 ? 100 + i % 5 : 0;
		EXPECT_EQ(store_create(f->st, &p, 10), 0);
	}
	col.del_st = f->st;
	col.del_now = 200;
	EXPECT_EQ(store_begin(f->st), 0);
	EXPECT_EQ(store_list_expired(f->st, 200, 1000, collect_fn, &col), 70);
	EXPECT_EQ(store_commit(f->st), 0);
	qsort(col.p, col.n, sizeof(*col.p), key_cmp);
	for (unsigned i = 1; i < col.n; i++)
		EXPECT(memcmp(col.p[i - 1].pubkey, col.p[i].pubkey, WG_KEY_LEN) != 0);
	free(col.p);
	expect_counts(f, 10, 0);
	EXPECT_EQ(store_list_expired(f->st, 200, 1000, collect_fn, &(struct collect){ 0 }), 0);
}

static void test_installed(void **state)
{
	static const int64_t at[] = { 500, 100, 300, 0, 100, 200 };
	struct fix *f = *state;
	struct collect col = { 0 };
	struct store_peer p;

	fix_open(f);
	cur_case = "oldest installed first";
	for (unsigned i = 0; i < 6; i++) {
		create_ok(f, i, 10, &p);
		if (at[i])
			EXPECT_EQ(store_set_installed(f->st, p.pubkey, at[i]), 0);
	}
	expect_counts(f, 6, 5);
	EXPECT_EQ(store_list_installed(f->st, 10, collect_fn, &col), 5);
	for (unsigned i = 1; i < col.n; i++)
		EXPECT(col.p[i - 1].installed_at < col.p[i].installed_at ||
		       (col.p[i - 1].installed_at == col.p[i].installed_at &&
			memcmp(col.p[i - 1].pubkey, col.p[i].pubkey, WG_KEY_LEN) < 0));
	EXPECT_EQ(col.p[0].installed_at, 100);
	EXPECT_EQ(col.p[4].installed_at, 500);
	free(col.p);

	cur_case = "limit 2";
	col = (struct collect){ 0 };
	EXPECT_EQ(store_list_installed(f->st, 2, collect_fn, &col), 2);
	EXPECT_EQ(col.p[0].installed_at, 100);
	EXPECT_EQ(col.p[1].installed_at, 100);
	free(col.p);

	cur_case = "removed from the device";
	key_of(1, p.pubkey);
	EXPECT_EQ(store_set_installed(f->st, p.pubkey, 0), 0);
	col = (struct collect){ 0 };
	EXPECT_EQ(store_list_installed(f->st, 10, collect_fn, &col), 4);
	EXPECT_EQ(col.p[0].installed_at, 100);
	EXPECT_EQ(col.p[1].installed_at, 200);
	free(col.p);
	key_of(77, p.pubkey);
	EXPECT_EQ(store_set_installed(f->st, p.pubkey, 5), -ENOENT);

	cur_case = "many installed, several batches";
	for (unsigned i = 100; i < 170; i++) {
		create_ok(f, i, 10, &p);
		EXPECT_EQ(store_set_installed(f->st, p.pubkey, 1000 + i % 7), 0);
	}
	col = (struct collect){ 0 };
	EXPECT_EQ(store_list_installed(f->st, 1000, collect_fn, &col), 74);
	for (unsigned i = 1; i < col.n; i++)
		EXPECT(col.p[i - 1].installed_at < col.p[i].installed_at ||
		       (col.p[i - 1].installed_at == col.p[i].installed_at &&
			memcmp(col.p[i - 1].pubkey, col.p[i].pubkey, WG_KEY_LEN) < 0));
	free(col.p);
}

static void test_pagination(void **state)
{
	static const unsigned limits[] = { 1, 2, 7, 31, 32, 33, 64, 100, 1000 };
	enum { N = 100 };
	struct fix *f = *state;
	uint8_t keys[N][WG_KEY_LEN];
	char name[32];

	fix_open(f);
	for (unsigned i = 0; i < N; i++) {
		create_ok(f, i, 10, NULL);
		key_of(i, keys[i]);
	}
	qsort(keys, N, WG_KEY_LEN, key_cmp);
	for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++) {
		struct collect col = { 0 };
		const uint8_t *after = NULL;
		unsigned pages = 0;
		int n;

		snprintf(name, sizeof(name), "limit %u", limits[l]);
		cur_case = name;
		do {
			unsigned before = col.n;

			n = store_list(f->st, after, limits[l], collect_fn, &col);
			EXPECT(n >= 0 && (unsigned)n <= limits[l]);
			EXPECT_EQ(col.n - before, n);
			if (col.n)
				after = col.p[col.n - 1].pubkey;
			EXPECT(++pages <= N + 1);
		} while ((unsigned)n == limits[l]);
		EXPECT_EQ(col.n, N);
		for (unsigned i = 0; i < N && i < col.n; i++)
			EXPECT(!memcmp(col.p[i].pubkey, keys[i], WG_KEY_LEN));
		free(col.p);
	}

	cur_case = "after a deleted key";
	struct collect col = { 0 };
	EXPECT_EQ(store_delete(f->st, keys[50], 10), 0);
	EXPECT_EQ(store_list(f->st, keys[50], 2, collect_fn, &col), 2);
	EXPECT(!memcmp(col.p[0].pubkey, keys[51], WG_KEY_LEN));
	EXPECT(!memcmp(col.p[1].pubkey, keys[52], WG_KEY_LEN));
	free(col.p);

	cur_case = "after the last key";
	col = (struct collect){ 0 };
	EXPECT_EQ(store_list(f->st, keys[N - 1], 10, collect_fn, &col), 0);
	cur_case = "limit 0";
	EXPECT_EQ(store_list(f->st, NULL, 0, collect_fn, &col), 0);

	cur_case = "callback stops with a positive value";
	col = (struct collect){ .stop_after = 3, .stop_ret = 1 };
	EXPECT_EQ(store_list(f->st, NULL, 50, collect_fn, &col), 3);
	free(col.p);
	cur_case = "callback fails";
	col = (struct collect){ .stop_after = 40, .stop_ret = -ECANCELED };
	EXPECT_EQ(store_list(f->st, NULL, 50, collect_fn, &col), -ECANCELED);
	EXPECT_EQ(col.n, 40);
	free(col.p);
}

/* --- replay guard ---------------------------------------------------------------------- */

static void tai64n(uint64_t sec, uint32_t nsec, uint8_t out[static WG_TAI64N_LEN])
{
	uint64_t label = (1ULL << 62) + sec;

	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(label >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		out[8 + i] = (uint8_t)(nsec >> (24 - 8 * i));
}

static void test_timestamp(void **state)
{
	static const struct {
		const char *name;
		bool unknown_key;
		uint64_t sec;
		uint32_t nsec;
		int want;
	} steps[] = {
		{ "first", false, 1000, 5, 0 },
		{ "equal", false, 1000, 5, -EALREADY },
		{ "older nsec", false, 1000, 4, -EALREADY },
		{ "older sec, larger nsec", false, 999, 999999999, -EALREADY },
		{ "newer nsec", false, 1000, 6, 0 },
		{ "newer sec, smaller nsec", false, 1001, 0, 0 },
		{ "replay of the first", false, 1000, 5, -EALREADY },
		{ "far future", false, 1ULL << 40, 0, 0 },
		{ "after the far future", false, 2000, 0, -EALREADY },
		{ "unknown key", true, 5000, 0, -ENOENT },
	};
	struct fix *f = *state;
	struct store_peer p, got;
	uint8_t ts[WG_TAI64N_LEN], unknown[WG_KEY_LEN];

	fix_open(f);
	create_ok(f, 1, 10, &p);
	key_of(2, unknown);
	cur_case = "no timestamp yet";
	EXPECT_EQ(store_get(f->st, p.pubkey, &got), 0);
	EXPECT(!got.has_last_ts);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		cur_case = steps[i].name;
		tai64n(steps[i].sec, steps[i].nsec, ts);
		EXPECT_EQ(store_accept_timestamp(f->st, steps[i].unknown_key ? unknown : p.pubkey,
						 ts), steps[i].want);
	}
	cur_case = "highest kept, across reopen";
	fix_open(f);
	tai64n(1ULL << 40, 0, ts);
	EXPECT_EQ(store_get(f->st, p.pubkey, &got), 0);
	EXPECT(got.has_last_ts);
	EXPECT(!memcmp(got.last_ts, ts, WG_TAI64N_LEN));
	EXPECT_EQ(store_accept_timestamp(f->st, p.pubkey, ts), -EALREADY);

	cur_case = "deleted and created again: the guard is given back";
	EXPECT_EQ(store_delete(f->st, p.pubkey, 100), 0);
	create_ok(f, 1, 200, &p);
	EXPECT_EQ(store_get(f->st, p.pubkey, &got), 0);
	EXPECT(got.has_last_ts);
	EXPECT(!memcmp(got.last_ts, ts, WG_TAI64N_LEN));
	tai64n(1000, 5, ts);
	EXPECT_EQ(store_accept_timestamp(f->st, p.pubkey, ts), -EALREADY);
	tai64n((1ULL << 40) + 1, 0, ts);
	EXPECT_EQ(store_accept_timestamp(f->st, p.pubkey, ts), 0);
	cur_case = "a key never seen starts with none";
	create_ok(f, 3, 200, &p);
	EXPECT_EQ(store_get(f->st, p.pubkey, &got), 0);
	EXPECT(!got.has_last_ts);
}

/* --- counts, reopen, pools ------------------------------------------------------------- */

static void test_counts(void **state)
{
	struct fix *f = *state;
	uint8_t k[6][WG_KEY_LEN];

	fix_open(f);
	cur_case = "empty";
	expect_counts(f, 0, 0);
	for (unsigned i = 0; i < 5; i++) {
		create_ok(f, i, 10, NULL);
		key_of(i, k[i]);
	}
	cur_case = "5 created";
	expect_counts(f, 5, 0);
	cur_case = "2 installed";
	EXPECT_EQ(store_set_installed(f->st, k[0], 100), 0);
	EXPECT_EQ(store_set_installed(f->st, k[1], 100), 0);
	expect_counts(f, 5, 2);
	cur_case = "re-installed is not counted twice";
	EXPECT_EQ(store_set_installed(f->st, k[0], 200), 0);
	expect_counts(f, 5, 2);
	cur_case = "installed one deleted";
	EXPECT_EQ(store_delete(f->st, k[1], 300), 0);
	expect_counts(f, 4, 1);
	cur_case = "-EEXIST changes nothing";
	EXPECT_EQ(create(f, 0, 10, NULL), -EEXIST);
	expect_counts(f, 4, 1);
	cur_case = "counts survive reopen";
	fix_open(f);
	expect_counts(f, 4, 1);
	cur_case = "uninstalled twice";
	EXPECT_EQ(store_set_installed(f->st, k[0], 0), 0);
	EXPECT_EQ(store_set_installed(f->st, k[0], 0), 0);
	expect_counts(f, 4, 0);
	cur_case = "NULL outputs";
	EXPECT_EQ(store_count(f->st, NULL, NULL), 0);
}

static void test_reopen(void **state)
{
	enum { N = 12 };
	struct fix *f = *state;
	struct store_peer before[N], got;
	uint8_t ts[WG_TAI64N_LEN];

	fix_open(f);
	for (unsigned i = 0; i < N; i++) {
		struct store_peer *p = &before[i];

		peer_init(p, i);
		p->has_psk = i % 2;
		memset(p->psk, (int)i, sizeof(p->psk));
		p->keepalive_s = (uint16_t)(i * 5);
		p->expires_at = i % 3 ? 10000 + i : 0;
		if (i % 4 == 1) {
			char r4[CIDR_STR], r6[CIDR_STR];

			snprintf(r4, sizeof(r4), "10.50.%u.0/24", i);
			snprintf(r6, sizeof(r6), "fd99:%x::/64", i);
			p->n_routes = 2;
			assert_int_equal(cidr_parse(r4, &p->routes[0]), 0);
			assert_int_equal(cidr_parse(r6, &p->routes[1]), 0);
		}
		EXPECT_EQ(store_create(f->st, p, 100 + i), 0);
		if (i % 3 == 0) {
			p->installed_at = 500 + i;
			EXPECT_EQ(store_set_installed(f->st, p->pubkey, p->installed_at), 0);
		}
		if (i % 5 == 0) {
			p->last_seen = 600 + i;
			EXPECT_EQ(store_set_last_seen(f->st, p->pubkey, p->last_seen), 0);
		}
		if (i % 2 == 0) {
			tai64n(700 + i, i, ts);
			p->has_last_ts = true;
			memcpy(p->last_ts, ts, sizeof(ts));
			EXPECT_EQ(store_accept_timestamp(f->st, p->pubkey, ts), 0);
		}
	}
	EXPECT_EQ(store_checkpoint(f->st, false), 0);
	fix_close(f);
	fix_open(f);
	for (unsigned i = 0; i < N; i++) {
		cur_case = before[i].name;
		EXPECT_EQ(store_get(f->st, before[i].pubkey, &got), 0);
		expect_same_peer(&before[i], &got);
	}
	cur_case = "allocation continues after reopen";
	create_ok(f, 100, 1000, &got);
	EXPECT_EQ(got.ip4, f->pool.ip4_first + N);
	cur_case = "truncating checkpoint empties the WAL";
	struct stat sb;
	char wal[160];

	EXPECT_EQ(store_checkpoint(f->st, true), 0);
	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	EXPECT_EQ(stat(wal, &sb), 0);
	EXPECT_EQ(sb.st_size, 0);
	cur_case = "the file is private";
	EXPECT_EQ(stat(f->path, &sb), 0);
	EXPECT_EQ(sb.st_mode & 077, 0);
}

enum { P_SAME, P_FIRST, P_NO_IP4, P_LAST_BELOW, P_LAST_AT_MARK, P_LAST_GROWN, P_PREFIX, P_NO_IP6,
       P_HOLD, P_INVERTED };

static void test_pool_conflict(void **state)
{
	static const struct {
		const char *name;
		int change;
		int want;
		const char *msg; /* in err when want != 0 */
	} cases[] = {
		{ "same pool", P_SAME, 0, NULL },
		{ "IPv4 start moved", P_FIRST, -EINVAL, "starts at 10.3.0.9" },
		{ "IPv4 pool removed", P_NO_IP4, -EINVAL, "no IPv4 pool" },
		{ "end below an address handed out", P_LAST_BELOW, -EINVAL,
		  "10.3.0.12 was handed out" },
		{ "end at the highest address handed out", P_LAST_AT_MARK, 0, NULL },
		{ "end grown", P_LAST_GROWN, 0, NULL },
		{ "IPv6 prefix changed", P_PREFIX, -EINVAL, "fd00:1:2:4::/64" },
		{ "IPv6 removed", P_NO_IP6, -EINVAL, "IPv6 prefix" },
		{ "hold-down below 180 s", P_HOLD, -EINVAL, "hold-down" },
		{ "first after last", P_INVERTED, -EINVAL, "ends before" },
	};
	struct fix *f = *state;
	struct store_pool base = pool_default();
	struct store *st;
	char err[256];

	base.ip4_first = IP4(10, 3, 0, 10);
	base.ip4_last = IP4(10, 3, 0, 20);
	f->pool = base;
	fix_open(f);
	for (unsigned i = 0; i < 3; i++)
		create_ok(f, i, 10, NULL); /* .10 .11 .12 handed out */
	fix_close(f);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct store_pool p = base;

		cur_case = cases[c].name;
		switch (cases[c].change) {
		case P_FIRST: p.ip4_first = IP4(10, 3, 0, 9); break;
		case P_NO_IP4: p.has_ip4 = false; break;
		case P_LAST_BELOW: p.ip4_last = IP4(10, 3, 0, 11); break;
		case P_LAST_AT_MARK: p.ip4_last = IP4(10, 3, 0, 12); break;
		case P_LAST_GROWN: p.ip4_last = IP4(10, 3, 0, 200); break;
		case P_PREFIX: memcpy(p.ip6_prefix, prefix_b, 8); break;
		case P_NO_IP6: p.has_ip6 = false; break;
		case P_HOLD: p.hold_down_s = 179; break;
		case P_INVERTED: p.ip4_first = IP4(10, 3, 0, 30); break;
		}
		err[0] = '\0';
		st = NULL;
		EXPECT_EQ(store_open(&st, f->path, &p, err, sizeof(err)), cases[c].want);
		if (cases[c].want) {
			EXPECT(st == NULL);
			if (!strstr(err, cases[c].msg))
				fail_msg("case %s: message \"%s\" lacks \"%s\"", cur_case, err,
					 cases[c].msg);
		} else {
			EXPECT(st != NULL);
		}
		if (cases[c].change == P_LAST_AT_MARK) {
			struct store_peer q;

			peer_init(&q, 50);
			EXPECT_EQ(store_create(st, &q, 10), -EADDRNOTAVAIL);
		}
		store_close(st);
	}
	cur_case = "grown pool hands out the next address";
	f->pool = base;
	f->pool.ip4_last = IP4(10, 3, 0, 200);
	fix_open(f);
	struct store_peer q;
	create_ok(f, 60, 10, &q);
	EXPECT_EQ(q.ip4, IP4(10, 3, 0, 13));
}

static void test_pool_unused_may_change(void **state)
{
	struct fix *f = *state;
	struct store_peer p;

	cur_case = "a pool never used may move";
	fix_open(f);
	fix_close(f);
	f->pool.ip4_first = IP4(10, 9, 0, 1);
	f->pool.ip4_last = IP4(10, 9, 0, 9);
	memcpy(f->pool.ip6_prefix, prefix_b, 8);
	fix_open(f);
	create_ok(f, 1, 10, &p);
	EXPECT_EQ(p.ip4, IP4(10, 9, 0, 1));
	EXPECT(!memcmp(p.ip6, prefix_b, 8));
}

static void test_foreign_db(void **state)
{
	struct fix *f = *state;
	struct store *st = NULL;
	sqlite3 *db;
	char err[256] = "";

	cur_case = "a database that is not ours";
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TABLE foo (x)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	EXPECT_EQ(store_open(&st, f->path, &f->pool, err, sizeof(err)), -EINVAL);
	EXPECT(strstr(err, "not a wgws peer store") != NULL);
	cur_case = "not a database at all";
	remove_db(f->path);
	FILE *fp = fopen(f->path, "w");
	assert_non_null(fp);
	for (int i = 0; i < 1000; i++)
		fputs("garbage ", fp);
	fclose(fp);
	err[0] = '\0';
	EXPECT(store_open(&st, f->path, &f->pool, err, sizeof(err)) < 0);
	EXPECT(err[0] != '\0');
	EXPECT(st == NULL);
}

/* --- damaged rows ---------------------------------------------------------------------- */

static void test_corrupt_rows(void **state)
{
	static const struct {
		const char *name;
		const char *sql; /* applied to the one peer's row */
	} cases[] = {
		{ "pubkey of 31 bytes", "UPDATE peer SET pubkey = substr(pubkey, 1, 31)" },
		{ "name of 65 bytes", "UPDATE peer SET name = printf('%065d', 0)" },
		{ "name with a NUL", "UPDATE peer SET name = CAST(x'41004200' AS TEXT)" },
		{ "routes garbage", "UPDATE peer SET routes = '10.0.0.0/8,bogus'" },
		{ "route with host bits", "UPDATE peer SET routes = '10.0.0.1/8'" },
		{ "empty route", "UPDATE peer SET routes = '10.0.0.0/8,'" },
		{ "7 routes", "UPDATE peer SET routes = '::/0,::/0,::/0,::/0,::/0,::/0,::/0'"
			      "" },
		{ "routes too long", "UPDATE peer SET routes = printf('%0500d', 0)" },
		{ "keepalive 70000", "UPDATE peer SET keepalive = 70000" },
		{ "ip4 negative", "UPDATE peer SET ip4 = -1" },
		{ "ip4 above 32 bits", "UPDATE peer SET ip4 = 4294967296" },
		{ "ip6 of 15 bytes", "UPDATE peer SET ip6 = zeroblob(15)" },
		{ "psk of 31 bytes", "UPDATE peer SET psk = zeroblob(31)" },
		{ "last_ts of 11 bytes", "UPDATE peer SET last_ts = zeroblob(11)" },
		{ "negative created_at", "UPDATE peer SET created_at = -1" },
	};
	struct fix *f = *state;
	struct store_peer p, got;
	struct collect col;

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		sqlite3 *db;
		sqlite3_stmt *s;
		char sql[256];

		cur_case = cases[c].name;
		fix_close(f);
		remove_db(f->path);
		fix_open(f);
		create_ok(f, 1, 10, &p);
		assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
		assert_int_equal(sqlite3_exec(db, "PRAGMA ignore_check_constraints = 1", NULL, NULL,
					      NULL), SQLITE_OK);
		snprintf(sql, sizeof(sql), "%s WHERE pubkey = ?1", cases[c].sql);
		if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
			fail_msg("case %s: %s", cur_case, sqlite3_errmsg(db));
		sqlite3_bind_blob(s, 1, p.pubkey, WG_KEY_LEN, SQLITE_STATIC);
		EXPECT_EQ(sqlite3_step(s), SQLITE_DONE);
		EXPECT_EQ(sqlite3_changes(db), 1);
		sqlite3_finalize(s);
		sqlite3_close(db);
		if (c > 0) /* the key itself is intact: a direct get sees the damage */
			EXPECT_EQ(store_get(f->st, p.pubkey, &got), -EBADMSG);
		col = (struct collect){ 0 };
		EXPECT_EQ(store_list(f->st, NULL, 10, collect_fn, &col), -EBADMSG);
		EXPECT_EQ(col.n, 0);
	}
}

/* --- crash durability ------------------------------------------------------------------ */

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void test_crash(void **state)
{
	enum { KILL_AFTER = 300, MAX_CREATES = 60000 };
	struct fix *f = *state;
	struct collect col = { 0 };
	struct store_peer p;
	uint32_t *reported, *ip4s;
	unsigned n_reported = 0;
	int fds[2], status;
	uint32_t idx;
	pid_t pid;

	cur_case = "SIGKILL mid-stream";
	f->pool.ip4_first = IP4(10, 64, 0, 0);
	f->pool.ip4_last = IP4(10, 64, 255, 255);
	fix_open(f); /* creates the file, then hands it to the child */
	fix_close(f);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *st;
		char err[256];

		close(fds[0]);
		if (store_open(&st, f->path, &f->pool, err, sizeof(err)))
			_exit(2);
		for (idx = 0; idx < MAX_CREATES; idx++) {
			peer_init(&p, idx);
			p.has_psk = true;
			if (store_create(st, &p, 1000 + idx) ||
			    write(fds[1], &idx, sizeof(idx)) != sizeof(idx))
				_exit(3);
		}
		_exit(0);
	}
	close(fds[1]);
	reported = calloc(MAX_CREATES, sizeof(*reported));
	assert_non_null(reported);
	while (read(fds[0], &idx, sizeof(idx)) == sizeof(idx)) {
		reported[n_reported++] = idx;
		if (n_reported == KILL_AFTER)
			kill(pid, SIGKILL);
	}
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	EXPECT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	EXPECT(n_reported >= KILL_AFTER);

	cur_case = "every reported create is there";
	fix_open(f);
	for (unsigned i = 0; i < n_reported; i++) {
		key_of(reported[i], p.pubkey);
		EXPECT_EQ(store_get(f->st, p.pubkey, &p), 0);
		EXPECT(p.has_psk);
	}
	cur_case = "integrity_check";
	{
		sqlite3 *db;
		sqlite3_stmt *s;

		assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
		assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL),
				 SQLITE_OK);
		EXPECT_EQ(sqlite3_step(s), SQLITE_ROW);
		EXPECT(!strcmp((const char *)sqlite3_column_text(s, 0), "ok"));
		sqlite3_finalize(s);
		sqlite3_close(db);
	}
	cur_case = "no address assigned twice";
	EXPECT(store_list(f->st, NULL, MAX_CREATES, collect_fn, &col) >= (int)n_reported);
	expect_counts(f, col.n, 0);
	ip4s = calloc(col.n + 1, sizeof(*ip4s));
	assert_non_null(ip4s);
	for (unsigned i = 0; i < col.n; i++)
		ip4s[i] = col.p[i].ip4;
	qsort(ip4s, col.n, sizeof(*ip4s), u32_cmp);
	for (unsigned i = 1; i < col.n; i++)
		EXPECT(ip4s[i - 1] != ip4s[i]);
	cur_case = "the next create gets a fresh address";
	create_ok(f, MAX_CREATES + 1, 5000, &p);
	EXPECT_EQ(p.ip4, f->pool.ip4_first + col.n);
	free(ip4s);
	free(col.p);
	free(reported);
}

/* --- a full disk ----------------------------------------------------------------------- */

/* SQLITE_FULL on demand: the default VFS with its files' xWrite wrapped. A file is the unix
 * VFS's own (same size, opened by it); only its methods table (one for the database, another
 * for journals and the WAL) is swapped for a copy whose xWrite fails while disk_full is set,
 * as SQLite's unix VFS does on ENOSPC. */
enum { FULL_IO_MAX = 4 };
static sqlite3_vfs *real_vfs, full_vfs;
static struct {
	const sqlite3_io_methods *real;
	sqlite3_io_methods wrapped;
} full_io[FULL_IO_MAX];
static bool disk_full;

static int full_write(sqlite3_file *file, const void *buf, int amt, sqlite3_int64 off)
{
	for (unsigned i = 0; i < FULL_IO_MAX; i++)
		if (file->pMethods == &full_io[i].wrapped)
			return disk_full ? SQLITE_FULL
					 : full_io[i].real->xWrite(file, buf, amt, off);
	return SQLITE_IOERR_WRITE;
}

static int full_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
		     int *out_flags)
{
	int rc = real_vfs->xOpen(real_vfs, name, file, flags, out_flags);
	unsigned i;

	if (rc != SQLITE_OK || !file->pMethods)
		return rc;
	for (i = 0; i < FULL_IO_MAX && full_io[i].real && full_io[i].real != file->pMethods; i++)
		;
	if (i == FULL_IO_MAX)
		return rc; /* not wrapped: its writes always work (the test then fails) */
	if (!full_io[i].real) {
		full_io[i].real = file->pMethods;
		full_io[i].wrapped = *file->pMethods;
		full_io[i].wrapped.xWrite = full_write;
	}
	file->pMethods = &full_io[i].wrapped;
	return rc;
}

static void full_vfs_install(void)
{
	real_vfs = sqlite3_vfs_find(NULL);
	assert_non_null(real_vfs);
	full_vfs = *real_vfs;
	full_vfs.zName = "wgws-test-full";
	full_vfs.xOpen = full_open;
	assert_int_equal(sqlite3_vfs_register(&full_vfs, 1), SQLITE_OK);
}

static void full_vfs_remove(void)
{
	assert_int_equal(sqlite3_vfs_unregister(&full_vfs), SQLITE_OK);
	assert_int_equal(sqlite3_vfs_register(real_vfs, 1), SQLITE_OK);
}

/* The store must say -ENOSPC for SQLITE_FULL (not the pool's -EADDRNOTAVAIL, not a bare
 * -EIO), keep SQLite's words for the log, leave nothing half-written, and work again once
 * there is room. Any other write failure is -EIO with SQLite's words: a file at its size
 * limit (RLIMIT_FSIZE a little above the WAL: the next frame fails with EFBIG). */
static void test_disk_full(void **state)
{
	struct fix *f = *state;
	struct store_peer p, got;
	struct rlimit old, lim;
	struct stat sb;
	char wal[160];
	int ret;

	full_vfs_install();
	fix_open(f);
	create_ok(f, 0, 1000, NULL);
	cur_case = "create on a full disk";
	disk_full = true;
	ret = create(f, 1, 1000, &p);
	disk_full = false;
	EXPECT_EQ(ret, -ENOSPC);
	if (!strstr(store_errmsg(f->st), "database or disk is full (SQLite 13)"))
		fail_msg("case %s: store_errmsg is \"%s\", expected SQLite's \"database or disk "
			 "is full\" and its code", cur_case, store_errmsg(f->st));
	EXPECT_EQ(store_get(f->st, p.pubkey, &got), -ENOENT);
	EXPECT_STREQ(store_errmsg(f->st), "");
	expect_counts(f, 1, 0);
	cur_case = "delete on a full disk";
	key_of(0, p.pubkey);
	disk_full = true;
	ret = store_delete(f->st, p.pubkey, 2000);
	disk_full = false;
	EXPECT_EQ(ret, -ENOSPC);
	EXPECT(strstr(store_errmsg(f->st), "full") != NULL);
	expect_counts(f, 1, 0);
	cur_case = "room again: the next address, as if the failed create never was";
	create_ok(f, 1, 1000, &p);
	EXPECT_EQ(p.ip4, f->pool.ip4_first + 1);
	EXPECT_STREQ(store_errmsg(f->st), "");
	expect_counts(f, 2, 0);
	fix_close(f);
	full_vfs_remove();

	fix_open(f);
	cur_case = "create with the WAL at the file size limit";
	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	assert_int_equal(stat(wal, &sb), 0);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = (rlim_t)sb.st_size + 1000;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	ret = create(f, 2, 1000, &p);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	EXPECT_EQ(ret, -EIO);
	if (!strstr(store_errmsg(f->st), "disk I/O error (SQLite 778)"))
		fail_msg("case %s: store_errmsg is \"%s\", expected SQLite's \"disk I/O error\" "
			 "and SQLITE_IOERR_WRITE", cur_case, store_errmsg(f->st));
	expect_counts(f, 2, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_alloc_exhaust, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_exists, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold_down, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold_down_vs_fresh, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ip6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_families, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_rejects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlap_address, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlap_migrate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expiry_delete_in_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_installed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pagination, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timestamp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_conflict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_unused_may_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreign_db, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
