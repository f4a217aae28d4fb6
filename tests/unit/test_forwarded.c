/* SPDX-License-Identifier: MIT */
/* Unit tests for common/forwarded.h (X-Forwarded-For, read from the right past trusted
 * proxies) and cidr_list_has (common/cidr.h). A table of header values with the proxies
 * trusted, the address expected or the error. */
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
#include "forwarded.h"

static const char *cur_case = "?";
#include "expect.h"

static const struct {
	const char *value;
	const char *trusted; /* comma-separated CIDRs, or "" */
	int ret;
	const char *client; /* formatted with port 0, when ret is 0 */
} cases[] = {
	{ "203.0.113.7", "", 0, "203.0.113.7:0" },
	{ " 203.0.113.7 ", "", 0, "203.0.113.7:0" },
	{ "2001:db8::7", "", 0, "[2001:db8::7]:0" },
	{ "[2001:db8::7]", "", 0, "[2001:db8::7]:0" },
	/* the right end is what our proxy appended: a forged left part is never read */
	{ "1.2.3.4, 203.0.113.7", "", 0, "203.0.113.7:0" },
	{ "not an address, 203.0.113.7", "", 0, "203.0.113.7:0" },
	{ "1.2.3.4,203.0.113.7", "", 0, "203.0.113.7:0" },
	/* past a chain of trusted proxies, not past an untrusted one */
	{ "203.0.113.7, 10.0.0.2", "10.0.0.0/8", 0, "203.0.113.7:0" },
	{ "198.51.100.1, 203.0.113.7, 10.0.0.2, 10.0.0.3", "10.0.0.0/8", 0, "203.0.113.7:0" },
	{ "garbage, 203.0.113.7, 10.0.0.2", "10.0.0.0/8", 0, "203.0.113.7:0" },
	{ "10.0.0.9, 10.0.0.2", "10.0.0.0/8", 0, "10.0.0.9:0" }, /* all trusted: the leftmost */
	{ "::ffff:10.0.0.2", "10.0.0.0/8", 0, "[::ffff:10.0.0.2]:0" },
	{ "203.0.113.7, ::ffff:10.0.0.2", "10.0.0.0/8", 0, "203.0.113.7:0" },
	{ "2001:db8::7, fd00::1", "fd00::/8", 0, "[2001:db8::7]:0" },
	{ "", "", -ENOENT, NULL },
	{ " , ,", "", -ENOENT, NULL },
	{ "unknown", "", -EINVAL, NULL },
	{ "203.0.113.7:4711", "", -EINVAL, NULL },
	{ "203.0.113.7,", "", -EINVAL, NULL },
	{ "203.0.113.7, garbage", "", -EINVAL, NULL },
	{ "garbage, 10.0.0.2", "10.0.0.0/8", -EINVAL, NULL },
	{ "[2001:db8::7", "", -EINVAL, NULL },
	{ "[]", "", -EINVAL, NULL },
	{ "1.2.3.4.5", "", -EINVAL, NULL },
	{ "fe80::1%eth0", "", -EINVAL, NULL },
};

static unsigned parse_trusted(const char *s, struct cidr *list)
{
	char buf[256], *save = NULL;
	unsigned n = 0;

	snprintf(buf, sizeof(buf), "%s", s);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
		assert_int_equal(cidr_parse(t, &list[n++]), 0);
	return n;
}

static void test_cases(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss;
		struct cidr trusted[4];
		char got[ADDR_STR_LEN];
		unsigned n;

		cur_case = cases[i].value;
		n = parse_trusted(cases[i].trusted, trusted);
		EXPECT_EQ(forwarded_client(cases[i].value, trusted, n, &ss), cases[i].ret);
		if (cases[i].ret == 0)
			EXPECT_STREQ(addr_format((struct sockaddr *)&ss, got), cases[i].client);
		else
			EXPECT_EQ(ss.ss_family, 0);
	}
}

static void test_too_long(void **state)
{
	char value[FORWARDED_MAX + 2];
	struct sockaddr_storage ss;

	cur_case = "too long";
	memset(value, ' ', sizeof(value));
	memcpy(value + sizeof(value) - 12, "203.0.113.7", 12);
	EXPECT_EQ(forwarded_client(value, NULL, 0, &ss), -EINVAL);
	/* exactly FORWARDED_MAX bytes is fine */
	EXPECT_EQ(forwarded_client(value + 1, NULL, 0, &ss), 0);
}

static void test_list_has(void **state)
{
	struct sockaddr_storage ss;
	struct cidr list[2];
	socklen_t len;

	cur_case = "cidr_list_has";
	assert_int_equal(cidr_parse("127.0.0.0/8", &list[0]), 0);
	assert_int_equal(cidr_parse("fd00::/8", &list[1]), 0);
	assert_int_equal(addr_parse("127.0.0.1:80", &ss, &len), 0);
	EXPECT(cidr_list_has(list, 2, &ss));
	assert_int_equal(addr_parse("[::ffff:127.0.0.1]:80", &ss, &len), 0);
	EXPECT(cidr_list_has(list, 2, &ss));
	assert_int_equal(addr_parse("[fd12::1]:80", &ss, &len), 0);
	EXPECT(cidr_list_has(list, 2, &ss));
	assert_int_equal(addr_parse("[::1]:80", &ss, &len), 0);
	EXPECT(!cidr_list_has(list, 2, &ss));
	assert_int_equal(addr_parse("10.0.0.1:80", &ss, &len), 0);
	EXPECT(!cidr_list_has(list, 2, &ss));
	EXPECT(!cidr_list_has(list, 0, &ss));
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	EXPECT(!cidr_list_has(list, 2, &ss));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_too_long),
		cmocka_unit_test(test_list_has),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
