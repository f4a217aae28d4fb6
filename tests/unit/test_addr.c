/* SPDX-License-Identifier: MIT */
/* Unit tests for common/addr.h: numeric socket address parsing and formatting, host:port
 * splitting, and address equality. Tables of inputs; every parsed address is checked
 * field by field and formatted back. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"

static const char *cur_case = "?";
#include "expect.h"

/* --- addr_parse ----------------------------------------------------------------------- */

static const struct {
	const char *in;
	int family;
	const char *ip;        /* for inet_pton */
	uint16_t port;
	const char *formatted; /* addr_format's output */
} good[] = {
	{ "192.0.2.1:443", AF_INET, "192.0.2.1", 443, "192.0.2.1:443" },
	{ "127.0.0.1:51820", AF_INET, "127.0.0.1", 51820, "127.0.0.1:51820" },
	{ "0.0.0.0:1", AF_INET, "0.0.0.0", 1, "0.0.0.0:1" },
	{ "255.255.255.255:65535", AF_INET, "255.255.255.255", 65535, "255.255.255.255:65535" },
	{ "[2001:db8::1]:443", AF_INET6, "2001:db8::1", 443, "[2001:db8::1]:443" },
	{ "[::1]:1", AF_INET6, "::1", 1, "[::1]:1" },
	{ "[::]:65535", AF_INET6, "::", 65535, "[::]:65535" },
	{ "[2001:DB8:0:0::1]:8443", AF_INET6, "2001:db8::1", 8443, "[2001:db8::1]:8443" },
	{ "[::ffff:192.0.2.1]:80", AF_INET6, "::ffff:192.0.2.1", 80, "[::ffff:192.0.2.1]:80" },
	{ "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", AF_INET6,
	  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
	  "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535" },
};

static void test_parse_good(void **state)
{
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t len = 0;
		char buf[ADDR_STR_LEN];

		cur_case = good[i].in;
		memset(&ss, 0xA5, sizeof(ss));
		EXPECT_EQ(addr_parse(good[i].in, &ss, &len), 0);
		EXPECT_EQ(ss.ss_family, good[i].family);
		if (good[i].family == AF_INET) {
			const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
			struct in_addr want;

			EXPECT_EQ(len, sizeof(struct sockaddr_in));
			EXPECT_EQ(inet_pton(AF_INET, good[i].ip, &want), 1);
			EXPECT(memcmp(&sin->sin_addr, &want, sizeof(want)) == 0);
			EXPECT_EQ(ntohs(sin->sin_port), good[i].port);
		} else {
			const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
			struct in6_addr want;

			EXPECT_EQ(len, sizeof(struct sockaddr_in6));
			EXPECT_EQ(inet_pton(AF_INET6, good[i].ip, &want), 1);
			EXPECT(memcmp(&sin6->sin6_addr, &want, sizeof(want)) == 0);
			EXPECT_EQ(ntohs(sin6->sin6_port), good[i].port);
			/* the parser must not leave our 0xA5 garbage in the other fields */
			EXPECT_EQ(sin6->sin6_flowinfo, 0);
			EXPECT_EQ(sin6->sin6_scope_id, 0);
		}
		EXPECT_STREQ(addr_format((const struct sockaddr *)&ss, buf), good[i].formatted);
		EXPECT(addr_format((const struct sockaddr *)&ss, buf) == buf);
	}
}

static const char *const bad[] = {
	"",
	"192.0.2.1",              /* missing port */
	"192.0.2.1:",             /* empty port */
	"192.0.2.1:0",            /* port 0 */
	"192.0.2.1:65536",
	"192.0.2.1:100000",
	"192.0.2.1:4294967297",   /* wraps to 1 in 32 bits */
	"192.0.2.1:18446744073709551617",
	"192.0.2.1:-1",
	"192.0.2.1:-65535",
	"192.0.2.1:+443",
	"192.0.2.1: 443",
	"192.0.2.1:0x1bb",
	"192.0.2.1:443x",         /* trailing junk */
	"192.0.2.1:443 ",
	"192.0.2.1:443\n",
	"192.0.2.1:443:1",
	" 192.0.2.1:443",
	"192.0.2.1 :443",
	":443",
	"256.0.0.1:443",
	"1.2.3.4.5:443",
	"192.0.2:443",
	"garbage",
	"garbage:443",
	"localhost:443",          /* names are not numeric */
	"example.com:443",
	"[2001:db8::1]",          /* missing port */
	"[2001:db8::1]:",
	"[2001:db8::1]:0",
	"[2001:db8::1]:65536",
	"[2001:db8::1]443",
	"[2001:db8::1]:443x",
	"[2001:db8::1:443",       /* unbalanced */
	"2001:db8::1]:443",
	"[[2001:db8::1]:443",
	"[2001:db8::1]]:443",
	"2001:db8::1:443",        /* v6 without brackets */
	"::1:443",
	"[]:443",
	"[:443",
	"]:443",
	"[192.0.2.1]:443",        /* brackets are for IPv6 */
	"[2001:db8::g]:443",
	"[2001:db8:::1]:443",
	"[",
	"]",
	":",
};

static void test_parse_bad(void **state)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t len = 0;
		char name[80];

		snprintf(name, sizeof(name), "bad \"%s\"", bad[i]);
		cur_case = name;
		EXPECT_EQ(addr_parse(bad[i], &ss, &len), -EINVAL);
	}
}

/* Every prefix of a good IPv6 address is bad except where it is itself a good address
 * ("[::1]:44" of "[::1]:443"): cuts through the brackets and the port. */
static void test_parse_prefixes(void **state)
{
	static const char full[] = "[2001:db8::1]:443";
	char buf[sizeof(full)], name[64];

	for (size_t n = 0; n < sizeof(full) - 1; n++) {
		struct sockaddr_storage ss;
		socklen_t len;
		int want = n >= strlen("[2001:db8::1]:4") ? 0 : -EINVAL;

		memcpy(buf, full, n);
		buf[n] = '\0';
		snprintf(name, sizeof(name), "prefix \"%s\"", buf);
		cur_case = name;
		EXPECT_EQ(addr_parse(buf, &ss, &len), want);
	}
}

static void test_format_scope(void **state)
{
	/* A scoped address still fits the buffer and keeps its brackets and port. */
	struct sockaddr_in6 sin6;
	char buf[ADDR_STR_LEN + 8];
	const char *s;
	size_t n;

	cur_case = "format fe80::1 with scope 4294967295";
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(65535);
	sin6.sin6_scope_id = 0xffffffffu;
	EXPECT_EQ(inet_pton(AF_INET6, "fe80::1", &sin6.sin6_addr), 1);
	memset(buf, 'Z', sizeof(buf));
	s = addr_format((const struct sockaddr *)&sin6, buf);
	n = strnlen(buf, ADDR_STR_LEN);
	EXPECT(s == buf);
	EXPECT(n < ADDR_STR_LEN);
	EXPECT(strncmp(buf, "[fe80::1", 8) == 0);
	EXPECT(n > 8 && strcmp(buf + n - 7, "]:65535") == 0);
	for (size_t i = ADDR_STR_LEN; i < sizeof(buf); i++)
		EXPECT_EQ(buf[i], 'Z');
}

/* --- addr_split_host_port ------------------------------------------------------------- */

static void test_split(void **state)
{
	static const struct {
		const char *in;
		uint16_t def;
		int want;
		const char *host;
		uint16_t port;
	} cases[] = {
		{ "example.com:443", 80, 0, "example.com", 443 },
		{ "example.com", 443, 0, "example.com", 443 },
		{ "proxy.corp.example:3128", 8080, 0, "proxy.corp.example", 3128 },
		{ "proxy", 8080, 0, "proxy", 8080 },
		{ "a:1", 80, 0, "a", 1 },
		{ "a:65535", 80, 0, "a", 65535 },
		{ "192.0.2.1:80", 443, 0, "192.0.2.1", 80 },
		{ "192.0.2.1", 443, 0, "192.0.2.1", 443 },
		{ "[2001:db8::1]:443", 80, 0, "2001:db8::1", 443 },
		{ "[2001:db8::1]", 8443, 0, "2001:db8::1", 8443 },
		{ "[::1]", 1, 0, "::1", 1 },
		{ "[::1]:3128", 80, 0, "::1", 3128 },
		{ "", 80, -EINVAL, NULL, 0 },
		{ ":443", 80, -EINVAL, NULL, 0 },
		{ "[]", 80, -EINVAL, NULL, 0 },
		{ "[]:443", 80, -EINVAL, NULL, 0 },
		{ "example.com:0", 80, -EINVAL, NULL, 0 },
		{ "example.com:65536", 80, -EINVAL, NULL, 0 },
		{ "example.com:70000", 80, -EINVAL, NULL, 0 },
		{ "example.com:-1", 80, -EINVAL, NULL, 0 },
		{ "example.com:abc", 80, -EINVAL, NULL, 0 },
		{ "example.com:443x", 80, -EINVAL, NULL, 0 },
		{ "example.com:4294967297", 80, -EINVAL, NULL, 0 },
		{ "[2001:db8::1]:0", 80, -EINVAL, NULL, 0 },
		{ "[2001:db8::1]:65536", 80, -EINVAL, NULL, 0 },
		{ "[2001:db8::1:443", 80, -EINVAL, NULL, 0 },
		{ "[2001:db8::1", 80, -EINVAL, NULL, 0 },
		{ "2001:db8::1]:443", 80, -EINVAL, NULL, 0 },
		{ "[2001:db8::1]x", 80, -EINVAL, NULL, 0 },
		{ "[2001:db8::1]443", 80, -EINVAL, NULL, 0 },
		{ "[[::1]]:443", 80, -EINVAL, NULL, 0 },
		{ "[[::1]:443", 80, -EINVAL, NULL, 0 },
		{ "a[b:80", 80, -EINVAL, NULL, 0 },
		{ "host[", 80, -EINVAL, NULL, 0 },
		{ "example.com:", 80, -EINVAL, NULL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char host[ADDR_HOST_MAX + 1], name[80];
		uint16_t port = 7;

		snprintf(name, sizeof(name), "split \"%s\"", cases[i].in);
		cur_case = name;
		memset(host, 'Z', sizeof(host));
		EXPECT_EQ(addr_split_host_port(cases[i].in, host, sizeof(host), &port,
					       cases[i].def),
			  cases[i].want);
		if (cases[i].want == 0) {
			EXPECT_STREQ(host, cases[i].host);
			EXPECT_EQ(port, cases[i].port);
		}
	}
}

static void test_split_unbracketed_v6(void **state)
{
	/* An IPv6 literal without brackets is ambiguous. Rejecting it, or taking all of it
	 * as the host, are both fine; splitting it at its last colon is not. */
	char host[ADDR_HOST_MAX + 1];
	uint16_t port = 0;
	int rc;

	cur_case = "split \"2001:db8::1\"";
	rc = addr_split_host_port("2001:db8::1", host, sizeof(host), &port, 443);
	if (rc == 0) {
		EXPECT_STREQ(host, "2001:db8::1");
		EXPECT_EQ(port, 443);
	} else {
		EXPECT_EQ(rc, -EINVAL);
	}
}

static void test_split_host_size(void **state)
{
	char big[600], host[ADDR_HOST_MAX + 16], name[64];
	uint16_t port;

	static const struct {
		size_t hostlen;
		size_t hostsz;
		bool bracket;
		int want;
	} cases[] = {
		{ 7, 8, false, 0 },
		{ 8, 8, false, -EINVAL },
		{ 9, 8, false, -EINVAL },
		{ 255, 256, false, 0 },
		{ 256, 256, false, -EINVAL },
		{ 300, 256, false, -EINVAL },
		{ 7, 8, true, 0 },
		{ 8, 8, true, -EINVAL },
		{ 1, 2, false, 0 },
		{ 1, 1, false, -EINVAL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = cases[i].hostlen, off = 0;

		snprintf(name, sizeof(name), "host of %zu bytes into %zu%s", n, cases[i].hostsz,
			 cases[i].bracket ? ", bracketed" : "");
		cur_case = name;
		if (cases[i].bracket)
			big[off++] = '[';
		/* hex digits and colons: a valid-looking v6 body when bracketed */
		for (size_t j = 0; j < n; j++)
			big[off++] = cases[i].bracket ? ((j % 5 == 4) ? ':' : 'a') : 'h';
		if (cases[i].bracket)
			big[off++] = ']';
		strcpy(big + off, ":8080");
		memset(host, 'Z', sizeof(host));
		port = 0;
		EXPECT_EQ(addr_split_host_port(big, host, cases[i].hostsz, &port, 80),
			  cases[i].want);
		if (cases[i].want == 0) {
			EXPECT_EQ(strlen(host), n);
			EXPECT(memcmp(host, big + (cases[i].bracket ? 1 : 0), n) == 0);
			EXPECT_EQ(port, 8080);
		}
		/* Nothing is written past hostsz, success or not. */
		for (size_t j = cases[i].hostsz; j < sizeof(host); j++)
			EXPECT_EQ(host[j], 'Z');
	}
}

/* --- addr_equal ----------------------------------------------------------------------- */

static void parse_or_fail(const char *s, struct sockaddr_storage *ss)
{
	socklen_t len;

	memset(ss, 0, sizeof(*ss));
	if (addr_parse(s, ss, &len) != 0)
		fail_msg("case %s: cannot parse fixture \"%s\"", cur_case, s);
}

static void test_equal(void **state)
{
	static const struct {
		const char *name;
		const char *a, *b;
		bool want;
	} cases[] = {
		{ "same v4", "192.0.2.1:443", "192.0.2.1:443", true },
		{ "v4 other port", "192.0.2.1:443", "192.0.2.1:444", false },
		{ "v4 ports swapped bytes", "192.0.2.1:258", "192.0.2.1:513", false },
		{ "v4 other address", "192.0.2.1:443", "192.0.2.2:443", false },
		{ "same v6", "[2001:db8::1]:443", "[2001:db8:0::1]:443", true },
		{ "v6 other port", "[2001:db8::1]:443", "[2001:db8::1]:80", false },
		{ "v6 other address", "[2001:db8::1]:443", "[2001:db8::2]:443", false },
		{ "v6 differs in last byte", "[::1]:1", "[::]:1", false },
		{ "v6 differs in first byte", "[8000::]:1", "[::]:1", false },
		{ "v4 vs v4-mapped v6", "192.0.2.1:443", "[::ffff:192.0.2.1]:443", false },
		{ "v6 vs v4 (zero bits)", "[::]:443", "0.0.0.0:443", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage a, b;

		cur_case = cases[i].name;
		parse_or_fail(cases[i].a, &a);
		parse_or_fail(cases[i].b, &b);
		EXPECT_EQ(addr_equal((struct sockaddr *)&a, (struct sockaddr *)&b), cases[i].want);
		EXPECT_EQ(addr_equal((struct sockaddr *)&b, (struct sockaddr *)&a), cases[i].want);
		EXPECT(addr_equal((struct sockaddr *)&a, (struct sockaddr *)&a));
	}
}

static void test_equal_ignores_padding(void **state)
{
	/* Family, address and port only: sin_zero and flowinfo are not part of the address. */
	struct sockaddr_in a4, b4;
	struct sockaddr_in6 a6, b6;

	cur_case = "v4 with different sin_zero";
	memset(&a4, 0, sizeof(a4));
	memset(&b4, 0xff, sizeof(b4));
	a4.sin_family = b4.sin_family = AF_INET;
	a4.sin_port = b4.sin_port = htons(51820);
	a4.sin_addr.s_addr = b4.sin_addr.s_addr = htonl(0x7f000001);
	EXPECT(addr_equal((struct sockaddr *)&a4, (struct sockaddr *)&b4));

	cur_case = "v6 with different flowinfo";
	memset(&a6, 0, sizeof(a6));
	memset(&b6, 0, sizeof(b6));
	a6.sin6_family = b6.sin6_family = AF_INET6;
	a6.sin6_port = b6.sin6_port = htons(51820);
	a6.sin6_addr = b6.sin6_addr = in6addr_loopback;
	b6.sin6_flowinfo = htonl(0x12345);
	EXPECT(addr_equal((struct sockaddr *)&a6, (struct sockaddr *)&b6));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_parse_prefixes),
		cmocka_unit_test(test_format_scope),
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_split_unbracketed_v6),
		cmocka_unit_test(test_split_host_size),
		cmocka_unit_test(test_equal),
		cmocka_unit_test(test_equal_ignores_padding),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
