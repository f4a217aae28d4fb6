/* SPDX-License-Identifier: MIT */
/* Unit tests for the JIT decision's limits (provisioner/jitlimit.c) through prov.h: the
 * memory of initiations decided lately (what makes the same handshake, what makes a forged
 * one, time-outs, eviction), client and source identities (port, /64, IPv4-mapped), the
 * per-client sketch of token buckets (a burst and its refill; no newcomer and no returning
 * address gets a fresh burst, however many addresses there are; two rows keep a client clear
 * of abusers), the global budget, and the over-budget pass for sources answered live lately.
 * The clock is the tests' own (seconds passed in); the hash key is fixed, so the collision
 * figures are the same on every run. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "prov.h"

static char cur_case[96] = "?";

#define CASE(...) snprintf(cur_case, sizeof(cur_case), __VA_ARGS__)

#include "expect.h"

static const uint8_t test_hash_key[crypto_shorthash_KEYBYTES] = "wgws-jitlimit-t";

/* A configuration where only what a test looks at can bite. */
static struct jitlimit_cfg base_cfg(void)
{
	return (struct jitlimit_cfg){
		.replay_slots = 1024,
		.sketch_cells = 1024,
		.live_slots = 1024,
		.replay_ttl_s = 60,
		.live_ttl_s = 180,
		.rate = 20,
		.burst = 40,
		.budget = 1e9,
		.budget_burst = 1e9,
		.hash_key = test_hash_key,
	};
}

static struct jitlimit *open_cfg(const struct jitlimit_cfg *cfg)
{
	struct jitlimit *l = NULL;

	if (jitlimit_open(&l, cfg) != 0)
		fail_msg("case %s: jitlimit_open failed", cur_case);
	return l;
}

/* A made-up initiation (only its bytes matter here), different for each seed. */
static void make_msg(uint8_t msg[static NOISE_INITIATION_LEN], uint32_t seed)
{
	uint8_t in[8] = "msg";

	memcpy(in + 4, &seed, sizeof(seed));
	for (size_t off = 0; off < NOISE_INITIATION_LEN; off += 32) {
		uint8_t block[32];

		in[3] = (uint8_t)off;
		crypto_generichash(block, sizeof(block), in, sizeof(in), NULL, 0);
		memcpy(msg + off, block,
		       NOISE_INITIATION_LEN - off < 32 ? NOISE_INITIATION_LEN - off : 32);
	}
	memcpy(msg, "\x01\x00\x00\x00", 4);
}

static struct sockaddr_storage sa4(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	if (inet_pton(AF_INET, ip, &sin->sin_addr) != 1)
		fail_msg("bad test address %s", ip);
	return ss;
}

static struct sockaddr_storage sa6(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) != 1)
		fail_msg("bad test address %s", ip);
	return ss;
}

/* The n-th of many distinct client addresses (10.x.y.z, then IPv6 /64s). */
static struct jitlimit_id client_n(uint32_t n)
{
	struct sockaddr_storage ss = { 0 };
	struct jitlimit_id id;

	if (n < (1u << 24)) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(0x0a000000u | n);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr.s6_addr[0] = 0x20;
		memcpy(sin6->sin6_addr.s6_addr + 4, &n, sizeof(n));
	}
	jitlimit_id_client(&id, &ss);
	return id;
}

static struct jitlimit_id source_port(uint16_t port)
{
	struct sockaddr_storage ss = sa4("127.0.0.1", port);
	struct jitlimit_id id;

	jitlimit_id_source(&id, &ss);
	return id;
}

static void test_open(void **state)
{
	static const struct {
		const char *name;
		unsigned replay, cells, live;
		double rate, burst, budget, budget_burst;
		int want;
	} cases[] = {
		{ "valid", 1, 1, 1, 1, 1, 1, 1, 0 },
		{ "replay slots not a power of two", 3, 1, 1, 1, 1, 1, 1, -EINVAL },
		{ "no sketch cells", 1, 0, 1, 1, 1, 1, 1, -EINVAL },
		{ "live slots not a power of two", 1, 1, 6, 1, 1, 1, 1, -EINVAL },
		{ "rate 0", 1, 1, 1, 0, 1, 1, 1, -EINVAL },
		{ "burst below one", 1, 1, 1, 1, 0.5, 1, 1, -EINVAL },
		{ "budget 0", 1, 1, 1, 1, 1, 0, 1, -EINVAL },
		{ "budget burst 0", 1, 1, 1, 1, 1, 1, 0, -EINVAL },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct jitlimit_cfg cfg = base_cfg();
		struct jitlimit *l = (struct jitlimit *)&cfg; /* must be set to NULL on failure */

		CASE("open: %s", cases[i].name);
		cfg.replay_slots = cases[i].replay;
		cfg.sketch_cells = cases[i].cells;
		cfg.live_slots = cases[i].live;
		cfg.rate = cases[i].rate;
		cfg.burst = cases[i].burst;
		cfg.budget = cases[i].budget;
		cfg.budget_burst = cases[i].budget_burst;
		EXPECT_EQ(jitlimit_open(&l, &cfg), cases[i].want);
		EXPECT((l != NULL) == (cases[i].want == 0));
		jitlimit_close(l);
	}
	jitlimit_close(NULL);
}

static void test_ids(void **state)
{
	static const struct {
		const char *name;
		bool v6a, v6b;
		const char *a, *b;
		uint16_t pa, pb;
		bool source; /* compare as sources, else as clients */
		bool same;
	} cases[] = {
		{ "client: port ignored", false, false, "192.0.2.1", "192.0.2.1", 1000, 2000,
		  false, true },
		{ "client: another IPv4 address", false, false, "192.0.2.1", "192.0.2.2", 1000,
		  1000, false, false },
		{ "client: the same IPv6 /64", true, true, "2001:db8:1:2::1",
		  "2001:db8:1:2:ffff::9", 1, 2, false, true },
		{ "client: another IPv6 /64", true, true, "2001:db8:1:2::1", "2001:db8:1:3::1", 1,
		  1, false, false },
		{ "client: IPv4-mapped is IPv4", true, false, "::ffff:192.0.2.1", "192.0.2.1", 5,
		  6, false, true },
		{ "client: IPv4 vs IPv6 of the same bytes", true, false, "c000:201::",
		  "192.0.2.1", 5, 5, false, false },
		{ "source: port counts", false, false, "127.0.0.1", "127.0.0.1", 40000, 40001,
		  true, false },
		{ "source: same address and port", false, false, "127.0.0.1", "127.0.0.1", 40000,
		  40000, true, true },
		{ "source: the whole IPv6 address", true, true, "2001:db8::1", "2001:db8::2", 7,
		  7, true, false },
		{ "source: IPv4-mapped stays IPv6", true, false, "::ffff:127.0.0.1", "127.0.0.1",
		  7, 7, true, false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage a = cases[i].v6a ? sa6(cases[i].a, cases[i].pa)
							 : sa4(cases[i].a, cases[i].pa);
		struct sockaddr_storage b = cases[i].v6b ? sa6(cases[i].b, cases[i].pb)
							 : sa4(cases[i].b, cases[i].pb);
		struct jitlimit_id ia, ib;

		CASE("ids: %s", cases[i].name);
		if (cases[i].source) {
			jitlimit_id_source(&ia, &a);
			jitlimit_id_source(&ib, &b);
		} else {
			jitlimit_id_client(&ia, &a);
			jitlimit_id_client(&ib, &b);
		}
		EXPECT_EQ(!memcmp(&ia, &ib, sizeof(ia)), cases[i].same);
	}
	{
		struct sockaddr_storage un = { .ss_family = AF_UNIX };
		struct jitlimit_id id, zero = { { 0 } };

		CASE("ids: another family is the zero id");
		memset(&id, 0xff, sizeof(id));
		jitlimit_id_client(&id, &un);
		EXPECT(!memcmp(&id, &zero, sizeof(id)));
	}
}

/* ---- the memory of initiations decided lately ---- */

static void test_recall(void **state)
{
	/* What changes in a remembered message, and what recall must then say. */
	static const struct {
		const char *name;
		unsigned off, len; /* bytes flipped */
		enum jitlimit_recall want;
	} cases[] = {
		{ "the same bytes", 0, 0, JITLIMIT_HIT },
		{ "another sender index (mac1 is anyone's to recompute)", 4, 4, JITLIMIT_HIT },
		{ "other mac1 and mac2", 116, 32, JITLIMIT_HIT },
		{ "one byte of the encrypted static", 40, 1, JITLIMIT_FORGED },
		{ "the last byte of the static's tag", 87, 1, JITLIMIT_FORGED },
		{ "one byte of the encrypted timestamp", 88, 1, JITLIMIT_FORGED },
		{ "the last byte of the timestamp's tag", 115, 1, JITLIMIT_FORGED },
		{ "one byte of the ephemeral", 8, 1, JITLIMIT_MISS },
		{ "the last byte of the ephemeral", 39, 1, JITLIMIT_MISS },
	};
	struct jitlimit_cfg cfg = base_cfg();
	uint8_t key[WG_KEY_LEN], got[WG_KEY_LEN], msg[NOISE_INITIATION_LEN];
	enum jitlimit_seen seen;
	struct jitlimit *l;

	(void)state;
	CASE("recall: empty");
	l = open_cfg(&cfg);
	make_msg(msg, 1);
	memset(key, 0x5a, sizeof(key));
	EXPECT_EQ(jitlimit_recall(l, msg, 0, &seen, got), JITLIMIT_MISS);
	jitlimit_remember(l, msg, JITLIMIT_SEEN_REPLAY, key, 100, 30);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t m[NOISE_INITIATION_LEN];

		CASE("recall: %s", cases[i].name);
		memcpy(m, msg, sizeof(m));
		for (unsigned j = 0; j < cases[i].len; j++)
			m[cases[i].off + j] ^= 0x80;
		seen = 0;
		memset(got, 0, sizeof(got));
		EXPECT_EQ(jitlimit_recall(l, m, 110, &seen, got), cases[i].want);
		if (cases[i].want == JITLIMIT_HIT) {
			EXPECT_EQ(seen, JITLIMIT_SEEN_REPLAY);
			EXPECT(!memcmp(got, key, sizeof(key)));
		}
	}

	CASE("recall: until the time-out, not at it");
	EXPECT_EQ(jitlimit_recall(l, msg, 129.9, &seen, got), JITLIMIT_HIT);
	EXPECT_EQ(jitlimit_recall(l, msg, 130, &seen, got), JITLIMIT_MISS);

	CASE("recall: the time-out is capped at replay_ttl_s");
	jitlimit_remember(l, msg, JITLIMIT_SEEN_UNKNOWN, key, 200, 1e6);
	EXPECT_EQ(jitlimit_recall(l, msg, 259, &seen, got), JITLIMIT_HIT);
	EXPECT_EQ(seen, JITLIMIT_SEEN_UNKNOWN);
	EXPECT_EQ(jitlimit_recall(l, msg, 260, &seen, got), JITLIMIT_MISS);

	CASE("recall: a time-out of 0 remembers nothing");
	make_msg(msg, 2);
	jitlimit_remember(l, msg, JITLIMIT_SEEN_UNKNOWN, key, 300, 0);
	EXPECT_EQ(jitlimit_recall(l, msg, 300, &seen, got), JITLIMIT_MISS);

	CASE("recall: bad, without a key");
	jitlimit_remember(l, msg, JITLIMIT_SEEN_BAD, NULL, 300, 10);
	memset(got, 0xff, sizeof(got));
	EXPECT_EQ(jitlimit_recall(l, msg, 301, &seen, got), JITLIMIT_HIT);
	EXPECT_EQ(seen, JITLIMIT_SEEN_BAD);
	for (size_t i = 0; i < sizeof(got); i++)
		EXPECT_EQ(got[i], 0);

	CASE("recall: the newest decision of a message wins");
	jitlimit_remember(l, msg, JITLIMIT_SEEN_REPLAY, key, 302, 10);
	EXPECT_EQ(jitlimit_recall(l, msg, 303, &seen, got), JITLIMIT_HIT);
	EXPECT_EQ(seen, JITLIMIT_SEEN_REPLAY);
	jitlimit_close(l);
}

static void test_recall_bounded(void **state)
{
	struct jitlimit_cfg cfg = base_cfg();
	uint8_t key[WG_KEY_LEN] = { 1 }, got[WG_KEY_LEN], msg[NOISE_INITIATION_LEN];
	enum jitlimit_seen seen;
	unsigned hits = 0;
	struct jitlimit *l;

	(void)state;
	CASE("recall: one slot, the newest entry wins");
	cfg.replay_slots = 1;
	l = open_cfg(&cfg);
	make_msg(msg, 1);
	jitlimit_remember(l, msg, JITLIMIT_SEEN_REPLAY, key, 0, 10);
	make_msg(msg, 2);
	jitlimit_remember(l, msg, JITLIMIT_SEEN_UNKNOWN, key, 0, 10);
	EXPECT_EQ(jitlimit_recall(l, msg, 1, &seen, got), JITLIMIT_HIT);
	EXPECT_EQ(seen, JITLIMIT_SEEN_UNKNOWN);
	make_msg(msg, 1);
	EXPECT_EQ(jitlimit_recall(l, msg, 1, &seen, got), JITLIMIT_MISS);
	jitlimit_close(l);

	/* 64 slots, 10,000 messages remembered: at most 64 of them are still there. */
	CASE("recall: a full table holds at most its slots");
	cfg.replay_slots = 64;
	l = open_cfg(&cfg);
	for (uint32_t i = 0; i < 10000; i++) {
		make_msg(msg, i);
		jitlimit_remember(l, msg, JITLIMIT_SEEN_REPLAY, key, 0, 10);
	}
	for (uint32_t i = 0; i < 10000; i++) {
		make_msg(msg, i);
		hits += jitlimit_recall(l, msg, 1, &seen, got) == JITLIMIT_HIT;
	}
	EXPECT(hits > 0 && hits <= 64);
	/* The last one remembered is always there. */
	make_msg(msg, 9999);
	EXPECT_EQ(jitlimit_recall(l, msg, 1, &seen, got), JITLIMIT_HIT);
	jitlimit_close(l);
}

/* ---- per client address ---- */

/* Admissions of client c until the first refusal, at time now (at most limit tries). */
static unsigned admitted_in_a_row(struct jitlimit *l, const struct jitlimit_id *c,
				  const struct jitlimit_id *src, double now, unsigned limit)
{
	uint8_t key[WG_KEY_LEN];
	unsigned n = 0;

	while (n < limit && jitlimit_admit(l, c, src, now, key) == JITLIMIT_ADMIT)
		n++;
	return n;
}

static void test_client_rate(void **state)
{
	struct jitlimit_cfg cfg = base_cfg();
	struct jitlimit_id a = client_n(1), src = source_port(40000);
	uint8_t key[WG_KEY_LEN];
	struct jitlimit *l;

	(void)state;
	l = open_cfg(&cfg);
	CASE("client rate: a burst, then refused");
	EXPECT_EQ(admitted_in_a_row(l, &a, &src, 1000, 1000), 40);
	EXPECT_EQ(jitlimit_admit(l, &a, &src, 1000, key), JITLIMIT_SHED_RATE);

	CASE("client rate: one more after 1/rate s");
	EXPECT_EQ(jitlimit_admit(l, &a, &src, 1000.04, key), JITLIMIT_SHED_RATE);
	EXPECT_EQ(admitted_in_a_row(l, &a, &src, 1000.06, 1000), 1);

	CASE("client rate: idle for a long time, a burst again and no more");
	EXPECT_EQ(admitted_in_a_row(l, &a, &src, 5000, 1000), 40);

	CASE("client rate: other ports of the address share its buckets");
	{
		struct sockaddr_storage p1 = sa4("192.0.2.7", 1), p2 = sa4("192.0.2.7", 2);
		struct jitlimit_id c1, c2;

		jitlimit_id_client(&c1, &p1);
		jitlimit_id_client(&c2, &p2);
		EXPECT_EQ(admitted_in_a_row(l, &c1, &src, 6000, 25), 25);
		EXPECT_EQ(admitted_in_a_row(l, &c2, &src, 6000, 1000), 15);
	}
	jitlimit_close(l);
}

/* The point of the sketch: nobody's buckets are reset by anyone else's traffic. */
static void test_no_fresh_burst(void **state)
{
	struct jitlimit_cfg cfg = base_cfg();
	struct jitlimit_id a = client_n(1), src = source_port(40000);
	unsigned total = 0;
	struct jitlimit *l;

	(void)state;
	CASE("no fresh burst: a drained client stays drained while 100,000 others come and go");
	cfg.sketch_cells = 16;
	l = open_cfg(&cfg);
	EXPECT_EQ(admitted_in_a_row(l, &a, &src, 10, 1000), 40);
	for (uint32_t i = 2; i < 100002; i++) {
		struct jitlimit_id c = client_n(i);

		total += admitted_in_a_row(l, &c, &src, 10, 1);
	}
	EXPECT_EQ(admitted_in_a_row(l, &a, &src, 10, 1000), 0);

	/* A table of named buckets that gave each newcomer a burst would have let all 100,000
	 * through (and 40 each); the sketch's two rows hold 2 x 16 x 40 tokens in all, and each
	 * admission takes at least one (the first client took 40 from each row). */
	CASE("no fresh burst: 100,000 new addresses at one instant share 2 x 16 x 40 tokens");
	EXPECT(total <= 2 * 16 * 40 - 2 * 40);

	CASE("no fresh burst: a client coming back finds its buckets as it left them");
	{
		struct jitlimit_id b = client_n(7);

		EXPECT_EQ(admitted_in_a_row(l, &b, &src, 10, 1000), 0);
		/* 0.5 s later: 10 tokens in each bucket, not a burst of 40. */
		EXPECT_EQ(admitted_in_a_row(l, &b, &src, 10.5, 1000), 10);
	}
	jitlimit_close(l);
}

/* A client cycling through addresses gets no more public-key work than the budget. */
static void test_cycling_addresses(void **state)
{
	struct jitlimit_cfg cfg = base_cfg();
	struct jitlimit_id src = source_port(40000);
	unsigned admitted = 0, shed_rate = 0, shed_budget = 0;
	uint8_t key[WG_KEY_LEN];
	struct jitlimit *l;
	uint32_t n = 1;

	(void)state;
	CASE("cycling: 20,000 new addresses a second for 5 s against a budget of 5000/s");
	cfg.sketch_cells = 8192;
	cfg.budget = 5000;
	cfg.budget_burst = 5000;
	l = open_cfg(&cfg);
	for (int tick = 0; tick < 5000; tick++) { /* 1 ms steps */
		double now = 100 + tick / 1000.0;

		for (int j = 0; j < 20; j++) {
			struct jitlimit_id c = client_n(n++);

			switch (jitlimit_admit(l, &c, &src, now, key)) {
			case JITLIMIT_ADMIT: admitted++; break;
			case JITLIMIT_SHED_RATE: shed_rate++; break;
			case JITLIMIT_SHED_BUDGET: shed_budget++; break;
			default: fail_msg("case %s: a pass with no live source", cur_case);
			}
		}
	}
	/* The burst plus 5 s at 5000/s (the last step is at 4.999 s). */
	EXPECT(admitted <= 5000 + 5000 * 5);
	EXPECT(admitted >= 5000 + 5000 * 5 - 10);
	EXPECT_EQ(admitted + shed_rate + shed_budget, 100000);
	EXPECT(shed_budget > 0);
	jitlimit_close(l);
}

/* Two rows: abusers who drain their own buckets rarely drain both of someone else's. */
static void test_two_rows(void **state)
{
	struct jitlimit_cfg cfg = base_cfg();
	struct jitlimit_id src = source_port(40000);
	unsigned refused = 0;
	struct jitlimit *l;

	(void)state;
	/* At one instant: the innocents take about 10 tokens of each 40-token bucket. */
	CASE("two rows: 64 abusers drained, 10,000 other clients mostly unaffected");
	cfg.sketch_cells = 1024;
	l = open_cfg(&cfg);
	for (uint32_t i = 0; i < 64; i++) {
		struct jitlimit_id c = client_n(1000000 + i);

		(void)admitted_in_a_row(l, &c, &src, 1, 1000);
	}
	for (uint32_t i = 0; i < 10000; i++) {
		struct jitlimit_id c = client_n(i);
		uint8_t key[WG_KEY_LEN];

		refused += jitlimit_admit(l, &c, &src, 1, key) == JITLIMIT_SHED_RATE;
	}
	/* One row: ~64/1024 = 6 % would share a drained bucket; two rows where either drained
	 * bucket refuses: ~12 %; both drained: ~0.4 %. */
	EXPECT(refused < 100);
	jitlimit_close(l);
}

/* ---- the global budget and the pass ---- */

static void test_budget(void **state)
{
	struct jitlimit_cfg cfg = base_cfg();
	struct jitlimit_id src = source_port(40000);
	uint8_t key[WG_KEY_LEN];
	struct jitlimit *l;
	unsigned n = 0;
	uint32_t c = 1;

	(void)state;
	CASE("budget: 100 at once, then shed");
	cfg.budget = 100;
	cfg.budget_burst = 100;
	l = open_cfg(&cfg);
	for (;;) {
		struct jitlimit_id id = client_n(c++);
		enum jitlimit_admit r = jitlimit_admit(l, &id, &src, 50, key);

		if (r != JITLIMIT_ADMIT) {
			EXPECT_EQ(r, JITLIMIT_SHED_BUDGET);
			break;
		}
		n++;
	}
	EXPECT_EQ(n, 100);

	CASE("budget: 50 more half a second later");
	n = 0;
	for (;;) {
		struct jitlimit_id id = client_n(c++);

		if (jitlimit_admit(l, &id, &src, 50.5, key) != JITLIMIT_ADMIT)
			break;
		n++;
	}
	EXPECT_EQ(n, 50);
	jitlimit_close(l);
}

static void test_pass_live(void **state)
{
	struct jitlimit_cfg cfg = base_cfg();
	struct jitlimit_id live = source_port(40000), other = source_port(40001);
	struct jitlimit_id client = client_n(1);
	uint8_t key[WG_KEY_LEN], got[WG_KEY_LEN];
	struct jitlimit *l;

	(void)state;
	cfg.budget = 1;
	cfg.budget_burst = 1;
	cfg.rate = 1000;
	cfg.burst = 1000;
	l = open_cfg(&cfg);
	memset(key, 0x42, sizeof(key));

	CASE("pass: under the budget a live source still has the public-key work");
	jitlimit_mark_live(l, &live, key, 10);
	EXPECT_EQ(jitlimit_admit(l, &client, &live, 10, got), JITLIMIT_ADMIT);

	CASE("pass: over the budget, the live source passes with its key");
	memset(got, 0, sizeof(got));
	EXPECT_EQ(jitlimit_admit(l, &client, &live, 10, got), JITLIMIT_PASS_LIVE);
	EXPECT(!memcmp(got, key, sizeof(key)));

	CASE("pass: over the budget, another source of the same client is shed");
	EXPECT_EQ(jitlimit_admit(l, &client, &other, 10, got), JITLIMIT_SHED_BUDGET);

	CASE("pass: a pass does not refresh the source");
	EXPECT_EQ(jitlimit_admit(l, &client, &live, 189.9, got), JITLIMIT_ADMIT); /* refilled */
	EXPECT_EQ(jitlimit_admit(l, &client, &live, 189.9, got), JITLIMIT_PASS_LIVE);
	EXPECT_EQ(jitlimit_admit(l, &client, &live, 189.95, got), JITLIMIT_PASS_LIVE);
	EXPECT_EQ(jitlimit_admit(l, &client, &live, 190, got), JITLIMIT_SHED_BUDGET);

	CASE("pass: a verified answer does");
	jitlimit_mark_live(l, &live, key, 190);
	EXPECT_EQ(jitlimit_admit(l, &client, &live, 190, got), JITLIMIT_PASS_LIVE);
	jitlimit_close(l);

	CASE("pass: a client over its rate is refused, live source or not");
	cfg.rate = 1;
	cfg.burst = 2;
	l = open_cfg(&cfg);
	jitlimit_mark_live(l, &live, key, 0);
	EXPECT_EQ(jitlimit_admit(l, &client, &live, 0, got), JITLIMIT_ADMIT);
	EXPECT_EQ(jitlimit_admit(l, &client, &live, 0, got), JITLIMIT_PASS_LIVE);
	EXPECT_EQ(jitlimit_admit(l, &client, &live, 0, got), JITLIMIT_SHED_RATE);
	jitlimit_close(l);

	CASE("pass: one slot, the newest live source wins");
	cfg = base_cfg();
	cfg.budget = 1;
	cfg.budget_burst = 1;
	cfg.live_slots = 1;
	l = open_cfg(&cfg);
	jitlimit_mark_live(l, &live, key, 0);
	jitlimit_mark_live(l, &other, key, 0);
	EXPECT_EQ(jitlimit_admit(l, &client, &other, 0, got), JITLIMIT_ADMIT);
	EXPECT_EQ(jitlimit_admit(l, &client, &live, 0, got), JITLIMIT_SHED_BUDGET);
	EXPECT_EQ(jitlimit_admit(l, &client, &other, 0, got), JITLIMIT_PASS_LIVE);
	jitlimit_close(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open),
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_recall),
		cmocka_unit_test(test_recall_bounded),
		cmocka_unit_test(test_client_rate),
		cmocka_unit_test(test_no_fresh_burst),
		cmocka_unit_test(test_cycling_addresses),
		cmocka_unit_test(test_two_rows),
		cmocka_unit_test(test_budget),
		cmocka_unit_test(test_pass_live),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
