/* SPDX-License-Identifier: MIT */
/* Unit tests for common/jitproto.h: the checks each end of the JIT channel makes of a message
 * before trusting it (jit_request_check in the provisioner, jit_answer_check in the relay),
 * the address conversions both sides use, and the verdict names. One table per message:
 * a good message spoiled one way per case, with the size recv() would report. */
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

#include "jitproto.h"

static const char *cur_case = "?";
#include "expect.h"

enum spoil {
	GOOD, SHORT, LONG, MAGIC, ANSWER_MAGIC, FAMILY_0, FAMILY_UNIX, VERDICT_0, VERDICT_MAX,
};

static const struct {
	const char *name;
	enum spoil spoil;
	int family;       /* of the source */
	int ret;
} request_cases[] = {
	{ "IPv4 source", GOOD, AF_INET, 0 },
	{ "IPv6 source", GOOD, AF_INET6, 0 },
	{ "one byte short", SHORT, AF_INET, -EBADMSG },
	{ "one byte long (MSG_TRUNC)", LONG, AF_INET, -EBADMSG },
	{ "wrong magic", MAGIC, AF_INET, -EBADMSG },
	{ "an answer's magic", ANSWER_MAGIC, AF_INET, -EBADMSG },
	{ "no source", FAMILY_0, AF_INET, -EBADMSG },
	{ "an AF_UNIX source", FAMILY_UNIX, AF_INET, -EBADMSG },
};

static void test_request_check(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(request_cases) / sizeof(request_cases[0]); i++) {
		struct sockaddr_storage ss = { 0 }, source;
		struct jit_request req = { .magic = JIT_MAGIC_REQUEST, .id = 42 };
		size_t n = sizeof(req);
		struct jit_addr back;

		cur_case = request_cases[i].name;
		if (request_cases[i].family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

			sin->sin_family = AF_INET;
			sin->sin_port = htons(40000);
			EXPECT_EQ(inet_pton(AF_INET, "192.0.2.7", &sin->sin_addr), 1);
		} else {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

			sin6->sin6_family = AF_INET6;
			sin6->sin6_port = htons(40000);
			EXPECT_EQ(inet_pton(AF_INET6, "2001:db8::7", &sin6->sin6_addr), 1);
		}
		jit_addr_from_sockaddr(&req.source, (const struct sockaddr *)&ss);
		switch (request_cases[i].spoil) {
		case SHORT: n--; break;
		case LONG: n++; break;
		case MAGIC: req.magic ^= 1; break;
		case ANSWER_MAGIC: req.magic = JIT_MAGIC_ANSWER; break;
		case FAMILY_0: req.source.family = 0; break;
		case FAMILY_UNIX: req.source.family = AF_UNIX; break;
		default: break;
		}
		EXPECT_EQ(jit_request_check(&req, n, &source), request_cases[i].ret);
		if (request_cases[i].ret)
			continue;
		/* The source comes back as it went in. */
		EXPECT_EQ(source.ss_family, request_cases[i].family);
		jit_addr_from_sockaddr(&back, (const struct sockaddr *)&source);
		EXPECT(memcmp(&back, &req.source, sizeof(back)) == 0);
	}
}

static const struct {
	const char *name;
	enum spoil spoil;
	uint32_t verdict;
	int ret;
} answer_cases[] = {
	{ "installed", GOOD, JIT_INSTALLED, 0 },
	{ "error", GOOD, JIT_ERROR, 0 },
	{ "verdict 0", VERDICT_0, 0, -EBADMSG },
	{ "verdict JIT_VERDICT_MAX", VERDICT_MAX, JIT_VERDICT_MAX, -EBADMSG },
	{ "verdict 2^32 - 1", VERDICT_MAX, UINT32_MAX, -EBADMSG },
	{ "one byte short", SHORT, JIT_LIVE, -EBADMSG },
	{ "one byte long", LONG, JIT_LIVE, -EBADMSG },
	{ "a request's magic", MAGIC, JIT_LIVE, -EBADMSG },
};

static void test_answer_check(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(answer_cases) / sizeof(answer_cases[0]); i++) {
		struct jit_answer a = { .magic = JIT_MAGIC_ANSWER };
		size_t n = sizeof(a);

		cur_case = answer_cases[i].name;
		a.verdict = answer_cases[i].verdict;
		if (answer_cases[i].spoil == SHORT)
			n--;
		if (answer_cases[i].spoil == LONG)
			n++;
		if (answer_cases[i].spoil == MAGIC)
			a.magic = JIT_MAGIC_REQUEST;
		EXPECT_EQ(jit_answer_check(&a, n), answer_cases[i].ret);
		/* A verdict that passes has a name; one that does not is "invalid". */
		EXPECT_EQ(strcmp(jit_verdict_name(a.verdict), "invalid") != 0,
			  a.verdict && a.verdict < JIT_VERDICT_MAX);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_check),
		cmocka_unit_test(test_answer_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
