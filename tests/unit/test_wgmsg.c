/* SPDX-License-Identifier: MIT */
/* Unit tests for common/wgmsg.h: which byte strings have the shape of a WireGuard message.
 * One table of (type word, length) cases; each message is built in a heap buffer of exactly
 * its length so that a classifier reading past len is caught by ASan. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wgmsg.h"

static const char *cur_case = "?";
#include "expect.h"

static const struct {
	const char *name;
	uint8_t word[4]; /* the first four bytes: type, little-endian, then reserved */
	size_t len;
	enum wgmsg_type want;
} cases[] = {
	{ "initiation 148", { 1, 0, 0, 0 }, 148, WGMSG_INITIATION },
	{ "initiation 147", { 1, 0, 0, 0 }, 147, WGMSG_INVALID },
	{ "initiation 149", { 1, 0, 0, 0 }, 149, WGMSG_INVALID },
	{ "initiation 92", { 1, 0, 0, 0 }, 92, WGMSG_INVALID },
	{ "initiation 4", { 1, 0, 0, 0 }, 4, WGMSG_INVALID },
	{ "response 92", { 2, 0, 0, 0 }, 92, WGMSG_RESPONSE },
	{ "response 91", { 2, 0, 0, 0 }, 91, WGMSG_INVALID },
	{ "response 93", { 2, 0, 0, 0 }, 93, WGMSG_INVALID },
	{ "response 148", { 2, 0, 0, 0 }, 148, WGMSG_INVALID },
	{ "cookie 64", { 3, 0, 0, 0 }, 64, WGMSG_COOKIE },
	{ "cookie 63", { 3, 0, 0, 0 }, 63, WGMSG_INVALID },
	{ "cookie 65", { 3, 0, 0, 0 }, 65, WGMSG_INVALID },
	{ "cookie 80", { 3, 0, 0, 0 }, 80, WGMSG_INVALID },
	{ "data 32 (keepalive)", { 4, 0, 0, 0 }, 32, WGMSG_DATA },
	{ "data 48", { 4, 0, 0, 0 }, 48, WGMSG_DATA },
	{ "data 64", { 4, 0, 0, 0 }, 64, WGMSG_DATA },
	{ "data 160", { 4, 0, 0, 0 }, 160, WGMSG_DATA },
	{ "data 1312 (MTU 1280, full packet)", { 4, 0, 0, 0 }, 1312, WGMSG_DATA },
	/* With the default MTU 1420 a full-size packet is padded to the MTU, not to 16:
	 * 16 header + 1420 + 16 tag = 1452 (kernel send.c calculate_skb_padding). */
	{ "data 1452 (MTU 1420, full packet)", { 4, 0, 0, 0 }, 1452, WGMSG_DATA },
	{ "data 65520", { 4, 0, 0, 0 }, 65520, WGMSG_DATA },
	{ "data 31", { 4, 0, 0, 0 }, 31, WGMSG_INVALID },
	{ "data 33", { 4, 0, 0, 0 }, 33, WGMSG_INVALID },
	{ "data 40", { 4, 0, 0, 0 }, 40, WGMSG_INVALID },
	{ "data 16", { 4, 0, 0, 0 }, 16, WGMSG_INVALID },
	{ "data 4", { 4, 0, 0, 0 }, 4, WGMSG_INVALID },
	{ "data 0", { 4, 0, 0, 0 }, 0, WGMSG_INVALID },
	{ "initiation, reserved[1] set", { 1, 1, 0, 0 }, 148, WGMSG_INVALID },
	{ "initiation, reserved[2] set", { 1, 0, 0x80, 0 }, 148, WGMSG_INVALID },
	{ "initiation, reserved[3] set", { 1, 0, 0, 1 }, 148, WGMSG_INVALID },
	{ "response, reserved set", { 2, 0, 1, 0 }, 92, WGMSG_INVALID },
	{ "cookie, reserved set", { 3, 0, 0, 0xff }, 64, WGMSG_INVALID },
	{ "data, reserved set", { 4, 0xff, 0xff, 0xff }, 32, WGMSG_INVALID },
	{ "big-endian type 1", { 0, 0, 0, 1 }, 148, WGMSG_INVALID },
	{ "big-endian type 4", { 0, 0, 0, 4 }, 32, WGMSG_INVALID },
	{ "type 0 len 148", { 0, 0, 0, 0 }, 148, WGMSG_INVALID },
	{ "type 0 len 32", { 0, 0, 0, 0 }, 32, WGMSG_INVALID },
	{ "type 5 len 32", { 5, 0, 0, 0 }, 32, WGMSG_INVALID },
	{ "type 5 len 148", { 5, 0, 0, 0 }, 148, WGMSG_INVALID },
	{ "type 255 len 148", { 255, 0, 0, 0 }, 148, WGMSG_INVALID },
	{ "type 0x104 len 32", { 4, 1, 0, 0 }, 32, WGMSG_INVALID },
	{ "len 3 (type 1)", { 1, 0, 0, 0 }, 3, WGMSG_INVALID },
	{ "len 2 (type 4)", { 4, 0, 0, 0 }, 2, WGMSG_INVALID },
	{ "len 1 (type 1)", { 1, 0, 0, 0 }, 1, WGMSG_INVALID },
};

static void test_classify_table(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = cases[i].len;
		uint8_t *p = malloc(len ? len : 1);

		cur_case = cases[i].name;
		assert_non_null(p);
		/* a body that looks like nothing: the classifier must judge by the shape alone */
		memset(p, 0xC3, len);
		memcpy(p, cases[i].word, len < 4 ? len : 4);
		EXPECT_EQ(wgmsg_classify(p, len), cases[i].want);
		free(p);
	}
}

static void test_classify_null(void **state)
{
	cur_case = "NULL, len 0";
	EXPECT_EQ(wgmsg_classify(NULL, 0), WGMSG_INVALID);
}

static void test_classify_short(void **state)
{
	/* A prefix of a valid initiation is never valid, at any length below 148. */
	uint8_t *full = calloc(1, 149);
	char name[48];

	assert_non_null(full);
	full[0] = 1;
	for (size_t len = 0; len < 148; len++) {
		uint8_t *p = malloc(len ? len : 1);

		assert_non_null(p);
		memcpy(p, full, len);
		snprintf(name, sizeof(name), "initiation prefix of %zu bytes", len);
		cur_case = name;
		EXPECT_EQ(wgmsg_classify(p, len), WGMSG_INVALID);
		free(p);
	}
	free(full);
}

static void test_names(void **state)
{
	static const enum wgmsg_type types[] = { WGMSG_INVALID, WGMSG_INITIATION, WGMSG_RESPONSE,
						 WGMSG_COOKIE, WGMSG_DATA };
	const char *got[5];

	/* The header names two of them; the others must be distinct metric labels. */
	cur_case = "name of WGMSG_INVALID";
	EXPECT(wgmsg_type_name(WGMSG_INVALID) != NULL);
	EXPECT(strcmp(wgmsg_type_name(WGMSG_INVALID), "invalid") == 0);
	cur_case = "name of WGMSG_INITIATION";
	EXPECT(wgmsg_type_name(WGMSG_INITIATION) != NULL);
	EXPECT(strcmp(wgmsg_type_name(WGMSG_INITIATION), "initiation") == 0);
	for (size_t i = 0; i < 5; i++) {
		char name[32];

		snprintf(name, sizeof(name), "name of type %d", (int)types[i]);
		cur_case = name;
		got[i] = wgmsg_type_name(types[i]);
		EXPECT(got[i] != NULL);
		EXPECT(got[i][0] != '\0');
		EXPECT(strspn(got[i], "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(got[i]));
		for (size_t j = 0; j < i; j++)
			EXPECT(strcmp(got[i], got[j]) != 0);
	}
	/* Out-of-range values (a corrupted label index) still get a printable name. */
	cur_case = "name of type 99";
	EXPECT(wgmsg_type_name((enum wgmsg_type)99) != NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify_table),
		cmocka_unit_test(test_classify_null),
		cmocka_unit_test(test_classify_short),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
